"""
Resumable requests
==================

:class:`ResumeRequests` serves the resumable requests of the http-progress
drafts (draft-wright-http-resume-request, draft-wright-http-partial-upload,
byte-range PATCH) on :mod:`wsgiprogress.server`.  A request with a body,
``Expect: 100-continue`` and ``Prefer: resume`` gets in its ``100 Continue``

* ``Request-Content-Location: <resumable_url><id>``: HEAD there answers 200
  with ``Upload-Offset`` and ``Content-Length`` both the bytes stored; PATCH
  there with ``message/byterange`` (one part whose ``Content-Range`` starts at
  that offset), or the IETF draft's append, completes the body;
* ``Response-Message-Location: <resumable_url><id>/response``: GET there
  returns the final response (``message/http`` when asked with ``Accept:
  message/http``); DELETE acknowledges it.

Its body is written into the upload directory as it arrives; if the
connection breaks, what arrived is kept.  The application sees the request
once, whole, when its last byte is stored.

.. code-block:: text

    POST /print   Expect: 100-continue   Prefer: resume   Content-Length: 1000000
    HTTP/1.1 100 Continue   Request-Content-Location: /files/<id>   Response-Message-Location: ...
    ... the connection breaks after 100000 bytes ...
    HEAD /files/<id>            -> 200   Upload-Offset: 100000   Content-Length: 100000
    PATCH /files/<id>   Content-Type: message/byterange
        Content-Range: bytes 100000-999999/1000000  [CRLF]  [900000 bytes]
                                -> the final response of POST /print
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Tuple

from .. import keys
from ..resumable.appender import Appender
from ..resumable.completion import media_type, target_from_head
from ..resumable.parts import BYTERANGE, MAX_PART_HEAD, StoredPart, parse_byterange_head
from ..resumable.storage import StorageError, TooLong, UploadBusy
from ..resumable.upload import ACTIVE, COMPLETE, Upload, is_upload_id
from .responses import plain
from .upload_service import (
    RESPONSE_SUFFIX,
    BodyBroken,
    UploadService,
    answer_storage_error,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment



class ResumeError(Exception):
    """A request refused: *status*, a short reason, the real offset when known."""

    def __init__(self, status: str, reason: str, offset: Optional[int] = None) -> None:
        super().__init__(reason)
        self.status = status
        self.offset = offset


def prefers_resume(prefer: Optional[str]) -> bool:
    """True when a ``Prefer`` field asks for ``resume`` (or
    ``resume=save-incomplete``), RFC 7240 style."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "resume" and \
                value.strip().strip('"').lower() in ("", "save-incomplete"):
            return True
    return False


