"""
Upload service
==============

:class:`UploadService` is what the resumable-upload protocols
(:mod:`wsgiprogress.web.tus`, :mod:`wsgiprogress.web.ietf`) share: the
storage, the progress of each upload (one entry per progress ID from the
first byte of the first request to ``done``, ``received`` growing across
connections), reading a request body into an upload, completing it
(:func:`wsgiprogress.resumable.complete`) and answering with the kept response.

.. code-block:: python

    service = UploadService(storage, progress_store, "/files/", id_finder)
    with service.storage.locked(upload_id) as upload:
        service.receive(environ, upload)        # appends the body, commits
        if upload.finished:
            service.complete(app, environ, upload)
"""
from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .. import keys
from ..progress.ids import is_valid_id
from ..progress.ratelimit import RateLimitedWarning
from ..resumable import complete
from ..resumable.storage import StorageError, TooLong
from ..resumable.upload import Upload
from .responses import plain

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..progress.ids import IdFinder
    from ..progress.store import ProgressStore
    from ..progress.tracker import Tracker
    from ..resumable.storage import Appender, DirectoryStorage

log = logging.getLogger("wsgiprogress")

#: Bytes read from ``wsgi.input`` at a time (a blocking read waits for all of them).
READ_SIZE = 64 * 1024
#: Where a completed upload keeps its response: ``<resumable_url><id>/response``.
RESPONSE_SUFFIX = "/response"
_BROKEN = RateLimitedWarning("upload %s: the request body broke off at offset %d; "
                             "what arrived is kept")

Headers = List[Tuple[str, str]]


class BodyBroken(Exception):
    """The request body ended before its declared length (the client left)."""


class UploadService:
    """The storage and progress of resumable uploads.

    :param storage: where uploads live.
    :param store: where their progress goes.
    :param url: ``resumable_url``, ending in ``/``.
    :param finder: finds a creating request's progress ID.
    """

    def __init__(self, storage: DirectoryStorage, store: ProgressStore, url: str,
                 finder: IdFinder, min_id_length: int) -> None:
        self.storage = storage
        self.store = store
        self.url = url
        self.finder = finder
        self.min_id_length = min_id_length
        self._trackers: Dict[str, Tracker] = {}
        self._lock = threading.Lock()

    # -- names ---------------------------------------------------------------

    def upload_id(self, environ: WSGIEnvironment) -> Optional[str]:
        """The ID in ``<resumable_url><id>``, unchecked; ``None`` for other paths."""
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.url):
            return None
        rest = path[len(self.url):]
        return rest or None

    def location(self, environ: WSGIEnvironment, upload: Upload, suffix: str = "") -> str:
        """The upload's URL as a path (no scheme or host to get wrong behind a proxy)."""
        return f"{environ.get('SCRIPT_NAME', '')}{self.url}{upload.id}{suffix}"

    def progress_id(self, environ: WSGIEnvironment) -> Optional[str]:
        """The creating request's valid progress ID, which the upload keeps."""
        found = self.finder.find(environ)
        return found if found is not None and is_valid_id(found, self.min_id_length) else None

    # -- progress ----------------------------------------------------------------

    def tracker(self, environ: WSGIEnvironment, upload: Upload) -> Optional[Tracker]:
        """The tracker of *upload*'s progress in this process, made (and
        started at its offset) when needed; ``None`` when untracked or when
        an outer layer counts this request already."""
        if upload.progress_id is None or keys.TRACKER in environ:
            return None
        with self._lock:
            tracker = self._trackers.get(upload.id)
            if tracker is not None and not tracker.finished:
                return tracker
            self._trackers.pop(upload.id, None)
            if len(self._trackers) >= self.storage.max_uploads:
                return None
            tracker = self.store.track(upload.progress_id, upload.length)
            if tracker is not None:
                tracker.resume_at(upload.offset)
                self._trackers[upload.id] = tracker
            return tracker

    def forget(self, upload: Upload, reason: Optional[str] = None) -> None:
        """Stop tracking *upload*; *reason* ends its progress as ``error``."""
        with self._lock:
            tracker = self._trackers.pop(upload.id, None)
        if tracker is not None and reason is not None:
            tracker.fail(reason)

    # -- bytes -------------------------------------------------------------------

    def receive(self, environ: WSGIEnvironment, upload: Upload, out: Appender,
                limit: Optional[int] = None) -> None:
        """Append the request body to *upload* through *out*, counting it.

        :param limit: the most bytes accepted (``TooLong`` past it, what
            fits is kept).
        :raises BodyBroken: when the body ends early; what arrived is kept
            when *out* commits partial appends.
        :raises StorageError: past a bound.
        """
        declared = _content_length(environ)
        tracker = self.tracker(environ, upload)
        stream = environ["wsgi.input"]
        remaining = declared if declared is not None else -1
        while remaining:
            want = READ_SIZE if remaining < 0 else min(READ_SIZE, remaining)
            try:
                chunk = stream.read(want)
            except Exception as exc:
                _BROKEN.warn(upload.id, out.end)
                raise BodyBroken("the request body broke off") from exc
            if not chunk:
                if remaining > 0:
                    _BROKEN.warn(upload.id, out.end)
                    raise BodyBroken("the request body ended early")
                return
            if limit is not None and out.written + len(chunk) > limit:
                out.write(chunk[:limit - out.written])
                raise TooLong(f"the upload's length is {out.limit} bytes")
            out.write(chunk)
            if tracker is not None:
                tracker.add_received(len(chunk))
            if remaining > 0:
                remaining -= len(chunk)

    def complete(self, app: WSGIApplication, environ: WSGIEnvironment,
                 upload: Upload) -> None:
        """Every byte is stored: call *app* once and keep its answer."""
        tracker = self.tracker(environ, upload)
        self.forget(upload)
        complete(app, environ, self.storage, upload, tracker)

    # -- answers -----------------------------------------------------------------

    def kept_response(self, start_response: StartResponse, upload: Upload,
                      extra: Sequence[Tuple[str, str]] = (), head_only: bool = False
                      ) -> Iterable[bytes]:
        """Answer with the kept response of a completed *upload*, plus *extra* headers."""
        assert upload.response is not None
        status, headers = upload.response
        body = self.storage.open_response(upload)
        size = file_size(body)
        names = {name.lower() for name, _ in headers}
        length = [] if "content-length" in names else [("Content-Length", str(size))]
        start_response(status, [*headers, *length, *extra])
        if head_only:
            body.close()
            return []
        return FileChunks(body)


class FileChunks:
    """A response body read from an open file, closed with the response."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.stream.read(READ_SIZE), b"")

    def close(self) -> None:
        self.stream.close()


def answer_storage_error(start_response: StartResponse, exc: StorageError,
                         headers: Sequence[Tuple[str, str]] = ()) -> List[bytes]:
    """The HTTP answer to a storage bound: 413, 423, 503 or 507 and why."""
    extra = [("Retry-After", "5")] if exc.status.startswith("503") else []
    return plain(start_response, exc.status, str(exc), [*headers, *extra])


def _content_length(environ: WSGIEnvironment) -> Optional[int]:
    value = environ.get("CONTENT_LENGTH")
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            return 0
    if environ.get("wsgi.input_terminated") or \
            "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    return 0


def file_size(stream: Any) -> int:
    """The size of the open file *stream*."""
    return os.fstat(stream.fileno()).st_size
