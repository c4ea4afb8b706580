"""
Request parser hook
===================

:class:`ProgressParser` is waitress's request parser that also reports body
bytes *as they arrive*, on waitress's I/O thread, before the application is
called.  Its work per ``recv`` is O(1); the tracker throttles what it
publishes.
"""
from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from waitress.buffers import FileBasedBuffer
from waitress.parser import HTTPRequestParser

from ..progress.entry import ABORTED, HTTP_ERROR, TOO_LARGE
from ..progress.ratelimit import RateLimitedWarning
from ..query import query_param, wants_event_stream
from .compat import PEEK_FOR_DEPARTURE
from .handoff import upgrades_to_websocket
from .reading import BodyBuffer

if TYPE_CHECKING:
    from ..progress.tracker import Tracker
    from ..progress.tracking import TrackingRules
    from ..resumable.parts import StoredPart
    from ..web.resumable import ResumableUploads


#: Whatever a client sends, the log gets a line every few seconds at most.
_UNDECIDED = RateLimitedWarning("could not decide how to track %r; request untracked")


class ProgressParser(HTTPRequestParser):  # type: ignore[misc]
    """Parses one request and feeds its :class:`~wsgiprogress.progress.tracker.Tracker`.

    Made per request by :class:`~wsgiprogress.server.channel.ProgressChannel`
    as ``ProgressParser(adj, rules, on_cancel)``; *rules* see paths as the
    parser does (``url_prefix`` included); *on_cancel* becomes the tracker's
    (the channel closes the connection).  It also fixes waitress's ``Expect:
    100-continue`` handling: a request already rejected (413) or without a
    body gets no ``100 Continue``.
    """

    tracker: Optional[Tracker] = None
    #: Where an append's body goes as it arrives (resumable uploads).
    stored_part: Optional[StoredPart] = None
    #: Fields of the ``100 Continue`` (a resumable request's locations).
    continue_headers = b""
    #: An interim response sent before the body is read, asked for or not
    #: (the IETF draft's ``104``): ``expect_continue`` is then set so that
    #: waitress sends it in order (:meth:`ProgressChannel.send_continue`),
    #: and ``sends_continue`` says whether a ``100 Continue`` follows it.
    interim = b""
    sends_continue = True
    #: ``None`` until making what :attr:`interim` announces (the upload) is
    #: over; then True when it exists, False when it could not be made
    #: (no 104: a ``100 Continue`` alone, when asked for).
    interim_ready: Optional[bool] = None
    #: True once the headers were inspected (tracking decided, probe or not).
    inspected = False
    #: True for a GET or HEAD of the probe or a mailbox, which the server
    #: answers on its I/O loop or the probe lane, never the application's threads.
    is_endpoint = False
    #: True for a GET or HEAD of the probe that is no WebSocket upgrade.
    reads_progress = False
    #: True once a task began to run the application for this request.
    serviced = False
    #: True for a WebSocket upgrade that goes to the application, which gets
    #: the socket (:mod:`wsgiprogress.server.handoff`); ``unread`` holds
    #: what followed its head in the read that completed it.
    hands_off = False
    unread = b""
    # waitress sets these in parse_header, which an unparseable request line
    # stops before they exist; its error path reads them all the same (a
    # client that leaves during the 400 is logged as "Client disconnected
    # while serving <path>"), so every one exists from construction
    first_line = b""
    expect_continue = False
    command = ""
    request_uri = ""
    proxy_scheme = ""
    proxy_netloc = ""
    path = ""
    query = ""
    fragment = ""
    url_scheme = "http"

    #: When the head was complete (``time.monotonic``), for the body deadline.
    head_done = 0.0

    def __init__(self, adj: Any, rules: TrackingRules,
                 endpoints: Tuple[str, Tuple[str, ...]] = ("", ()),
                 on_cancel: Optional[Callable[[], None]] = None,
                 handoff: bool = False,
                 uploads: Optional[ResumableUploads] = None,
                 on_interim: Optional[Callable[[ProgressParser, bool], None]] = None
                 ) -> None:
        super().__init__(adj)
        self.rules = rules
        self.endpoints = endpoints
        self.on_cancel = on_cancel
        self.on_interim = on_interim
        self.handoff = handoff
        self.uploads = uploads
        self.started = time.monotonic()  # the first byte: the head's deadline runs

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if not self.inspected:
            if not self.headers_finished:
                return consumed
            if self.expect_continue and (self.error is not None or self.body_rcv is None):
                # the channel would send 100 and un-complete the request: the
                # client then uploads a body that is refused (413) or hangs (no
                # body).  Cleared here, before the channel looks, on every waitress
                # (1.4 sends the 100 inline in received(), 2.0+ in send_continue())
                self.expect_continue = False
            self._inspect()
            if self.hands_off:  # the loop reads nothing after its head
                self.unread = data[consumed:]
                return len(data)
        tracker = self.tracker
        if tracker is None or tracker.finished:
            return consumed
        body = self.body_rcv
        if body is not None:
            arrived = body.__len__() - tracker.received
            if arrived > 0:
                files = tracker.files
                if files is not None:
                    # a declared size: the body arrived as sent, and ends what
                    # this call consumed
                    files.feed(data, consumed - arrived, consumed)
                tracker.add_received(arrived)  # completes a declared size
        error = self.error
        if error is not None:
            code = error.code
            tracker.fail(TOO_LARGE if code == 413 else HTTP_ERROR, code)
        elif self.completed:
            tracker.body_complete()  # a chunked body's last chunk
        return consumed

    def close(self) -> None:
        tracker = self.tracker
        if tracker is not None and not self.serviced:
            # dropped without a task: the connection went away first
            tracker.fail(ABORTED)
        self.broke_off()  # after the request's progress ended: the upload's goes on
        super().close()

    def broke_off(self) -> None:
        """The connection closed before this request was serviced: what
        arrived of an append's body is appended in the background."""
        part = self.stored_part
        if part is None or self.serviced or part.kept:
            return
        if self.uploads is not None:
            self.uploads.keep_partial(part)
        part.close()  # the file goes now unless the background keeps it

    def _inspect(self) -> None:
        self.inspected = True
        self.head_done = time.monotonic()
        body = self.body_rcv
        overflow = self.adj.inbuf_overflow
        # a body that may outgrow memory, before its first byte
        if body is not None and (self.chunked or self.content_length >= overflow) \
                and not body.buf.__len__():
            body.buf = BodyBuffer(overflow)
        if self.error is not None and self.error.code != 413:
            return  # unreadable headers: waitress answers 400/431/501 untracked
        if self.empty:
            return  # a blank line before a request: waitress skips it
        try:
            self._decide()
        except Exception:  # on the I/O thread: never let tracking drop a connection
            _UNDECIDED.warn(self.path, exc_info=True)
            self.tracker = None

    def _decide(self) -> None:
        rules = self.rules
        if self.error is None:
            probe_path, prefixes = self.endpoints
            path = self.path
            if self.command in ("GET", "HEAD"):
                self.is_endpoint = (path == probe_path or path.startswith(prefixes)) and not (
                    PEEK_FOR_DEPARTURE and waits(self.query, self.headers))
                self.reads_progress = path == probe_path and "UPGRADE" not in self.headers
            else:  # a publish, a cancel: small bodies, read in full before dispatch
                self.is_endpoint = path.startswith(prefixes) and not self.chunked
            if self.is_endpoint:
                return
            if self.handoff and upgrades_to_websocket(self):
                self.hands_off = True
                return
        uploads = self.uploads
        if uploads is not None:
            path = self.path
            prefix = self.adj.url_prefix
            if prefix and path.startswith(prefix):
                path = path[len(prefix):]
            if uploads.claims(self.command, path, self.headers):
                if self.error is None and self.body_rcv is not None:
                    self._store_body(uploads.part_for(self.command, path, self.headers)
                                     or self._announced(uploads, prefix, path))
                return  # the upload's own tracker counts it, across requests
            if self.expect_continue and self.error is None and self.body_rcv is not None \
                    and not self.chunked:
                part = uploads.resume.start(self.command, prefix, path, self.query,
                                            self.headers, self.content_length)
                if part is not None and self._store_body(part):
                    self.continue_headers = uploads.resume.continue_headers(prefix, part)
        size = None if self.chunked else self.content_length
        headers = self.headers
        # a chunked body lists no files: its framing is decoded into a buffer,
        # not seen here as sent
        tracker = self.tracker = rules.track(
            self.command, self.path, headers.get(rules.finder.header_key), self.query, size,
            None if self.chunked else headers.get("CONTENT_TYPE"))
        if tracker is not None:
            tracker.on_cancel = self.on_cancel

    def _announced(self, uploads: ResumableUploads, prefix: str, path: str
                   ) -> Optional[StoredPart]:
        """The part of an IETF creation with a body, whose ``104`` (:attr:`interim`)
        goes out once its upload is made; else ``None``.  Only to HTTP/1.1
        (never a 1xx to HTTP/1.0, RFC 9110), for a declared length, on
        waitress 2.0 or later (1.4 sends a bare 100 for any ``expect_continue``)."""
        on_interim = self.on_interim
        if on_interim is None or self.version != "1.1" or self.chunked or PEEK_FOR_DEPARTURE:
            return None
        part = uploads.ietf.start(self.command, prefix, path, self.query, self.headers,
                                  self.content_length, functools.partial(on_interim, self))
        if part is not None:
            self.sends_continue = self.expect_continue
            self.expect_continue = True  # so that waitress sends it in order
            self.interim = uploads.ietf.interim(prefix, part)
        return part

    def _store_body(self, part: Optional[StoredPart]) -> bool:
        """Write the body into *part* as it arrives; False for no part."""
        if part is None:
            return False
        self.stored_part = part
        self.body_rcv.buf = PartBuffer(part)
        return True


def waits(query: str, headers: Dict[str, str]) -> bool:
    """True for a request that waits (``wait=``, an event stream).  On
    waitress 1.4, which cannot park, it holds its thread: one of the
    application's, not the probe lane's."""
    return bool(query and query_param(query, "wait")) or streams(query, headers)


def streams(query: str, headers: Dict[str, str]) -> bool:
    """True for a request that asks for an event stream."""
    return wants_event_stream(headers.get("ACCEPT", ""),
                              query_param(query, "transport") if query else None)


class PartBuffer(FileBasedBuffer):  # type: ignore[misc]
    """waitress's body buffer over a :class:`~wsgiprogress.resumable.parts.StoredPart`:
    the body is written into the upload directory as it arrives."""

    def __init__(self, part: StoredPart) -> None:
        super().__init__(part.file)
        self.part = part

    def append(self, data: bytes) -> None:
        data = self.part.body_of(data)
        if data:
            super().append(data)
            self.part.wrote(len(data))

    def close(self) -> None:
        self.part.close()
        self.remain = 0
