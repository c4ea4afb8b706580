"""
Progress middleware
===================

:class:`ProgressMiddleware` tracks requests that carry a progress ID and
answers progress probes.  It wraps ``wsgi.input`` in a counting stream and
counts the response as it is produced, so it shows live progress under servers
that stream the request body to the application (werkzeug, gunicorn).  Under
waitress, which reads the whole body first, serve the application with
:mod:`wsgiprogress.server` instead; the middleware then counts nothing itself.

.. code-block:: python

    from wsgiprogress import ProgressMiddleware

    app = ProgressMiddleware(app)
    # POST /upload?X-Progress-ID=<id>   is tracked
    # GET  /progress?X-Progress-ID=<id> answers its progress

Requests without an ID, with an invalid or duplicate ID, or arriving when the
table is full run untracked.  Tracking never makes a request fail.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from .backends import open_stores
from .dashboard import Dashboard
from .entry import APP_ERROR, TOO_LARGE
from .errors import ConfigurationError
from .ids import IdFinder, is_valid_id
from .mailbox import MailboxStore
from .mailbox_app import Authorize, MailboxApp
from .probe import ProgressProbe
from .settings import (
    MAILBOX_SETTINGS,
    MIDDLEWARE_SETTINGS,
    PROBE_SETTINGS,
    WAIT_SETTINGS,
    resolve,
)
from .stream import CountingInput
from .waiters import Waiters

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Callable, List, Tuple, Type, Union

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .store import ProgressStore
    from .tracker import Tracker

    ExcInfo = Union[Tuple[Type[BaseException], BaseException, TracebackType],
                    Tuple[None, None, None]]

log = logging.getLogger("wsgiprogress")

#: The request's :class:`~wsgiprogress.tracker.Tracker`, for the application.
TRACKER_KEY = "wsgiprogress.tracker"
#: Set by a server that counts request and response bytes itself; the
#: middleware then leaves the request alone so nothing is counted twice.
SERVER_COUNTS_KEY = "wsgiprogress.server_counts"
#: The progress store that tracks the request, for the application (the
#: outermost layer's: our server's when it counts).
TABLE_KEY = "wsgiprogress.table"
#: The mailbox store served next to the application, for the application.
MAILBOX_KEY = "wsgiprogress.mailbox"
#: Clients that may wait at once under the middleware, which cannot know the
#: server's threads: set ``max_waiters`` below your thread count.
DEFAULT_MAX_WAITERS = 50


class ProgressMiddleware:
    """Track uploads and downloads of *app* and answer probes.

    :param app: the WSGI application to wrap.
    :param table: the :class:`~wsgiprogress.store.ProgressStore` to use; by
        default a new :class:`~wsgiprogress.table.ProgressTable` made with
        ``ttl`` and ``capacity``.
    :param mailbox: a :class:`~wsgiprogress.mailbox.MailboxStore` to serve
        under ``mailbox_url`` (see :mod:`wsgiprogress.mailbox_app`), or true
        for the backend's; none by default.
    :param authorize: who may read and publish mailboxes and open the
        dashboard; see :func:`wsgiprogress.mailbox_app.unguessable_names`.
    :param settings: every name of
        :data:`wsgiprogress.settings.MIDDLEWARE_SETTINGS`, e.g. ``methods``,
        ``ttl``, ``capacity``, ``backend``, ``progress_url``, ``dialect``,
        ``max_request_size``, the mailbox and waiting settings,
        ``max_waiters`` and ``dashboard_url``.
    :raises ConfigurationError: for an unknown setting or a bad value.
    """

    def __init__(self, app: WSGIApplication, *, table: Optional[ProgressStore] = None,
                 mailbox: Union[MailboxStore, bool, None] = None,
                 authorize: Optional[Authorize] = None, **settings: Any) -> None:
        options = resolve(MIDDLEWARE_SETTINGS, settings)
        waiters = Waiters(options["max_waiters"] or DEFAULT_MAX_WAITERS)
        table, store, self.backend = open_stores(options, settings, table, mailbox, waiters)
        self.app = app
        self.mailbox_app: Optional[MailboxApp] = None
        if store is not None:
            self.mailbox_app = MailboxApp(store, authorize=authorize, table=table, **{
                s.name: options[s.name] for s in MAILBOX_SETTINGS + WAIT_SETTINGS})
        elif authorize is not None and options["dashboard_url"] is None:
            raise ConfigurationError("authorize guards mailboxes and the dashboard: pass "
                                     "mailbox=Mailbox() or dashboard_url too")
        self.dashboard: Optional[Dashboard] = None
        if options["dashboard_url"] is not None:
            self.dashboard = Dashboard(table, self.mailbox_app, authorize=authorize,
                                       token=options["publish_token"],
                                       url=options["dashboard_url"])
        self.table = table
        self.methods = frozenset(options["methods"])
        self.progress_url: str = options["progress_url"]
        self.max_request_size: Optional[int] = options["max_request_size"]
        self.debug: bool = options["debug"]
        self.finder = IdFinder(options["id_name"])
        self.probe = ProgressProbe(
            table, **{s.name: options[s.name] for s in PROBE_SETTINGS + WAIT_SETTINGS})

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self.progress_url:
            return self.probe(environ, start_response)
        if self.dashboard is not None and self.dashboard.handles(path):
            return self.dashboard(environ, start_response)
        environ.setdefault(TABLE_KEY, self.table)
        if self.mailbox_app is not None:
            if self.mailbox_app.handles(path):
                return self.mailbox_app(environ, start_response)
            environ.setdefault(MAILBOX_KEY, self.mailbox_app.store)
        if environ.get("REQUEST_METHOD") not in self.methods or SERVER_COUNTS_KEY in environ \
                or TRACKER_KEY in environ:  # counted by the server or an outer middleware
            return self.app(environ, start_response)
        progress_id = self.finder.find(environ)
        if progress_id is None:
            return self.app(environ, start_response)
        if not is_valid_id(progress_id):
            if self.debug:
                log.info("invalid progress ID %r; request untracked", progress_id[:200])
            return self.app(environ, start_response)
        size = content_length(environ)
        tracker = self.table.track(progress_id, size)
        if tracker is None:
            return self.app(environ, start_response)
        if self.debug:
            log.info("tracking %s: %s %s, %s bytes", progress_id,
                     environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), size)
        if self.max_request_size is not None and size is not None \
                and size > self.max_request_size:
            tracker.fail(TOO_LARGE, 413)
            return _too_large(start_response, self.max_request_size)
        return self._tracked(environ, start_response, tracker)

    def _tracked(self, environ: WSGIEnvironment, start_response: StartResponse,
                 tracker: Tracker) -> Iterable[bytes]:
        environ["wsgi.input"] = CountingInput(environ["wsgi.input"], tracker)
        environ[TRACKER_KEY] = tracker
        if tracker.size == 0:
            tracker.body_complete()

        def tracking_start_response(status: str, headers: List[Tuple[str, str]],
                                    exc_info: Optional[ExcInfo] = None
                                    ) -> Callable[[bytes], object]:
            write = start_response(status, headers, exc_info)
            tracker.start_response(_status_code(status), _declared_length(headers))

            def counting_write(data: bytes) -> object:
                result = write(data)
                tracker.add_produced(len(data))
                tracker.add_sent(len(data))
                return result

            return counting_write

        try:
            app_iter = self.app(environ, tracking_start_response)
        except BaseException:
            tracker.fail(APP_ERROR, 500)
            raise
        if hasattr(app_iter, "__len__"):
            return _SizedTrackedResponse(app_iter, tracker)
        return TrackedResponse(app_iter, tracker)


class TrackedResponse:
    """Counts the bytes of *iterable* as they are yielded; finishes the
    tracker in :meth:`close`."""

    __slots__ = ("iterable", "iterator", "tracker")

    def __init__(self, iterable: Iterable[bytes], tracker: Tracker) -> None:
        self.iterable = iterable
        self.iterator: Optional[Iterator[bytes]] = None
        self.tracker = tracker

    def __iter__(self) -> TrackedResponse:
        return self

    def __next__(self) -> bytes:
        try:
            if self.iterator is None:
                self.iterator = iter(self.iterable)
            chunk = next(self.iterator)
        except StopIteration:
            raise
        except BaseException:
            self.tracker.fail(APP_ERROR, 500)
            raise
        n = len(chunk)
        self.tracker.add_produced(n)
        self.tracker.add_sent(n)
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self.iterable, "close", None)
            if close is not None:
                close()
        except BaseException:
            self.tracker.fail(APP_ERROR, 500)
            raise
        finally:
            self.tracker.finish()


class _SizedTrackedResponse(TrackedResponse):
    """Keeps ``len()`` so servers still compute a Content-Length for one-chunk lists."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]


def content_length(environ: WSGIEnvironment) -> Optional[int]:
    """The declared request body size, or ``None`` when unknown (chunked)."""
    value = environ.get("CONTENT_LENGTH")
    if value:
        try:
            size = int(value)
        except ValueError:
            return None
        return size if size >= 0 else None
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    return 0


def _status_code(status: str) -> int:
    try:
        return int(status[:3])
    except ValueError:
        return 500


def _declared_length(headers: List[Tuple[str, str]]) -> Optional[int]:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(start_response: StartResponse, limit: int) -> List[bytes]:
    body = f"request body too large: the limit is {limit} bytes\n".encode()
    start_response("413 Request Entity Too Large", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body)))])
    return [body]
