"""
Mailbox endpoint
================

:class:`MailboxApp` serves mailboxes over HTTP, mounted under
``mailbox_url`` (default ``/mailbox``):

``GET /mailbox/<name>?after=<id>&wait=<seconds>``
    Long-poll: every message after ``after`` at once, or the next one within
    ``wait`` seconds (capped by ``max_wait``).  JSON ``{"mailbox", "messages":
    [{"id", "data", "time"}], "cursor", "gap"}``; ``gap`` is ``null``,
    ``{"dropped": n}`` or ``{"unknown_cursor": true}``, so a client always
    knows when it missed something.  A timeout answers an empty list.  The
    first poll passes no ``after``.

``GET`` with ``Accept: text/event-stream`` or ``?transport=sse``
    Server-sent events with ``id:`` lines, resuming from ``Last-Event-ID`` or
    ``last_event_id``; a ``gap`` event, comment keepalives, a ``retry:`` hint.

``GET …?protocol=nchan``
    Nchan's long-poll protocol (``Etag`` + ``Last-Modified`` answered,
    ``If-None-Match`` + ``If-Modified-Since`` read; one message per answer; a
    client that has caught up is held up to ``max_wait``, then 408), so
    Nchan's ``NchanSubscriber`` works unchanged.  With ``allowed_origins``,
    every answer carries CORS headers exposing ``Last-Modified``, ``Etag``
    and ``X-Mailbox-Gap``, and ``OPTIONS`` answers the preflight.

``POST /mailbox/<name>``
    Publish the body as one message.  Off by default; when ``publish`` is on
    it needs ``Authorization: Bearer <publish_token>`` or the ``authorize``
    hook's approval.

``POST /mailbox/<a>,<b>,<c>``
    Publish one message to several mailboxes at once, as Nchan's
    multi-channel publish does (channel IDs split on ``,``, at most
    :data:`MAX_FAN_OUT`, repeats once): each mailbox gives it its own id,
    answered as ``{"mailboxes": {"a": 4, "b": 1, "c": 9}}``.  The hook must
    allow every name (or the token is sent); nothing is posted otherwise,
    and the 403 names a mailbox the hook refused.  ``POST /mailbox/`` with
    ``{"mailboxes": ["a", "b"], "message": "text"}`` (``application/json``)
    is the same, the list in the body (:mod:`~wsgiprogress.web.fan_out`).

``GET /mailbox/_stats``
    Counts for operators, protected like publishing.

.. code-block:: python

    from wsgiprogress.mailbox import MemoryMailboxes
    from wsgiprogress.web.mailbox import MailboxApp

    mailbox = MemoryMailboxes()
    endpoint = MailboxApp(mailbox, publish=True, publish_token=os.environ["TOKEN"])
    ...
    mailbox.post(user_mailbox_name, json.dumps({"text": "your report is ready"}))

Waiting clients are capped (beyond the cap: 503 with ``Retry-After``).  On
wsgiprogress's server they are parked on the I/O loop with no thread
(:mod:`wsgiprogress.web.waiting`); elsewhere each holds a thread, and a
client that leaves wakes its waiter (:class:`~wsgiprogress.waiters.ClientWatch`).
"""
from __future__ import annotations

import functools
import json
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..mailbox.store import MailboxError, ReadResult
from ..progress.ids import ID_RULE, is_valid_id
from ..query import parse_wait, query_params, wants_event_stream
from ..settings import MAILBOX_SETTINGS, WAIT_SETTINGS, resolve, scope
from . import nchan, sse
from .cursors import BadRequest, cursor, gap
from .event_stream import EventStream, StreamTiming
from .fan_out import fan_out_names, read_fan_out
from .message_body import read_message, too_large_message
from .responses import (
    Headers,
    Recorded,
    cors_headers,
    has_bearer_token,
    json_body,
    plain,
    preflight,
    start_event_stream,
    too_many_streams,
    too_many_waiters,
    with_headers,
)
from .waiting import Answer, LongPoll, open_wake

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..mailbox.store import MailboxStore
    from ..progress.store import ProgressStore

#: ``authorize(environ, name, action) -> bool``; action is ``"read"``,
#: ``"publish"`` or ``"stats"`` (name ``None``) for mailboxes, ``"progress"``
#: (name: the progress ID) for the probe.
Authorize = Callable[["WSGIEnvironment", Optional[str], str], bool]