class ResumeRequests:
    """Resumable requests over the uploads of *service*."""

    def __init__(self, service: UploadService) -> None:
        self.service = service
        self.storage = service.storage

    # -- the request itself ------------------------------------------------------

    def start(self, method: str, script_name: str, path: str, query: str,
              headers: Mapping[str, str], content_length: int) -> Optional[StoredPart]:
        """On the server's I/O thread, when a head arrived: a
        :class:`StoredPart` for a resumable request's body (its ``upload``
        set), or ``None``.  Cheap: a file is opened, nothing read."""
        if method not in ("POST", "PUT", "PATCH") or content_length <= 0 or \
                content_length > self.storage.max_size or \
                not prefers_resume(headers.get("PREFER")) or self.service.reserved(path):
            return None  # another endpoint's path is never an upload
        upload = Upload.new(target_from_head(method, script_name, path, query, headers),
                            "resume", content_length, self.storage.clock(), self.storage.ttl,
                            progress_id=self.service.progress_id_in(headers, query))
        return self.service.stored_part(upload)

    def continue_headers(self, script_name: str, part: StoredPart) -> bytes:
        """The fields of the ``100 Continue`` that answers a resumable request."""
        location = f"{script_name}{self.service.url}{part.upload_id}"
        return (f"Request-Content-Location: {location}\r\n"
                f"Response-Message-Location: {location}{RESPONSE_SUFFIX}\r\n").encode()

    def arrived(self, app: WSGIApplication, environ: WSGIEnvironment,
                start_response: StartResponse) -> Iterable[bytes]:
        """The whole body arrived: the upload is made, complete, and the
        application answers it (once)."""
        part: StoredPart = environ[keys.STORED_PART]
        try:
            self.service.settled(part.upload_id)
            with self.storage.locked(part.upload_id) as upload:
                if upload is None:
                    raise StorageError("the request could not be stored")
                with Appender(self.storage, upload) as out:
                    self.service.receive(environ, upload, out)
                self.service.complete(app, environ, upload)
        except StorageError as exc:
            part.close()
            return answer_storage_error(start_response, exc)
        return self.service.kept_response(start_response, upload)

    def discard(self, environ: WSGIEnvironment) -> None:
        """The authorize hook refused a resumable request whose body arrived:
        the upload it made, and its body, go now rather than at expiry."""
        part: StoredPart = environ[keys.STORED_PART]
        self.service.settled(part.upload_id)
        with self.storage.locked(part.upload_id) as upload:
            if upload is not None:
                self.storage.delete(part.upload_id)
        part.close()

    # -- at the request-content location -----------------------------------------

    def __call__(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        upload_id = self.service.upload_id(environ) or ""
        try:
            if not is_upload_id(upload_id):
                raise ResumeError("404 Not Found", "no such upload")
            if method == "HEAD":
                upload = self.storage.get(upload_id)
                if upload is None:
                    raise ResumeError("404 Not Found", "no such upload")
                start_response("200 OK", [("Upload-Offset", str(upload.offset)),
                                          ("Content-Length", str(upload.offset)),
                                          ("Cache-Control", "no-store")])
                return []
            if method == "PATCH":
                return self._patch(app, environ, start_response, upload_id)
            if method == "DELETE":
                with self.storage.locked(upload_id) as upload:
                    if upload is None:
                        raise ResumeError("404 Not Found", "no such upload")
                    self.service.forget(upload, "aborted")
                    self.storage.delete(upload_id)
                start_response("204 No Content", [])
                return []
            return plain(start_response, "405 Method Not Allowed", "use HEAD or PATCH",
                         [("Allow", "HEAD, PATCH, DELETE")])
        except ResumeError as exc:
            offset = [] if exc.offset is None else [("Upload-Offset", str(exc.offset))]
            return plain(start_response, exc.status, str(exc), offset,
                         head_only=method == "HEAD")
        except UploadBusy as exc:
            busy = self.service.current(upload_id)
            offset = [] if busy is None else [("Upload-Offset", str(busy.offset))]
            return plain(start_response, "409 Conflict", str(exc), offset)
        except StorageError as exc:
            return answer_storage_error(start_response, exc)

    def _patch(self, app: WSGIApplication, environ: WSGIEnvironment,
               start_response: StartResponse, upload_id: str) -> Iterable[bytes]:
        if media_type(environ) != BYTERANGE:
            raise ResumeError("415 Unsupported Media Type", f"Content-Type: {BYTERANGE}")
        part = environ.get(keys.STORED_PART)
        if part is not None and part.upload_id != upload_id:
            part = None
        if part is not None:  # our server kept the part's head apart
            if part.head is None:
                raise ResumeError("400 Bad Request", "the part's header block is missing or "
                                  "too long")
            head, consumed = part.head, len(part.head) + 4
        else:
            head, consumed = self._part_head(environ)
        try:
            first, last, complete = parse_byterange_head(head)
        except ValueError as exc:
            raise ResumeError("400 Bad Request", str(exc)) from None
        with self.storage.locked(upload_id) as upload:
            if upload is None:
                raise ResumeError("404 Not Found", "no such upload")
            if upload.state == COMPLETE and last + 1 == upload.offset:
                # the last part again: its answer was lost; the same answer
                return self.service.kept_response(start_response, upload)
            if upload.state != ACTIVE or first != upload.offset:
                raise ResumeError("409 Conflict", f"the body continues at {upload.offset}",
                                  upload.offset)
            if complete is not None and upload.length not in (None, complete):
                raise ResumeError("400 Bad Request", f"the body's length is {upload.length}",
                                  upload.offset)
            size = last - first + 1
            declared = environ.get("CONTENT_LENGTH")
            body = int(declared) - consumed if declared and declared.isdigit() else size
            if body != size:
                raise ResumeError("400 Bad Request", "the part's body is not its range's length",
                                  upload.offset)
            with Appender(self.storage, upload) as out:
                try:
                    self.service.receive(environ, upload, out, size,
                                         None if part is not None else size)
                except (BodyBroken, TooLong):
                    raise ResumeError("400 Bad Request", "the part broke off",
                                      upload.offset) from None
            return self._answer(app, environ, start_response, upload)

    def _answer(self, app: WSGIApplication, environ: WSGIEnvironment,
                start_response: StartResponse, upload: Upload) -> Iterable[bytes]:
        if upload.finished:
            self.service.complete(app, environ, upload)
            return self.service.kept_response(start_response, upload)
        start_response("204 No Content", [("Upload-Offset", str(upload.offset))])
        return []

    def _part_head(self, environ: WSGIEnvironment) -> Tuple[bytes, int]:
        """The part's header block, read from ``wsgi.input`` up to its blank
        line, and the bytes that took."""
        stream = environ["wsgi.input"]
        head = b""
        while not head.endswith(b"\r\n\r\n") and head != b"\r\n":
            line = stream.readline(MAX_PART_HEAD + 1 - len(head))
            if not line or len(head) + len(line) > MAX_PART_HEAD:
                raise ResumeError("400 Bad Request", "the part's header block is missing or "
                                  "too long")
            head += line
        return head[:-4], len(head)
