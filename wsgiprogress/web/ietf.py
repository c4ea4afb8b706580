"""
IETF resumable uploads, interop version 6
=========================================

:class:`IetfProtocol` serves draft-ietf-httpbis-resumable-upload-05
(``Upload-Draft-Interop-Version: 6``, what tus-js-client's ``ietf-draft-05``
mode speaks).  Any POST, PUT or PATCH to any URL that carries the interop
header and ``Upload-Complete`` creates an upload resource under
``resumable_url``; HEAD there reports the offset, PATCH with
``application/partial-upload`` appends, DELETE cancels.  The request that
completes the upload gets the application's own response, with
``Upload-Offset`` (clients check it) and ``Upload-Complete: ?1``.

On :mod:`wsgiprogress.server`, a creation request that carries its body
(``?1`` with the whole of it, or ``?0`` with a first part) gets ``104 Upload
Resumption Supported`` before its body is read (:meth:`IetfProtocol.start`
at head time on the I/O thread, sent once the background made the upload):
its ``Location`` lets the client resume if the connection breaks, and the
server keeps what arrived.  No 104 goes to a request without the interop
header (the draft forbids it, and clients built on ``requests`` take any 1xx
but 100 for the answer), to HTTP/1.0, to a creation without a body (its 201
carries the Location at once: careful creation), to one whose body arrived
whole before its upload was made, or when an ``authorize`` hook is set (it
runs after the body).  Under the middleware none is sent: WSGI has no
interim responses.  Later 104s with ``Upload-Offset`` (a MAY) are not sent.
A whole request (``?1``) no upload can be made for (over a bound, records
unreachable) goes to the application as a plain one: the draft's feature
detection, and iOS 18 sends ``?1`` on every upload.

.. code-block:: text

    POST /upload   Upload-Draft-Interop-Version: 6   Upload-Complete: ?0   Upload-Length: 3000000
    -> 201 Location: /files/<id>   Upload-Complete: ?0   Upload-Offset: 0
    PATCH /files/<id>   Content-Type: application/partial-upload   Upload-Offset: 0
                        Upload-Complete: ?1   [3000000 bytes]
    -> the application's response   Upload-Complete: ?1   Upload-Offset: 3000000

    POST /upload   Upload-Draft-Interop-Version: 6   Upload-Complete: ?1   Content-Length: 3000000
    -> 104 Upload Resumption Supported   Location: /files/<id>   (our server)
    ... the body breaks off after 1000000 bytes ...
    HEAD /files/<id>   -> 204 Upload-Offset: 1000000   Upload-Complete: ?0
    PATCH /files/<id>  Upload-Offset: 1000000   Upload-Complete: ?1   [2000000 bytes]
    -> the application's response   Upload-Complete: ?1   Upload-Offset: 3000000
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple

from .. import keys
from ..progress.ratelimit import RateLimitedWarning
from ..resumable.appender import Appender
from ..resumable.completion import media_type, target_from_head, target_of
from ..resumable.storage import StorageError, TooLong, UploadBusy
from ..resumable.upload import ACTIVE, COMPLETE, Upload, is_upload_id
from .responses import plain, respond
from .upload_service import (
    INTEROP_VERSION,
    RESPONSE_SUFFIX,
    BodyBroken,
    UploadService,
    answer_storage_error,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..resumable.parts import StoredPart
    from ..resumable.storage import UploadStorage

PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"
# The draft's fields are Structured Field Items (RFC 9651 section 4.2): a bare
# item, then parameters a recipient ignores; an Integer has at most 15 digits.
_BARE_ITEM = (r'(?:-?\d{1,15}(?:\.\d{1,3})?|"(?:[ !#-\[\]-~]|\\["\\])*"'
              r"|[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*|:[A-Za-z0-9+/=]*:|\?[01]"
              r'|@-?\d{1,15}|%"[^"]*")')
_PARAMETERS = rf"(?:; *[a-z*][a-z0-9_.*-]*(?:={_BARE_ITEM})?)*"
_NUMBER = re.compile(rf" *(\d{{1,15}}){_PARAMETERS} *\Z")
_BOOLEAN = re.compile(rf" *\?([01]){_PARAMETERS} *\Z")
_UNMADE = RateLimitedWarning("a whole request with Upload-Complete: ?1 went to the "
                             "application as a plain one: no upload could be made (%s)")

Headers = List[Tuple[str, str]]


class IetfError(Exception):
    """A request the draft refuses: *status*, a short reason and headers;
    *problem* members make it ``application/problem+json``."""

    def __init__(self, status: str, reason: str, headers: Sequence[Tuple[str, str]] = (),
                 **problem: object) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = list(headers)
        self.problem = problem


def is_creation(environ: WSGIEnvironment) -> bool:
    """True for a request that creates an upload: POST, PUT or PATCH with
    ``Upload-Draft-Interop-Version: 6`` and ``Upload-Complete``."""
    return environ.get("HTTP_UPLOAD_DRAFT_INTEROP_VERSION") == INTEROP_VERSION and \
        "HTTP_UPLOAD_COMPLETE" in environ and \
        environ.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH")


def _number(value: Optional[str], name: str) -> Optional[int]:
    if value is None:
        return None
    found = _NUMBER.match(value)
    if found is None:
        raise IetfError("400 Bad Request", f"{name} must be a whole number >= 0")
    return int(found.group(1))


def _complete_flag(field: Optional[str]) -> bool:
    found = _BOOLEAN.match(field or "")
    if found is None:
        raise IetfError("400 Bad Request", "Upload-Complete must be ?0 or ?1")
    return found.group(1) == "1"


def _refuse_fields(environ: WSGIEnvironment, *names: str) -> None:
    for name in names:
        if "HTTP_" + name.upper().replace("-", "_") in environ:
            raise IetfError("400 Bad Request", f"this request must not carry {name}")


class IetfProtocol:
    """Resumable uploads, interop version 6, over the uploads of *service*."""

    def __init__(self, service: UploadService, announce: bool = True) -> None:
        self.service = service
        self.storage = service.storage
        #: Whether our server may send the 104 (not when an authorize hook
        #: must see the request first: it runs after the body arrived).
        self.announce = announce

    # -- on the server's I/O thread ----------------------------------------------

    def start(self, method: str, script_name: str, path: str, query: str,
              headers: Mapping[str, str], content_length: int,
              on_made: Callable[[bool], None]) -> Optional[StoredPart]:
        """When the head of a request :meth:`UploadService.claims` arrived
        (keyed as waitress's parser keys it): for a valid creation request
        with a body, a :class:`StoredPart` that writes the body into the
        upload as it arrives and keeps it if the connection breaks; else
        ``None``.  The upload is made in the background, which then calls
        *on_made* (True: the 104 may go out; False: it could not be made).
        Cheap: a file is opened, nothing read."""
        url = self.service.url
        rest = path[len(url):] if path.startswith(url) else ""
        if not self.announce or content_length <= 0 or "TUS_RESUMABLE" in headers or \
                "UPLOAD_OFFSET" in headers or \
                headers.get("UPLOAD_DRAFT_INTEROP_VERSION") != INTEROP_VERSION or \
                "UPLOAD_COMPLETE" not in headers or method not in ("POST", "PUT", "PATCH") or \
                (rest and (method == "PATCH" or rest.endswith(RESPONSE_SUFFIX))):
            return None  # no creation, or one without a body to keep
        try:
            length = self._length(_complete_flag(headers["UPLOAD_COMPLETE"]),
                                  headers.get("UPLOAD_LENGTH"), str(content_length))
        except IetfError:
            return None  # the task answers it
        if content_length > (self.storage.max_size if length is None else length):
            return None
        upload = Upload.new(target_from_head(method, script_name, path, query, headers),
                            "ietf", length, self.storage.clock(), self.storage.ttl,
                            progress_id=self.service.progress_id_in(headers, query),
                            metadata=headers.get("UPLOAD_METADATA"))
        part = self.service.stored_part(upload, on_made)
        if part is not None:  # its progress counts as the body arrives
            part.tracker = self.service.track_upload(upload)
        return part

    def interim(self, script_name: str, part: StoredPart) -> bytes:
        """The ``104 Upload Resumption Supported`` that tells the client of
        :meth:`start`'s *part* where its upload is, before the body is read."""
        assert part.upload is not None
        limit = upload_limit(self.storage, part.upload)
        return (f"HTTP/1.1 104 Upload Resumption Supported\r\n"
                f"Upload-Draft-Interop-Version: {INTEROP_VERSION}\r\n"
                f"Location: {script_name}{self.service.url}{part.upload_id}\r\n"
                f"Upload-Limit: {limit}\r\n\r\n").encode("latin-1")

    def __call__(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        upload_id = self.service.upload_id(environ)
        creating = upload_id is None or (method in ("POST", "PUT") and is_creation(environ))
        try:
            if creating or upload_id is None:
                if not is_creation(environ):
                    raise IetfError("400 Bad Request", "send Upload-Complete to create an "
                                    "upload")
                return self._create(app, environ, start_response)
            if not is_upload_id(upload_id):
                raise IetfError("404 Not Found", "no such upload")
            if method == "HEAD":
                return self._head(start_response, upload_id, environ)
            if method == "PATCH":
                return self._append(app, environ, start_response, upload_id)
            if method == "DELETE":
                return self._delete(environ, start_response, upload_id)
            raise IetfError("405 Method Not Allowed", "use HEAD, PATCH or DELETE",
                            [("Allow", "HEAD, PATCH, DELETE")])
        except IetfError as exc:
            headers = exc.headers
            if not creating and all(name != "Upload-Offset" for name, _ in headers):
                current = self.service.current(upload_id)  # refused before it was read
                if current is not None and current.state == ACTIVE:
                    headers = [*headers, *self._state(current)]  # the draft: while active
            if exc.problem:  # RFC 9457
                problem = json.dumps({"title": str(exc), **exc.problem}).encode()
                return respond(start_response, exc.status, "application/problem+json",
                               problem, headers, head_only=method == "HEAD")
            return plain(start_response, exc.status, str(exc), headers,
                         head_only=method == "HEAD")
        except UploadBusy as exc:
            # another request appends (the client may not run two): its offset
            busy = self.service.current(upload_id)
            state = self._state(busy) if busy is not None else []
            return plain(start_response, "409 Conflict", str(exc), state)
        except StorageError as exc:
            return answer_storage_error(start_response, exc)

    # -- requests --------------------------------------------------------------

    def _create(self, app: WSGIApplication, environ: WSGIEnvironment,
                start_response: StartResponse) -> Iterable[bytes]:
        _refuse_fields(environ, "Upload-Offset")
        done = _complete_flag(environ.get("HTTP_UPLOAD_COMPLETE"))
        try:
            upload = self._made(environ, done)
        except (IetfError, StorageError) as exc:
            if not done or (isinstance(exc, IetfError) and not exc.status.startswith("413")):
                raise
            # Feature detection: a client unsure of support sends ?1 so that
            # the request works as a plain one (iOS 18 does on every upload):
            # past a bound, or without storage, the application answers it
            _UNMADE.warn(exc)
            return app(environ, start_response)
        location = [("Location", self.service.location(environ, upload))]
        return self._receive(app, environ, start_response, upload.id, 0, done, location,
                             "201 Created")

    def _made(self, environ: WSGIEnvironment, done: bool) -> Upload:
        """The upload a creation request makes (or our server made)."""
        length = self._length(done, environ.get("HTTP_UPLOAD_LENGTH"),
                              environ.get("CONTENT_LENGTH"))
        part = environ.get(keys.STORED_PART)
        if part is not None and part.upload is not None and part.upload.protocol == "ietf":
            # our server announced it in a 104 and made it in the background
            upload: Upload = part.upload
            self.service.settled(upload.id)
            if self.storage.get(upload.id) is None:
                self.storage.create(upload)  # the background could not: why, or made now
        else:
            upload = Upload.new(target_of(environ), "ietf", length, self.storage.clock(),
                                self.storage.ttl, progress_id=self.service.progress_id(environ),
                                metadata=environ.get("HTTP_UPLOAD_METADATA"))
            self.storage.create(upload)
            self.service.tracker(environ, upload)  # its progress starts now
        return upload

    def _head(self, start_response: StartResponse, upload_id: str,
              environ: WSGIEnvironment) -> Iterable[bytes]:
        _refuse_fields(environ, "Upload-Offset", "Upload-Complete", "Upload-Length")
        upload = self.storage.get(upload_id)
        if upload is None:
            raise IetfError("404 Not Found", "no such upload")
        headers = self._state(upload) + [("Cache-Control", "no-store")]
        if upload.length is not None:
            headers.append(("Upload-Length", str(upload.length)))
        start_response("204 No Content", headers)
        return []

    def _append(self, app: WSGIApplication, environ: WSGIEnvironment,
                start_response: StartResponse, upload_id: str) -> Iterable[bytes]:
        if media_type(environ) != PARTIAL_UPLOAD:
            raise IetfError("415 Unsupported Media Type", f"Content-Type: {PARTIAL_UPLOAD}")
        offset = _number(environ.get("HTTP_UPLOAD_OFFSET"), "Upload-Offset")
        if offset is None:
            raise IetfError("400 Bad Request", "Upload-Offset is required")
        return self._receive(app, environ, start_response, upload_id, offset,
                             _complete_flag(environ.get("HTTP_UPLOAD_COMPLETE")), [],
                             "201 Created")

    def _delete(self, environ: WSGIEnvironment, start_response: StartResponse,
                upload_id: str) -> Iterable[bytes]:
        _refuse_fields(environ, "Upload-Offset", "Upload-Complete")
        with self.storage.locked(upload_id) as upload:
            if upload is None:
                raise IetfError("404 Not Found", "no such upload")
            self.service.forget(upload, "aborted")
            self.storage.delete(upload_id)
        start_response("204 No Content", [])
        return []

    # -- bytes -------------------------------------------------------------------

    def _receive(self, app: WSGIApplication, environ: WSGIEnvironment,
                 start_response: StartResponse, upload_id: str, offset: int, done: bool,
                 headers: Headers, status: str) -> Iterable[bytes]:
        with self.storage.locked(upload_id) as upload:
            if upload is None:
                raise IetfError("404 Not Found", "no such upload")
            if upload.state == COMPLETE and done and offset == upload.offset and \
                    not environ.get("CONTENT_LENGTH", "0").strip("0"):
                # the client lost the answer: the same answer, not a second call
                return self._kept(start_response, upload, headers)
            if upload.state != ACTIVE:
                raise IetfError("400 Bad Request", "the upload is complete",
                                self._state(upload), type=PROBLEM_TYPES + "completed-upload")
            if offset != upload.offset:
                raise IetfError("409 Conflict", "the offset is not the upload's",
                                self._state(upload),
                                type=PROBLEM_TYPES + "mismatching-upload-offset",
                                **{"expected-offset": upload.offset, "provided-offset": offset})
            declared = _number(environ.get("CONTENT_LENGTH"), "Content-Length")
            if done and declared is not None:
                self._fix_length(upload, offset + declared)
            limit = None if upload.length is None else upload.length - offset
            try:
                with Appender(self.storage, upload) as out:
                    try:
                        self.service.receive(environ, upload, out, limit)
                    except BodyBroken:
                        done = False
            except TooLong:  # what fits is committed: the offset it reached
                raise IetfError("400 Bad Request", "the content goes past Upload-Length",
                                [*headers, *self._state(upload)]) from None
            if done and upload.length is None:
                upload.length = upload.offset
            if done or upload.finished:
                self._fix_length(upload, upload.offset)
                self.service.complete(app, environ, upload)
                return self._kept(start_response, upload, headers)
        start_response(status, [*headers, *self._state(upload),
                                ("Upload-Limit", upload_limit(self.storage, upload)),
                                ("Content-Length", "0")])
        return []

    def _length(self, done: bool, upload_length: Optional[str],
                content_length: Optional[str]) -> Optional[int]:
        """The length a creation request gives its upload (``Upload-Length``,
        or ``Content-Length`` with ``Upload-Complete: ?1``), if any."""
        length = _number(upload_length, "Upload-Length")
        if done:
            declared = _number(content_length, "Content-Length")
            if declared is not None and length is not None and declared != length:
                raise IetfError("400 Bad Request", "Upload-Length and Content-Length differ")
            length = declared if length is None else length
        if length is not None and length > self.storage.max_size:
            raise IetfError("413 Request Entity Too Large",
                            f"the largest upload is {self.storage.max_size} bytes",
                            [("Upload-Limit", upload_limit(self.storage))])
        return length

    def _fix_length(self, upload: Upload, length: int) -> None:
        if upload.length is not None and upload.length != length:
            raise IetfError("400 Bad Request", f"the upload's length is {upload.length}",
                            self._state(upload))
        if upload.length is None:
            upload.length = length
            self.storage.save(upload)

    # -- answers -----------------------------------------------------------------

    def _kept(self, start_response: StartResponse, upload: Upload,
              headers: Headers) -> Iterable[bytes]:
        return self.service.kept_response(start_response, upload,
                                          [*headers, *self._state(upload)])

    def _state(self, upload: Upload) -> Headers:
        done = "?0" if upload.state == ACTIVE else "?1"
        return [("Upload-Offset", str(upload.offset)), ("Upload-Complete", done)]


def upload_limit(storage: UploadStorage, upload: Optional[Upload] = None) -> str:
    """The ``Upload-Limit`` of *storage*'s uploads (discovery: ``OPTIONS``),
    or of *upload* (with the seconds it has left)."""
    limit = f"max-size={storage.max_size}"
    if upload is not None:
        remaining = max(0, int(upload.expires - storage.clock()))
        limit += f", expires={remaining}"
    return limit