STATS_NAME = "_stats"
#: What a page may read of a mailbox answer, as Nchan exposes it.
EXPOSED_HEADERS = ("Last-Modified", "Etag", "X-Mailbox-Gap")
#: Request headers a page may send, for the CORS preflight.
REQUEST_HEADERS = "If-None-Match, If-Modified-Since, Last-Event-ID, Authorization, Content-Type"
_SETTINGS = MAILBOX_SETTINGS + WAIT_SETTINGS + tuple(
    s for s in scope("probe") if s.name == "allowed_origins")
#: Mailboxes whose last answer is kept rendered, at most.
MAX_RENDERED = 256
#: The default policy reads only names this long: 128 random bits in hex.
UNGUESSABLE_LENGTH = 32

def unguessable_names(environ: WSGIEnvironment, name: Optional[str], action: str) -> bool:
    """The default ``authorize``: anyone may read a mailbox whose name is at
    least 32 characters (use ``secrets.token_hex(16)``); nobody may publish or
    read stats without the token.  Progress stays open to anyone (the
    ``min_id_length`` setting refuses guessable IDs)."""
    if action == "progress":
        return True
    return action == "read" and name is not None and len(name) >= UNGUESSABLE_LENGTH


class MailboxApp:
    """Serves a :class:`~wsgiprogress.mailbox.MailboxStore` over HTTP.

    :param store: the mailboxes.
    :param authorize: who may read, publish and see stats; default
        :func:`unguessable_names`.
    :param table: the progress store, whose running uploads the stats count.
    :param settings: ``mailbox_url``, ``max_wait``, ``publish``,
        ``publish_token``, ``sse_keepalive``, ``sse_retry``,
        ``sse_max_duration`` (:data:`wsgiprogress.settings.MAILBOX_SETTINGS`,
        :data:`wsgiprogress.settings.WAIT_SETTINGS`).
    """

    def __init__(self, store: MailboxStore, *, authorize: Optional[Authorize] = None,
                 table: Optional[ProgressStore] = None, **settings: Any) -> None:
        options = resolve(_SETTINGS, settings)
        self.store = store
        self.table = table
        self.authorize = authorize or unguessable_names
        self.prefix: str = options["mailbox_url"].rstrip("/") + "/"
        self.max_wait: float = options["max_wait"]
        self.publish_enabled: bool = options["publish"]
        self.token: Optional[str] = options["publish_token"]
        self.timing = StreamTiming.from_options(options)
        self.allowed_origins: Tuple[str, ...] = options["allowed_origins"]
        self._lock = threading.Lock()
        self.delivered = 0
        self._rendered: Dict[Tuple[str, bool, bool], Tuple[ReadResult, str, Headers,
                                                            List[bytes]]] = {}

    def handles(self, path: str) -> bool:
        """True for paths under ``mailbox_url``."""
        return path.startswith(self.prefix)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if not self.handles(path):
            return plain(start_response, "404 Not Found", "not a mailbox URL")
        cors = cors_headers(environ, self.allowed_origins, EXPOSED_HEADERS)
        if cors:
            if method == "OPTIONS":
                return self._preflight(start_response, cors)
            start_response = with_headers(start_response, cors)
        name = path[len(self.prefix):]
        try:
            if name == STATS_NAME and method in ("GET", "HEAD"):
                return self._stats(environ, start_response)
            if method == "POST" and ("," in name or not name):  # a fan-out (405 while off)
                if self.publish_enabled:  # the names in the path, or listed in the body
                    names = fan_out_names(name) if name else None
                    return self._publish(environ, start_response, names, many=True)
            elif not is_valid_id(name):
                raise BadRequest(f"invalid mailbox name: expected {ID_RULE}")
            if method in ("GET", "HEAD"):
                return self._read(environ, start_response, name, method == "HEAD")
            if method == "POST" and self.publish_enabled:
                return self._publish(environ, start_response, [name])
        except BadRequest as exc:
            return plain(start_response, "400 Bad Request", str(exc))
        except MailboxError as exc:
            return refused(exc)(start_response)
        allow = self.allowed_methods
        return plain(start_response, "405 Method Not Allowed",
                     f"mailboxes answer {allow}", [("Allow", allow)])

    @property
    def allowed_methods(self) -> str:
        """What a mailbox URL answers: ``Allow`` and the CORS preflight."""
        return "GET, HEAD, POST" if self.publish_enabled else "GET, HEAD"

    def _preflight(self, start_response: StartResponse, cors: List[Tuple[str, str]]
                   ) -> Iterable[bytes]:
        return preflight(start_response, cors, self.allowed_methods, REQUEST_HEADERS)

    # -- reading -------------------------------------------------------------

    def _read(self, environ: WSGIEnvironment, start_response: StartResponse,
              name: str, head_only: bool) -> Iterable[bytes]:
        if not self.authorize(environ, name, "read"):
            return plain(start_response, "403 Forbidden", "not allowed to read this mailbox")
        params = _params(environ)
        if wants_event_stream(environ.get("HTTP_ACCEPT", ""), params.get("transport")):
            return self._stream(environ, start_response, name, params)
        as_nchan = params.get("protocol") == "nchan"
        after = nchan.read_cursor(environ) if as_nchan else None
        if after is None:
            after = cursor(params.get("after"), "after")
        try:
            # Nchan holds a subscriber that has caught up until the next post
            wait = self.max_wait if as_nchan and "wait" not in params else \
                parse_wait(params.get("wait"), self.max_wait)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        limit = 1 if as_nchan else 100

        poll = MailboxPoll(self, name, after, limit, as_nchan, head_only)
        if wait <= 0:  # an interval-poll
            return nchan.polled(poll.reply, self.store.read(name, after, limit), as_nchan,
                                start_response)
        # registered before the first read, so a post in between is not
        # missed; one read, not two, when something is there already (a
        # round trip on Redis)
        waiters = self.store.waiters
        wake = open_wake(waiters, name, environ)
        if wake is None:
            return (poll.news() or too_many_waiters)(start_response)
        return LongPoll(waiters, name, wake, environ, start_response, poll.news,
                        poll.timed_out, wait)

    def answer(self, name: str, result: ReadResult, as_nchan: bool, head_only: bool,
               start_response: StartResponse) -> List[bytes]:
        """Answer a read of *name* with *result*.  A post wakes every waiter
        of a mailbox, and those that read from the same cursor get the same
        answer: it is rendered once and given to each (the last answer of
        each kind is kept for each of :data:`MAX_RENDERED` mailboxes)."""
        self.count_delivered(len(result.messages))
        shape = (name, as_nchan, head_only)
        kept = self._rendered.get(shape)
        if kept is None or kept[0] != result:
            made = Recorded()
            if as_nchan:
                body = nchan.answer(made.start_response, result, head_only)
            else:
                body = json_body(made.start_response, "200 OK", {
                    "mailbox": name,
                    "messages": [m._asdict() for m in result.messages],
                    "cursor": result.cursor,
                    "gap": gap(result),
                }, head_only=head_only)
            kept = (result, made.status, made.headers, body)
            if len(self._rendered) >= MAX_RENDERED:
                self._rendered.clear()
            self._rendered[shape] = kept
        start_response(kept[1], list(kept[2]))
        return list(kept[3])

    def _stream(self, environ: WSGIEnvironment, start_response: StartResponse,
                name: str, params: Dict[str, str]) -> Iterable[bytes]:
        after = nchan.last_event_id(environ, params)
        waiters = self.store.waiters
        wake = open_wake(waiters, name, environ)
        if wake is None:
            return too_many_streams(start_response)
        start_event_stream(start_response)
        return EventStream(waiters, name, wake, environ, self._events(name, after), self.timing)

    def _events(self, name: str, after: Optional[int]) -> Callable[[], Tuple[List[bytes], bool]]:
        """For an event stream: every message after the cursor with its
        ``id:``, and a ``gap`` event when messages were dropped or the cursor
        is unknown."""
        follow = self.follow(name, after)

        def collect() -> Tuple[List[bytes], bool]:
            result = follow()
            events = []
            missed = gap(result)
            if missed is not None:
                events.append(sse.event(json.dumps(missed), name="gap"))
            events.extend(sse.event(m.data, id=m.id) for m in result.messages)
            return events, False
        return collect

    def follow(self, name: str, after: Optional[int], limit: int = 100
               ) -> Callable[[], ReadResult]:
        """Each call: up to *limit* messages *name* holds after the cursor,
        which moves on — what an event stream and a WebSocket deliver."""
        position = [after]

        def read() -> ReadResult:
            result = self.store.read(name, position[0], limit)
            self.count_delivered(len(result.messages))
            position[0] = result.cursor
            return result
        return read

    def count_delivered(self, n: int) -> None:
        """Count *n* messages handed to clients, for the stats."""
        with self._lock:
            self.delivered += n

    # -- publishing and stats ------------------------------------------------

    def _publish(self, environ: WSGIEnvironment, start_response: StartResponse,
                 names: Optional[List[str]], many: bool = False) -> Iterable[bytes]:
        limit: int = self.store.max_message_bytes
        data: Optional[str] = None
        if names is None:  # listed in the body: read before they can be authorized
            listed = read_fan_out(environ, limit)
            if listed is None:
                return too_large_message(start_response, limit)
            names, data = listed
        if not has_bearer_token(environ, self.token):
            refused = [name for name in names if not self.authorize(environ, name, "publish")]
            if refused:  # the token would do for all; else say which one the hook refused
                return plain(start_response, "403 Forbidden",
                             "publishing needs the bearer token"
                             if self.token is not None and len(refused) == len(names) else
                             f"not allowed to publish to {refused[0]}; nothing was posted")
        if data is None:
            data = read_message(environ, limit)
            if data is None:
                return too_large_message(start_response, limit)
        ids = self.store.post(names, data)
        if many:
            return json_body(start_response, "201 Created", {"mailboxes": ids})
        return json_body(start_response, "201 Created", {"mailbox": names[0], "id": ids[names[0]]})

    def _stats(self, environ: WSGIEnvironment,
               start_response: StartResponse) -> Iterable[bytes]:
        if not (has_bearer_token(environ, self.token) or self.authorize(environ, None, "stats")):
            return plain(start_response, "403 Forbidden", "stats need the bearer token")
        waiters = self.store.waiters
        stats = dict(self.store.stats(), waiters=len(waiters),
                     waiters_refused=waiters.refused, delivered=self.delivered)
        if self.table is not None:
            stats["uploads"] = self.table.counts()["running"]
        return json_body(start_response, "200 OK", stats)


