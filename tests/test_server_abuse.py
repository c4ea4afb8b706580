"""Bad input against wsgiprogress.server: the request still gets a proper
answer, progress degrades at most, and nothing leaks."""
from __future__ import annotations

import socket
import threading
from typing import Any, Dict, Iterable, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server_support import HOST, exchange, probe, running, wait_for_state


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def test_huge_headers_get_431_and_track_nothing() -> None:
    with running(app, max_request_header_size=8192) as (server, port):
        request = (b"POST /u?X-Progress-ID=huge-headers HTTP/1.1\r\nHost: t\r\n"
                   + b"X-Filler: " + b"f" * 20000 + b"\r\nContent-Length: 2\r\n\r\nok")
        reply = exchange(port, request, read_for=3)
        assert reply.split(b" ", 2)[1] == b"431"
        assert probe(port, "huge-headers")["state"] == "unknown"
        assert server.progress_store.counts() == {"running": 0, "finished": 0}


def test_broken_chunk_framing_is_an_http_error() -> None:
    with running(app) as (_, port):
        request = (b"POST /u?X-Progress-ID=bad-chunks HTTP/1.1\r\nHost: t\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\n")
        reply = exchange(port, request, read_for=3)
        assert reply.startswith(b"HTTP/1.1 400 ")
        entry = wait_for_state(port, "bad-chunks", ("error",))
        assert (entry["reason"], entry["status"], entry["received"]) == ("http_error", 400, 4)


def test_duplicate_ids_in_a_flood_track_one_request_only() -> None:
    release = threading.Event()

    def slow(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = environ["wsgi.input"].read()
        release.wait(10)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    with running(slow, threads=8) as (server, port):
        replies: List[bytes] = []
        request = (b"POST /u?X-Progress-ID=same-id-flood HTTP/1.1\r\nHost: t\r\n"
                   b"Content-Length: 3\r\n\r\nabc")
        clients = [threading.Thread(target=lambda: replies.append(
            exchange(port, request, read_for=15, until=b"abc"))) for _ in range(40)]
        for client in clients:
            client.start()
        wait_for_state(port, "same-id-flood", ("processing",))
        assert server.progress_store.counts()["running"] == 1
        release.set()
        for client in clients:
            client.join(20)
        assert len(replies) == 40 and all(r.endswith(b"abc") for r in replies)
        assert wait_for_state(port, "same-id-flood", ("done",))["received"] == 3


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=600))
def test_generated_garbage_never_breaks_the_server(raw: bytes) -> None:
    with running(app, threads=2) as (_, port):
        exchange(port, b"POST /u?X-Progress-ID=garbage-" + raw[:40].hex().encode()
                 + b" HTTP/1.1\r\n" + raw + b"\r\n\r\n", read_for=0.3)
        # the server still answers ordinary requests and probes afterwards
        assert probe(port, "after-garbage")["state"] == "unknown"
        reply = exchange(port, b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok",
                         until=b"\r\n\r\nok")
        assert reply.startswith(b"HTTP/1.1 200 ")


def test_many_connections_that_vanish_leave_no_running_entries() -> None:
    with running(app, threads=4) as (server, port):
        for n in range(60):
            sock = socket.create_connection((HOST, port), timeout=5)
            sock.sendall(f"POST /u?X-Progress-ID=vanish-{n:04d} HTTP/1.1\r\nHost: t\r\n"
                         f"Content-Length: 100000\r\n\r\n".encode() + b"x" * (n * 100))
            sock.close()
        for n in range(60):
            entry = wait_for_state(port, f"vanish-{n:04d}", ("error", "unknown"))
            assert entry["state"] == "unknown" or entry["reason"] == "aborted"
        assert server.progress_store.counts()["running"] == 0
