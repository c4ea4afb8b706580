"""What only wsgiprogress.server does with uploads: it refuses a chunked body
when it crosses ``max_request_body_size`` (the middleware can only refuse a
declared size), and many concurrent uploads on its thread pool end consistent.

The scenarios every server shares (progress during slow uploads and
downloads, final counts, failures, aborted clients, an oversize declared
size) are in ``test_live_upload.py``."""
from __future__ import annotations

import time
from typing import Any, Dict, Iterable, Iterator

import pytest

from server_apps import read_all
from server_support import (
    MiB,
    SlowUpload,
    received_while,
    running,
    wait_for_state,
    watch,
)

LIMIT = 4 * MiB


def reading_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the body, then works a little so ``processing`` can be seen."""
    total = read_all(environ)
    time.sleep(0.3)
    body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running(reading_app, max_request_body_size=LIMIT * 4) as (_, port):
        yield port


def test_oversize_chunked_body_is_an_error_when_it_crosses_the_limit(port: int) -> None:
    client = SlowUpload(port, "/upload?X-Progress-ID=too-large-chunked", LIMIT * 8,
                        chunked=True, delay=0.02)
    client.start()
    seen = watch(port, "too-large-chunked", until=lambda: False, interval=0.03)
    client.join(30)
    assert len(received_while(seen, "uploading")) >= 2
    final = seen[-1]
    assert (final["state"], final["reason"], final["status"]) == ("error", "too_large", 413)
    assert LIMIT * 3 < final["received"] <= LIMIT * 4  # waitress refuses at the limit


def test_many_concurrent_uploads_end_consistent() -> None:
    with running(reading_app, threads=8) as (server, port):
        clients = [SlowUpload(port, f"/u?X-Progress-ID=concurrent-{n:03d}", 200_000 + n,
                              piece=50_000, delay=0.005) for n in range(40)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
        for n, client in enumerate(clients):
            assert client.reply.endswith(str(200_000 + n).encode())
            answer = wait_for_state(port, f"concurrent-{n:03d}", ("done",))
            assert answer["received"] == answer["size"] == 200_000 + n
        assert server.progress_store.counts()["running"] == 0
