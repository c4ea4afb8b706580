"""
Flask upload demo: a page with a live progress bar, on :mod:`flask_progress`.

Run it on werkzeug's threaded dev server (the middleware counts the upload as
the handler reads it)::

    flask --app examples.flask_upload run --port 8080

or on our waitress server (the server counts the bytes as they arrive)::

    wsgiprogress-serve --listen 127.0.0.1:8080 examples.flask_upload:app

then open http://127.0.0.1:8080/ and upload a large file.  ``POST /upload``
takes the browser's ``multipart/form-data`` (field ``file``) or a raw body::

    curl --data-binary @big.iso -H "Content-Type: application/octet-stream" \\
        "http://127.0.0.1:8080/upload?X-Progress-ID=$(uuidgen)"

and answers ``{"filename": ..., "size": ...}``.  ``wsgiprogress-serve --call
examples.flask_upload:create_app`` calls the factory instead.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Dict, Mapping, Optional, Tuple

from flask import Flask, Request, abort, render_template, request

from flask_progress import Progress

progress = Progress()
#: Bytes read at a time: the upload never sits in memory whole.
CHUNK = 256 * 1024


class UploadRequest(Request):
    """Form fields that are not files stay small in memory.  Werkzeug before
    2.2.3 checks this per piece read only (CVE-2023-25577): there only
    ``MAX_CONTENT_LENGTH`` bounds them, so upgrade if you can."""

    max_form_memory_size = 500_000


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """The demo application; *config* overrides its defaults."""
    app = Flask(__name__)
    app.request_class = UploadRequest
    # every request, tracked or not, is capped; the progress setting answers a
    # tracked one with 413 before anything is read
    app.config.from_mapping(MAX_CONTENT_LENGTH=1 << 30, PROGRESS_MAX_REQUEST_SIZE="1G")
    app.config.from_mapping(config or {})
    progress.init_app(app)

    @app.get("/")
    def page() -> str:
        return render_template("upload.html")

    @app.post("/upload")
    def upload() -> Dict[str, Any]:
        filename, size = _receive()
        return {"filename": filename, "size": size}

    return app


def _receive() -> Tuple[str, int]:
    """The name and size of the uploaded file, spooled to a temporary file
    that is deleted at once: keep it with ``shutil.copyfileobj`` to a
    destination of your own."""
    if request.mimetype == "multipart/form-data":
        # werkzeug's parser has streamed a part this large to a temporary file
        part = request.files.get("file")
        if part is None:
            abort(400, "send the file in a form field named 'file'")
        part.stream.seek(0, os.SEEK_END)
        return part.filename or "file", part.stream.tell()
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(request.stream, spool, CHUNK)
        return "request body", spool.tell()


#: For servers given ``module:app``; ``flask --app`` finds it too.
app = create_app()
