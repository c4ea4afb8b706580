"""
Status monitors
===============

:class:`OperationMonitor` serves the operations of
:mod:`wsgiprogress.web.operations` under ``operations_url``:

``GET <operations_url>/<id>``
    200 with the monitor's JSON (``id``, ``state``, ``steps``, ``started``,
    ``updated``, and once finished ``status``), a ``Progress: 1/3 "Knitting
    sweaters"`` header and, while running, ``Retry-After``.  Once the
    application answered and its response is kept: ``303 See Other`` to the
    response-message location.  ``wait=<seconds>`` answers on the next change
    (at once for an ended or unknown operation: none is coming),
    ``Accept: text/event-stream`` or ``transport=sse`` streams every change
    until the operation ends, exactly as the progress probe does.
``DELETE <operations_url>/<id>``
    a running operation: 202, its cancellation flag set (the application
    reads ``environ["wsgiprogress.operation"].cancelled``), state
    ``cancelled`` until it expires; a finished one: 204, monitor and kept
    response forgotten (404 afterwards).
A WebSocket on ``<operations_url>/<id>`` (our server, ``websocket`` on)
    gets each snapshot as a text message until the operation ends.
``GET <operations_url>/<id>/response``
    the application's final response as it gave it (status, headers, body);
    with ``Accept: message/http`` the same as one ``message/http`` document.
    410 when it was not kept (too large, or it made room for newer ones:
    ``max_kept_bytes``); ``DELETE`` forgets it as above.

The id is a capability (192 random bits): whoever holds the URL may read and
cancel, unless the ``authorize`` hook, asked ``authorize(environ, id,
"operation")`` or ``(environ, id, "cancel")``, says otherwise (403).
"""
from __future__ import annotations

import functools
import json
import re
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Union,
)

from ..operations import CANCELLED, OperationsUnavailable, operation_key, progress_header
from ..query import parse_wait, query_params, wants_event_stream
from ..settings import WAIT_SETTINGS, resolve
from . import sse
from .event_stream import EventStream, StreamTiming
from .responses import (
    NO_CACHE_HEADERS,
    Headers,
    cors_headers,
    json_body,
    plain,
    preflight,
    start_event_stream,
    too_many_streams,
    too_many_waiters,
)
from .sockets import SocketFeed
from .waiting import Answer, LongPoll, open_wake

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..operations import OperationRecord, OperationStore
    from .mailbox import Authorize

#: What an operation id looks like (URL-safe base64 of 16 to 48 bytes).
_OPERATION_ID = re.compile(r"[A-Za-z0-9_-]{22,64}\Z")
#: The media type of a response as one HTTP message.
MESSAGE_HTTP = "message/http"
#: The methods a monitor answers.
ALLOWED = "GET, HEAD, DELETE"
#: Response headers a page may read cross-origin.
EXPOSED = ("Location", "Progress", "Retry-After")


