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

from typing import TYPE_CHECKING, Any, Iterable

from waitress.task import ThreadedTaskDispatcher

from .channel import all_probes

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
        self.probe_lane.set_thread_count(probe_threads)

    def add_task(self, channel: Any) -> None:
        # waitress 2.0+ calls this with the channel's requests_lock held, and
        # the channel will service requests[0] next; 1.4 services them all
        requests = getattr(channel, "requests", None)
        if requests and all_probes(requests):
            if not channel.answer_on_loop():
                self.probe_lane.add_task(channel)
        else:
            super().add_task(channel)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        self.probe_lane.shutdown(cancel_pending, timeout)
        return bool(super().shutdown(cancel_pending, timeout))


class RoutedApp:
    """*app* behind *front*'s router: the probe, mailbox and dashboard paths
    go to their endpoints, everything else to *app*, which finds the stores
    in the environ (:mod:`wsgiprogress.keys`)."""

    def __init__(self, app: WSGIApplication, front: Front) -> None:
        self.app = app
        self.route = front.route

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        return (self.route(environ, self.app) or self.app)(environ, start_response)
