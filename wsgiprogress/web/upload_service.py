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

import functools
import logging
import os
import threading
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from .. import keys
from ..progress.ids import is_valid_id
from ..progress.ratelimit import RateLimitedWarning
from ..resumable import complete
from ..resumable.appender import Appender
from ..resumable.completion import FRAMING_TYPES, media_type
from ..resumable.parts import BYTERANGE, Background, StoredPart
from ..resumable.storage import StorageError, TooLong
from ..resumable.upload import ACTIVE, Upload, is_upload_id
from .responses import plain
from .upload_progress import UploadProgress

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..progress.ids import IdFinder
    from ..progress.store import ProgressStore
    from ..resumable.storage import UploadStorage

log = logging.getLogger("wsgiprogress")

#: Bytes read from ``wsgi.input`` at a time (a blocking read waits for all of them).
READ_SIZE = 64 * 1024
#: Seconds a request waits for an upload being made in the background.
CREATE_WAIT = 30.0
#: The IETF draft's interop version (:mod:`wsgiprogress.web.ietf`).
INTEROP_VERSION = "6"
#: Where a completed upload keeps its response: ``<resumable_url><id>/response``.
RESPONSE_SUFFIX = "/response"
_UNSTORED = RateLimitedWarning("upload %s: cannot store it; its request will answer why")
_BROKEN = RateLimitedWarning("upload %s: the request body broke off at offset %d; "
                             "what arrived is kept")

Headers = List[Tuple[str, str]]


class BodyBroken(Exception):
    """The request body ended before its declared length (the client left)."""


def nothing_reserved(path: str) -> bool:
    """No path is another endpoint's (an :class:`UploadService` on its own)."""
    return False


