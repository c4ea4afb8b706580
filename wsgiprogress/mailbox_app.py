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
    ``If-None-Match`` + ``If-Modified-Since`` read; one message per answer,
    408 on timeout), so Nchan's ``NchanSubscriber`` works unchanged.

``POST /mailbox/<name>``
    Publish the body as one message.  Off by default; when ``publish`` is on
    it needs ``Authorization: Bearer <publish_token>`` or the ``authorize``
    hook's approval.

``GET /mailbox/_stats``
    Counts for operators, protected like publishing.

.. code-block:: python

    from wsgiprogress.mailbox import Mailbox
    from wsgiprogress.mailbox_app import MailboxApp

    mailbox = Mailbox()
    endpoint = MailboxApp(mailbox, publish=True, publish_token=os.environ["TOKEN"])
    ...
    mailbox.post(user_mailbox_name, json.dumps({"text": "your report is ready"}))

Waiting holds a worker thread, so waiters are capped (beyond the cap: 503 with
``Retry-After``) and each waits in half-second slices that notice a client
that left (``waitress.client_disconnected``, with ``channel_request_lookahead``
1, as :mod:`wsgiprogress.server` sets it).
"""
from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional
from urllib.parse import parse_qs

from .ids import ID_RULE, is_valid_id
from .mailbox import MailboxError, ReadResult
from .mailbox_stream import MailboxStream
from .responses import has_bearer_token, json_body, plain, respond, start_event_stream
from .settings import MAILBOX_SETTINGS, WAIT_SETTINGS, resolve
from .waiters import ClientWatch, parse_wait

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .mailbox import MailboxStore
    from .store import ProgressStore

#: ``authorize(environ, mailbox_name, action) -> bool``; action is ``"read"``,
#: ``"publish"`` or ``"stats"`` (name ``None``).
Authorize = Callable[["WSGIEnvironment", Optional[str], str], bool]

STATS_NAME = "_stats"
#: The default policy reads only names this long: 128 random bits in hex.
UNGUESSABLE_LENGTH = 32
MAX_QUERY_FIELDS = 16


def unguessable_names(environ: WSGIEnvironment, name: Optional[str], action: str) -> bool:
    """The default ``authorize``: anyone may read a mailbox whose name is at
    least 32 characters (use ``secrets.token_hex(16)``); nobody may publish or
    read stats without the token."""
    return action == "read" and name is not None and len(name) >= UNGUESSABLE_LENGTH


class BadRequest(ValueError):
    """Answered 400 with the message as the reason."""


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
        options = resolve(MAILBOX_SETTINGS + WAIT_SETTINGS, settings)
        self.store = store
        self.table = table
        self.authorize = authorize or unguessable_names
        self.prefix: str = options["mailbox_url"].rstrip("/") + "/"
        self.max_wait: float = options["max_wait"]
        self.publish_enabled: bool = options["publish"]
        self.token: Optional[str] = options["publish_token"]
        self.sse_keepalive: float = options["sse_keepalive"]
        self.sse_retry: int = options["sse_retry"]
        self.sse_max_duration: float = options["sse_max_duration"]
        self._lock = threading.Lock()
        self.delivered = 0

    def handles(self, path: str) -> bool:
        """True for paths under ``mailbox_url``."""
        return path.startswith(self.prefix)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if not self.handles(path):
            return plain(start_response, "404 Not Found", "not a mailbox URL")
        name = path[len(self.prefix):]
        try:
            if name == STATS_NAME and method in ("GET", "HEAD"):
                return self._stats(environ, start_response)
            if not is_valid_id(name):
                raise BadRequest(f"invalid mailbox name: expected {ID_RULE}")
            if method in ("GET", "HEAD"):
                return self._read(environ, start_response, name, method == "HEAD")
            if method == "POST" and self.publish_enabled:
                return self._publish(environ, start_response, name)
        except BadRequest as exc:
            return plain(start_response, "400 Bad Request", str(exc))
        except MailboxError as exc:
            status = {413: "413 Payload Too Large"}.get(exc.status, "503 Service Unavailable")
            return plain(start_response, status, str(exc), [("Retry-After", "5")])
        allow = "GET, HEAD, POST" if self.publish_enabled else "GET, HEAD"
        return plain(start_response, "405 Method Not Allowed",
                     f"mailboxes answer {allow}", [("Allow", allow)])

    # -- reading -------------------------------------------------------------

    def _read(self, environ: WSGIEnvironment, start_response: StartResponse,
              name: str, head_only: bool) -> Iterable[bytes]:
        if not self.authorize(environ, name, "read"):
            return plain(start_response, "403 Forbidden", "not allowed to read this mailbox")
        params = _params(environ)
        if params.get("transport") == "sse" or \
                "text/event-stream" in environ.get("HTTP_ACCEPT", ""):
            return self._stream(environ, start_response, name, params)
        nchan = params.get("protocol") == "nchan"
        after = _nchan_cursor(environ) if nchan else None
        if after is None:
            after = _cursor(params.get("after"), "after")
        try:
            wait = parse_wait(params.get("wait"), self.max_wait)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        result = self._wait(environ, name, after, wait, limit=1 if nchan else 100)
        if result is None:
            return plain(start_response, "503 Service Unavailable",
                         "too many waiting clients; retry shortly", [("Retry-After", "2")])
        self.count_delivered(len(result.messages))
        if nchan:
            return _nchan_answer(start_response, result, head_only)
        return json_body(start_response, "200 OK", {
            "mailbox": name,
            "messages": [m._asdict() for m in result.messages],
            "cursor": result.cursor,
            "gap": _gap(result),
        }, head_only=head_only)

    def _wait(self, environ: WSGIEnvironment, name: str, after: Optional[int],
              wait: float, limit: int) -> Optional[ReadResult]:
        """Read now; if nothing is there, wait up to *wait* seconds for a post.
        ``None`` when the waiter cap is reached and nothing is there yet."""
        if wait <= 0:
            return self.store.read(name, after, limit)
        waiters = self.store.waiters
        # register before reading, so a post in between is not missed; one
        # read, not two, when something is there already (a round trip on Redis)
        event = waiters.register(name)
        try:
            deadline = time.monotonic() + wait
            client = ClientWatch(environ)
            while True:
                result = self.store.read(name, after, limit)
                if result.messages or _gap(result) is not None:
                    return result
                left = deadline - time.monotonic()
                if event is None:
                    return None
                if left <= 0 or not client.wait(event, left):
                    return result
                event.clear()
        finally:
            if event is not None:
                waiters.unregister(name, event)

    def _stream(self, environ: WSGIEnvironment, start_response: StartResponse,
                name: str, params: Dict[str, str]) -> Iterable[bytes]:
        last = environ.get("HTTP_LAST_EVENT_ID") or params.get("last_event_id") \
            or params.get("after")
        after = _cursor(last, "Last-Event-ID")
        event = self.store.waiters.register(name)
        if event is None:
            return plain(start_response, "503 Service Unavailable",
                         "too many waiting clients; retry shortly", [("Retry-After", "2")])
        start_event_stream(start_response)
        return MailboxStream(self, name, after, event, ClientWatch(environ))

    def count_delivered(self, n: int) -> None:
        """Count *n* messages handed to clients, for the stats."""
        with self._lock:
            self.delivered += n

    # -- publishing and stats ------------------------------------------------

    def _publish(self, environ: WSGIEnvironment, start_response: StartResponse,
                 name: str) -> Iterable[bytes]:
        if not (has_bearer_token(environ, self.token) or self.authorize(environ, name, "publish")):
            return plain(start_response, "403 Forbidden", "publishing needs the bearer token")
        limit = getattr(self.store, "max_message_bytes", 64 * 1024)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BadRequest("invalid Content-Length") from None
        if length > limit:
            return plain(start_response, "413 Payload Too Large",
                         f"a message may have at most {limit} bytes")
        try:
            data = environ["wsgi.input"].read(length).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("a message must be UTF-8 text") from None
        ids = self.store.post(name, data)
        return json_body(start_response, "201 Created", {"mailbox": name, "id": ids[name]})

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



def _params(environ: WSGIEnvironment) -> Dict[str, str]:
    try:
        parsed = parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise BadRequest(f"too many query parameters (at most {MAX_QUERY_FIELDS})") from None
    return {key: values[0] for key, values in parsed.items()}


def _cursor(value: Optional[str], what: str) -> Optional[int]:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest(f"invalid {what}: expected a message id (a whole number)")
    return int(value)


def _gap(result: ReadResult) -> Optional[Dict[str, Any]]:
    if result.unknown_cursor:
        return {"unknown_cursor": True}
    if result.dropped:
        return {"dropped": result.dropped}
    return None


def _nchan_cursor(environ: WSGIEnvironment) -> Optional[int]:
    """The cursor of Nchan's long-poll client: the previous answer's Etag,
    unless If-Modified-Since is the epoch (Nchan's "no cursor")."""
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if since:
        try:
            if parsedate_to_datetime(since).timestamp() <= 0:
                return None
        except (TypeError, ValueError):
            raise BadRequest("invalid If-Modified-Since") from None
    etag = environ.get("HTTP_IF_NONE_MATCH") or environ.get("HTTP_ETAG")
    return _cursor(etag.strip().strip('"') if etag else None, "If-None-Match")


def _nchan_answer(start_response: StartResponse, result: ReadResult,
                  head_only: bool) -> List[bytes]:
    gap = _gap(result)
    headers = [("Vary", "If-None-Match, If-Modified-Since")]
    if gap is not None:
        headers.append(("X-Mailbox-Gap", json.dumps(gap)))
    if not result.messages:
        return plain(start_response, "408 Request Timeout", "no message yet", headers,
                     head_only)
    message = result.messages[0]
    headers += [("Etag", str(message.id)),
                ("Last-Modified", formatdate(message.time, usegmt=True))]
    return respond(start_response, "200 OK", "text/plain; charset=utf-8",
                   message.data.encode("utf-8"), headers, head_only)
