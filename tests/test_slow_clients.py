"""Slow clients on wsgiprogress.server: a request head that takes too long
and a body that arrives too slowly get 408 and a close; at the connection
limit the slowest unfinished heads make room, so dribbling clients cannot
lock everyone out; requests in service or parked are never touched."""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import List

import pytest

from wsgiprogress.server import shedding

from server_support import (
    HOST,
    SlowUpload,
    ok_app,
    probe,
    read_response,
    running,
    status_of,
    wait_until,
)

NAME = "0123456789abcdef0123456789abcdef"
PROGRESS_ID = "5105105105105105a5105105105105a1"




class Dribbler(threading.Thread):
    """Sends *data* a byte every *pause* seconds; keeps what comes back."""

    def __init__(self, port: int, data: bytes, pause: float) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection((HOST, port), timeout=20)
        self.data, self.pause = data, pause
        self.reply = b""
        self.closed_at = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        self.sock.setblocking(False)
        try:
            for byte in self.data:
                if self.stop.wait(self.pause):
                    return
                try:
                    self.sock.send(bytes([byte]))
                except BlockingIOError:
                    pass
                try:
                    piece = self.sock.recv(65536)
                except BlockingIOError:
                    continue
                self.reply += piece
                if not piece:
                    self.closed_at = time.monotonic()
                    return
        except OSError:
            self.closed_at = time.monotonic()
        finally:
            self.sock.close()


def ordinary(port: int, timeout: float = 10) -> float:
    """Seconds an ordinary GET takes to be answered."""
    started = time.monotonic()
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.sendall(b"GET /ordinary HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock).endswith(b"ok")
    finally:
        sock.close()
    return time.monotonic() - started


def test_a_head_not_complete_in_time_gets_408_and_a_close() -> None:
    with running(ok_app, header_timeout=1) as (_, port):
        slow = Dribbler(port, b"GET /ordinary HTTP/1.1\r\nHost: " + b"x" * 200, 0.05)
        started = time.monotonic()
        slow.start()
        slow.join(10)
        assert status_of(slow.reply) == 408 and b"request head not received in time" in slow.reply
        assert 1.0 <= slow.closed_at - started < 4.0
        assert ordinary(port) < 2


def test_a_body_slower_than_the_minimum_rate_gets_408_and_its_progress_says_so() -> None:
    with running(ok_app, body_timeout=1, body_min_rate=10_000) as (_, port):
        target = f"/upload?X-Progress-ID={PROGRESS_ID}"
        slow = SlowUpload(port, target, 100_000, piece=200, delay=0.05)  # ~4 KB/s
        slow.start()
        slow.join(20)
        wait_until(lambda: probe(port, PROGRESS_ID)["state"] == "error")
        entry = probe(port, PROGRESS_ID)
        assert entry["status"] == 408, entry
        assert 0 < entry["received"] < 100_000
        # a body at a decent pace is not touched
        fast = SlowUpload(port, "/upload", 400_000, piece=64 * 1024, delay=0.05)
        fast.start()
        fast.join(20)
        assert fast.reply.endswith(b"ok")


def test_at_the_connection_limit_the_slowest_heads_make_room() -> None:
    with running(ok_app, mailbox=True, threads=2, connection_limit=40, max_waiters=5,
                 header_timeout=60) as (server, port):
        waiter = socket.create_connection((HOST, port), timeout=20)
        waiter.sendall(f"GET /mailbox/{NAME}?wait=30 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        wait_until(lambda: len(server.mailbox.waiters) == 1)
        dribblers: List[Dribbler] = []
        try:
            for _ in range(60):
                dribbler = Dribbler(port, b"GET / HTTP/1.1\r\nX: " + b"y" * 300, 0.5)
                dribbler.start()
                dribblers.append(dribbler)
            listener = server
            wait_until(lambda: listener.in_connection_overflow or any(
                d.closed_at for d in dribblers))
            assert ordinary(port, timeout=15) < 10
            assert any(status_of(d.reply) == 408 for d in dribblers)
            # the parked waiter was not shed
            server.mailbox.post(NAME, "still here")
            reply = read_response(waiter)
            body = json.loads(reply.partition(b"\r\n\r\n")[2])
            assert [m["data"] for m in body["messages"]] == ["still here"]
        finally:
            waiter.close()
            for dribbler in dribblers:
                dribbler.stop.set()
            for dribbler in dribblers:
                dribbler.join(5)


def keep_alive(port: int) -> socket.socket:
    """A connection that made one request and now idles, kept alive."""
    sock = socket.create_connection((HOST, port), timeout=20)
    sock.sendall(b"GET /ordinary HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(sock).endswith(b"ok")
    return sock


def resting(server: object) -> int:
    """How many connections the loop no longer asks each turn."""
    return len(server.progress_loop._quiet)


def test_idle_keep_alive_connections_rest_yet_answer_and_time_out() -> None:
    with running(ok_app, channel_timeout=2, cleanup_interval=1) as (server, port):
        sock = keep_alive(port)
        try:
            wait_until(lambda: resting(server) == 1)  # at rest: not asked each turn
            sock.sendall(b"GET /ordinary HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock).endswith(b"ok")  # its socket stirred it
            wait_until(lambda: resting(server) == 1)
            # waitress's idle cleanup still closes it, at rest or not
            started = time.monotonic()
            sock.settimeout(10)
            assert sock.recv(1) == b""
            assert 1.0 <= time.monotonic() - started < 6.0
        finally:
            sock.close()


def test_idle_keep_alive_connections_at_rest_are_shed_at_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shedding, "SHED_AFTER", 0.0)  # sheddable however briefly idle
    with running(ok_app, threads=2, connection_limit=30) as (server, port):
        idle = [keep_alive(port) for _ in range(25)]
        try:
            wait_until(lambda: resting(server) == 25)
            crowd = [socket.create_connection((HOST, port), timeout=20) for _ in range(10)]
            try:
                assert ordinary(port, timeout=15) < 10
                closed = 0
                for sock in idle:
                    sock.settimeout(0.01)
                    try:
                        closed += sock.recv(1) == b""
                    except OSError:
                        pass
                assert closed >= 1  # a resting connection made room
            finally:
                for sock in crowd:
                    sock.close()
        finally:
            for sock in idle:
                sock.close()
