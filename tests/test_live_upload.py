"""Live progress on real sockets, one suite for every server: our server
(which counts the bytes as they arrive), and :class:`ProgressMiddleware`
under werkzeug's threaded server and under gunicorn with one worker (which
stream the body to the application, so the middleware sees it arrive).

Every server runs :func:`server_support.live_app` with the same limits, and
starts once for the module.  gunicorn's ``sync`` worker handles one
connection at a time: a probe sent during an upload waits in the listen
backlog and is answered once the upload is over, so it runs only the
scenarios that look at the end of a request (``every_server``); the others
need a probe answered *during* a request.
"""
from __future__ import annotations

import gc
import socket
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Tuple

import pytest

from gunicorn_support import running_gunicorn
from server_support import (
    DOWNLOAD_SIZE,
    HOST,
    LIVE_LIMIT,
    MiB,
    SlowUpload,
    live_app,
    open_fds,
    probe,
    progress_app,
    received_while,
    running,
    running_werkzeug,
    status_of,
    wait_for_state,
    wait_until,
    watch,
)


class Server(NamedTuple):
    """A running server under test: its name, its port, how many descriptors
    the process that serves has open, and the HTTP versions its status lines
    carry (werkzeug 2.0 answers HTTP/1.0)."""

    name: str
    port: int
    open_fds: Callable[[], int]
    versions: Tuple[bytes, ...] = (b"HTTP/1.1",)

    def status(self, reply: bytes) -> int:
        """The status code of *reply*; 0 if none, or in another HTTP version."""
        return status_of(reply) if reply.partition(b" ")[0] in self.versions else 0


@pytest.fixture(scope="module")
def our_server() -> Iterator[Server]:
    with running(live_app, max_request_body_size=LIVE_LIMIT, methods="POST GET") as (_, port):
        yield Server("our-server", port, open_fds)


@pytest.fixture(scope="module")
def werkzeug_server() -> Iterator[Server]:
    with running_werkzeug(progress_app()) as port:
        yield Server("werkzeug", port, open_fds, (b"HTTP/1.0", b"HTTP/1.1"))


def _gunicorn(factory: pytest.TempPathFactory, worker_class: str,
              *extra: str) -> Iterator[Server]:
    log = factory.mktemp("gunicorn") / f"{worker_class}.log"
    with running_gunicorn(log, "server_support:progress_app()", worker_class,
                          *extra) as gunicorn:

        def worker_fds() -> int:
            workers = gunicorn.workers()
            assert len(workers) == 1, f"expected one worker, found {workers}"
            return open_fds(workers[0])

        yield Server(f"gunicorn-{worker_class}", gunicorn.port, worker_fds)


@pytest.fixture(scope="module")
def gthread_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _gunicorn(tmp_path_factory, "gthread", "--threads", "4")


@pytest.fixture(scope="module")
def sync_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _gunicorn(tmp_path_factory, "sync")


SERVERS: Dict[str, str] = {
    "our-server": "our_server",
    "werkzeug": "werkzeug_server",
    "gunicorn-gthread": "gthread_server",
    "gunicorn-sync": "sync_server",
}
#: The servers that answer a probe while another request is running.
LIVE = ("our-server", "werkzeug", "gunicorn-gthread")
#: For scenarios that look only at how a request ended.
every_server = pytest.mark.parametrize("server", list(SERVERS), indirect=True)


@pytest.fixture(scope="module", params=LIVE)
def server(request: pytest.FixtureRequest) -> Server:
    """Each server in turn (the ``LIVE`` ones unless a test says ``every_server``)."""
    return request.getfixturevalue(SERVERS[request.param])  # type: ignore[no-any-return]


def upload(server: Server, target: str, size: int, **options: object) -> SlowUpload:
    """A finished :class:`SlowUpload` of *size* bytes to *target*."""
    client = SlowUpload(server.port, target, size, **options)  # type: ignore[arg-type]
    client.start()
    client.join(30)
    assert not client.is_alive(), "the upload did not end within 30 s"
    return client


# --- progress seen while the body arrives --------------------------------------------

