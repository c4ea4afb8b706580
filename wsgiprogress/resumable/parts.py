"""
Bodies written straight into the storage
========================================

Under :mod:`wsgiprogress.server` an append's body does not go to waitress's
temporary file: the parser hook writes it as it arrives into a
:class:`StoredPart`, ``<id>.part-<token>`` in the upload directory, and the
append then takes that file over (:meth:`~.storage.Appender.adopt`: a rename
when the upload is empty, else an in-kernel copy).  While the body arrives,
:class:`Background` flushes it to disk every
:data:`~wsgiprogress.resumable.storage.SYNC_BYTES`, so the final fsync before
the offset is reported has little left to do.  A connection that breaks
mid-body hands its part to :class:`Background`, which appends what arrived.

.. code-block:: python

    part = StoredPart(storage, upload_id, start=0, background=background)
    part.file.write(data); part.wrote(len(data))     # on the I/O thread
    with storage.locked(upload_id) as upload, storage.appender(upload) as out:
        out.adopt(part)                              # on a worker thread
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
from typing import TYPE_CHECKING, Callable, Optional, Tuple

from . import storage as storage_module

if TYPE_CHECKING:
    from ..progress.tracker import Tracker
    from .storage import UploadStorage
    from .upload import Upload

    #: The work the writer thread takes, None to stop (typing only: queue.Queue
    #: takes no [] at run time before Python 3.9).
    Jobs = queue.Queue[Optional[Callable[[], None]]]  # novermin: never run

log = logging.getLogger("wsgiprogress")

#: The media type of a byte-range PATCH body: one part, its header block, its bytes.
BYTERANGE = "message/byterange"
#: The most header bytes a ``message/byterange`` part may carry.
MAX_PART_HEAD = 8192
_RANGE = re.compile(r"\s*bytes\s+(\d{1,18})-(\d{1,18})/(\d{1,18}|\*)\s*\Z")

#: fdatasync where there is one (Linux), else fsync.
_DATASYNC = getattr(os, "fdatasync", os.fsync)
#: Jobs waiting for the background thread; past it syncs are skipped (the
#: final fsync covers them) and broken bodies are dropped (the client resends).
QUEUE_LIMIT = 1024


def parse_byterange_head(head: bytes) -> Tuple[int, int, Optional[int]]:
    """``(first, last, complete)`` from a ``message/byterange`` part's header
    block (``Content-Range: bytes first-last/complete``); ``complete`` is
    ``None`` for ``*``.

    :raises ValueError: without a usable ``Content-Range``, or with a
        ``Content-Length`` that is not the range's length.
    """
    fields = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    match = _RANGE.match(fields.get("content-range", ""))
    if match is None:
        raise ValueError("the part needs Content-Range: bytes first-last/length")
    first, last = int(match.group(1)), int(match.group(2))
    complete = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (complete is not None and last >= complete):
        raise ValueError("Content-Range is not a range of the body")
    declared = fields.get("content-length")
    if declared is not None and declared != str(last - first + 1):
        raise ValueError("the part's Content-Length is not its range's")
    return first, last, complete


class Background:
    """One daemon thread that runs small storage jobs off the I/O thread:
    flushing parts while they arrive and keeping broken bodies."""

    def __init__(self) -> None:
        self.jobs: Jobs = queue.Queue(QUEUE_LIMIT)
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> bool:
        """Run *job* soon; False when the queue is full (it will not run)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="wsgiprogress-resumable")
                self._thread.start()
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("resumable uploads: a background job failed")

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self.jobs.put(None)
            thread.join(timeout)


