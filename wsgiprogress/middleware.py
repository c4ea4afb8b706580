"""
Progress middleware
===================

:class:`ProgressMiddleware` tracks requests that carry a progress ID and
answers progress probes.  It wraps ``wsgi.input`` in a :class:`CountingInput`
and the response in a :class:`TrackedResponse`, so it shows live progress
under servers that stream the request body to the application (werkzeug,
gunicorn's gthread worker).  Under waitress, which reads the whole body first,
serve the application with :mod:`wsgiprogress.server` instead; the middleware
then counts nothing itself.

.. code-block:: python

    from wsgiprogress import ProgressMiddleware

    app = ProgressMiddleware(app)
    # POST /upload?X-Progress-ID=<id>   is tracked
    # GET  /progress?X-Progress-ID=<id> answers its progress

Requests without an ID, with an invalid or duplicate ID, or arriving when the
store is full run untracked.  Tracking never makes a request fail.  What it
serves in front of the application (probe, mailboxes, dashboard) comes from
:class:`~wsgiprogress.web.front.Front`, as on the server.
"""
from __future__ import annotations

import math
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional

from . import keys
from .errors import ConfigurationError, disconnect_error
from .progress.entry import ABORTED, APP_ERROR, TOO_LARGE
from .progress.tracking import TrackingRules
from .web.front import Front
from .web.responses import too_large

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Tuple, Type, Union

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .mailbox import MailboxStore
    from .progress.store import ProgressStore
    from .progress.tracker import Tracker
    from .web.mailbox import Authorize

    ExcInfo = Union[Tuple[Type[BaseException], BaseException, TracebackType],
                    Tuple[None, None, None]]

#: The names these keys had before 0.2 (read :mod:`wsgiprogress.keys`).
TRACKER_KEY = keys.TRACKER
SERVER_COUNTS_KEY = keys.SERVER_COUNTS
TABLE_KEY = keys.LEGACY_TABLE
MAILBOX_KEY = keys.MAILBOX


