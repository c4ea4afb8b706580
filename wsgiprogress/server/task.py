"""
Task hook
=========

:class:`ProgressTask` runs the application for one request on a worker
thread.  It tells the application (and any
:class:`~wsgiprogress.middleware.ProgressMiddleware` inside it) that the
server already counts this request, records the response status, counts the
bytes the application produces, and delimits the request's output so the
channel can attribute the bytes it sends.  A request that waits (a
long-poll, an event stream) parks: its task stops when the response raises
:class:`~wsgiprogress.waiters.Parked` and goes on from there each time its
:class:`~wsgiprogress.server.parking.Parking` steps it (:meth:`ProgressTask.park`).
To HTTP/1.1 clients it offers interim responses (``102 Processing``,
:data:`wsgiprogress.keys.INTERIM`), which go out before the final head and
are not counted as the response.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from waitress.channel import ClientDisconnected
from waitress.task import WSGITask

from .. import keys
from ..operations.kept import message_head
from ..progress.entry import ABORTED, APP_ERROR
from ..waiters import Parked
from .compat import PEEK_FOR_DEPARTURE
from .handoff import HandedOff, Handoff
from .heads import HEADS
from .parking import Parking, answered, park

if TYPE_CHECKING:
    from ..progress.tracker import Tracker
    from ..web.waiting import WaitingResponse
    from .sending import SendWindow


class ProgressTask(WSGITask):  # type: ignore[misc]
    """A waitress task that reports the response to the request's tracker."""

    send_window: Optional[SendWindow] = None
    #: The response of a parked request, iterated again at each step.
    waiting: Optional[WaitingResponse] = None
    #: The protocol a ``426 Upgrade Required`` names: its head gets
    #: ``Upgrade`` and ``Connection: upgrade`` (RFC 9110 §15.5.22, §7.8),
    #: hop-by-hop headers that waitress refuses from an application.
    upgrade_required: Optional[str] = None

    def __init__(self, channel: Any, request: Any) -> None:
        super().__init__(channel, request)
        #: The request's tracker; ``None`` when it is not tracked.
        self.tracker: Optional[Tracker] = request.tracker

    def get_environment(self) -> Dict[str, Any]:
        environ: Dict[str, Any] = super().get_environment()
        environ[keys.SERVER_COUNTS] = True
        environ[keys.DEPARTURE] = self.channel.watch_departure
        if PEEK_FOR_DEPARTURE:  # waitress 1.4 has no such key; 2.0+ does
            environ["waitress.client_disconnected"] = self.channel.check_client_disconnected
        tracker = self.tracker
        if tracker is not None:
            environ[keys.TRACKER] = tracker
        elif self.request.is_endpoint and not PEEK_FOR_DEPARTURE:
            # only our endpoints park (waitress 1.4 services a connection's
            # queue in one go: not there)
            environ[keys.PARK] = self.park
            websocket = self.channel.server.progress_websocket
            if websocket is not None and \
                    self.request.headers.get("UPGRADE", "").lower() == "websocket":
                environ[keys.UPGRADE] = functools.partial(websocket.upgrade, self)
        if self.request.hands_off:
            environ[keys.HANDOFF] = Handoff(self.channel, self.request, environ)
        if self.version == "1.1":  # never a 1xx to HTTP/1.0 (RFC 9110)
            environ[keys.INTERIM] = self.send_interim
        part = getattr(self.request, "stored_part", None)
        if part is not None:
            environ[keys.STORED_PART] = part
        return environ

    def park(self) -> Parking:
        """The wake of this request's response, which may now park it."""
        return park(self)

    def send_interim(self, status: str, headers: List[Tuple[str, str]]) -> None:
        """Send an interim response (``"102 Processing"``) now; nothing once
        the final head was written.  The caller orders it before the final
        ``start_response`` (:class:`wsgiprogress.web.interim.Interim`)."""
        if self.wrote_header:
            return
        data = message_head(status, headers)
        self.channel.write_soon(data)
        if self.send_window is not None:
            self.send_window.start += len(data)  # not the response's bytes

    def service(self) -> None:
        try:
            self._serve()
        finally:
            if self.channel.held_head:  # no body bytes came to carry it
                self.channel.send_held_head()
            # the environ holds this task's own methods (park, upgrade), and a
            # request that was ready to park its task: let reference counting
            # free them, not the garbage collector (a parked response has what
            # it needs)
            self.environ = None
            answered(self)

    def _serve(self) -> None:
        if self.waiting is not None:
            return self._resume()
        tracker = self.tracker
        self.request.serviced = True
        if tracker is None:
            try:
                return super().service()  # type: ignore[no-any-return]
            except Parked as parked:
                self.waiting = parked.response
                raise
            except HandedOff:  # the application has the socket: write nothing
                self.close_on_finish = True
                return None
        self.request.serviced = True
        channel = self.channel
        with channel.outbuf_lock:
            window = self.send_window = channel.open_send_window(tracker)
        try:
            super().service()
        except ClientDisconnected:
            tracker.fail(ABORTED)
            raise
        except BaseException:
            tracker.fail(APP_ERROR, 500)
            raise
        finally:
            with channel.outbuf_lock:
                channel.close_send_window(window)
            # here, not only in ProgressChannel.service: waitress dispatches a
            # pipelined next request (a probe of this one) before that returns
            channel.finish_sent()

    def _resume(self) -> None:
        """Go on with a parked response: write what it has now, and finish
        the request once it is over (or raise :class:`Parked` again)."""
        waiting, parking = self.waiting, self.channel.parking
        assert waiting is not None and parking is not None
        waiting.suspended = False
        try:
            try:
                for chunk in waiting:
                    self.write(chunk)
                self.finish()
            finally:
                if not waiting.suspended:  # over, or the client left
                    parking.finished()
        except OSError:  # as waitress's Task.service
            self.close_on_finish = True
            if self.channel.adj.log_socket_errors:
                raise

    def build_response_header(self) -> bytes:
        if self.upgrade_required is not None:
            self.response_headers.extend([("Upgrade", self.upgrade_required),
                                          ("Connection", "upgrade")])
        made = HEADS.head(self.version, self.request.headers.get("CONNECTION", ""),
                          self.status, self.response_headers, self.channel.server.adj.ident)
        if made is None:  # a body of unknown length: waitress's own way
            header: bytes = super().build_response_header()
        else:  # the same bytes, made once per shape a second
            header, closes = made
            if closes:
                self.close_on_finish = True
        tracker = self.tracker
        window = self.send_window
        if tracker is not None and window is not None:
            # the head is the first output of the request: sent counts the body
            window.start += len(header)
            window.headed = True
            tracker.start_response(self.status, self.content_length)
        if self.hold_head:  # it goes out with the body's first bytes, in one send
            self.channel.held_head = header
            return b""
        return header

    #: True while the first write has body bytes to send with the head.
    hold_head = False

    def write(self, data: bytes) -> None:
        tracker = self.tracker
        if tracker is not None and data:
            tracker.add_produced(len(data))
        # waitress sends the head and the body's first bytes in two sends; one
        # does (an empty first write, which asks for the head alone, is not held)
        self.hold_head = not self.wrote_header and bool(data) and self.has_body
        super().write(data)
        if tracker is not None and self.channel.sent_in_full:
            self.channel.finish_sent()
