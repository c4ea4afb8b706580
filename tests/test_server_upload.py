"""Live progress under wsgiprogress.server, observed by a poller *during*
slow uploads and downloads on real sockets."""
from __future__ import annotations

import gc
import time
from typing import Any, Dict, Iterable, Iterator

import pytest

from server_apps import read_all
from server_support import (
    HOST,
    SlowUpload,
    open_fds,
    probe,
    received_while,
    running,
    wait_for_state,
    watch,
)

MiB = 1024 * 1024
LIMIT = 4 * MiB


def reading_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the body, then works a little so ``processing`` can be seen."""
    total = read_all(environ)
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("application failure")
    time.sleep(0.3)
    body = str(total).encode()
    status = "400 Bad Request" if environ["PATH_INFO"] == "/reject" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running(reading_app, max_request_body_size=LIMIT * 4) as (_, port):
        yield port


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("in_header", [False, True], ids=["query-id", "header-id"])
def test_received_grows_while_the_body_arrives(port: int, chunked: bool,
                                               in_header: bool) -> None:
    progress_id = f"live-{int(chunked)}{int(in_header)}-upload"
    size = 8 * MiB
    target, headers = "/upload", (f"X-Progress-ID: {progress_id}",)
    if not in_header:
        target, headers = f"/upload?X-Progress-ID={progress_id}", ()
    client = SlowUpload(port, target, size, piece=256 * 1024, delay=0.03,
                        chunked=chunked, headers=headers)
    client.start()
    seen = watch(port, progress_id, until=lambda: False, interval=0.03)
    client.join(30)
    uploading = received_while(seen, "uploading")
    assert len(uploading) >= 3, seen
    assert uploading == sorted(uploading)
    # a chunked body may have all its data in and still wait for its last chunk
    assert uploading[-1] <= size if chunked else uploading[-1] < size
    states = [a["state"] for a in seen if a["state"] != "unknown"]
    assert states.index("processing") > states.index("uploading")
    assert "processing" in states and states[-1] == "done", states
    while_uploading = [a["size"] for a in seen if a["state"] == "uploading"]
    assert set(while_uploading) == ({None} if chunked else {size})
    processing = next(a for a in seen if a["state"] == "processing")
    assert processing["received"] == processing["size"] == size
    final = seen[-1]
    assert (final["received"], final["size"], final["status"], final["sent"]) == (
        size, size, 200, len(str(size)))
    assert client.reply.endswith(str(size).encode())
    assert final["speed"] > 0 and final["eta"] == 0.0


def test_eta_counts_down_while_uploading(port: int) -> None:
    client = SlowUpload(port, "/upload?X-Progress-ID=eta-upload-1", 6 * MiB, delay=0.03)
    client.start()
    seen = watch(port, "eta-upload-1", until=lambda: False, interval=0.05)
    client.join(30)
    etas = [a["eta"] for a in seen if a["state"] == "uploading" and a["eta"] is not None]
    assert len(etas) >= 3 and etas[-1] < etas[0]


def test_oversize_content_length_is_an_error_at_once(port: int) -> None:
    client = SlowUpload(port, "/upload?X-Progress-ID=too-large-cl", LIMIT * 8, delay=0.01)
    client.start()
    answer = wait_for_state(port, "too-large-cl", ("uploading", "error"))
    client.join(30)
    assert (answer["state"], answer["reason"], answer["status"], answer["received"]) == (
        "error", "too_large", 413, 0)
    assert client.reply.startswith(b"HTTP/1.1 413 ") or client.error is not None


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


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_leaving_mid_body_is_aborted_without_leaks(port: int, reset: bool) -> None:
    gc.collect()
    before = open_fds()
    for attempt in range(3):
        progress_id = f"aborted-{int(reset)}-{attempt}"
        client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", 8 * MiB,
                            delay=0.005, abort_after=MiB, reset=reset)
        client.start()
        client.join(30)
        answer = wait_for_state(port, progress_id, ("error",))
        assert (answer["reason"], answer["received"] >= 256 * 1024) == ("aborted", True)
        assert answer["received"] <= MiB
    deadline = time.monotonic() + 5
    while open_fds() > before and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert open_fds() <= before


@pytest.mark.parametrize("path, reason, status", [
    pytest.param("/fail", "app_error", 500, id="app-exception"),
    pytest.param("/reject", "http_error", 400, id="http-error"),
])
def test_application_failures(port: int, path: str, reason: str, status: int) -> None:
    progress_id = f"failure{path.replace('/', '-')}"
    client = SlowUpload(port, f"{path}?X-Progress-ID={progress_id}", 300_000, delay=0)
    client.start()
    client.join(30)
    assert client.reply.startswith(f"HTTP/1.1 {status} ".encode())
    answer = wait_for_state(port, progress_id, ("error",))
    assert (answer["reason"], answer["status"], answer["received"]) == (reason, status, 300_000)
    assert probe(port, "still-serving")["state"] == "unknown"


def test_sent_counts_what_left_the_server_during_a_download() -> None:
    size = 24 * MiB

    def download(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", str(size))])
        return (b"d" * 65536 for _ in range(size // 65536))

    with running(download, methods="GET") as (_, port):
        import socket
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /file?X-Progress-ID=download-01 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = 0
        samples = []
        next_poll = 0.0
        deadline = time.monotonic() + 30
        while got < size + 60 and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            got += len(data)
            if time.monotonic() >= next_poll:
                samples.append((got, probe(port, "download-01")))
                next_poll = time.monotonic() + 0.1
            time.sleep(0.003)  # a slow reader: about 20 MB/s
        sock.close()
        final = wait_for_state(port, "download-01", ("done",))
    during = [(client, a["sent"]) for client, a in samples if a["state"] == "processing"]
    sent_values = sorted({sent for _, sent in during})
    assert len(sent_values) >= 3, samples
    # what the kernel accepted is ahead of the client by its buffers only,
    # far less than what the application yielded into waitress's buffers
    assert all(sent - client < 8 * MiB for client, sent in during), during
    assert all(a["response_size"] == size for _, a in samples)
    assert (final["sent"], final["response_size"], final["status"]) == (size, size, 200)


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
        assert server.progress_table.counts()["running"] == 0
