"""ProgressMiddleware under werkzeug's threaded server, which streams the
body to the application: progress observed *during* slow uploads."""
from __future__ import annotations

import json
import time
from http.client import HTTPConnection
from typing import Any, Dict, Iterable, Iterator

import pytest
from werkzeug.wsgi import get_input_stream

from wsgiprogress import ProgressMiddleware

from server_support import (
    HOST,
    SlowUpload,
    probe,
    received_while,
    running_werkzeug,
    status_of,
    wait_for_state,
    watch,
)

MiB = 1024 * 1024


def reading_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the body in 64 KiB pieces, as an upload handler does."""
    stream = get_input_stream(environ)
    total = 0
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        total += len(piece)
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("application failure")
    body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = ProgressMiddleware(reading_app, max_request_size=64 * MiB)
    with running_werkzeug(app) as port:
        yield port


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("in_header", [False, True], ids=["query-id", "header-id"])
def test_received_grows_while_the_app_reads(port: int, chunked: bool, in_header: bool) -> None:
    progress_id = f"wz-{int(chunked)}{int(in_header)}-upload"
    size = 8 * MiB
    target, headers = "/upload", (f"X-Progress-ID: {progress_id}",)
    if not in_header:
        target, headers = f"/upload?X-Progress-ID={progress_id}", ()
    client = SlowUpload(port, target, size, piece=256 * 1024, delay=0.025,
                        chunked=chunked, headers=headers)
    client.start()
    seen = watch(port, progress_id, until=lambda: False, interval=0.05)
    client.join(30)
    uploading = received_while(seen, "uploading")
    assert len(uploading) >= 3 and uploading == sorted(uploading), seen
    assert {a["size"] for a in seen if a["state"] == "uploading"} == (
        {None} if chunked else {size})
    final = seen[-1]
    assert (final["state"], final["received"], final["size"], final["status"]) == (
        "done", size, size, 200)
    assert client.reply.endswith(str(size).encode())


@pytest.mark.parametrize("dialect, running_state, size_key", [
    pytest.param("nginx", "uploading", "size", id="nginx"),
    pytest.param("lighttpd", "running", "request_size", id="lighttpd"),
])
def test_dialects_over_the_wire(port: int, dialect: str, running_state: str,
                                size_key: str) -> None:
    progress_id = f"wz-dialect-{dialect}"
    client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", 4 * MiB,
                        piece=256 * 1024, delay=0.03)
    client.start()
    answers = []
    for _ in range(400):
        conn = HTTPConnection(HOST, port, timeout=5)  # werkzeug closes after each answer
        conn.request("GET", f"/progress?X-Progress-ID={progress_id}&dialect={dialect}")
        answers.append(json.loads(conn.getresponse().read()))
        conn.close()
        if answers[-1]["state"] in ("done", "error"):
            break
        time.sleep(0.03)
    client.join(30)
    running = [a["received"] for a in answers if a["state"] == running_state]
    assert len(set(running)) >= 2 and running == sorted(running)
    assert all(a[size_key] == 4 * MiB for a in answers if a["state"] == running_state)
    assert answers[-1]["state"] == "done"


def test_client_leaving_mid_body_is_aborted(port: int) -> None:
    client = SlowUpload(port, "/upload?X-Progress-ID=wz-aborted-1", 8 * MiB,
                        delay=0.005, abort_after=MiB)
    client.start()
    client.join(30)
    entry = wait_for_state(port, "wz-aborted-1", ("error",))
    assert entry["reason"] == "aborted" and 0 < entry["received"] <= MiB


def test_application_exception_is_app_error_and_serving_goes_on(port: int) -> None:
    client = SlowUpload(port, "/fail?X-Progress-ID=wz-app-error", 100_000, delay=0)
    client.start()
    client.join(30)
    assert status_of(client.reply) == 500
    entry = wait_for_state(port, "wz-app-error", ("error",))
    assert (entry["reason"], entry["status"], entry["received"]) == ("app_error", 500, 100_000)
    assert probe(port, "wz-still-fine")["state"] == "unknown"


def test_declared_size_over_the_limit_is_413_at_once(port: int) -> None:
    client = SlowUpload(port, "/upload?X-Progress-ID=wz-too-large", 100 * MiB, delay=0.01)
    client.start()
    entry = wait_for_state(port, "wz-too-large", ("error",))
    client.join(30)
    assert (entry["reason"], entry["status"], entry["received"]) == ("too_large", 413, 0)
    assert status_of(client.reply) == 413 or client.error is not None
