"""
Resumable uploads endpoint
==========================

:class:`ResumableUploads` is what :meth:`wsgiprogress.web.front.Front.route`
hands resumable-upload requests to when ``resumable_dir`` is set: requests
under ``resumable_url`` (tus 1.0, :mod:`wsgiprogress.web.tus`; the IETF
draft, :mod:`wsgiprogress.web.ietf`, when they carry its interop header) and
requests anywhere that create an IETF upload.  ``<resumable_url><id>/response``
is where a completed upload keeps the application's response: GET returns
it (as ``message/http`` when asked with ``Accept: message/http``), DELETE
acknowledges it (the upload goes).

.. code-block:: python

    uploads = ResumableUploads.from_options(options, store, backend)
    if uploads is not None and uploads.handles(environ):
        return uploads.bind(app)(environ, start_response)
"""
from __future__ import annotations

import functools
import http.client
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional

from .. import keys
from ..errors import ConfigurationError
from ..progress.ids import IdFinder
from ..resumable.storage import StorageError
from ..resumable.upload import COMPLETE, is_upload_id
from .ietf import IetfProtocol, is_creation
from .responses import plain
from .resume import ResumeRequests
from .tus import VERSION as TUS_VERSION
from .tus import TusProtocol
from .upload_service import (
    RESPONSE_SUFFIX,
    FileChunks,
    UploadService,
    answer_storage_error,
    file_size,
    nothing_reserved,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..backends import Backend
    from ..progress.store import ProgressStore
    from .mailbox import Authorize


class ResumableUploads:
    """The resumable-upload protocols over one :class:`UploadService`."""

    def __init__(self, service: UploadService, authorize: Optional[Authorize] = None) -> None:
        self.service = service
        self.authorize = authorize
        self.url = service.url
        self.tus = TusProtocol(service)
        # the 104 goes out before the body, the authorize hook sees the
        # request after it: with a hook, no 104
        self.ietf = IetfProtocol(service, announce=authorize is None)
        self.resume = ResumeRequests(service)
        # what the server's parser asks on its I/O thread
        self.claims = service.claims
        self.part_for = service.part_for
        self.keep_partial = service.keep_partial

    @classmethod
    def from_options(cls, options: Mapping[str, Any], store: ProgressStore,
                     backend: Optional[Backend], authorize: Optional[Authorize] = None,
                     reserved: Callable[[str], bool] = nothing_reserved
                     ) -> Optional[ResumableUploads]:
        """The endpoint the resolved settings ask for; ``None`` without
        ``resumable_dir``.  The *backend* keeps the uploads' records and
        locks (:meth:`~wsgiprogress.backends.Backend.uploads`).  An
        *authorize* hook is asked ``authorize(environ, upload_id, "upload")``
        on every request to an upload (``upload_id`` ``None`` when it
        creates one): 403 when it says no.  A path *reserved* says is another
        endpoint's is never an upload.

        :raises ConfigurationError: when the directory cannot be made.
        """
        directory = options["resumable_dir"]
        if directory is None:
            return None
        assert backend is not None, "resumable uploads need the backend"
        try:
            storage = backend.uploads(
                directory, ttl=options["resumable_ttl"],
                max_size=options["resumable_max_size"],
                max_uploads=options["resumable_max_uploads"],
                max_disk=options["resumable_max_disk"],
                lock_ttl=options["resumable_lock_ttl"])
        except OSError as exc:
            raise ConfigurationError(f"resumable_dir: cannot use {directory!r} ({exc.strerror}); "
                                     "give a directory this process may write") from None
        url = options["resumable_url"].rstrip("/") + "/"
        return cls(UploadService(storage, store, url, IdFinder(options["id_name"]),
                                 options["min_id_length"], reserved), authorize)

    def handles(self, environ: WSGIEnvironment) -> bool:
        """True for a request one of the protocols answers (cheap: a prefix
        and a header lookup); never for the rebuilt request of a completed upload."""
        if keys.UPLOAD in environ:
            return False
        path = environ.get("PATH_INFO", "")
        return path.startswith(self.url) or path == self.url[:-1] or _resuming(environ) or (
            is_creation(environ) and not self.service.reserved(path))

    def bind(self, app: WSGIApplication) -> WSGIApplication:
        """The endpoint for this request, which completes uploads by calling *app*."""
        return functools.partial(self, app)

    def __call__(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(app, environ, start_response)
        except StorageError as exc:  # the records are unreachable (Redis): retry later
            return answer_storage_error(start_response, exc)
        finally:
            self.service.progress.ended(environ)

    def _route(self, app: WSGIApplication, environ: WSGIEnvironment,
               start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self.url[:-1]:
            environ["PATH_INFO"] = path = self.url
        name = path[len(self.url):].partition("/")[0] if path.startswith(self.url) else ""
        if self.authorize is not None and not self.authorize(environ, name or None, "upload"):
            if _resuming(environ):  # its body was kept as it arrived, before the hook said no
                self.resume.discard(environ)
            tus = [("Tus-Resumable", TUS_VERSION)] if "HTTP_TUS_RESUMABLE" in environ else []
            return plain(start_response, "403 Forbidden", "not allowed", tus,
                         head_only=environ["REQUEST_METHOD"] == "HEAD")
        if name:
            self.service.settled(name)  # what the background still does to it shows
        if _resuming(environ):
            return self.resume.arrived(app, environ, start_response)
        if path.startswith(self.url) and path.endswith(RESPONSE_SUFFIX):
            return self._response(environ, start_response,
                                  path[len(self.url):-len(RESPONSE_SUFFIX)])
        # OPTIONS is discovery for both protocols: tus's headers and the IETF
        # draft's Upload-Limit, which it requires there
        if "HTTP_TUS_RESUMABLE" in environ or environ["REQUEST_METHOD"] == "OPTIONS":
            return self.tus(app, environ, start_response)
        if "HTTP_UPLOAD_DRAFT_INTEROP_VERSION" in environ:
            return self.ietf(app, environ, start_response)
        if path == self.url or environ["REQUEST_METHOD"] == "POST":
            return self.tus(app, environ, start_response)  # 412
        return self.resume(app, environ, start_response)  # the request-content location

    def close(self) -> None:
        """Finish what runs in the background (bodies of broken requests),
        then close the storage."""
        self.service.close()
        self.service.storage.close()

    def _response(self, environ: WSGIEnvironment, start_response: StartResponse,
                  upload_id: str) -> Iterable[bytes]:
        """The response-message location of a completed upload."""
        method = environ["REQUEST_METHOD"]
        storage = self.service.storage
        upload = storage.get(upload_id) if is_upload_id(upload_id) else None
        if upload is None or upload.state != COMPLETE or upload.response is None:
            return plain(start_response, "404 Not Found", "no kept response here",
                         head_only=method == "HEAD")
        if method == "DELETE":
            with storage.locked(upload_id):
                storage.delete(upload_id)
            start_response("204 No Content", [])
            return []
        if method not in ("GET", "HEAD"):
            return plain(start_response, "405 Method Not Allowed", "use GET or DELETE",
                         [("Allow", "GET, HEAD, DELETE")])
        if "message/http" not in environ.get("HTTP_ACCEPT", ""):
            return self.service.kept_response(start_response, upload,
                                              [("Cache-Control", "no-store")],
                                              head_only=method == "HEAD")
        status, headers = upload.response
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        code = int(status[:3])
        reason = status[4:] or http.client.responses.get(code, "")
        prefix = f"HTTP/1.1 {code} {reason}\r\n{head}\r\n".encode("latin-1")
        body = storage.open_response(upload)
        size = len(prefix) + file_size(body)
        start_response("200 OK", [("Content-Type", "message/http"),
                                  ("Content-Length", str(size)),
                                  ("Cache-Control", "no-store")])
        if method == "HEAD":
            body.close()
            return []
        return _Prefixed(prefix, FileChunks(body))


def _resuming(environ: WSGIEnvironment) -> bool:
    """True for a resumable request (``Prefer: resume``) whose body our server
    stored as it arrived."""
    part = environ.get(keys.STORED_PART)
    return part is not None and part.upload is not None and part.upload.protocol == "resume"


class _Prefixed:
    """*prefix*, then *rest*; closes *rest*."""

    def __init__(self, prefix: bytes, rest: FileChunks) -> None:
        self.prefix = prefix
        self.rest = rest

    def __iter__(self) -> Iterator[bytes]:
        yield self.prefix
        yield from self.rest

    def close(self) -> None:
        self.rest.close()

