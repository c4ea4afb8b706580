"""
Probe lane
==========

waitress queues every request in one FIFO in front of its worker threads, so
a probe waits behind every long-running request (measured: 9.5 s).
:class:`ProgressDispatcher` answers a probe on the I/O loop itself when its
store answers without blocking (the memory store), gives the other probes
threads of their own (the probe lane, for Redis), and everything else to the
application's threads.  :class:`RoutedApp` is what both run: the front door's router
(:meth:`wsgiprogress.web.front.Front.route`) in front of the application.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, Optional

from waitress.task import ThreadedTaskDispatcher

from .. import keys
from ..web.sockets import SocketFeed
from .channel import all_endpoints
from .handoff import Handoff, stop_reading

#: A logger that says nothing below ERROR.
QUIET = logging.getLogger("wsgiprogress.probe_lane")
QUIET.setLevel(logging.ERROR)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..web.front import Front


class ProgressDispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress's task dispatcher with a separate lane for probe requests.

    :param probe_threads: threads of the probe lane.
    """

    def __init__(self, probe_threads: int) -> None:
        super().__init__()
        self.probe_lane = ThreadedTaskDispatcher()
        # a post wakes many parked Redis waiters at once: a burst the lane
        # works through, not a backlog for waitress to warn of each time
        self.probe_lane.queue_logger = QUIET
        self.probe_lane.set_thread_count(probe_threads)

    def add_task(self, channel: Any) -> None:
        # waitress 2.0+ calls this with the channel's requests_lock held, and
        # the channel will service requests[0] next; 1.4 services them all
        requests = getattr(channel, "requests", None)
        if requests and all_endpoints(requests):
            if not channel.answer_on_loop():
                self.probe_lane.add_task(channel)
        else:
            if requests and getattr(requests[0], "hands_off", False):
                stop_reading(channel)
            super().add_task(channel)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        self.probe_lane.shutdown(cancel_pending, timeout)
        return bool(super().shutdown(cancel_pending, timeout))


class RoutedApp:
    """*app* behind *front*'s router: the probe, mailbox, monitor and
    dashboard paths go to their endpoints (a WebSocket upgrade of the probe or
    a mailbox to its feed), everything else to *app* through
    :meth:`~wsgiprogress.web.front.Front.call`, which finds the stores in the
    environ (:mod:`wsgiprogress.keys`)."""

    def __init__(self, app: WSGIApplication, front: Front) -> None:
        self.app = app
        self.front = front
        self.route = front.route
        self.call = front.call

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        upgrade = environ.get(keys.UPGRADE)
        if upgrade is not None:
            feed = self.front.socket_feed(environ)
            if isinstance(feed, SocketFeed):
                accepted: Iterable[bytes] = upgrade(feed, self.front.waiters, environ,
                                                    start_response)
                return accepted
            if feed is not None:
                return feed(start_response)  # refused: 400, 403, 503
        endpoint = self.route(environ, self.app)
        if endpoint is None:
            # only our endpoints park: the application's own middleware
            # would be skipped when a parked response goes on
            environ.pop(keys.PARK, None)
            handoff: Optional[Handoff] = environ.get(keys.HANDOFF)
            if handoff is not None:  # a WebSocket application gets the socket
                return handoff.run(self.app, environ, start_response)
            return self.call(self.app, environ, start_response)
        return endpoint(environ, start_response)