class OperationMonitor:
    """Answers status monitors and kept responses from *store*.

    :param store: the :class:`~wsgiprogress.operations.OperationStore`.
    :param authorize: asked ``authorize(environ, id, "operation")`` before a
        read and ``(environ, id, "cancel")`` before a ``DELETE``.
    :param url: the ``operations_url``.
    :param allowed_origins: origins that may read cross-origin.
    :param settings: the waiting settings (``max_wait``, ``sse_*``).
    """

    def __init__(self, store: OperationStore, *, authorize: Optional[Authorize] = None,
                 url: str = "/operations", allowed_origins: Tuple[str, ...] = (),
                 **settings: Any) -> None:
        options = resolve(WAIT_SETTINGS, settings)
        self.store = store
        self.authorize = authorize
        self.url = url
        self.prefix = url.rstrip("/") + "/"
        self.allowed_origins = allowed_origins
        self.max_wait: float = options["max_wait"]
        self.timing = StreamTiming.from_options(options)

    def handles(self, path: str) -> bool:
        return path.startswith(self.prefix)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        headers = cors_headers(environ, self.allowed_origins, EXPOSED)
        method = environ.get("REQUEST_METHOD", "GET")
        head_only = method == "HEAD"
        op_id, _, part = environ.get("PATH_INFO", "")[len(self.prefix):].partition("/")
        if not _OPERATION_ID.match(op_id) or part not in ("", "response"):
            return plain(start_response, "404 Not Found", "no such operation", headers,
                         head_only)
        if method == "OPTIONS" and self.allowed_origins:  # a page's DELETE is preflighted
            return preflight(start_response, headers, ALLOWED, "Accept")
        if method not in ("GET", "HEAD", "DELETE"):
            return plain(start_response, "405 Method Not Allowed",
                         "a status monitor answers GET, HEAD and DELETE",
                         [*headers, ("Allow", ALLOWED)], head_only)
        action = "cancel" if method == "DELETE" else "operation"
        if self.authorize is not None and not self.authorize(environ, op_id, action):
            return plain(start_response, "403 Forbidden",
                         f"not allowed to {'cancel' if method == 'DELETE' else 'read'} "
                         "this operation", headers, head_only)
        try:
            if method == "DELETE":
                return self._delete(start_response, op_id, headers)
            if part:
                return self._response(environ, start_response, op_id, headers, head_only)
            return self._status(environ, start_response, op_id, headers, head_only)
        except OperationsUnavailable as exc:
            return plain(start_response, "503 Service Unavailable", str(exc),
                         [*headers, ("Retry-After", "2")], head_only)

    # -- GET: the monitor ----------------------------------------------------------

    def _status(self, environ: WSGIEnvironment, start_response: StartResponse, op_id: str,
                headers: Headers, head_only: bool) -> Iterable[bytes]:
        try:
            params = query_params(environ.get("QUERY_STRING", ""))
            wait = parse_wait(params.get("wait"), self.max_wait)
        except ValueError as exc:
            return plain(start_response, "400 Bad Request", str(exc), headers, head_only)
        stream = wants_event_stream(environ.get("HTTP_ACCEPT", ""), params.get("transport"))
        if stream or wait > 0:
            waiters = self.store.waiters
            key = operation_key(op_id)
            wake = open_wake(waiters, key, environ)
            if wake is None:
                refuse = too_many_streams if stream else too_many_waiters
                return refuse(start_response, headers, head_only)
            if stream:
                start_event_stream(start_response, headers)
                return EventStream(waiters, key, wake, environ, self._changes(op_id),
                                   self.timing)
            return LongPoll(waiters, key, wake, environ, start_response,
                            *self._changed(environ, op_id, headers, head_only), seconds=wait)
        return self._reply(environ, self.store.get(op_id), headers, head_only)(start_response)

    def _reply(self, environ: WSGIEnvironment, record: Optional[OperationRecord],
               headers: Headers, head_only: bool) -> Answer:
        """The monitor's answer for *record* (``None``: unknown)."""
        if record is None:
            return functools.partial(plain, status="404 Not Found",
                                     reason="unknown or expired operation", headers=headers,
                                     head_only=head_only)
        headers = [*headers, ("Progress", progress_header(record.steps))]
        status = "200 OK"
        if record.kept:
            status = "303 See Other"
            headers.append(("Location", f"{environ.get('SCRIPT_NAME', '')}{self.prefix}"
                                        f"{record.id}/response"))
        elif record.running:
            headers.append(("Retry-After", "1"))
        return functools.partial(json_body, status=status, data=record.to_dict(),
                                 headers=headers, head_only=head_only)

    def _changed(self, environ: WSGIEnvironment, op_id: str, headers: Headers,
                 head_only: bool) -> Tuple[Callable[[], Optional[Answer]], Callable[[], Answer]]:
        """For a :class:`~wsgiprogress.web.waiting.LongPoll`: the answer once
        the record differs from the first read, and the last read's when the
        time is up, as the probe's."""
        first: List[Optional[OperationRecord]] = []
        last: List[Optional[OperationRecord]] = []

        def changed() -> Optional[Answer]:
            try:
                record = self.store.get(op_id)
            except OperationsUnavailable:
                return None  # no news; the time-out answers with the last read
            last[:] = [record]
            if not first:
                first.append(record)
                if record is None or not record.running:  # no change is coming
                    return self._reply(environ, record, headers, head_only)
            if record == first[0]:
                return None
            return self._reply(environ, record, headers, head_only)

        def timed_out() -> Answer:
            return self._reply(environ, last[0] if last else None, headers, head_only)
        return changed, timed_out

    def _snapshots(self, op_id: str) -> Callable[[], Tuple[Optional[str], bool]]:
        """The monitor's JSON when it changed since the last call (else
        ``None``), and whether the operation ended or was forgotten: what an
        event stream and a WebSocket send."""
        last: List[str] = [""]

        def snapshot() -> Tuple[Optional[str], bool]:
            try:
                record = self.store.get(op_id)
            except OperationsUnavailable:
                return None, False  # no news this time
            data = json.dumps(None if record is None else record.to_dict())
            over = record is None or not record.running
            if data == last[0]:
                return None, over
            last[0] = data
            return data, over
        return snapshot

    def _changes(self, op_id: str) -> Callable[[], Tuple[List[bytes], bool]]:
        """For an event stream: each snapshot as an event."""
        snapshot = self._snapshots(op_id)

        def collect() -> Tuple[List[bytes], bool]:
            data, over = snapshot()
            return ([] if data is None else [sse.event(data)]), over
        return collect

    def feed(self, environ: WSGIEnvironment) -> Union[SocketFeed, Answer]:
        """The feed of a WebSocket on a monitor (our server, ``websocket``
        on): each snapshot as a text message until the operation ends, as
        the event stream; or the answer that refuses it."""
        op_id, _, part = environ.get("PATH_INFO", "")[len(self.prefix):].partition("/")
        if not _OPERATION_ID.match(op_id) or part:
            return functools.partial(plain, status="404 Not Found", reason="no such operation")
        if self.authorize is not None and not self.authorize(environ, op_id, "operation"):
            return functools.partial(plain, status="403 Forbidden",
                                     reason="not allowed to read this operation")
        snapshot = self._snapshots(op_id)

        def collect() -> Tuple[List[str], bool]:
            data, over = snapshot()
            return ([] if data is None else [data]), over
        return SocketFeed(operation_key(op_id), collect, None)

    # -- DELETE --------------------------------------------------------------------

    def _delete(self, start_response: StartResponse, op_id: str,
                headers: Headers) -> Iterable[bytes]:
        record = self.store.get(op_id)
        if record is not None and record.running:
            record = self.store.cancel(op_id)
        if record is None:
            return plain(start_response, "404 Not Found", "unknown or expired operation",
                         headers)
        if record.running:
            return json_body(start_response, "202 Accepted", record.to_dict(), headers)
        self.store.forget(op_id)
        start_response("204 No Content", [*NO_CACHE_HEADERS, *headers])
        return []

    # -- GET: the response-message location ----------------------------------------

    def _response(self, environ: WSGIEnvironment, start_response: StartResponse, op_id: str,
                  headers: Headers, head_only: bool) -> Iterable[bytes]:
        record = self.store.get(op_id)
        if record is None:
            return plain(start_response, "404 Not Found", "unknown or expired operation",
                         headers, head_only)
        kept = self.store.response(op_id) if record.kept else None
        if kept is None:
            if record.running:
                return plain(start_response, "404 Not Found",
                             "no final response yet: see the monitor", headers, head_only)
            reason = ("the final response was not kept: larger than max_kept_response, or "
                      "it made room for newer ones (max_kept_bytes)" if record.dropped else
                      "cancelled: its final response is not kept"
                      if record.state == CANCELLED else
                      "no final response kept for this operation")
            return plain(start_response, "410 Gone", reason, headers, head_only)
        if MESSAGE_HTTP in environ.get("HTTP_ACCEPT", "").lower():
            head = kept.message_head()
            start_response("200 OK", [*NO_CACHE_HEADERS, *headers,
                                      ("Content-Type", MESSAGE_HTTP),
                                      ("Content-Length", str(len(head) + kept.body.size))])
            return [] if head_only else _chained([head], kept.body.chunks())
        start_response(kept.status, list(kept.headers))
        return [] if head_only else kept.body.chunks()


def _chained(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part