class ProgressMiddleware:
    """Track uploads and downloads of *app* and answer probes.

    :param app: the WSGI application to wrap.
    :param store: the :class:`~wsgiprogress.progress.store.ProgressStore` to
        use; by default the ``backend``'s, made with ``ttl`` and ``capacity``.
    :param mailbox: a :class:`~wsgiprogress.mailbox.MailboxStore` to serve
        under ``mailbox_url`` (see :mod:`wsgiprogress.web.mailbox`), or true
        for the backend's; none by default.
    :param authorize: who may read and publish mailboxes and open the
        dashboard; see :func:`wsgiprogress.web.mailbox.unguessable_names`.
    :param front: a :class:`~wsgiprogress.web.front.Front` made already (the
        Paste filter, Pyramid and Flask make theirs, to name settings as their
        users write them); the other arguments are then not given.
    :param settings: every name of
        :data:`wsgiprogress.settings.MIDDLEWARE_SETTINGS`, e.g. ``methods``,
        ``ttl``, ``capacity``, ``backend``, ``progress_url``, ``dialect``,
        ``max_request_size``, the mailbox and waiting settings and
        ``dashboard_url``.
    :raises ConfigurationError: for an *app* that is no WSGI application (an
        import path, ``None``), an unknown setting, a bad value or settings
        that contradict each other.
    """

    def __init__(self, app: WSGIApplication, *, store: Optional[ProgressStore] = None,
                 mailbox: Union[MailboxStore, bool, None] = None,
                 authorize: Optional[Authorize] = None, front: Optional[Front] = None,
                 **settings: Any) -> None:
        check_application(app, "ProgressMiddleware")
        if front is None:
            front = Front(settings, store=store, mailbox=mailbox, authorize=authorize)
        else:
            beside = [name for name, value in (("store", store), ("mailbox", mailbox),
                                               ("authorize", authorize)) if value is not None]
            if beside or settings:
                raise ConfigurationError(
                    f"ProgressMiddleware: {', '.join(beside + sorted(settings))} "
                    "configure the front=; give them to Front(...), not beside it")
        options = front.options
        self.app = app
        self.front = front
        self.store = front.store
        self.max_request_size: Optional[int] = options["max_request_size"]
        self.rules = TrackingRules.from_options(front.store, options, front.progress_url)
        self._id_key = self.rules.finder.environ_key

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        endpoint = self.front.route(environ, self.app)
        if endpoint is not None:
            return endpoint(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        if not self.rules.wants(method) or keys.SERVER_COUNTS in environ \
                or keys.TRACKER in environ:  # the server or an outer layer counts
            return self.front.call(self.app, environ, start_response)
        size = content_length(environ)
        tracker = self.rules.track(method, environ.get("PATH_INFO", ""),
                                   environ.get(self._id_key), environ.get("QUERY_STRING"), size,
                                   environ.get("CONTENT_TYPE"))
        if tracker is None:
            return self.front.call(self.app, environ, start_response)
        if self.max_request_size is not None and size is not None \
                and size > self.max_request_size:
            tracker.fail(TOO_LARGE, 413)
            return too_large(start_response, self.max_request_size)
        return self._tracked(environ, start_response, tracker)

    def _tracked(self, environ: WSGIEnvironment, start_response: StartResponse,
                 tracker: Tracker) -> Iterable[bytes]:
        environ["wsgi.input"] = CountingInput(environ["wsgi.input"], tracker)
        environ[keys.TRACKER] = tracker
        if tracker.size == 0:
            tracker.body_complete()

        def tracking_start_response(status: str, headers: List[Tuple[str, str]],
                                    exc_info: Optional[ExcInfo] = None
                                    ) -> Callable[[bytes], object]:
            write = start_response(status, headers, exc_info)
            tracker.start_response(status, _declared_length(headers))

            def counting_write(data: bytes) -> object:
                result = write(data)
                tracker.add_produced(len(data))
                tracker.add_sent(len(data))
                return result

            return counting_write

        try:
            app_iter = self.front.call(self.app, environ, tracking_start_response)
        except BaseException:
            tracker.fail(APP_ERROR, 500)
            raise
        if hasattr(app_iter, "__len__"):
            return _SizedTrackedResponse(app_iter, tracker)
        return TrackedResponse(app_iter, tracker)


def check_application(app: object, who: str) -> None:
    """Refuse an *app* that cannot be a WSGI application, in one line that
    says what to pass; *who* names the front door (``"ProgressMiddleware"``).

    :raises ConfigurationError: for a string (an import path), ``None`` or
        anything else not callable.
    """
    if isinstance(app, (str, bytes)):
        raise ConfigurationError(
            f"{who}: pass the application object, not its import path {app!r}; "
            "wsgiprogress-serve takes 'module:app'")
    if app is None:
        raise ConfigurationError(
            f"{who}: the application is None; pass the WSGI application object, the "
            "callable that takes (environ, start_response)")
    if not callable(app):
        shown = repr(app)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ConfigurationError(
            f"{who}: {type(app).__name__} {shown} is not a WSGI application; pass the "
            "callable that takes (environ, start_response)")


class CountingInput:
    """A ``wsgi.input`` that counts what is read from *stream* into *tracker*.

    It defines ``read``, ``readline``, ``readlines``, ``readinto`` and
    ``__iter__`` itself (a ``__getattr__`` pass-through would let a method
    skip the counter) and never closes the stream it wraps.  An empty read
    before the declared size arrived, or an exception from the stream, marks
    the request ``error``/``aborted``.  Once the upload is cancelled
    (:meth:`~wsgiprogress.progress.tracker.Tracker.cancel`) every read raises
    :func:`~wsgiprogress.errors.disconnect_error`, so the application never
    takes a cut-off body for a whole one.
    """

    __slots__ = ("stream", "tracker", "_limit", "_cancelled")

    def __init__(self, stream: IO[bytes], tracker: Tracker) -> None:
        self.stream = stream
        self.tracker = tracker
        self._limit = math.inf if tracker.size is None else tracker.size
        self._cancelled = False
        tracker.on_cancel = self.cancel

    def cancel(self) -> None:
        """The upload was cancelled: reads raise from now on (any thread)."""
        self._cancelled = True

    def read(self, size: Optional[int] = -1) -> bytes:
        return self._take(self.stream.read, size)

    def readline(self, size: Optional[int] = -1) -> bytes:
        return self._take(self.stream.readline, size)

    def _take(self, method: Callable[..., bytes], size: Optional[int]) -> bytes:
        if self._cancelled:
            raise disconnect_error()
        try:
            data = method(size) if size is not None and size >= 0 else method()
        except Exception:
            self.tracker.fail(ABORTED)
            raise
        if data:
            tracker = self.tracker
            files = tracker.files
            if files is not None:
                files.feed(data)
            tracker.add_received(len(data))
        elif size != 0:
            self._end_of_stream()
        return data

    def readlines(self, hint: int = -1) -> List[bytes]:
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        buffer[:len(data)] = data
        return len(data)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline(65536)
            if not line:
                return
            yield line

    def _end_of_stream(self) -> None:
        # complete, unless bytes the client declared are missing
        tracker = self.tracker
        if tracker.received < self._limit < math.inf:
            tracker.fail(ABORTED)
        else:
            tracker.body_complete()


class TrackedResponse:
    """Counts the bytes of *iterable* as the server iterates over it;
    finishes the tracker in :meth:`close`."""

    __slots__ = ("iterable", "tracker")

    def __init__(self, iterable: Iterable[bytes], tracker: Tracker) -> None:
        self.iterable = iterable
        self.tracker = tracker

    def __iter__(self) -> Iterator[bytes]:
        # a generator: the end of the iteration raises nothing in Python
        tracker = self.tracker
        in_app = True  # what raises is the application's, not the server's at ``yield``
        try:
            for chunk in self.iterable:
                in_app = False
                n = len(chunk)
                tracker.add_produced(n)
                tracker.add_sent(n)
                yield chunk
                in_app = True
        except BaseException:
            if in_app:
                tracker.fail(APP_ERROR, 500)
            raise

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


def _declared_length(headers: List[Tuple[str, str]]) -> Optional[int]:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
