"""HTTP behaviour of wsgiprogress.server on real sockets: 100-continue,
pipelining, probes while every worker is busy, no double counting."""
from __future__ import annotations

import json
import socket
import threading
from typing import Any, Iterable, List

import pytest

from wsgiprogress import ProgressMiddleware, ProgressTable

from server_support import (
    exchange,
    probe,
    read_response,
    read_to_close,
    running,
    wait_for_state,
)

LIMIT = 1024 * 1024


def echo_app(environ: dict, start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    info = {
        "length": len(body),
        "server_counts": environ.get("wsgiprogress.server_counts"),
        "tracked": environ.get("wsgiprogress.tracker") is not None,
    }
    payload = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(payload)))])
    return [payload]


def post(progress_id: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST /upload?X-Progress-ID={progress_id} HTTP/1.1", "Host: t",
            f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture(scope="module")
def server_port() -> Iterable[int]:
    with running(echo_app, max_request_body_size=LIMIT) as (_, port):
        yield port


def test_oversize_with_expect_gets_413_instead_of_100(server_port: int) -> None:
    # waitress sends 100 Continue here and then reads ~the whole limit
    head = post("oversize01", b"", "Expect: 100-continue").replace(
        b"Content-Length: 0", f"Content-Length: {LIMIT * 50}".encode())
    reply = exchange(server_port, head, read_for=2.0)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:80]
    assert b"100 Continue" not in reply
    entry = probe(server_port, "oversize01")
    assert (entry["state"], entry["reason"], entry["status"], entry["received"]) == (
        "error", "too_large", 413, 0)


def test_get_with_expect_and_no_body_does_not_hang(server_port: int) -> None:
    reply = exchange(server_port, b"GET /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
                     read_for=2.0, until=b"}")
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:80]
    assert b"100 Continue" not in reply