class MailboxPoll:
    """What a long-poll of a mailbox asks while it waits, and its answer:
    one small object a waiter, not a closure each (everything a parked waiter
    keeps, the garbage collector walks on each full pass)."""

    __slots__ = ("app", "name", "after", "limit", "as_nchan", "head_only", "last")

    def __init__(self, app: MailboxApp, name: str, after: Optional[int], limit: int,
                 as_nchan: bool, head_only: bool) -> None:
        self.app, self.name, self.after, self.limit = app, name, after, limit
        self.as_nchan, self.head_only = as_nchan, head_only
        self.last: Optional[ReadResult] = None

    def reply(self, result: ReadResult) -> Answer:
        """The answer carrying *result*."""
        return functools.partial(self.app.answer, self.name, result, self.as_nchan,
                                 self.head_only)

    def news(self) -> Optional[Answer]:
        """The answer once there is something to say, else ``None``."""
        try:
            result = self.app.store.read(self.name, self.after, self.limit)
        except MailboxError as exc:  # the store went away while the client waited
            return refused(exc)
        self.last = result
        if result.messages:
            return self.reply(result)
        # a gap alone is news to our clients; Nchan's wait for the next
        # message (which carries the gap): an answer without one would be a
        # 408 the client repeats at once
        return None if self.as_nchan or gap(result) is None else self.reply(result)

    def timed_out(self) -> Answer:
        """The time is up: the last read says so."""
        assert self.last is not None  # a long-poll looks before it times out
        return self.reply(self.last)


def refused(exc: MailboxError) -> Answer:
    """The answer to a request the store refused: 413, or 503 while it is away."""
    status = {413: "413 Payload Too Large"}.get(exc.status, "503 Service Unavailable")
    return functools.partial(plain, status=status, reason=str(exc),
                             headers=[("Retry-After", "5")])


def _params(environ: WSGIEnvironment) -> Dict[str, str]:
    try:
        return query_params(environ.get("QUERY_STRING", ""))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
