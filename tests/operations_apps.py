"""Applications for the operations tests: a slow application that reports
three steps over three seconds and reads the cancellation flag, and its
factory for gunicorn with the Redis backend (``WSGIPROGRESS_BACKEND``,
``WSGIPROGRESS_PREFIX``)."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, Iterable, List

from wsgiprogress import ProgressMiddleware, report

#: Seconds between two steps: the application reports at 0.5, 1.5 and 2.5 s
#: and answers at 3.0 s.
STEP = 1.0
#: The final response's body for a given request body.
RESULT = b"3 sweaters knitted from %d bytes of wool\n"
#: What the slow application saw, by the X-Run header of the request.
SEEN: Dict[str, List[str]] = {}
#: When it reported each step (``time.monotonic()``), by the X-Run header.
REPORTED: Dict[str, List[float]] = {}


def slow(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Three steps over three seconds; stops early when cancelled (409).
    Records what it saw in :data:`SEEN`, when it reported in :data:`REPORTED`."""
    run = environ.get("HTTP_X_RUN", "")
    seen = SEEN.setdefault(run, [])
    operation = environ["wsgiprogress.operation"]
    wool = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    pause = threading.Event()
    pause.wait(STEP / 2)
    for step in range(1, 4):
        if operation.cancelled:
            seen.append("cancelled")
            start_response("409 Conflict", [("Content-Type", "text/plain")])
            return [b"stopped: cancelled\n"]
        REPORTED.setdefault(run, []).append(time.monotonic())
        report(environ, step, 3, "Knitting sweaters")
        seen.append(f"step {step}")
        pause.wait(STEP if step < 3 else STEP / 2)
    body = RESULT % len(wool)
    start_response("201 Created", [("Content-Type", "text/plain; charset=utf-8"),
                                   ("Content-Length", str(len(body))),
                                   ("X-Sweaters", "3"), ("Set-Cookie", "yarn=red; Path=/")])
    return [body]


def big(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A slow application whose answer is ``BIG`` bytes, in pieces."""
    threading.Event().wait(0.3)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    piece = bytes(range(256)) * 256
    return (piece for _ in range(int(environ.get("HTTP_X_PIECES", "16"))))


def lingering(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reports one step of two, then works for a minute (a process to kill
    in the middle of its operation)."""
    report(environ, 1, 2, "Lingering")
    threading.Event().wait(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"lingered\n"]


def with_pid(app: Any) -> Any:
    """*app*, each answer saying which process gave it (``X-Worker``)."""
    def served(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def start(status: str, headers: List[Any], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Worker", str(os.getpid()))],
                                  exc_info)
        return app(environ, start)
    return served


def make_app() -> Any:
    """``gunicorn "operations_apps:make_app()"``: :func:`slow` with operations
    on the Redis backend, each answer naming its worker."""
    return with_pid(ProgressMiddleware(slow, operations=True,
                                       backend=os.environ["WSGIPROGRESS_BACKEND"],
                                       key_prefix=os.environ["WSGIPROGRESS_PREFIX"]))
