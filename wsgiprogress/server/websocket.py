"""
WebSocket
=========

With ``websocket`` on, a WebSocket upgrade of the probe or a mailbox URL is
answered by the server itself: :class:`WebSocketPolicy` checks the Origin
(cross-site WebSocket hijacking), lets wsproto judge the handshake (400, or
426 with ``Sec-WebSocket-Version: 13``, ``Upgrade: websocket`` and
``Connection: upgrade``), registers a waiter (503 beyond
``max_waiters``), writes the 101 and hands the connection to a
:class:`WebSocketSession`, which lives on the I/O loop with no thread:

* the channel's ``received`` goes to wsproto; pings are answered, a close is
  answered and the connection closed once it is flushed; text messages go to
  the feed (:mod:`wsgiprogress.web.sockets`): a mailbox publishes them;
* a post wakes the session (it is the waiter's wake), which sends what the
  feed has now — on the loop, or on the probe lane when the stores may block;
* one timer pings a quiet client every ``websocket_ping`` seconds (and
  reads the feed again when the stores may block: a shared store's entry
  may end with nothing posted, its process died), and closes one that said
  nothing for ``websocket_idle_timeout`` (1001);
* when the server stops (Ctrl-C, SIGTERM), every session closes with 1001
  after what was queued for it, flushed for up to a second for all of them
  together (:meth:`WebSocketSession.going_away`,
  :meth:`~wsgiprogress.server.loop.Loop.say_goodbye`);
* a backlog goes out in batches as the client reads them (over half of
  ``websocket_max_queued`` waiting: the next batch once it drained); news for
  a client with more than ``websocket_max_queued`` bytes still unread closes
  it with 1008 (it reconnects with ``after=``; nothing is lost within
  retention);
* a message over ``websocket_max_message`` closes with 1009 (a compressed one
  is inflated no further: :mod:`~wsgiprogress.server.inflating`), invalid
  UTF-8 or frames with 1007/1002 as wsproto names them, binary messages 1003.

Framing, handshake, fragmentation and close codes all come from wsproto
(``pip install wsgiprogress[websocket]``), which this module imports.
"""
from __future__ import annotations

import base64
import binascii
import collections
import http
import threading
import time
from typing import TYPE_CHECKING, Any, Deque, List, Mapping, Optional, Sequence

from waitress.channel import ClientDisconnected
from wsproto import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from ..web.responses import plain, too_many_waiters
from ..web.sockets import FeedError
from .inflating import BoundedDeflate

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from wsproto.connection import Connection

    from ..waiters import Waiters
    from ..web.sockets import SocketFeed
    from .loop import Timer


#: The close of every session when the server stops (RFC 6455 §7.4.1).
GOING_AWAY = (1001, "server shutting down")


