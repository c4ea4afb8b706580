"""
tus 1.0
=======

:class:`TusProtocol` serves tus 1.0.0 (https://tus.io/protocols/resumable-upload)
at ``resumable_url``: the core protocol (OPTIONS, HEAD, PATCH with
``application/offset+octet-stream``) and the extensions creation,
creation-with-upload, creation-defer-length, termination, expiration,
checksum (sha1, sha256, md5; 460 on a mismatch, nothing appended) and
concatenation.  Every response that may carry ``Upload-Offset`` does (every
answer to a PATCH on an upload, refusals too); a 409 carries the real one.
The PATCH that stores the last byte calls the application once
(:meth:`UploadService.complete`) and answers 204, as the protocol requires,
with ``Response-Message-Location`` where the application's response is kept.

.. code-block:: text

    POST /files/   Tus-Resumable: 1.0.0   Upload-Length: 3000000
    -> 201 Location: /files/<id>
    PATCH /files/<id>   Content-Type: application/offset+octet-stream   Upload-Offset: 0
    -> 204 Upload-Offset: 1000000
"""
from __future__ import annotations

import base64
import binascii
import email.utils
import hmac
import re
from typing import TYPE_CHECKING, Iterable, List, Optional, Sequence, Tuple

from ..resumable.appender import Appender, concatenate
from ..resumable.completion import media_type, target_of
from ..resumable.storage import StorageError, UploadBusy
from ..resumable.upload import ACTIVE, FINAL, PARTIAL, Upload, is_upload_id
from .ietf import upload_limit
from .responses import plain
from .upload_service import (
    RESPONSE_SUFFIX,
    BodyBroken,
    UploadService,
    answer_storage_error,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

VERSION = "1.0.0"
EXTENSIONS = ("creation,creation-with-upload,creation-defer-length,termination,"
              "expiration,checksum,concatenation")
#: ``Upload-Checksum`` algorithms, as tus names them, and :mod:`hashlib`'s names.
CHECKSUMS = {"sha1": "sha1", "sha256": "sha256", "md5": "md5"}
OCTET_STREAM = "application/offset+octet-stream"
_NUMBER = re.compile(r"\d{1,18}\Z")
_METADATA_KEY = re.compile(r"[^\s,]+\Z")

Headers = List[Tuple[str, str]]


class TusError(Exception):
    """A request the protocol refuses: *status* and a short reason."""

    def __init__(self, status: str, reason: str, headers: Sequence[Tuple[str, str]] = ()
                 ) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = list(headers)


def _number(value: Optional[str], name: str) -> Optional[int]:
    if value is None:
        return None
    if not _NUMBER.match(value.strip()):
        raise TusError("400 Bad Request", f"{name} must be a whole number >= 0")
    return int(value)


def check_metadata(value: Optional[str]) -> Optional[str]:
    """*value* when it is ``key base64,key2 base64`` with unique keys (bare
    keys allowed); 400 otherwise."""
    if value is None:
        return None
    keys = set()
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not _METADATA_KEY.match(parts[0]) or parts[0] in keys:
            raise TusError("400 Bad Request", "Upload-Metadata: key base64, unique keys")
        keys.add(parts[0])
        if len(parts) == 2:
            try:
                base64.b64decode(parts[1], validate=True)
            except binascii.Error:
                raise TusError("400 Bad Request",
                               f"Upload-Metadata: {parts[0]} is not base64") from None
    return value


class TusProtocol:
    """tus 1.0.0 over the uploads of *service*."""

    def __init__(self, service: UploadService) -> None:
        self.service = service
        self.storage = service.storage

    def __call__(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        upload_id = self.service.upload_id(environ)
        try:
            if method == "OPTIONS":
                return self._answer(start_response, "204 No Content", self._discovery())
            if environ.get("HTTP_TUS_RESUMABLE") != VERSION:
                raise TusError("412 Precondition Failed", "Tus-Resumable: 1.0.0 is required",
                               [("Tus-Version", VERSION)])
            if upload_id is None:
                if method != "POST":
                    raise TusError("405 Method Not Allowed", "create uploads with POST",
                                   [("Allow", "POST, OPTIONS")])
                return self._create(app, environ, start_response)
            if not is_upload_id(upload_id):
                raise TusError("404 Not Found", "no such upload")
            if method == "HEAD":
                return self._head(environ, start_response, upload_id)
            if method == "PATCH":
                return self._patch(app, environ, start_response, upload_id)
            if method == "DELETE":
                return self._delete(start_response, upload_id)
            raise TusError("405 Method Not Allowed", "use HEAD, PATCH or DELETE",
                           [("Allow", "HEAD, PATCH, DELETE, OPTIONS")])
        except TusError as exc:
            headers = self._offset(upload_id, exc.headers) if method == "PATCH" else exc.headers
            return self._answer(start_response, exc.status, headers, str(exc),
                                head_only=method == "HEAD")
        except StorageError as exc:
            refused = [("Tus-Resumable", VERSION)]
            if method == "PATCH" or isinstance(exc, UploadBusy):
                refused = self._offset(upload_id, refused)
            return answer_storage_error(start_response, exc, refused)

    # -- requests --------------------------------------------------------------

    def _create(self, app: WSGIApplication, environ: WSGIEnvironment,
                start_response: StartResponse) -> Iterable[bytes]:
        concat = environ.get("HTTP_UPLOAD_CONCAT")
        if concat is not None and concat.startswith("final;"):
            return self._create_final(app, environ, start_response, concat[len("final;"):])
        if concat not in (None, PARTIAL):
            raise TusError("400 Bad Request", "Upload-Concat: partial or final;<urls>")
        length = _number(environ.get("HTTP_UPLOAD_LENGTH"), "Upload-Length")
        defer = environ.get("HTTP_UPLOAD_DEFER_LENGTH")
        if (length is None) == (defer is None) or defer not in (None, "1"):
            raise TusError("400 Bad Request", "send Upload-Length or Upload-Defer-Length: 1")
        self._check_size(length)
        upload = Upload.new(target_of(environ), "tus", length, self.storage.clock(),
                            self.storage.ttl, progress_id=self.service.progress_id(environ),
                            metadata=check_metadata(environ.get("HTTP_UPLOAD_METADATA")),
                            concat=concat)
        self.storage.create(upload)
        self.service.tracker(environ, upload)  # its progress starts now
        headers = [("Location", self.service.location(environ, upload))]
        if media_type(environ) == OCTET_STREAM:
            upload = self._append(app, environ, upload.id, 0)
        elif upload.finished:  # Upload-Length: 0
            upload = self._finish(app, environ, upload.id)
        return self._answer(start_response, "201 Created", headers + self._state(environ, upload))

    def _create_final(self, app: WSGIApplication, environ: WSGIEnvironment,
                      start_response: StartResponse, urls: str) -> Iterable[bytes]:
        if environ.get("HTTP_UPLOAD_LENGTH") is not None:
            raise TusError("400 Bad Request", "a final upload has no Upload-Length")
        parts = []
        for url in urls.split():
            part_id = url.rstrip("/").rpartition("/")[2]
            part = self.storage.get(part_id) if is_upload_id(part_id) else None
            if part is None or part.concat != PARTIAL or not part.finished:
                raise TusError("400 Bad Request", f"not a finished partial upload: {url[:100]}")
            parts.append(part)
        if not parts:
            raise TusError("400 Bad Request", "Upload-Concat: final; names no uploads")
        length = sum(part.offset for part in parts)
        self._check_size(length)
        upload = Upload.new(target_of(environ), "tus", length, self.storage.clock(),
                            self.storage.ttl, progress_id=self.service.progress_id(environ),
                            metadata=check_metadata(environ.get("HTTP_UPLOAD_METADATA")),
                            concat=FINAL, parts=[part.id for part in parts])
        self.storage.create(upload)
        self.service.tracker(environ, upload)  # its progress starts now
        with self.storage.locked(upload.id) as locked:
            assert locked is not None
            concatenate(self.storage, locked, parts)
        upload = self._finish(app, environ, upload.id)
        headers = [("Location", self.service.location(environ, upload))]
        return self._answer(start_response, "201 Created", headers + self._state(environ, upload))

    def _head(self, environ: WSGIEnvironment, start_response: StartResponse,
              upload_id: str) -> Iterable[bytes]:
        upload = self.storage.get(upload_id)
        if upload is None:
            raise TusError("404 Not Found", "no such upload")
        headers = [("Cache-Control", "no-store"), *self._state(environ, upload)]
        if upload.length is None:
            headers.append(("Upload-Defer-Length", "1"))
        else:
            headers.append(("Upload-Length", str(upload.length)))
        if upload.metadata is not None:
            headers.append(("Upload-Metadata", upload.metadata))
        if upload.concat == FINAL:
            mount = environ.get("SCRIPT_NAME", "")  # as their Locations said
            urls = " ".join(f"{mount}{self.service.url}{part}" for part in upload.parts)
            headers.append(("Upload-Concat", f"final;{urls}"))
        elif upload.concat is not None:
            headers.append(("Upload-Concat", upload.concat))
        return self._answer(start_response, "200 OK", headers, head_only=True)

    def _patch(self, app: WSGIApplication, environ: WSGIEnvironment,
               start_response: StartResponse, upload_id: str) -> Iterable[bytes]:
        if media_type(environ) != OCTET_STREAM:
            raise TusError("415 Unsupported Media Type", f"Content-Type: {OCTET_STREAM}")
        offset = _number(environ.get("HTTP_UPLOAD_OFFSET"), "Upload-Offset")
        if offset is None:
            raise TusError("400 Bad Request", "Upload-Offset is required")
        upload = self._append(app, environ, upload_id, offset)
        return self._answer(start_response, "204 No Content", self._state(environ, upload))

    def _delete(self, start_response: StartResponse, upload_id: str) -> Iterable[bytes]:
        with self.storage.locked(upload_id) as upload:
            if upload is None:
                raise TusError("404 Not Found", "no such upload")
            self.service.forget(upload, "aborted")
            self.storage.delete(upload_id)
        return self._answer(start_response, "204 No Content", [])

    # -- bytes -------------------------------------------------------------------

    def _append(self, app: WSGIApplication, environ: WSGIEnvironment, upload_id: str,
                offset: int) -> Upload:
        algorithm, expected = self._checksum(environ)
        with self.storage.locked(upload_id) as upload:
            if upload is None:
                raise TusError("404 Not Found", "no such upload")
            if upload.concat == FINAL:
                raise TusError("403 Forbidden", "a final upload takes no PATCH")
            if offset != upload.offset or upload.state != ACTIVE:
                raise TusError("409 Conflict", f"the upload's offset is {upload.offset}",
                               [("Upload-Offset", str(upload.offset))])
            self._set_length(upload, environ.get("HTTP_UPLOAD_LENGTH"))
            with Appender(self.storage, upload, algorithm=algorithm,
                          commit_partial=algorithm is None) as out:
                try:
                    self.service.receive(environ, upload, out)
                except BodyBroken:
                    raise TusError("400 Bad Request", "the body broke off",
                                   [("Upload-Offset", str(upload.offset))]) from None
                if out.hash is not None and not hmac.compare_digest(out.hash.digest(),
                                                                     expected):
                    out.discard()
                    raise TusError("460 Checksum Mismatch", "Upload-Checksum does not match",
                                   [("Upload-Offset", str(upload.offset))])
            if upload.finished and upload.concat != PARTIAL:
                self.service.complete(app, environ, upload)
        return upload

    def _finish(self, app: WSGIApplication, environ: WSGIEnvironment, upload_id: str) -> Upload:
        with self.storage.locked(upload_id) as upload:
            assert upload is not None
            if upload.state == ACTIVE and upload.concat != PARTIAL:
                self.service.complete(app, environ, upload)
        return upload

    def _checksum(self, environ: WSGIEnvironment) -> Tuple[Optional[str], bytes]:
        value = environ.get("HTTP_UPLOAD_CHECKSUM")
        if value is None:
            return None, b""
        name, _, digest = value.strip().partition(" ")
        if name not in CHECKSUMS:
            raise TusError("400 Bad Request",
                           f"Upload-Checksum: use one of {', '.join(CHECKSUMS)}")
        try:
            return CHECKSUMS[name], base64.b64decode(digest, validate=True)
        except binascii.Error:
            raise TusError("400 Bad Request", "Upload-Checksum: not base64") from None

    def _set_length(self, upload: Upload, value: Optional[str]) -> None:
        length = _number(value, "Upload-Length")
        if length is None or length == upload.length:
            return
        if upload.length is not None or length < upload.offset:
            raise TusError("400 Bad Request", "Upload-Length is set already, or too small")
        self._check_size(length)
        upload.length = length
        self.storage.save(upload)

    def _check_size(self, length: Optional[int]) -> None:
        if length is not None and length > self.storage.max_size:
            raise TusError("413 Request Entity Too Large",
                           f"the largest upload is {self.storage.max_size} bytes")

    # -- answers -----------------------------------------------------------------

    def _discovery(self) -> Headers:
        return [("Tus-Version", VERSION), ("Tus-Extension", EXTENSIONS),
                ("Tus-Max-Size", str(self.storage.max_size)),
                ("Tus-Checksum-Algorithm", ",".join(CHECKSUMS)),
                # the IETF draft's discovery: every upload URL supports creation
                ("Upload-Limit", upload_limit(self.storage))]

    def _state(self, environ: WSGIEnvironment, upload: Upload) -> Headers:
        headers = [("Upload-Offset", str(upload.offset)),
                   ("Upload-Expires", email.utils.formatdate(upload.expires, usegmt=True))]
        if upload.response is not None:
            headers.append(("Response-Message-Location",
                            self.service.location(environ, upload, RESPONSE_SUFFIX)))
        return headers

    def _offset(self, upload_id: Optional[str], headers: Headers) -> Headers:
        """*headers* of a refused request, with the upload's ``Upload-Offset``
        as it is now (tus-js-client reads it on every answer to a PATCH)."""
        upload = None
        if all(name != "Upload-Offset" for name, _ in headers):
            upload = self.service.current(upload_id)
        return headers if upload is None else [*headers, ("Upload-Offset", str(upload.offset))]

    def _answer(self, start_response: StartResponse, status: str, headers: Headers,
                reason: str = "", head_only: bool = False) -> Iterable[bytes]:
        headers = [("Tus-Resumable", VERSION), *headers]
        if not reason or status.startswith("204"):
            if not status.startswith("204"):
                headers.append(("Content-Length", "0"))
            start_response(status, headers)
            return []
        return plain(start_response, status, reason, headers, head_only)
