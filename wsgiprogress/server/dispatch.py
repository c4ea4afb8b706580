"""
Probe lane
==========

waitress queues every request in one FIFO in front of its worker threads, so
a probe waits behind every long-running request (measured: 9.5 s).
:class:`ProgressDispatcher` gives probes threads of their own: a request that
is a probe goes to the probe lane, everything else to the application's
threads.  :class:`ServedApp` answers the probe path with the probe (and the
mailbox and dashboard paths with theirs) and passes everything else to the
application.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

from waitress.task import ThreadedTaskDispatcher

from ..dashboard import Dashboard
from ..mailbox_app import MailboxApp
from ..middleware import MAILBOX_KEY, TABLE_KEY
from ..probe import ProgressProbe

#: Where the application finds the server's mailbox store.

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class ProgressDispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress's task dispatcher with a separate lane for probe requests.

    :param probe_threads: threads of the probe lane.
    """

    def __init__(self, probe_threads: int) -> None:
        super().__init__()
        self.probe_lane = ThreadedTaskDispatcher()
        self.probe_lane.set_thread_count(probe_threads)

    def add_task(self, channel: Any) -> None:
        # waitress calls this with the channel's requests_lock held; the
        # channel will service requests[0] next
        requests = getattr(channel, "requests", None)
        if requests and getattr(requests[0], "is_probe", False):
            self.probe_lane.add_task(channel)
        else:
            super().add_task(channel)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        self.probe_lane.shutdown(cancel_pending, timeout)
        return bool(super().shutdown(cancel_pending, timeout))


class ServedApp:
    """Routes the probe path to *probe*, the dashboard's paths to *dashboard*,
    mailbox paths to *mailbox_app* and everything else to *app*, which finds
    the progress store in ``environ["wsgiprogress.table"]`` and the mailbox
    store in ``environ["wsgiprogress.mailbox"]``."""

    def __init__(self, app: WSGIApplication, probe: ProgressProbe, progress_url: str,
                 mailbox_app: Optional[MailboxApp] = None,
                 dashboard: Optional[Dashboard] = None) -> None:
        self.app = app
        self.probe = probe
        self.progress_url = progress_url
        self.mailbox_app = mailbox_app
        self.dashboard = dashboard

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self.progress_url:
            return self.probe(environ, start_response)
        if self.dashboard is not None and self.dashboard.handles(path):
            return self.dashboard(environ, start_response)
        environ[TABLE_KEY] = self.probe.store
        mailbox_app = self.mailbox_app
        if mailbox_app is not None:
            if mailbox_app.handles(path):
                return mailbox_app(environ, start_response)
            environ[MAILBOX_KEY] = mailbox_app.store
        return self.app(environ, start_response)
