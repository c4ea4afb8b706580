"""
Slow clients
============

A client that sends its request a byte at a time holds a connection (no
thread: waitress reads on its I/O loop) for as long as it likes, and a few
hundred of them fill ``connection_limit``, after which waitress accepts
nobody.  :class:`SlowClients` runs on the I/O loop
(:meth:`Loop.every <wsgiprogress.server.loop.Loop.every>`) and

* answers ``408 Request Timeout`` and closes a connection whose request head
  is not complete ``header_timeout`` seconds after its first byte (nginx's
  ``client_header_timeout``), or whose body arrives slower than Apache's
  ``RequestReadTimeout body=<body_timeout>,MinRate=<body_min_rate>`` allows:
  ``body_timeout`` seconds, plus one per ``body_min_rate`` bytes received;
* when the connection limit is reached, closes the slowest tenth of the
  connections that are not in a request — idle keep-alive connections first,
  then unfinished heads by the bytes per second they managed — so that new
  clients are accepted again.

A request being served or parked is never touched.  A connection that never
sends a byte is left to waitress's ``channel_timeout``, unless shed.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..progress.entry import HTTP_ERROR
from ..progress.ratelimit import RateLimitedWarning

#: Only connections at least this old are shed: a new client gets to send.
SHED_AFTER = 1.0
#: Share of the open connections shed at once at the limit.
SHED_SHARE = 10
#: At the limit this happens four times a second: a line every few seconds at most.
_SHED = RateLimitedWarning("connection limit reached: closed %d of the slowest unfinished "
                           "requests and idle connections")
_REASON = {"head": b"request head not received in time\n",
           "body": b"request body arrived too slowly\n"}


def reject(channel: Any, why: str) -> None:
    """Answer 408 with a short reason and close once it is sent."""
    request = channel.request
    tracker = getattr(request, "tracker", None)
    if tracker is not None:
        tracker.fail(HTTP_ERROR, 408)
    body = _REASON[why]
    channel.write_soon(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                       b"Content-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    channel.close_when_flushed = True
    channel.stir()  # a connection at rest is asked again, and closes


def stir_closing(listener: Any) -> Callable[[float], None]:
    """*listener*'s ``maintenance``: waitress's idle cleanup, which marks the
    connections idle past ``channel_timeout`` to close, then stirs them, so a
    connection at rest on the loop is asked again and closed."""
    cleanup = listener.maintenance

    def maintenance(now: float) -> None:
        cleanup(now)
        for channel in list(listener.active_channels.values()):
            if channel.will_close and hasattr(channel, "stir"):
                channel.stir()
    return maintenance


class SlowClients:
    """Enforces the request-reading deadlines of one server's connections.

    :param map: waitress's socket map; *listeners* its listening servers.
    """

    def __init__(self, map: Dict[int, Any], listeners: Iterable[Any], *,
                 header_timeout: float, body_timeout: float, body_min_rate: float) -> None:
        self.map = map
        self.listeners = list(listeners)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.next_deadlines = 0.0
        self.timed_out = 0
        self.shed = 0

    def __call__(self, now: float) -> None:
        """Run often (4 times a second): deadlines once a second, shedding
        whenever a listener stopped accepting."""
        at_limit = any(getattr(listener, "in_connection_overflow", False)
                       for listener in self.listeners)
        if not at_limit and now < self.next_deadlines:
            return
        check_deadlines = now >= self.next_deadlines
        if check_deadlines:
            self.next_deadlines = now + 1.0
        wall = time.time()
        idle: List[Tuple[float, float, Any]] = []
        for channel in list(self.map.values()):
            if getattr(channel, "requests", True) or channel.close_when_flushed \
                    or channel.will_close or channel.websocket is not None:
                continue  # a listener, the trigger, a request in service, closing, a WebSocket
            request = channel.request
            if check_deadlines and request is not None:
                late = self._late(request, now)
                if late is not None:
                    self.timed_out += 1
                    reject(channel, late)
                    continue
            if at_limit:
                idle.append(self._pace(channel, request, now, wall))
        if at_limit and idle:
            self._shed(idle, now)

    def _late(self, request: Any, now: float) -> Optional[str]:
        """``"head"`` or ``"body"`` when *request* is past its deadline."""
        if not request.headers_finished:
            timeout = self.header_timeout
            return "head" if timeout and now - request.started > timeout else None
        if request.completed or not self.body_timeout:
            return None
        body = request.body_rcv
        received = len(body) if body is not None else 0
        grace = received / self.body_min_rate if self.body_min_rate else 0.0
        return "body" if now > request.head_done + self.body_timeout + grace else None

    @staticmethod
    def _pace(channel: Any, request: Any, now: float, wall: float
              ) -> Tuple[float, float, Any]:
        """(bytes per second, seconds waited, channel) of a connection not in a request."""
        if request is None:  # idle keep-alive, or nothing sent yet: shed first
            return 0.0, wall - channel.last_activity, channel
        waited = now - request.started
        return request.header_bytes_received / max(waited, 1e-3), waited, channel

    def _shed(self, idle: List[Tuple[float, float, Any]], now: float) -> None:
        idle = [entry for entry in idle if entry[1] >= SHED_AFTER]
        idle.sort(key=lambda entry: (entry[0], -entry[1]))
        count = max(1, len(self.map) // SHED_SHARE)
        for _, _, channel in idle[:count]:
            self.shed += 1
            if channel.request is None:
                channel.will_close = True  # closed by the loop, as waitress's own cleanup
                channel.stir()
            else:
                reject(channel, "head")
        if idle:
            _SHED.warn(min(count, len(idle)))