def test_expect_within_limit_gets_100_then_the_response(server_port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", server_port), timeout=3)
    try:
        sock.sendall(post("continue01", b"", "Expect: 100-continue").replace(
            b"Content-Length: 0", b"Content-Length: 5"))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        reply = b""
        while not reply.endswith(b"}"):
            piece = sock.recv(4096)
            assert piece, reply
            reply += piece
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"length": 5' in reply
    assert wait_for_state(server_port, "continue01", ("done",))["received"] == 5


def test_http10_expect_gets_no_100(server_port: int) -> None:
    request = (b"POST /upload?X-Progress-ID=http10abc HTTP/1.0\r\nContent-Length: 3\r\n"
               b"Expect: 100-continue\r\n\r\nabc")
    reply = exchange(server_port, request, read_for=2.0)
    assert reply.startswith(b"HTTP/1.0 200 ") and b"100 Continue" not in reply


def test_pipelined_requests_are_each_tracked_in_order(server_port: int) -> None:
    request = (post("pipeline1", b"abc")
               + b"GET /progress?X-Progress-ID=pipeline1 HTTP/1.1\r\nHost: t\r\n\r\n"
               + post("pipeline2", b"de"))
    reply = exchange(server_port, request, read_for=3.0, until=b'"length": 2')
    assert reply.count(b"HTTP/1.1 200 ") == 3
    first, probe_answer, last = reply.split(b"HTTP/1.1 200 ")[1:]
    assert b'"length": 3' in first and b'"length": 2' in last
    # the pipelined probe is answered after the upload before it has ended
    assert b'"state": "done"' in probe_answer and b'"received": 3' in probe_answer
    for progress_id, size, response in (("pipeline1", 3, first), ("pipeline2", 2, last)):
        body = response.split(b"\r\n\r\n", 1)[1]
        entry = probe(server_port, progress_id)
        assert (entry["state"], entry["received"], entry["sent"], entry["response_size"]) == (
            "done", size, len(body), len(body))


def test_unwrapped_app_sees_server_counting(server_port: int) -> None:
    reply = exchange(server_port, post("environ01", b"xyz"), until=b"}")
    assert b'"server_counts": true' in reply and b'"tracked": true' in reply


def test_untracked_requests_pass_through(server_port: int) -> None:
    for request in (post("bad%20id!%3Cx%3E", b"abc"), post("short", b"abc"),
                    b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"):
        reply = exchange(server_port, request, until=b"}")
        assert reply.startswith(b"HTTP/1.1 200 ") and b'"tracked": false' in reply


def test_wrapped_app_is_not_counted_twice() -> None:
    inner_table = ProgressTable()
    app = ProgressMiddleware(echo_app, store=inner_table)
    with running(app) as (server, port):
        reply = exchange(port, post("wrapped01", b"12345"), until=b"}")
        assert b'"length": 5' in reply
        entry = wait_for_state(port, "wrapped01", ("done",))
    body = reply.split(b"\r\n\r\n", 1)[1]
    assert (entry["received"], entry["size"], entry["sent"]) == (5, 5, len(body))
    # the middleware stood aside; the server counted once, into the app's store
    assert server.progress_store is inner_table


def test_probe_answers_while_every_worker_is_blocked() -> None:
    release = threading.Event()
    started: List[int] = []

    def blocking_app(environ: dict, start_response: Any) -> Iterable[bytes]:
        started.append(1)
        release.wait(20)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    with running(blocking_app, threads=2) as (_, port):
        results: List[bytes] = []
        holders = [threading.Thread(target=lambda: results.append(
            exchange(port, b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n", read_for=25,
                     until=b"\r\n\r\n"))) for _ in range(4)]
        for holder in holders:
            holder.start()
        try:
            deadline = threading.Event()
            while len(started) < 2 and not deadline.wait(0.01):
                pass
            # every worker is blocked and two more requests queue behind them
            answer = probe(port, "nobody123", timeout=2.0)
            assert answer["state"] == "unknown"
        finally:
            release.set()
            for holder in holders:
                holder.join(10)
        assert len(results) == 4 and all(r.startswith(b"HTTP/1.1 200 ") for r in results)


def test_file_wrapper_downloads_count_sent_bytes(tmp_path: Any) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"f" * 3_000_000)

    def download(environ: dict, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(payload, "rb"), 65536)

    with running(download, methods="GET") as (_, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /f?X-Progress-ID=wrapped-file HTTP/1.1\r\nHost: t\r\n\r\n")
        reply = read_response(sock)
        sock.close()
        assert reply.endswith(b"\r\n\r\n" + b"f" * 3_000_000)
        entry = wait_for_state(port, "wrapped-file", ("done",))
    assert (entry["sent"], entry["response_size"]) == (3_000_000, 3_000_000)


def test_a_piece_bigger_than_the_socket_takes_arrives_whole_and_before_the_next_answer() -> None:
    """A piece written while nothing is queued goes straight to the socket;
    what the kernel does not take is queued, and the answer to a pipelined
    request waits behind it.  Counted as sent, byte for byte."""
    big = bytes(range(256)) * 32768  # 8 MiB, one write

    def pieces(environ: dict, start_response: Any) -> Iterable[bytes]:
        body = big if environ["PATH_INFO"] == "/big" else b"small answer"
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    with running(pieces, methods="GET") as (_, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow, small window
        sock.settimeout(10)
        sock.connect(("127.0.0.1", int(port)))
        sock.sendall(b"GET /big?X-Progress-ID=one-big-piece HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        received = read_to_close(sock)
        sock.close()
        entry = wait_for_state(port, "one-big-piece", ("done",))
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and f"Content-Length: {len(big)}".encode() in head
    assert rest[:len(big)] == big
    second = rest[len(big):]
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"\r\n\r\nsmall answer")
    assert (entry["sent"], entry["response_size"]) == (len(big), len(big))


def test_blank_lines_before_a_request_are_skipped_as_waitress_does(server_port: int) -> None:
    request = b"\r\n\r\n" + post("blank-lines", b"abc")
    reply = exchange(server_port, request, read_for=3.0, until=b'"length": 3')
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"length": 3' in reply
    assert wait_for_state(server_port, "blank-lines", ("done",))["received"] == 3


@pytest.mark.parametrize("waiting", ["%77ait=5", "%74ransport=sse", "WAIT=5"])
def test_an_encoded_wait_cannot_hold_the_probe_threads(waiting: str) -> None:
    with running(lambda environ, start_response: [], probe_threads=1, max_wait=5) as (_, port):
        holder = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            holder.sendall(f"GET /progress?X-Progress-ID=abcdefgh-1&{waiting} HTTP/1.1\r\n"
                           "Host: t\r\n\r\n".encode())
            threading.Event().wait(0.3)  # it waits, on an application thread
            assert probe(port, "nobody123", timeout=2.0)["state"] == "unknown"
        finally:
            holder.close()
