"""Small WSGI applications that tests serve in another process
(``wsgiprogress-serve server_apps:app`` from this directory)."""
from __future__ import annotations

from typing import Any, Dict, Iterable


def read_stream(stream: Any) -> int:
    """Read *stream* to its end in 64 KiB pieces, as upload handlers do; its size."""
    total = 0
    while True:
        piece = stream.read(65536)
        if not piece:
            return total
        total += len(piece)


def read_all(environ: Dict[str, Any]) -> int:
    """Read the request body as :func:`read_stream` does; its size."""
    return read_stream(environ["wsgi.input"])


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the whole body in pieces and answers how many bytes came."""
    body = str(read_all(environ)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def create_app() -> Any:
    """An app factory, for ``--call``."""
    return app


def app_factory(global_conf: Dict[str, str], **local_conf: str) -> Any:
    """A PasteDeploy app factory."""
    return app