@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("in_header", [False, True], ids=["query-id", "header-id"])
def test_received_grows_while_the_body_arrives(server: Server, chunked: bool,
                                               in_header: bool) -> None:
    progress_id = f"grows-{int(chunked)}{int(in_header)}"
    size = 8 * MiB
    target, headers = "/upload", (f"X-Progress-ID: {progress_id}",)
    if not in_header:
        target, headers = f"/upload?X-Progress-ID={progress_id}", ()
    client = SlowUpload(server.port, target, size, piece=256 * 1024, delay=0.03,
                        chunked=chunked, headers=headers)
    client.start()
    seen = watch(server.port, progress_id, until=lambda: False, interval=0.03)
    client.join(30)
    uploading = received_while(seen, "uploading")
    assert len(uploading) >= 3 and uploading == sorted(uploading), seen
    # a chunked body may have all its data in and still wait for its last chunk
    assert all(0 < value < size or (chunked and value == size) for value in uploading), seen
    states = [a["state"] for a in seen if a["state"] != "unknown"]
    assert "processing" in states and states[-1] == "done", states
    assert states.index("processing") > states.index("uploading")
    while_uploading = {a["size"] for a in seen if a["state"] == "uploading"}
    assert while_uploading == ({None} if chunked else {size})
    processing = next(a for a in seen if a["state"] == "processing")
    assert processing["received"] == processing["size"] == size, processing
    final = seen[-1]
    assert (final["received"], final["size"], final["status"], final["sent"]) == (
        size, size, 200, len(str(size))), final
    assert final["speed"] > 0 and final["eta"] == 0.0, final
    assert client.reply.endswith(str(size).encode()), client.reply[:300]


@pytest.mark.parametrize("dialect, running_state, size_key", [
    pytest.param("nginx", "uploading", "size", id="nginx"),
    pytest.param("lighttpd", "running", "request_size", id="lighttpd"),
])
def test_dialects_over_the_wire(server: Server, dialect: str, running_state: str,
                                size_key: str) -> None:
    progress_id = f"dialect-{dialect}"
    client = SlowUpload(server.port, f"/upload?X-Progress-ID={progress_id}", 4 * MiB,
                        piece=256 * 1024, delay=0.03)
    client.start()
    answers = watch(server.port, progress_id, until=lambda: False,
                    query=f"&dialect={dialect}")
    client.join(30)
    running_values = [a["received"] for a in answers if a["state"] == running_state]
    assert len(set(running_values)) >= 2 and running_values == sorted(running_values), answers
    assert all(a[size_key] == 4 * MiB for a in answers if a["state"] == running_state)
    assert answers[-1]["state"] == "done", answers[-1]


def test_eta_counts_down_while_uploading(server: Server) -> None:
    client = SlowUpload(server.port, "/upload?X-Progress-ID=eta-upload-1", 6 * MiB, delay=0.03)
    client.start()
    seen = watch(server.port, "eta-upload-1", until=lambda: False, interval=0.05)
    client.join(30)
    etas = [a["eta"] for a in seen if a["state"] == "uploading" and a["eta"] is not None]
    assert len(etas) >= 3 and etas[-1] < etas[0], etas


# --- how a request ends ------------------------------------------------------------

@every_server
def test_uploads_end_done_with_exact_counts(server: Server) -> None:
    assert probe(server.port, "never-seen")["state"] == "unknown"
    for progress_id, size in (("exact-upload-1", 3 * MiB + 12345), ("exact-upload-2", 100_000)):
        client = upload(server, f"/upload?X-Progress-ID={progress_id}", size, delay=0.005)
        assert client.error is None, client.error
        body = str(size).encode()
        assert server.status(client.reply) == 200 and client.reply.endswith(body), \
            client.reply[:300]
        entry = wait_for_state(server.port, progress_id, ("done", "error"))
        assert (entry["state"], entry["received"], entry["size"], entry["status"],
                entry["reason"]) == ("done", size, size, 200, None), entry
        assert entry["sent"] == entry["response_size"] == len(body), entry
        assert entry["finished"] is not None and entry["finished"] >= entry["started"], entry


