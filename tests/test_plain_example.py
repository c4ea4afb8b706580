"""examples/plain_wsgi.py: tracked through WebTest, watched live under both
servers the README names, and started with the commands its docstring gives."""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, List

import pytest
import webtest

from server_support import (
    exchange,
    received_while,
    running,
    running_werkzeug,
    start_process,
    status_of,
    stop_process,
    wait_for_state,
    watched_upload,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from examples.plain_wsgi import app  # noqa: E402

MiB = 1024 * 1024


def test_a_tracked_upload_through_webtest() -> None:
    client = webtest.TestApp(app, lint=True)
    assert client.post("/upload?X-Progress-ID=plain-upload-1", b"x" * 100_000).text == \
        "100000 bytes\n"
    entry = client.get("/progress?X-Progress-ID=plain-upload-1").json
    assert (entry["state"], entry["received"], entry["size"]) == ("done", 100_000, 100_000)


@contextmanager
def on_waitress(wsgi_app: Any) -> Iterator[int]:
    with running(wsgi_app) as (_, port):
        yield port


@pytest.mark.parametrize("serve", [
    pytest.param(on_waitress, id="wsgiprogress-server"),
    pytest.param(running_werkzeug, id="werkzeug"),
])
def test_progress_is_seen_while_the_body_arrives(
        serve: Callable[[Any], ContextManager[int]]) -> None:
    size = 6 * MiB
    # one ID per server: the example's store outlives a test (our server serves
    # the application's own store), and a finished entry would end the watch at once
    progress_id = f"plain-slow-{serve.__name__.replace('_', '-')}"
    with serve(app) as port:
        client, answers = watched_upload(port, progress_id, size, piece=256 * 1024,
                                         delay=0.03)
        assert client.error is None, client.error
        assert client.reply.endswith(f"\r\n\r\n{size} bytes\n".encode()), client.reply[:300]
        growing = received_while(answers, "uploading")
        assert len(growing) >= 3, answers
        assert growing == sorted(set(growing)), growing
        entry = wait_for_state(port, progress_id, ("done",))
    # counted once: by the server on waitress, by the middleware on werkzeug
    assert (entry["received"], entry["size"], entry["status"]) == (size, size, 200)


LISTENING = re.compile(r"(?:Serving|Running) on http://127\.0\.0\.1:(\d+)")


@pytest.mark.parametrize("command", [
    pytest.param([sys.executable, "examples/plain_wsgi.py", "127.0.0.1", "0"], id="script"),
    pytest.param([sys.executable, "-m", "wsgiprogress", "--listen", "127.0.0.1:0",
                  "examples.plain_wsgi:app"], id="wsgiprogress-serve"),
])
def test_the_documented_commands_serve_it(command: List[str]) -> None:
    process, port = start_process(command, cwd=ROOT, pattern=LISTENING)
    try:
        body = b"x" * 300_000
        reply = exchange(port, b"POST /upload?X-Progress-ID=plain-cmd-1 HTTP/1.1\r\n"
                               b"Host: t\r\nContent-Length: 300000\r\n\r\n" + body,
                         read_for=5, until=b"bytes\n")
        assert status_of(reply) == 200 and reply.endswith(b"300000 bytes\n"), reply
        entry = wait_for_state(port, "plain-cmd-1", ("done",))
        assert (entry["received"], entry["size"]) == (300_000, 300_000)
    finally:
        assert stop_process(process) == 0


