"""
Pyramid example: an upload page with a live progress bar.

From the repository root (``PYTHONPATH=.`` lets PasteDeploy import
``examples.pyramid_app``)::

    PYTHONPATH=. pserve examples/pyramid_app/development.ini

then open http://127.0.0.1:6543/ and upload a large file.  ``development.ini``
serves the application on :mod:`wsgiprogress.server`, which counts the bytes
as they arrive, through a pipeline with the wsgiprogress filter, which counts
instead when another server runs the pipeline
(``gunicorn --paste examples/pyramid_app/development.ini``).

The application itself knows nothing about progress: the page posts the form
to ``/upload?X-Progress-ID=<id>`` and polls ``/progress``, both handled in
front of it.
"""
from __future__ import annotations

import os
from typing import IO, Any, Dict, Optional

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import FileResponse

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "upload.html")


def page(request: Request) -> FileResponse:
    """The upload form with its progress bar."""
    return FileResponse(PAGE, request=request, content_type="text/html")


def upload(request: Request) -> Dict[str, Any]:
    """Stores a form's ``file`` field (the page, or ``curl -F file=@big.iso``),
    else the raw body; here it only counts the bytes, reading them in pieces
    as a real handler would."""
    # only a multipart form is parsed (its file parts are spooled to disk); any
    # other body is streamed: WebOb would parse an urlencoded one in memory
    multipart = request.content_type == "multipart/form-data"
    field = request.POST.get("file") if multipart else None
    name: Optional[str] = getattr(field, "filename", None)
    stream: IO[bytes] = field.file if name is not None else request.body_file
    size = 0
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        size += len(piece)
    return {"bytes": size, "name": name}


def main(global_config: Dict[str, str], **settings: str) -> Any:
    """The PasteDeploy app factory: ``use = call:examples.pyramid_app:main``."""
    with Configurator(settings=settings) as config:
        config.add_route("page", "/")
        config.add_route("upload", "/upload")
        config.add_view(page, route_name="page", request_method=("GET", "HEAD"))
        config.add_view(upload, route_name="upload", request_method="POST", renderer="json")
        # the JS client, straight from the installed package
        config.add_static_view("static", "wsgiprogress:static")
    return config.make_wsgi_app()