@every_server
@pytest.mark.parametrize("path, reason, status", [
    pytest.param("/fail", "app_error", 500, id="app-exception"),
    pytest.param("/reject", "http_error", 400, id="http-error"),
])
def test_application_failures(server: Server, path: str, reason: str, status: int) -> None:
    progress_id = f"failure{path.replace('/', '-')}"
    client = upload(server, f"{path}?X-Progress-ID={progress_id}", 300_000, delay=0)
    assert server.status(client.reply) == status, client.reply[:300]
    entry = wait_for_state(server.port, progress_id, ("error", "done"))
    assert (entry["state"], entry["reason"], entry["status"], entry["received"]) == (
        "error", reason, status, 300_000), entry
    assert probe(server.port, "still-serving")["state"] == "unknown"


@every_server
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_client_leaving_mid_body_is_aborted_without_leaks(server: Server, reset: bool) -> None:
    gc.collect()
    before = server.open_fds()
    for attempt in range(3):
        progress_id = f"aborted-{int(reset)}-{attempt}"
        upload(server, f"/upload?X-Progress-ID={progress_id}", 8 * MiB, delay=0.005,
               abort_after=MiB, reset=reset)
        entry = wait_for_state(server.port, progress_id, ("error", "done"), deadline=10)
        assert (entry["state"], entry["reason"]) == ("error", "aborted"), entry
        # a reset drops what the kernel held unread: some bytes, never more than sent
        least = 1 if reset else 256 * 1024
        assert least <= entry["received"] <= MiB and entry["size"] == 8 * MiB, entry

    def descriptors_closed() -> bool:
        gc.collect()
        return server.open_fds() <= before

    wait_until(descriptors_closed, 5, interval=0.05,
               message=lambda: f"{server.open_fds()} descriptors open, {before} before")
    # and the server goes on serving
    client = upload(server, f"/upload?X-Progress-ID=after-aborted-{int(reset)}", 200_000,
                    delay=0)
    assert client.reply.endswith(b"200000"), client.reply[:300]
    assert wait_for_state(server.port, f"after-aborted-{int(reset)}",
                          ("done",))["received"] == 200_000


@every_server
def test_declared_size_over_the_limit_is_413_at_once(server: Server) -> None:
    client = SlowUpload(server.port, "/upload?X-Progress-ID=too-large", 2 * LIVE_LIMIT,
                        delay=0.01)
    client.start()
    # never seen uploading: refused before a byte of the body is read
    entry = wait_for_state(server.port, "too-large", ("uploading", "error", "done"))
    client.join(30)
    assert (entry["state"], entry["reason"], entry["status"], entry["received"]) == (
        "error", "too_large", 413, 0), entry
    assert server.status(client.reply) == 413 or client.error is not None, client.reply[:300]


# --- progress seen while the response leaves ---------------------------------------

def _download(port: int, progress_id: str) -> List[Tuple[int, Dict[str, Any]]]:
    """GET /download as a slow reader (about 20 MB/s), probing every 0.1 s;
    (bytes the client had, probe answer) at each probe."""
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    samples = []
    try:
        sock.sendall(f"GET /download?X-Progress-ID={progress_id} HTTP/1.1\r\n"
                     "Host: t\r\n\r\n".encode())
        got = 0
        head = b""
        next_poll = 0.0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            got += len(data)
            if b"\r\n\r\n" not in head:
                head += data
            if b"\r\n\r\n" in head and got - head.index(b"\r\n\r\n") - 4 >= DOWNLOAD_SIZE:
                break
            if time.monotonic() >= next_poll:
                samples.append((got, probe(port, progress_id)))
                next_poll = time.monotonic() + 0.1
            time.sleep(0.003)  # paces the reader
    finally:
        sock.close()
    return samples


def test_sent_counts_what_left_the_server_during_a_download(server: Server) -> None:
    samples = _download(server.port, "download-01")
    final = wait_for_state(server.port, "download-01", ("done",))
    during = [(client, a["sent"]) for client, a in samples if a["state"] == "processing"]
    sent_values = sorted({sent for _, sent in during})
    assert len(sent_values) >= 3, samples
    # what was counted as sent is ahead of the client by the socket buffers
    # only: our server counts what the kernel accepted, not what the
    # application yielded into waitress's buffers
    assert all(sent - client < 8 * MiB for client, sent in during), during
    assert all(a["response_size"] == DOWNLOAD_SIZE for _, a in samples), samples
    assert (final["sent"], final["response_size"], final["status"]) == (
        DOWNLOAD_SIZE, DOWNLOAD_SIZE, 200), final
