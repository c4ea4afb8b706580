"""200 threads tracking at once through one middleware and one table: every
entry ends consistent, duplicates never share an entry, the capacity bound
holds exactly."""
from __future__ import annotations

import io
import sys
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional

from wsgiprogress import ProgressMiddleware, ProgressTable

THREADS = 200


def echo_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the body in small pieces, answers with twice as many bytes."""
    stream = environ["wsgi.input"]
    total = 0
    while True:
        piece = stream.read(97)
        if not piece:
            break
        total += len(piece)
    body = b"y" * (2 * total)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body[i:i + 1000] for i in range(0, len(body), 1000)]


def post(app: Any, progress_id: str, size: int) -> bytes:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "SCRIPT_NAME": "",
        "QUERY_STRING": "X-Progress-ID=" + progress_id, "CONTENT_LENGTH": str(size),
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.input": io.BytesIO(b"x" * size), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    result = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        if hasattr(result, "close"):  # an untracked request's plain list has none
            result.close()


def all_at_once(work: Callable[[int], None]) -> None:
    """Runs *work(n)* in THREADS threads released together; re-raises failures."""
    barrier = threading.Barrier(THREADS)
    errors: List[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(n)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_every_concurrent_upload_ends_with_its_own_exact_counts() -> None:
    table = ProgressTable()
    app = ProgressMiddleware(echo_app, store=table)
    sizes = {f"upload-{n:05d}": 1000 + 7919 * n for n in range(THREADS)}
    answers: Dict[str, int] = {}

    def upload(n: int) -> None:
        progress_id = f"upload-{n:05d}"
        answers[progress_id] = len(post(app, progress_id, sizes[progress_id]))

    all_at_once(upload)
    for progress_id, size in sizes.items():
        entry = table.get(progress_id)
        assert entry is not None
        assert (entry.state, entry.received, entry.size, entry.status) == \
            ("done", size, size, 200)
        assert entry.sent == entry.response_size == answers[progress_id] == 2 * size
        assert entry.finished is not None and entry.started is not None
        assert entry.finished >= entry.started
    assert table.counts() == {"running": 0, "finished": THREADS}


def test_racing_requests_with_one_id_track_exactly_one_at_a_time() -> None:
    table = ProgressTable()
    gate = threading.Event()
    tracked: List[Optional[object]] = []
    lock = threading.Lock()

    def slow_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with lock:
            tracked.append(environ.get("wsgiprogress.tracker"))
        environ["wsgi.input"].read()
        gate.wait(timeout=30)  # everyone is inside before anyone finishes
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = ProgressMiddleware(slow_app, store=table)
    threads = [threading.Thread(target=post, args=(app, "shared-id-000", 10))
               for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for _ in range(3000):
        with lock:
            if len(tracked) == THREADS:
                break
        threading.Event().wait(0.01)
    gate.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tracked) == THREADS
    assert sum(t is not None for t in tracked) == 1  # all others ran untracked
    entry = table.get("shared-id-000")
    assert entry is not None and (entry.state, entry.received) == ("done", 10)


def test_the_capacity_bound_holds_under_a_rush() -> None:
    table = ProgressTable(capacity=50)
    trackers: List[object] = []

    def begin(n: int) -> None:
        tracker = table.track(f"rush-{n:05d}", 10)
        if tracker is not None:
            trackers.append(tracker)

    all_at_once(begin)
    assert len(trackers) == 50
    assert len(table) == 50
    assert table.counts() == {"running": 50, "finished": 0}
