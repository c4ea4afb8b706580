"""
Completing an upload
====================

When every byte of an upload is stored, :func:`complete` calls the
application once with the request that created it, rebuilt: its method, its
URI, its headers (``Content-Length`` the full size, ``Content-Type``
``application/octet-stream`` when it had none, ``Upload-Metadata`` passed
through), the stored bytes as ``wsgi.input`` (read from the file, never
loaded into memory) and :data:`wsgiprogress.keys.UPLOAD` describing the upload.
Its response, whatever it is (a 5xx included), is kept beside the upload, so
a client that lost it gets it again and the application is never called twice.

.. code-block:: python

    def app(environ, start_response):
        upload = environ["wsgiprogress.upload"]   # id, metadata, size, path
        shutil.copyfileobj(environ["wsgi.input"], destination)
"""
from __future__ import annotations

import io
import logging
import os
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from .. import keys
from .upload import COMPLETE, COMPLETING, Target, Upload

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    from ..progress.tracker import Tracker
    from .storage import UploadStorage

log = logging.getLogger("wsgiprogress")

#: Request headers of the protocols, never part of the application's request.
PROTOCOL_HEADERS = frozenset((
    "HTTP_CONTENT_LENGTH", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTP_EXPECT",
    "HTTP_CONNECTION", "HTTP_TUS_RESUMABLE", "HTTP_UPLOAD_LENGTH", "HTTP_UPLOAD_OFFSET",
    "HTTP_UPLOAD_DEFER_LENGTH", "HTTP_UPLOAD_CONCAT", "HTTP_UPLOAD_CHECKSUM",
    "HTTP_UPLOAD_COMPLETE", "HTTP_UPLOAD_DRAFT_INTEROP_VERSION", "HTTP_PREFER",
    "HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_KEEP_ALIVE", "HTTP_TE", "HTTP_TRAILER",
))
#: Response headers that describe one connection, not the kept response.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authenticate", "proxy-authorization"))
#: Content types that name the protocol's framing, not the upload's bytes.
FRAMING_TYPES = ("application/offset+octet-stream", "application/partial-upload")


def media_type(headers: Mapping[str, Any]) -> str:
    """The media type of a request whose *headers* (an environ, or the CGI
    names of a part's head) hold ``CONTENT_TYPE``: without parameters, lower
    case (RFC 9110 compares type and subtype case-insensitively)."""
    return str(headers.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()


def target_of(environ: WSGIEnvironment) -> Target:
    """The request in *environ* as an upload's target."""
    headers = {name: str(value) for name, value in environ.items()
               if (name.startswith("HTTP_") or name == "CONTENT_TYPE")
               and name not in PROTOCOL_HEADERS}
    if media_type(headers) in FRAMING_TYPES:
        del headers["CONTENT_TYPE"]
    return Target(environ.get("REQUEST_METHOD", "POST"), environ.get("SCRIPT_NAME", ""),
                  environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""), headers)


def target_from_head(method: str, script_name: str, path: str, query: str,
                     headers: Mapping[str, str]) -> Target:
    """A request head as a server's parser keys it (``CONTENT_TYPE``,
    ``X_PROGRESS_ID``) as an upload's target, the way :func:`target_of` sees
    the same request in its environ."""
    environ: Dict[str, Any] = {f"HTTP_{name}": value for name, value in headers.items()
                               if name not in ("CONTENT_TYPE", "CONTENT_LENGTH")}
    if "CONTENT_TYPE" in headers:
        environ["CONTENT_TYPE"] = headers["CONTENT_TYPE"]
    environ.update(REQUEST_METHOD=method, SCRIPT_NAME=script_name, PATH_INFO=path,
                   QUERY_STRING=query)
    return target_of(environ)


class StoredBody(io.IOBase):
    """``wsgi.input`` over an upload's stored bytes: at most *size* of them
    (``readlines`` and iteration come from :class:`io.IOBase`)."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        super().__init__()
        self.stream = stream
        self.remaining = size

    def readable(self) -> bool:
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        n = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self.stream.read(n)
        self.remaining -= len(data)
        return data

    def readline(self, size: Optional[int] = -1) -> bytes:
        n = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self.stream.readline(n)
        self.remaining -= len(data)
        return data


def upload_info(storage: UploadStorage, upload: Upload) -> Dict[str, Any]:
    """What the application finds in ``environ["wsgiprogress.upload"]``."""
    return {"id": upload.id, "metadata": upload.metadata, "size": upload.offset,
            "path": storage.path(upload.id, ".bin"), "protocol": upload.protocol,
            "progress_id": upload.progress_id}


def rebuilt_environ(base: WSGIEnvironment, storage: UploadStorage, upload: Upload,
                    body: IO[bytes]) -> Dict[str, Any]:
    """The environ the application sees: the server's part of *base* (this
    connection), the target's request line and headers, the stored body."""
    environ = {name: value for name, value in base.items()
               if not name.startswith("HTTP_") and name not in (
                   "CONTENT_TYPE", "CONTENT_LENGTH", keys.TRACKER)}
    target = upload.target
    environ.update(target.headers)
    environ.setdefault("CONTENT_TYPE", "application/octet-stream")
    environ.update(REQUEST_METHOD=target.method, SCRIPT_NAME=target.script_name,
                   PATH_INFO=target.path_info, QUERY_STRING=target.query_string,
                   CONTENT_LENGTH=str(upload.offset))
    environ["REQUEST_URI"] = environ["RAW_URI"] = target.uri
    environ["wsgi.input"] = StoredBody(body, upload.offset)
    environ["wsgi.input_terminated"] = True
    environ[keys.UPLOAD] = upload_info(storage, upload)
    return environ


def complete(app: WSGIApplication, base: WSGIEnvironment, storage: UploadStorage,
             upload: Upload, tracker: Optional[Tracker]) -> None:
    """Call *app* once for the finished *upload* (its lock held) and keep its
    response: marks it ``completing`` first, ``complete`` with the response.
    An exception from the application is kept as a 500."""
    upload.state = COMPLETING
    storage.save(upload)
    if tracker is not None:
        tracker.body_complete()
    kept: List[Tuple[str, List[Tuple[str, str]]]] = []

    def start_response(status: str, headers: List[Tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        if kept and exc_info is None:
            raise AssertionError("start_response called twice without exc_info")
        kept[:] = [(status, [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP])]
        if tracker is not None:
            tracker.start_response(status, None)
        return out.write

    with storage.open_body(upload) as body, storage.open_response(upload, "wb") as out:
        environ = rebuilt_environ(base, storage, upload, body)
        if tracker is not None:
            environ[keys.TRACKER] = tracker
        try:
            result = app(environ, start_response)
            try:
                for chunk in result:
                    out.write(chunk)
                    if tracker is not None:
                        tracker.add_produced(len(chunk))
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            log.exception("the application failed on completed upload %s", upload.id)
            out.seek(0)
            out.truncate()
            out.write(b"the application failed\n")
            kept[:] = [("500 Internal Server Error",
                        [("Content-Type", "text/plain; charset=utf-8")])]
            if tracker is not None:
                tracker.start_response(500, None)
        out.flush()
        os.fsync(out.fileno())
    if not kept:
        kept.append(("500 Internal Server Error", []))
    upload.response = kept[0]
    upload.state = COMPLETE
    storage.save(upload)
    if tracker is not None:
        tracker.finish()