class StoredPart:
    """One request body, written as it arrives into the upload directory.

    :param start: the offset the request appends at (``Upload-Offset``), or
        ``None`` when it did not say (a broken body is then not kept).
    :param tracker: the upload's tracker, counted as bytes arrive, or ``None``.
    :param byterange: the body is ``message/byterange``: its header block is
        kept apart (:attr:`head`) and gives :attr:`start`.
    """

    def __init__(self, storage: UploadStorage, upload_id: str, start: Optional[int],
                 background: Background, tracker: Optional[Tracker] = None,
                 byterange: bool = False) -> None:
        self.upload_id = upload_id
        self.start = start
        self.path = storage.part_path(upload_id)
        self.file = open(self.path, "w+b")
        self.background = background
        self.tracker = tracker
        self.size = 0
        #: Bytes counted into the tracker already.
        self.counted = 0
        #: True once an append took the file over (renamed or copied).
        self.adopted = False
        #: True once a broken body was handed to :class:`Background`.
        self.kept = False
        #: The upload a request that makes one as it arrives will have (a
        #: resumable request's, ``Prefer: resume``; an IETF creation's): made
        #: in the background, where its body goes whole or broken off.
        self.upload: Optional[Upload] = None
        #: Called in the background once making :attr:`upload` is over:
        #: with True when it was made, False when it could not be.
        self.on_made: Optional[Callable[[bool], None]] = None
        #: A ``message/byterange`` part's header block once it arrived whole
        #: (``b""`` before; ``None`` when it is not one or was too long).
        self.head: Optional[bytes] = b"" if byterange else None
        self._head_done = not byterange
        self._synced = 0
        #: The tracker :meth:`offer` found, handed over when the part closes.
        self.offered: Optional[Tracker] = None
        self._offers = threading.Lock()
        self._offering = True

    def body_of(self, data: bytes) -> bytes:
        """What of *data* belongs in the file: all of it, except a
        ``message/byterange`` part's header block, kept in :attr:`head`
        (whose range then gives :attr:`start`, and the tracker's count only
        when it continues what the tracker shows)."""
        if self._head_done:
            return data
        head = (self.head or b"") + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_PART_HEAD:
                self._head_done, self.head = True, None
                return b""  # refused when the request is answered
            self.head = head
            return b""
        self._head_done = True
        self.head = head[:end]
        try:
            self.start = parse_byterange_head(self.head)[0]
        except ValueError:
            self.head = None
        if self.tracker is not None and self.tracker.received != self.start:
            self.tracker = None
        return head[end + 4:]

    def wrote(self, n: int) -> None:
        """*n* more bytes were written to :attr:`file` (on the I/O thread: O(1))."""
        self.size += n
        tracker = self.tracker
        if tracker is not None:
            tracker.add_received(self.size - self.counted)  # n, unless an offer came
            self.counted = self.size
        elif self.offered is not None:
            with self._offers:
                self._count_offer()
        if self.size - self._synced >= storage_module.SYNC_BYTES:
            self._synced = self.size
            self.background.submit(self.flush)

    def offer(self, make: Callable[[], Optional[Tracker]]) -> None:
        """Off the I/O thread: count what arrived, and what arrives, into the
        tracker *make* gives (found while the body arrived: a shared store's
        record) when it continues the progress shown, and hand it over when
        the part closes; nothing once :meth:`settle` or :meth:`close` ran."""
        with self._offers:
            if self._offering and self.offered is None:
                self.offered = make()
                if self.offered is not None and self._head_done:
                    self._count_offer()

    def settle(self) -> None:
        """The request counts on its own tracker now (or is over): no more offers."""
        with self._offers:
            self._offering = False

    def _count_offer(self) -> None:
        # under _offers, on the thread that offers or the I/O thread, whichever
        # comes first: :attr:`tracker` is set last, after the bytes so far count
        tracker = self.tracker or self.offered
        if tracker is None:
            return
        if self.tracker is None and (tracker.received != self.start or tracker.finished):
            self.offered = None  # it does not continue what is shown: count nothing
            tracker.hand_over()
            return
        tracker.add_received(self.size - self.counted)
        self.counted = self.size
        self.tracker = tracker

    def written(self) -> None:
        """Hand what Python still buffers to the file, before another reads it."""
        with contextlib.suppress(ValueError):  # closed: close() flushed it
            self.file.flush()

    def flush(self) -> None:
        """Push what was written to disk, so the final fsync is short."""
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile
            _DATASYNC(self.file.fileno())

    def close(self) -> None:
        """The request is over: the file goes unless an append took it or a
        background job will, and an offered tracker is handed over."""
        self.settle()
        offered, self.offered = self.offered, None
        if offered is not None:
            offered.hand_over()
        self.file.close()
        if not (self.adopted or self.kept):
            self.remove()

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