class UploadService:
    """The storage and progress of resumable uploads.

    :param storage: where uploads live.
    :param store: where their progress goes.
    :param url: ``resumable_url``, ending in ``/``.
    :param finder: finds a creating request's progress ID.
    """

    def __init__(self, storage: UploadStorage, store: ProgressStore, url: str,
                 finder: IdFinder, min_id_length: int,
                 reserved: Callable[[str], bool] = nothing_reserved) -> None:
        self.storage = storage
        #: True for a path another endpoint answers (the probe, a mailbox):
        #: never an upload, whatever its headers say.
        self.reserved = reserved
        self.store = store
        self.url = url
        self.finder = finder
        self.min_id_length = min_id_length
        self.progress = UploadProgress(store, storage.max_uploads)
        self.tracker = self.progress.tracker
        self.track_upload = self.progress.track
        self.forget = self.progress.forget
        self._lock = threading.Lock()
        self.background = Background()
        #: Uploads the background works on (made, kept): set when it is done.
        self._pending: Dict[str, threading.Event] = {}

    # -- names ---------------------------------------------------------------

    def upload_id(self, environ: WSGIEnvironment) -> Optional[str]:
        """The ID in ``<resumable_url><id>``, unchecked; ``None`` for other paths."""
        path: str = environ.get("PATH_INFO", "")
        return (path[len(self.url):] or None) if path.startswith(self.url) else None

    def location(self, environ: WSGIEnvironment, upload: Upload, suffix: str = "") -> str:
        """The upload's URL as a path (no scheme or host to get wrong behind a proxy)."""
        return f"{environ.get('SCRIPT_NAME', '')}{self.url}{upload.id}{suffix}"

    def progress_id(self, environ: WSGIEnvironment) -> Optional[str]:
        """The creating request's valid progress ID, which the upload keeps."""
        return self._valid(self.finder.find(environ))

    # -- bodies the server stores as they arrive (on its I/O thread) -------------

    def under_url(self, path: str) -> bool:
        """True for ``resumable_url`` and the paths under it (the uploads)."""
        return path.startswith(self.url) or path == self.url[:-1]

    def claims(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        """True for a request a protocol answers, from its head as waitress's
        parser keys it (``UPLOAD_COMPLETE``): the server then counts it here,
        not as a request of its own.  Never for a :attr:`reserved` path."""
        return self.under_url(path) or (
            headers.get("UPLOAD_DRAFT_INTEROP_VERSION") == INTEROP_VERSION and
            "UPLOAD_COMPLETE" in headers and method in ("POST", "PUT", "PATCH")
            and not self.reserved(path))

    def part_for(self, method: str, path: str, headers: Mapping[str, str]
                 ) -> Optional[StoredPart]:
        """Where the body of an append should go as it arrives, or ``None``
        for any other request.  Cheap: one ``stat``, nothing read."""
        if method != "PATCH" or not path.startswith(self.url):
            return None
        upload_id = path[len(self.url):]
        content_type = media_type(headers)
        byterange = content_type == BYTERANGE
        if not (byterange or content_type in FRAMING_TYPES) \
                or not self.storage.has_body(upload_id):
            return None
        start = _offset(headers.get("UPLOAD_OFFSET"))
        if "UPLOAD_CHECKSUM" in headers:
            start = None  # a broken body cannot be checked: never kept
        tracker = self.progress.running(upload_id)
        found = tracker is None and self.store.shared and (start is not None or byterange)
        if tracker is not None and start != tracker.received and not byterange:
            tracker = None  # count only what extends the progress shown
        try:
            part = StoredPart(self.storage, upload_id, start, self.background, tracker,
                              byterange)
        except OSError:
            return None  # the directory is unwritable: waitress buffers it
        if found:  # its record is in the shared store: read off the I/O thread
            self.background.submit(lambda: self.progress.attach(part, self.current(upload_id)))
        return part

    def keep_partial(self, part: StoredPart) -> None:
        """The connection broke while *part* arrived: append what did, in
        the background, when it continues the upload."""
        if part.start is None or not part.size:
            return
        part.written()
        part.kept = self._later(part.upload_id, functools.partial(self._keep, part))

    def settled(self, upload_id: str, timeout: float = CREATE_WAIT) -> None:
        """Wait (bounded) until the background is done with *upload_id*
        (made, or what a broken request brought appended), so a client that
        asks right after its 100 Continue or a drop sees it."""
        done = self._pending.get(upload_id)
        if done is not None:
            done.wait(timeout)

    def _later(self, upload_id: str, job: Callable[[], None]) -> bool:
        done = threading.Event()

        def run() -> None:
            try:
                job()
            finally:
                done.set()
                with self._lock:
                    if self._pending.get(upload_id) is done:
                        del self._pending[upload_id]

        with self._lock:
            self._pending[upload_id] = done  # jobs run in order: the last one settles
        if self.background.submit(run):
            return True
        with self._lock:
            if self._pending.get(upload_id) is done:
                del self._pending[upload_id]
        return False

    def stored_part(self, upload: Upload, on_made: Optional[Callable[[bool], None]] = None
                    ) -> Optional[StoredPart]:
        """On the server's I/O thread: a :class:`StoredPart` for the body of
        a request that makes *upload*, which the background stores (ahead of
        anything else done to it, then calls *on_made* with whether it could);
        ``None`` when the directory or the background (queue full) cannot."""
        try:
            part = StoredPart(self.storage, upload.id, 0, self.background)
        except OSError:
            return None
        part.upload, part.on_made = upload, on_made
        if self._later(upload.id, functools.partial(self.create_from_part, part)):
            return part
        part.close()
        return None

    def progress_id_in(self, headers: Mapping[str, str], query: str) -> Optional[str]:
        """:meth:`progress_id` from a request head as the server's parser keys it."""
        return self._valid(self.finder.find_in(headers.get(self.finder.header_key), query))

    def _valid(self, found: Optional[str]) -> Optional[str]:
        return found if found is not None and is_valid_id(found, self.min_id_length) else None

    def create_from_part(self, part: StoredPart) -> None:
        """Make *part*'s upload (in the background, right after its head arrived)."""
        assert part.upload is not None
        made = False
        try:
            self.storage.create(part.upload)
            made = True
        except (StorageError, OSError):
            self.forget(part.upload, "aborted")
            _UNSTORED.warn(part.upload_id, exc_info=True)
        finally:  # whatever happened: a client waiting for its 100 Continue gets it
            if part.on_made is not None:
                part.on_made(made)

    def _keep(self, part: StoredPart) -> None:
        try:
            with self.storage.locked(part.upload_id) as upload:
                if upload is not None and upload.state == ACTIVE and \
                        upload.offset == part.start:
                    with Appender(self.storage, upload) as out:
                        out.adopt(part)
                    self.progress.show(upload)
                    log.info("upload %s: kept %d bytes of a broken request",
                             upload.id, part.size)
        except StorageError:
            pass  # busy (another append runs), too long or full: the client resends
        finally:
            part.remove()

    def current(self, upload_id: Optional[str]) -> Optional[Upload]:
        """*upload_id*'s record as it is now, for the answer to an append that
        found the upload busy; ``None`` when it is gone or cannot be read."""
        if not upload_id or not is_upload_id(upload_id):
            return None
        try:
            return self.storage.get(upload_id)
        except StorageError:
            return None

    # -- bytes -------------------------------------------------------------------

    def receive(self, environ: WSGIEnvironment, upload: Upload, out: Appender,
                limit: Optional[int] = None, length: Optional[int] = None) -> None:
        """Append the request body to *upload* through *out*, counting it.

        :param limit: the most bytes accepted (``TooLong`` past it, what
            fits is kept).
        :param length: the bytes left to read from ``wsgi.input``, when not
            its Content-Length (a ``message/byterange`` part's body).
        :raises BodyBroken: when the body ends early; what arrived is kept
            when *out* commits partial appends.
        :raises StorageError: past a bound.
        """
        tracker = self.tracker(environ, upload)
        part = environ.get(keys.STORED_PART)
        if part is not None and part.upload_id == upload.id and length is None:
            part.settle()  # this tracker counts the rest
            out.adopt(part)  # the server wrote the body into the storage already
            if tracker is not None:
                tracker.add_received(part.size - part.counted)
            return
        declared = _content_length(environ) if length is None else length
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

    def close(self) -> None:
        """Finish the background jobs (kept bodies) and stop its thread."""
        self.background.close()

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
        # never on a 204 or 304 (RFC 9110 section 8.6)
        bodiless = status[:3] in ("204", "304")
        length = [] if "content-length" in names or bodiless else [("Content-Length", str(size))]
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


def _offset(value: Optional[str]) -> Optional[int]:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


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
