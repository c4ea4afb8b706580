"""
Resumable upload demo: a page whose upload survives a network drop.

The page sends the file with the JS client's resumable mode
(``wsgiprogress/static/resumable.js``, the IETF resumable-upload draft): in
chunks, and after a drop from the offset the server kept.  The application
below sees one whole request, once, when the last byte is stored.

Run it on our waitress server::

    wsgiprogress-serve --listen 127.0.0.1:8080 examples.resumable_upload:app

or on werkzeug's threaded dev server behind the middleware::

    python3 examples/resumable_upload.py [host] [port]

then open http://127.0.0.1:8080/, pick a large file, and pull the network
cable (or tick "Offline" in the browser's developer tools) while it uploads.
Uploads are stored in ``$RESUMABLE_DIR``, by default a directory under the
system's temporary directory.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Dict, Iterable
from urllib.parse import unquote

import wsgiprogress
from wsgiprogress import ProgressMiddleware, keys

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(os.path.dirname(wsgiprogress.__file__), "static")
FILES = {
    "/": (os.path.join(HERE, "resumable_upload.html"), "text/html; charset=utf-8"),
    "/static/progress.js": (os.path.join(STATIC, "progress.js"),
                            "application/javascript; charset=utf-8"),
    "/static/resumable.js": (os.path.join(STATIC, "resumable.js"),
                             "application/javascript; charset=utf-8"),
}
UPLOADS = os.environ.get("RESUMABLE_DIR") or os.path.join(tempfile.gettempdir(),
                                                          "wsgiprogress-resumable-demo")


def demo(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The page, the JS client, and the upload handler: it gets the whole file
    once (``wsgi.input``, read from the stored upload) and says what it got."""
    path = environ.get("PATH_INFO", "")
    if path in FILES and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
        filename, content_type = FILES[path]
        with open(filename, "rb") as f:
            body = f.read()
        start_response("200 OK", [("Content-Type", content_type),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/upload" and environ["REQUEST_METHOD"] == "POST":
        stream = environ["wsgi.input"]
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        total = 0
        while remaining > 0:  # in pieces: never the whole file in memory
            piece = stream.read(min(65536, remaining))
            if not piece:
                break
            total += len(piece)
            remaining -= len(piece)
        name = unquote(environ.get("HTTP_X_FILENAME", "the file"))
        how = "in one piece" if keys.UPLOAD not in environ else "resumably"
        body = f"Received {name}: {total} bytes, {how}".encode()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


#: The demo behind the middleware, with resumable uploads on: under werkzeug
#: the middleware serves them; under wsgiprogress-serve the server adopts its
#: settings and serves them itself.
app = ProgressMiddleware(demo, resumable_dir=UPLOADS)


def main(argv: "list[str]" = sys.argv) -> None:
    from werkzeug.serving import run_simple

    host = argv[1] if len(argv) > 1 else os.environ.get("DEMO_HOST", "127.0.0.1")
    port = int(argv[2] if len(argv) > 2 else os.environ.get("DEMO_PORT", "8080"))
    run_simple(host, port, app, threaded=True)


if __name__ == "__main__":
    main()
