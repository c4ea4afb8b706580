"""
Upload demo: a page with a live progress bar.

Run it on our waitress server (progress counted as the bytes arrive)::

    wsgiprogress-serve --listen 127.0.0.1:8080 examples.upload_demo:app

or on werkzeug's threaded dev server behind the middleware::

    python3 examples/upload_demo.py [host] [port]

then open http://127.0.0.1:8080/ and upload a large file.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Iterable

import wsgiprogress
from wsgiprogress import ProgressMiddleware

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "upload_demo.html")
CLIENT = os.path.join(os.path.dirname(wsgiprogress.__file__), "static", "progress.js")


def _file(start_response: Any, path: str, content_type: str) -> Iterable[bytes]:
    with open(path, "rb") as f:
        body = f.read()
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Length", str(len(body)))])
    return [body]


def demo(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The page, the JS client, and an upload handler that discards the body."""
    path = environ.get("PATH_INFO", "")
    if path == "/" and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
        return _file(start_response, PAGE, "text/html; charset=utf-8")
    if path == "/static/progress.js":
        return _file(start_response, CLIENT, "application/javascript; charset=utf-8")
    if path == "/upload" and environ["REQUEST_METHOD"] == "POST":
        stream = environ["wsgi.input"]
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        total = 0
        while remaining > 0:  # read in pieces: never the whole file in memory
            piece = stream.read(min(65536, remaining))
            if not piece:
                break
            total += len(piece)
            remaining -= len(piece)
        body = f"{total} bytes".encode()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


#: The demo behind the middleware: under werkzeug it counts the upload; under
#: wsgiprogress-serve the server counts and the middleware stands aside.
app = ProgressMiddleware(demo)


def main(argv: "list[str]" = sys.argv) -> None:
    from werkzeug.serving import run_simple

    host = argv[1] if len(argv) > 1 else os.environ.get("DEMO_HOST", "127.0.0.1")
    port = int(argv[2] if len(argv) > 2 else os.environ.get("DEMO_PORT", "8080"))
    run_simple(host, port, app, threaded=True)


if __name__ == "__main__":
    main()
