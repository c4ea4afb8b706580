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

``OPTIONS`` anywhere else (``OPTIONS *`` too) is the application's, with
``Upload-Limit`` added: the IETF draft requires it wherever an upload can be
created.  With ``allowed_origins``, a page of an allowed origin may upload
(tus-js-client in a browser): every answer carries the CORS headers and
exposes the protocols' fields (:data:`EXPOSED_HEADERS`, as tusd does), and
``OPTIONS`` with ``Access-Control-Request-Method`` under ``resumable_url``,
or one that asks to send ``Upload-Draft-Interop-Version`` anywhere, is
answered as a preflight.

.. code-block:: python

    uploads = ResumableUploads.from_options(options, store, backend)
    if uploads is not None and uploads.handles(environ):
        return uploads.bind(app)(environ, start_response)
"""
from __future__ import annotations

import errno
import functools
import http.client
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Tuple

from .. import keys
from ..errors import ConfigurationError
from ..progress.ids import IdFinder
from ..resumable.storage import StorageError
from ..resumable.upload import COMPLETE, is_upload_id
from ..settings import Spell, as_written
from .ietf import IetfProtocol, is_creation, upload_limit
from .responses import Headers, cors_headers, plain, preflight, with_headers
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

#: What a page may read of an answer cross-origin: tusd's list, the IETF
#: draft's fields and the ones the protocols here add.
EXPOSED_HEADERS = ("Location", "Upload-Offset", "Upload-Length", "Upload-Metadata",
                   "Upload-Defer-Length", "Upload-Concat", "Upload-Expires", "Tus-Resumable",
                   "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm",
                   "Upload-Complete", "Upload-Draft-Interop-Version", "Upload-Limit",
                   "Response-Message-Location", "Retry-After")
#: What a page may send, for the CORS preflight (the progress ID's header is added).
REQUEST_HEADERS = ("Authorization, Content-Type, Content-Disposition, X-Requested-With, "
                   "X-Request-ID, X-HTTP-Method-Override, Tus-Resumable, Upload-Length, "
                   "Upload-Offset, Upload-Metadata, Upload-Defer-Length, Upload-Concat, "
                   "Upload-Checksum, Upload-Complete, Upload-Draft-Interop-Version, Prefer")
METHODS = "POST, PUT, PATCH, HEAD, GET, DELETE, OPTIONS"


class ResumableUploads:
    """The resumable-upload protocols over one :class:`UploadService`.

    :param allowed_origins: the origins whose pages may upload (``*`` for
        any; empty: CORS off), as for the probe.
    :param id_name: the progress ID's header, which a page may send.
    """

    def __init__(self, service: UploadService, authorize: Optional[Authorize] = None,
                 allowed_origins: Tuple[str, ...] = (), id_name: str = "X-Progress-ID"
                 ) -> None:
        self.service = service
        self.authorize = authorize
        self.allowed_origins = allowed_origins
        self.request_headers = f"{REQUEST_HEADERS}, {id_name}"
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
                     reserved: Callable[[str], bool] = nothing_reserved,
                     spell: Spell = as_written) -> Optional[ResumableUploads]:
        """The endpoint the resolved settings ask for; ``None`` without
        ``resumable_dir``.  The *backend* keeps the uploads' records and
        locks (:meth:`~wsgiprogress.backends.Backend.uploads`).  An
        *authorize* hook is asked ``authorize(environ, upload_id, "upload")``
        on every request to an upload (``upload_id`` ``None`` when it
        creates one): 403 when it says no.  A path *reserved* says is another
        endpoint's is never an upload.  *spell* names the setting as the
        front door writes it, in the refusal.

        :raises ConfigurationError: when the directory cannot be made or
            written (:func:`usable_directory`).
        """
        directory = options["resumable_dir"]
        if directory is None:
            return None
        assert backend is not None, "resumable uploads need the backend"
        usable_directory(directory, spell)
        storage = backend.uploads(
            directory, ttl=options["resumable_ttl"], max_size=options["resumable_max_size"],
            max_uploads=options["resumable_max_uploads"], max_disk=options["resumable_max_disk"],
            lock_ttl=options["resumable_lock_ttl"])
        url = options["resumable_url"].rstrip("/") + "/"
        return cls(UploadService(storage, store, url, IdFinder(options["id_name"]),
                                 options["min_id_length"], reserved), authorize,
                   options["allowed_origins"], options["id_name"])

    def handles(self, environ: WSGIEnvironment) -> bool:
        """True for a request one of the protocols answers (cheap: a prefix
        and a header lookup), and for ``OPTIONS`` where an upload may be
        created; never for the rebuilt request of a completed upload."""
        if keys.UPLOAD in environ:
            return False
        path = environ.get("PATH_INFO", "")
        return self.service.under_url(path) or _resuming(environ) or (
            (is_creation(environ) or environ.get("REQUEST_METHOD") == "OPTIONS")
            and not self.service.reserved(path))

    def bind(self, app: WSGIApplication) -> WSGIApplication:
        """The endpoint for this request, which completes uploads by calling *app*."""
        return functools.partial(self, app)

    def __call__(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        cors = cors_headers(environ, self.allowed_origins, EXPOSED_HEADERS)
        # a completed upload answers with the application's response: one
        # Access-Control-Allow-Origin, the endpoint's
        start = with_headers(start_response, cors, replace=True)
        try:
            if environ["REQUEST_METHOD"] == "OPTIONS":
                return self._options(app, environ, start_response, cors)
            return self._route(app, environ, start)
        except StorageError as exc:  # busy, or the records are unreachable (Redis)
            return answer_storage_error(start, exc)
        finally:
            self.service.progress.ended(environ)

    def _options(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse, cors: Headers
                 ) -> Iterable[bytes]:
        """A CORS preflight, discovery under ``resumable_url``, or the
        application's answer with ``Upload-Limit``."""
        path = environ.get("PATH_INFO", "")
        ours = self.service.under_url(path)
        limit = [("Upload-Limit", upload_limit(self.service.storage))]
        asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").lower()
        if cors and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ and (
                ours or "upload-draft-interop-version" in asked):
            return preflight(start_response, [*cors, *limit], METHODS, self.request_headers)
        if ours:
            return self._route(app, environ, with_headers(start_response, cors))
        return app(environ, with_headers(start_response, limit))

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
            _tunnelled(environ)
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


def _tunnelled(environ: WSGIEnvironment) -> None:
    """A POST to an upload with ``X-HTTP-Method-Override: PATCH`` (or
    ``DELETE``) becomes that request, in either protocol, as tusd takes it
    (tus-js-client's ``overridePatchMethod``, for stacks without PATCH)."""
    override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").strip().upper()
    if environ["REQUEST_METHOD"] == "POST" and override in ("PATCH", "DELETE"):
        environ["REQUEST_METHOD"] = override


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


def usable_directory(directory: str, spell: Spell = as_written) -> None:
    """Make *directory*, where resumable uploads are kept, unless it exists,
    and see that this process may write in it: the check every front door
    makes when it is built (the command line before it loads the application).

    :raises ConfigurationError: naming the setting as *spell* writes it.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as exc:
        raise ConfigurationError(f"{spell('resumable_dir')}: cannot use {directory!r} "
                                 f"({exc.strerror}); give a directory this process may "
                                 "write") from None
