"""
The smallest WSGI application with upload progress.

Serve it on werkzeug's threaded server, where the middleware counts the body
as the application reads it::

    python3 examples/plain_wsgi.py [host] [port]

or on wsgiprogress's waitress, which counts the bytes as they arrive (the
middleware stands aside)::

    wsgiprogress-serve --listen 127.0.0.1:8080 examples.plain_wsgi:app

Upload with an ID (a POST: only POSTs are tracked by default) and poll its
progress from another terminal::

    curl -X POST -T big.iso 'http://127.0.0.1:8080/upload?X-Progress-ID=my-upload-1'
    curl 'http://127.0.0.1:8080/progress?X-Progress-ID=my-upload-1'
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Iterable, List

from wsgiprogress import ProgressMiddleware


def upload(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the request body in pieces, as an upload handler does, and says
    how many bytes came."""
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    received = 0
    while remaining > 0:
        piece = environ["wsgi.input"].read(min(remaining, 65536))
        if not piece:
            break
        received += len(piece)
        remaining -= len(piece)
    body = f"{received} bytes\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


app = ProgressMiddleware(upload)


def main(argv: List[str] = sys.argv) -> None:
    from werkzeug.serving import run_simple

    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    port = int(argv[2]) if len(argv) > 2 else 8080
    run_simple(host, port, app, threaded=True)


if __name__ == "__main__":
    main()
