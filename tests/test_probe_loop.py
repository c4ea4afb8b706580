"""Probes answered on the I/O loop: on the memory store a probe takes no
worker thread and no probe-lane thread, even when every worker is busy; on a
store that may block (Redis) it goes to the probe lane; answers keep their
order behind the requests pipelined before them."""
from __future__ import annotations

import socket
import threading
from typing import Any, Dict, Iterable, List, Optional

import pytest

from wsgiprogress import ProgressEntry, ProgressTable

from server_support import HOST, probe, read_to_close, running


class Recording(ProgressTable):
    """Remembers which thread read each entry."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.shared = shared
        self.readers: List[str] = []

    def read(self, progress_id: str) -> Optional[ProgressEntry]:
        self.readers.append(threading.current_thread().name)
        return super().read(progress_id)


def blocking_app(release: threading.Event) -> Any:
    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/block":
            release.wait(10)
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


def block(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
    return sock


@pytest.mark.parametrize("shared, lane", [
    pytest.param(False, False, id="memory-on-the-loop"),
    pytest.param(True, True, id="blocking-store-on-the-lane"),
])
def test_a_probe_is_answered_by_the_loop_or_the_lane(shared: bool, lane: bool) -> None:
    store = Recording(shared)
    release = threading.Event()
    with running(blocking_app(release), store=store, threads=1) as (_, port):
        busy = block(port)  # the only worker thread is taken
        try:
            assert probe(port, "loop-probe-0001")["state"] == "unknown"
        finally:
            release.set()
            busy.close()
    assert store.readers, "the probe never read the store"
    reader = store.readers[0]
    if lane:
        assert reader.startswith("waitress-"), reader  # a probe-lane thread
    else:
        assert reader == "test-waitress", reader  # the thread that runs the I/O loop


def test_pipelined_answers_keep_their_order() -> None:
    release = threading.Event()
    release.set()
    with running(blocking_app(release), threads=2) as (_, port):
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /progress?X-Progress-ID=pipelined-01 HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n"
                         b"GET /progress?X-Progress-ID=pipelined-02 HTTP/1.1\r\nHost: t\r\n"
                         b"Connection: close\r\n\r\n")
            answer = read_to_close(sock)
    order = [b"/first", b"pipelined-01", b"/third", b"pipelined-02"]
    positions = [answer.find(part) for part in order]
    assert -1 not in positions and positions == sorted(positions), answer[:2000]
    assert answer.count(b"HTTP/1.1 200 OK") == 4


def test_many_probes_on_many_connections_all_answered() -> None:
    release = threading.Event()
    with running(blocking_app(release), threads=1) as (_, port):
        busy = block(port)  # the only worker thread is taken: the loop answers
        socks = [socket.create_connection((HOST, port), timeout=10) for _ in range(16)]
        try:
            for n, sock in enumerate(socks):
                sock.sendall(b"GET /progress?X-Progress-ID=many-probes-%02d HTTP/1.1\r\n"
                             b"Host: t\r\n\r\n" % n)
            for sock in socks:
                answer = b""
                while b'"state": "unknown"' not in answer:
                    piece = sock.recv(4096)  # the socket's timeout bounds the wait
                    assert piece, answer
                    answer += piece
        finally:
            release.set()
            busy.close()
            for sock in socks:
                sock.close()