def request_head(request: Any) -> bytes:
    """The request head as the client sent it, near enough for wsproto to judge."""
    lines = [request.first_line] + [
        f"{name.replace('_', '-')}: {value}".encode("latin-1")
        for name, value in request.headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def valid_key(key: str) -> bool:
    """RFC 6455 §4.2.1: a base64-encoded 16-byte value."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


class WebSocketPolicy:
    """The WebSocket settings of one server, and its handshake."""

    def __init__(self, options: Mapping[str, Any], allowed_origins: Sequence[str]) -> None:
        self.max_message: int = options["websocket_max_message"]
        self.max_queued: int = options["websocket_max_queued"]
        self.ping: float = options["websocket_ping"]
        self.idle_timeout: float = options["websocket_idle_timeout"]
        self.deflate: bool = options["websocket_deflate"]
        self.allowed_origins = tuple(allowed_origins)

    def origin_allowed(self, environ: WSGIEnvironment) -> bool:
        """No Origin (not a browser), the page's own origin, or one listed in
        ``allowed_origins``."""
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return True
        origin = str(origin)
        if self.allowed_origins:
            return "*" in self.allowed_origins or origin in self.allowed_origins
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin.lower() == own.lower()

    def upgrade(self, task: Any, feed: SocketFeed, waiters: Waiters,
                environ: WSGIEnvironment, start_response: StartResponse) -> List[bytes]:
        """Answer the handshake of *task*'s request: a refusal as an ordinary
        response, or the 101, after which the session owns the connection."""
        if not self.origin_allowed(environ):
            return plain(start_response, "403 Forbidden", "WebSocket origin not allowed")
        handshake = H11Handshake(ConnectionType.SERVER)
        try:
            handshake.receive_data(request_head(task.request))
            request = next(e for e in handshake.events() if isinstance(e, Request))
        except (RemoteProtocolError, StopIteration) as exc:
            hint = getattr(exc, "event_hint", None)
            code = getattr(hint, "status_code", 400)
            headers = [(k.decode("latin-1"), v.decode("latin-1"))
                       for k, v in getattr(hint, "headers", ())]
            reason = str(exc)
            if code == http.HTTPStatus.UPGRADE_REQUIRED:  # the task adds the hop-by-hop ones
                task.upgrade_required = "websocket"
                version = environ.get("HTTP_SEC_WEBSOCKET_VERSION")
                if version is not None:  # given, not missing as wsproto says
                    reason = (f"Sec-WebSocket-Version {version[:16]!r} is not 13, "
                              "the version this server speaks")
            return plain(start_response, f"{code} {http.HTTPStatus(code).phrase}",
                         f"not a WebSocket handshake: {reason}", headers)
        key = dict(request.extra_headers).get(b"sec-websocket-key", b"")
        if not valid_key(key.decode("latin-1")):
            return plain(start_response, "400 Bad Request",
                         "Sec-WebSocket-Key must be 16 bytes in base64")
        session = WebSocketSession(task.channel, feed, waiters, self)
        if waiters.register(feed.key, session) is None:
            return too_many_waiters(start_response)
        extensions: List[Extension] = [BoundedDeflate(self.max_message)] if self.deflate else []
        # a subprotocol only when the client offered it (wsproto checks too)
        subprotocol = feed.subprotocol if feed.subprotocol in request.subprotocols else None
        accepted = handshake.send(AcceptConnection(subprotocol=subprotocol,
                                                   extensions=extensions))
        assert handshake.connection is not None  # accepted: wsproto made it
        session.open(handshake.connection, accepted)
        task.wrote_header = task.complete = True  # the 101 is out: waitress writes nothing
        return []


class WebSocketSession:
    """One WebSocket on the I/O loop (see the module docstring); it is its
    feed's waiter wake."""

    connection: Connection

    def __init__(self, channel: Any, feed: SocketFeed, waiters: Waiters,
                 policy: WebSocketPolicy) -> None:
        self.channel = channel
        self.feed = feed
        self.waiters = waiters
        self.policy = policy
        server = channel.server
        self.loop = server.progress_loop
        self.lane = server.task_dispatcher.probe_lane if server.progress_blocking else None
        self.lock = threading.Lock()  # wsproto's state, and frames in order on the wire
        self.inbox: Deque[str] = collections.deque()
        self.parts: List[str] = []
        self.size = 0
        self.pending = self.running = self.again = self.closed = False
        self.timer: Optional[Timer] = None
        self.heard = self.said = time.monotonic()

    def open(self, connection: Connection, accepted: bytes) -> None:
        """The 101 goes out; from now on the channel's bytes are WebSocket frames.
        Once the server stops (:meth:`going_away` may have missed this
        session), its close 1001 follows the 101 at once."""
        channel = self.channel
        with self.lock:  # a close from going_away() comes after the 101
            self.connection = connection
            channel.websocket = self  # before the 101: a stop that missed it sees stopping
            channel.received = self.received  # instead of waitress's HTTP parser
            channel.write_soon(accepted)
            if self.loop.stopping:
                self._queue_close(*GOING_AWAY)
        self.loop.call_soon(self._start)

    def _start(self) -> None:
        self._arm()
        self.set()  # a replay (after=) or the first snapshot goes out at once

    # -- woken: send what the feed has ------------------------------------------

    def set(self) -> None:
        """News for this socket; callable from any thread."""
        if not self.pending:
            self.pending = True
            self.loop.call_soon(self._kick)

    def _kick(self) -> None:
        self.pending = False
        if self.closed:
            return
        self.channel.stir()  # it may write
        if self.running:
            self.again = True
            return
        self.running = True
        if self.lane is not None:
            self.lane.add_task(self)  # the lane calls service()
        else:
            self.service()

    def service(self) -> None:
        """Publish what the client sent, send what the feed has now."""
        try:
            self._exchange()
        finally:
            if self.loop.on_loop():
                self._done()
            else:
                self.loop.call_soon(self._done)

    def _done(self) -> None:
        self.running = False
        if self.again:
            self.again = False
            self._kick()
        elif not self.closed:  # idle until a frame, a post or its timer
            self.channel.go_quiet()

    def _exchange(self) -> None:
        feed, channel = self.feed, self.channel
        room = self.policy.max_queued // 2
        try:
            while self.inbox and not self.closed:
                assert feed.receive is not None
                feed.receive(self.inbox.popleft())
            if channel.total_outbufs_len > self.policy.max_queued:
                self.close(1008, "too slow: reconnect with after=<last id>")
                return
            while not self.closed:
                if channel.total_outbufs_len > room:  # the rest once the client read this
                    channel.after_drain = self._drained
                    return
                texts, over = feed.collect()
                if texts:
                    self._send(*(TextMessage(data=text) for text in texts))
                if over:
                    self.close(1000, "the request ended")
                if not texts:
                    return
        except FeedError as exc:
            self.close(exc.code, str(exc))
        except Exception as exc:  # the store failed: the client reconnects later
            self.close(1011, f"store unavailable: {type(exc).__name__}")

    def _drained(self) -> None:
        if self.channel.total_outbufs_len > self.policy.max_queued // 2:
            self.channel.after_drain = self._drained
        else:
            self.set()

    def _send(self, *events: Event) -> None:
        channel = self.channel
        with self.lock:
            if self.closed:
                return
            data = b"".join(self.connection.send(event) for event in events)
            try:
                channel.write_soon(data)
            except ClientDisconnected:
                self.closed = True
            self.said = time.monotonic()
            channel.last_activity = time.time()  # not idle for waitress's cleanup
        if self.closed:
            self._release()

    # -- what the client sends, on the I/O loop ------------------------------------

    def received(self, data: bytes) -> bool:
        """The channel's ``received``: frames from the client."""
        self.heard = time.monotonic()
        with self.lock:
            self.connection.receive_data(data)
            events = list(self.connection.events())
        for event in events:
            if self.closed:
                break
            if isinstance(event, (TextMessage, BytesMessage)):
                self._message(event)
            elif isinstance(event, Ping):
                if self.channel.total_outbufs_len > self.policy.max_queued:
                    self.close(1008, "too many pongs unread")
                else:
                    self._send(event.response())
            elif isinstance(event, CloseConnection):
                self.close(event.code, event.reason or "")
        return True

    def _message(self, event: Any) -> None:
        data = event.data
        self.size += len(data.encode("utf-8") if isinstance(data, str) else data)  # bytes
        if self.size > self.policy.max_message:
            self.close(1009, f"messages may have at most {self.policy.max_message} bytes")
            return
        if isinstance(event, BytesMessage):
            if event.message_finished:
                self.close(1003, "text messages only")
            return
        self.parts.append(event.data)
        if not event.message_finished:
            return
        text = "".join(self.parts)
        self.parts, self.size = [], 0
        if self.feed.receive is None:
            self.close(1008, "publishing needs the publish token or the authorize "
                             "hook's approval")
            return
        self.inbox.append(text)
        self.set()

    # -- time and the end --------------------------------------------------------

    def _arm(self) -> None:
        policy = self.policy
        times = [t for t in (policy.ping and self.said + policy.ping,
                             policy.idle_timeout and self.heard + policy.idle_timeout) if t]
        if times and not self.closed:
            self.timer = self.loop.call_at(min(times), self._tick)

    def _tick(self) -> None:
        self.timer = None
        self.channel.stir()
        now = time.monotonic()
        policy = self.policy
        if policy.idle_timeout and now - self.heard >= policy.idle_timeout:
            self.close(1001, "idle")
            return
        if policy.ping and now - self.said >= policy.ping:
            self._send(Ping(payload=b"wsgiprogress"))
            if self.lane is not None:  # a store that may block, shared (Redis): read
                self.set()  # again, as an entry there may end unannounced
        self._arm()

    def close(self, code: int, reason: str) -> None:
        """Send a close (or answer the client's) and close the connection
        once it is flushed."""
        with self.lock:
            self._queue_close(code, reason)
        self._release()
        if not self.loop.on_loop():
            self.loop.call_soon(self._release)  # and the poll wakes to close it

    def going_away(self, deadline: float) -> None:
        """The server stops (its loop stopped, on this thread): close 1001
        after what is queued.  A thread that holds the session (the lane
        writing, waiting for a loop that no longer flushes) is waited for
        until *deadline* (``time.monotonic``) at most."""
        if self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            try:
                self._queue_close(*GOING_AWAY)
            finally:
                self.lock.release()
        self._release()

    def _queue_close(self, code: int, reason: str) -> None:
        if not self.closed:  # with the lock held
            self.closed = True
            try:
                self.channel.write_soon(self.connection.send(CloseConnection(code, reason)))
            except Exception:  # wsproto: already closed; waitress: client gone
                pass
            self.channel.close_when_flushed = True

    def connection_lost(self) -> None:
        """The channel closed: let go of it (it refers to this session)."""
        self.closed = True
        self._release()
        channel = self.channel
        channel.websocket = None
        channel.__dict__.pop("received", None)

    def _release(self) -> None:
        if self.loop.on_loop():
            self.channel.stir()  # to write its close
        self.loop.cancel(self.timer)
        self.timer = None
        self.waiters.unregister(self.feed.key, self)
