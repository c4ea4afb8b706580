"""
Per-file progress
=================

With the ``per_file`` setting, a tracked ``multipart/form-data`` request
lists each file of the form as its bytes arrive: field name, file name,
content type, bytes received, done — what PHP's ``session.upload_progress``
calls ``files[]``.  :class:`FileProgress` finds the parts with werkzeug's
sans-IO ``MultipartDecoder`` (the ``wsgiprogress[multipart]`` extra, imported
only when the setting is on) and keeps the bytes of no part.  The decoder
reads the part heads and a few KiB after each place where a delimiter may be
(a :func:`skip_needle`, searched with ``bytes.rfind``); a file's bulk between
them is counted by its length, so a large upload costs that search and one
Python call per read.

.. code-block:: python

    files = FileProgress.for_content_type(environ["CONTENT_TYPE"])
    if files is not None:
        files.feed(chunk)           # as body bytes arrive, in order
        files.feed(buffer, 10, 20)  # or a part of a buffer, read in place
        files.snapshot()            # [{"field_name": "photo", "filename": ...}]

It is bounded and never raises: at most :data:`MAX_FILES` files are listed,
names are cut to :data:`MAX_NAME` characters, part headers and preambles
longer than :data:`MAX_BUFFERED` bytes, more than :data:`MAX_PARTS` parts or a
body the decoder cannot parse stop the listing where it stands (the request
itself is never touched).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

log = logging.getLogger("wsgiprogress")

#: Files listed per request; later files are counted in no entry.
MAX_FILES = 100
#: Parts (files and plain fields) parsed per request; past it the listing stops.
MAX_PARTS = 1000
#: Characters kept of a field name, file name or content type.
MAX_NAME = 200
#: Bytes the decoder reads at once: a part's head, or what follows a place
#: where a delimiter may be.
WINDOW = 4096
#: Stretches of a part's data at least this long are searched for the
#: boundary, and counted by their length up to where it may be.
SKIP_AT_LEAST = WINDOW
#: Bytes the decoder may hold while it looks for a boundary or the end of a
#: part's headers; a longer preamble or part head stops the listing.
MAX_BUFFERED = 128 * 1024
#: What may follow a delimiter's marker on its line: the closing ``--`` and
#: blanks (werkzeug's ``[^\S\n\r]``).
AFTER_MARKER = b"- \t\f\v"


def skip_needle(marker: bytes) -> bytes:
    """What :meth:`FileProgress.feed` looks for in a part's data: the longest
    end of *marker* whose first byte occurs nowhere else in it.

    Every ``--<boundary>`` holds it, and ``bytes.rfind`` finds it in linear
    time whatever the body (its scan moves at least the needle's length past
    each byte equal to the needle's first), two to four times faster than
    ``bytes.find`` finds the whole marker on CPython 3.8 to 3.13: the scan
    is most of what per-file progress costs.
    """
    start = 0
    while marker[start] in marker[start + 1:]:
        start += 1
    return marker[start:]


def preload_decoder() -> None:
    """Import werkzeug's decoder now, where ``per_file`` is turned on (at
    start), not at the first form: on our server that is the I/O thread,
    which the import (tens of milliseconds) would hold up."""
    import werkzeug.http  # noqa: F401
    import werkzeug.sansio.multipart  # noqa: F401


def _short(text: Optional[str]) -> Optional[str]:
    return None if text is None else text[:MAX_NAME]


class FileRecord:
    """One listed file: what the probe shows of it."""

    __slots__ = ("field_name", "filename", "content_type", "received", "done")

    def __init__(self, field_name: Optional[str], filename: Optional[str],
                 content_type: Optional[str]) -> None:
        self.field_name = field_name
        self.filename = filename
        self.content_type = content_type
        self.received = 0
        self.done = False

    def to_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class FileProgress:
    """The files of one multipart body, as far as it has arrived.

    :param boundary: the body's multipart boundary.

    :meth:`feed` runs on the counting thread (our server's I/O thread);
    :meth:`snapshot` may run on any thread.
    """

    __slots__ = ("files", "_decoder", "_current", "_parts", "_events", "_needle", "_keep",
                 "_in_data")

    def __init__(self, boundary: bytes) -> None:
        from werkzeug.sansio import multipart

        self.files: List[FileRecord] = []
        self._events = multipart
        self._decoder: Any = multipart.MultipartDecoder(
            boundary, max_form_memory_size=MAX_BUFFERED)
        self._current: Optional[FileRecord] = None
        self._parts = 0
        marker = b"--" + boundary
        self._needle = skip_needle(marker)
        #: What the decoder keeps of a part's data that may begin its
        #: delimiter: a line break (CRLF, CR or LF) and the marker
        self._keep = len(marker) + 2
        self._in_data = multipart.State.DATA

    @classmethod
    def for_content_type(cls, content_type: Optional[str]) -> Optional[FileProgress]:
        """A :class:`FileProgress` for a ``multipart/form-data`` body with a
        usable boundary, else ``None`` (the request is tracked as a whole)."""
        if not content_type or "multipart/form-data" not in content_type[:40].lower():
            return None
        from werkzeug.http import parse_options_header

        kind, options = parse_options_header(content_type)
        boundary = options.get("boundary", "")
        # RFC 2046: 1 to 70 characters; anything else no browser sends
        if kind != "multipart/form-data" or not 0 < len(boundary) <= 70 \
                or not boundary.isascii():
            return None
        return cls(boundary.encode("ascii"))

    @property
    def listing(self) -> bool:
        """False once the listing stopped (parsed to the end, or gave up)."""
        return self._decoder is not None

    def feed(self, data: bytes, start: int = 0, end: Optional[int] = None) -> None:
        """Parse the next body bytes, ``data[start:end]`` (read in place, not
        copied); never raises."""
        decoder = self._decoder
        if decoder is None:
            return
        if end is None:
            end = len(data)
        try:
            last = -2  # where the last needle in data[start:end] begins; -2: not searched
            if end - start >= SKIP_AT_LEAST and decoder.state is self._in_data:
                # a large file's reads: most hold no delimiter, and cost this
                last = data.rfind(self._needle, start, end)
                if last == -1 and self._skip(decoder, data, start, end):
                    return
            self._feed(decoder, data, start, end, last)
        except Exception as exc:  # malformed or over a bound: the listing stops
            self._stop(exc)

    def _feed(self, decoder: Any, data: bytes, pos: int, end: int, last: int) -> None:
        """The decoder reads the part heads and a window after each place
        where a delimiter may be (a :func:`skip_needle`, the last of them at
        *last*); a part's data between them is counted by its length
        (:meth:`_skip`)."""
        needle, in_data = self._needle, self._in_data
        view = memoryview(data)
        while pos < end:
            upto = pos + WINDOW
            if decoder.state is in_data and end - pos >= SKIP_AT_LEAST:
                if last == -2:
                    last = data.rfind(needle, pos, end)
                # data[pos:clear] holds no needle: none begins before `hit`
                hit = -1 if last < pos else data.find(needle, pos, last + len(needle))
                clear = end if hit == -1 else hit + len(needle) - 1
                if clear - pos >= SKIP_AT_LEAST and self._skip(decoder, data, pos, clear):
                    pos = clear
                    if pos == end:
                        return
                # the decoder decides whether a delimiter is there
                upto = max(pos, hit) + len(needle) + WINDOW
            upto = min(upto, end)
            if upto < end:
                upto = self._window_end(data, pos, upto)
            decoder.receive_data(view[pos:upto])
            pos = upto
            if not self._drain(decoder):
                return

    def _window_end(self, data: bytes, pos: int, upto: int) -> int:
        """Where a window ``data[pos:upto]`` the decoder reads ends: at
        *upto*, or right after a needle when only what may follow a marker
        (:data:`AFTER_MARKER`) lies between them.  werkzeug's decoder
        (3.1.8), given a read that ends there, counts a CRLF delimiter's CR
        as the part's data; fed the whole body, it does not (its
        `issue 3285 <https://github.com/pallets/werkzeug/issues/3285>`_)."""
        if data[upto - 1] in AFTER_MARKER:
            needle = self._needle
            found = data.rfind(needle, pos, upto)
            after = found + len(needle)
            if found != -1 and after < upto and not data[after:upto].strip(AFTER_MARKER):
                return after
        return upto

    def _skip(self, decoder: Any, data: bytes, pos: int, clear: int) -> bool:
        """Inside a part, ``data[pos:clear]`` holds no ``--<boundary>``: count
        it up to its last few bytes, which may begin the delimiter, and leave
        the decoder those few as if it had emitted the rest itself (its
        copies cost more than reading the socket).  False when the junction
        of what the decoder holds with ``data[pos:]`` may have the marker
        (it has the needle): the decoder looks itself."""
        needle, held = self._needle, decoder.buffer
        # a needle held whole or in part begins at or after the first of its
        # first byte held
        begins = held.find(needle[0])
        if begins != -1 and needle in held[begins:] + data[pos:pos + len(needle) - 1]:
            return False
        keep = self._keep
        current = self._current
        if current is not None:
            current.received += len(held) + clear - pos - keep
        held[:] = data[clear - keep:clear]
        return True

    def _drain(self, decoder: Any) -> bool:
        """Take the decoder's events; False once the listing ended."""
        events = self._events
        need_data, data_event, file_event = events.NeedData, events.Data, events.File
        epilogue = events.State.EPILOGUE
        while decoder.state is not epilogue:
            event = decoder.next_event()
            kind = event.__class__
            if kind is need_data:
                return True
            if kind is data_event:
                current = self._current
                if current is not None:
                    current.received += len(event.data)
                    if not event.more_data:
                        current.done = True
                        self._current = None
            elif kind is file_event or kind is events.Field:
                self._part(event, kind is file_event)
        self._decoder = None  # the closing boundary came: nothing more to list
        return False

    def _part(self, event: Any, is_file: bool) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ValueError(f"more than {MAX_PARTS} parts")
        if not is_file or len(self.files) >= MAX_FILES:
            self._current = None
            return
        record = FileRecord(_short(event.name), _short(event.filename),
                            _short(event.headers.get("Content-Type")))
        self.files.append(record)
        self._current = record

    def end(self) -> None:
        """The request ended: the listing stops, the parser and its buffer go."""
        self._decoder = None
        self._current = None

    def _stop(self, exc: Exception) -> None:
        self.end()
        log.debug("per-file progress stopped: %s", exc)

    def snapshot(self) -> List[Dict[str, Any]]:
        """The listed files as the native probe shows them."""
        return [record.to_dict() for record in list(self.files)]
