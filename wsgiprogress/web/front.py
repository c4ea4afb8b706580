"""
Front
=====

:class:`Front` is the one composition both front doors share: the
middleware (:class:`~wsgiprogress.middleware.ProgressMiddleware`) and the
server (:mod:`wsgiprogress.server`) each make one from their settings and
route every request through :meth:`Front.route` before the application sees
it.  It resolves and checks the settings (:func:`~wsgiprogress.settings.check_front`),
opens the stores of the backend (:func:`~wsgiprogress.backends.backend_from_url`)
unless store objects are passed in, bounds the waiting clients of both with
one :class:`~wsgiprogress.waiters.Waiters`, and builds the probe, the mailbox
endpoints, the dashboard and, with ``operations`` on, the status monitors
and the runner that calls the application (:mod:`wsgiprogress.web.operations`).

.. code-block:: python

    front = Front({"ttl": 60, "mailbox": True})
    endpoint = front.route(environ, app)  # probe, mailbox, monitor, dashboard, upload
    if endpoint is not None:
        return endpoint(environ, start_response)
    return front.call(app, environ, start_response)  # finds the stores in the environ
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, Mapping, Optional, Tuple, Union

from .. import keys
from ..backends import OPERATIONS_BOUNDS, Backend, backend_from_url
from ..mailbox import MailboxStore
from ..settings import (
    MAILBOX_LIMITS,
    MIDDLEWARE_SETTINGS,
    PROBE_SETTINGS,
    STORE_SETTINGS,
    WAIT_SETTINGS,
    Setting,
    Spell,
    as_written,
    check_front,
    resolve,
    waiter_limit,
)
from ..waiters import Waiters
from .dashboard import Dashboard
from .mailbox import Authorize, MailboxApp, unguessable_names
from .monitor import OperationMonitor
from .operations import OperationRunner
from .probe import ProgressProbe
from .resumable import ResumableUploads
from .sockets import SocketFeed, mailbox_feed, progress_feed

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..operations import OperationStore
    from ..progress.store import ProgressStore
    from .waiting import Answer


def front_options(given: Mapping[str, Any], settings: Tuple[Setting, ...], *,
                  store: Optional[ProgressStore] = None,
                  mailbox: Union[MailboxStore, bool, str, None] = None,
                  authorize: Optional[Authorize] = None, spell: Spell = as_written
                  ) -> Tuple[Dict[str, Any], Optional[ProgressStore], Optional[MailboxStore]]:
    """The settings a :class:`Front` is made with, resolved and checked, and
    the store objects passed in (``table`` is the old name of *store*; a
    *mailbox* that is no store is the ``mailbox`` setting).  Opens nothing:
    the command line validates with it before it loads the application.

    :raises ConfigurationError: as :class:`Front` does.
    """
    given = dict(given)
    if "table" in given:
        warnings.warn("table= is now store=", DeprecationWarning, stacklevel=4)
        store = given.pop("table")
    if mailbox is not None and not isinstance(mailbox, MailboxStore):
        given["mailbox"] = mailbox
        mailbox = None
    options = resolve(settings, given, spell)
    check_front(options, given, store_given=store is not None,
                mailbox_given=mailbox is not None,
                authorize_given=authorize is not None, spell=spell)
    return options, store, mailbox


def _subset(options: Mapping[str, Any], *groups: Tuple[Setting, ...]) -> Dict[str, Any]:
    return {s.name: options[s.name] for group in groups for s in group}


class Front:
    """The stores and HTTP endpoints one front door serves.

    :param given: the settings as given, by name (``progress_url``, ``ttl``,
        ``mailbox``, …); ``table`` is the old name of *store*.
    :param settings: the table they are resolved against: the middleware's
        or the server's.
    :param store: a :class:`~wsgiprogress.progress.store.ProgressStore` to
        use instead of the backend's.
    :param mailbox: a :class:`~wsgiprogress.mailbox.MailboxStore` to serve
        instead of the backend's, or the ``mailbox`` setting.
    :param authorize: who may read progress (action ``"progress"``), read and
        publish mailboxes, open the dashboard and use an upload (``"upload"``); see
        :func:`wsgiprogress.web.mailbox.unguessable_names`.  Without it
        anyone may read progress.
    :param threads: the server's worker threads, which bound the waiting
        clients by default; ``None`` under the middleware.
    :param connections: the server's connection limit, which bounds the
        waiting clients by default instead when the server parks them.
    :param spell: how the front door writes setting names, for messages.
    :raises ConfigurationError: for an unknown setting, a bad value or
        settings that contradict each other.
    """

    def __init__(self, given: Mapping[str, Any], *,
                 settings: Tuple[Setting, ...] = MIDDLEWARE_SETTINGS,
                 store: Optional[ProgressStore] = None,
                 mailbox: Union[MailboxStore, bool, str, None] = None,
                 authorize: Optional[Authorize] = None, threads: Optional[int] = None,
                 connections: Optional[int] = None, spell: Spell = as_written) -> None:
        options, store, mailbox = front_options(given, settings, store=store, mailbox=mailbox,
                                                authorize=authorize, spell=spell)
        self.options = options
        self.waiters = Waiters(waiter_limit(options["max_waiters"], threads, connections))
        self.backend: Optional[Backend] = None
        if store is None or (mailbox is None and options["mailbox"]) or options["operations"] \
                or options["resumable_dir"] is not None:
            backend = self.backend = backend_from_url(
                options["backend"], waiters=self.waiters,
                **_subset(options, STORE_SETTINGS, MAILBOX_LIMITS),
                **{name: options[name] for name in OPERATIONS_BOUNDS})
            store = backend.progress if store is None else store
            mailbox = backend.mailbox if mailbox is None and options["mailbox"] else mailbox
        self.store: ProgressStore = store
        self.mailboxes: Optional[MailboxStore] = mailbox
        for shared in (self.store, self.mailboxes):
            if shared is not None:  # stores passed in wait within the same bound
                shared.waiters = self.waiters
        self.probe = ProgressProbe(self.store, authorize=authorize,
                                   token=options["publish_token"],
                                   **_subset(options, PROBE_SETTINGS, WAIT_SETTINGS))
        self.mailbox_app: Optional[MailboxApp] = None
        if self.mailboxes is not None:
            self.mailbox_app = MailboxApp(
                self.mailboxes, authorize=authorize, table=self.store,
                **{name: options[name] for name in ("mailbox_url", "publish", "publish_token",
                                                    "allowed_origins")},
                **_subset(options, WAIT_SETTINGS))
        self.dashboard: Optional[Dashboard] = None
        if options["dashboard_url"] is not None:
            self.dashboard = Dashboard(self.store, self.mailbox_app, authorize=authorize,
                                       token=options["publish_token"],
                                       url=options["dashboard_url"])
        self.progress_url: str = options["progress_url"]
        self.operations: Optional[OperationStore] = None
        self.monitor: Optional[OperationMonitor] = None
        self.runner: Optional[OperationRunner] = None
        if options["operations"] and self.backend is not None:
            self.operations = self.backend.operations
            self.monitor = OperationMonitor(
                self.operations, authorize=authorize, url=options["operations_url"],
                allowed_origins=options["allowed_origins"], **_subset(options, WAIT_SETTINGS))
            self.runner = OperationRunner(self.operations, options)
        self.resumable = ResumableUploads.from_options(options, self.store, self.backend,
                                                       authorize, self.reserved, spell)

    @property
    def may_block(self) -> bool:
        """True when answering a probe, a mailbox or a monitor may block: a
        store shared with other processes (Redis), or an ``authorize`` hook
        (the application's own code).  Our server then answers off its I/O loop."""
        mailbox_app, monitor = self.mailbox_app, self.monitor
        return self.store.shared or self.probe.authorize is not None or (
            mailbox_app is not None and (mailbox_app.store.shared
                                         or mailbox_app.authorize is not unguessable_names)
        ) or (monitor is not None and (monitor.store.shared or monitor.authorize is not None))

    def reserved(self, path: str) -> bool:
        """True for a path the probe, the dashboard, a mailbox or a monitor
        answers, whatever the method: never the application's, never an upload."""
        return path == self.progress_url or any(
            endpoint is not None and endpoint.handles(path)
            for endpoint in (self.dashboard, self.mailbox_app, self.monitor))

    def endpoint_paths(self) -> Tuple[str, Tuple[str, ...]]:
        """The probe's path and the prefixes of the mailboxes and the
        operation monitors (those that are on), where a GET or HEAD is
        answered by an endpoint, never the application."""
        prefixes = tuple(endpoint.prefix for endpoint in (self.mailbox_app, self.monitor)
                         if endpoint is not None)
        return self.progress_url, prefixes

    def socket_feed(self, environ: WSGIEnvironment) -> Union[SocketFeed, Answer, None]:
        """What a WebSocket upgrade of this request carries: the probe's, a
        mailbox's or a monitor's :class:`~wsgiprogress.web.sockets.SocketFeed`, the answer
        that refuses it, or ``None`` when the path is the application's."""
        path = environ.get("PATH_INFO", "")
        if path == self.progress_url:
            return progress_feed(self.probe, environ)
        mailbox_app = self.mailbox_app
        if mailbox_app is not None and mailbox_app.handles(path):
            return mailbox_feed(mailbox_app, environ)
        monitor = self.monitor
        if monitor is not None and monitor.handles(path):
            return monitor.feed(environ)
        return None

    def route(self, environ: WSGIEnvironment,
              app: Optional[WSGIApplication] = None) -> Optional[WSGIApplication]:
        """The endpoint that answers this request (the probe, a mailbox, the
        dashboard, a resumable upload), or ``None`` for the application,
        after putting the stores in the environ for it (an outer layer's stay).

        :param app: the application a completed resumable upload is given
            to; without it resumable uploads are not served.
        """
        path = environ.get("PATH_INFO", "")
        if path == self.progress_url:
            return self.probe
        dashboard = self.dashboard
        if dashboard is not None and dashboard.handles(path):
            return dashboard
        monitor = self.monitor
        if monitor is not None and monitor.handles(path):
            return monitor
        environ.setdefault(keys.PROGRESS_STORE, self.store)
        environ.setdefault(keys.LEGACY_TABLE, self.store)
        mailbox_app = self.mailbox_app
        if mailbox_app is not None:
            if mailbox_app.handles(path):
                return mailbox_app
            environ.setdefault(keys.MAILBOX, self.mailboxes)
        # after the stores: the application answers an OPTIONS through it
        resumable = self.resumable
        if resumable is not None and app is not None and resumable.handles(environ):
            return resumable.bind(app)
        return None

    def call(self, app: WSGIApplication, environ: WSGIEnvironment,
             start_response: StartResponse) -> Iterable[bytes]:
        """Call *app* for a request :meth:`route` left to it: through the
        operations runner when ``operations`` is on (``Prefer:
        respond-async``, ``environ["wsgiprogress.operation"]``)."""
        if self.runner is None:
            return app(environ, start_response)
        return self.runner(app, environ, start_response)

    def close(self) -> None:
        """Write what is pending, stop taking operations and release the
        backend's connections."""
        if self.runner is not None:
            self.runner.close()
        if self.resumable is not None:
            self.resumable.close()
        if self.backend is not None:
            self.backend.close()
