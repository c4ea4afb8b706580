"""WebSocket conformance of our server's endpoints at the edges: a server
stopped by a signal closes every session with 1001 "going away" (RFC 6455
§7.4.1) within a bounded time, and the 426 of an unsupported version names
the protocol in ``Upgrade`` with ``Connection: upgrade`` (RFC 9110 §15.5.22,
§7.8).  Real server processes started as users start them, the
``websockets`` client library and raw sockets."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.client import HTTPConnection
from typing import Any, Iterator, List, Tuple

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from server_support import HOST, exchange, ok_app, running, start_process, stop_process, wait_until

NAME = "0123456789abcdef0123456789abcdef"
TOKEN = "websocket-token-0123456789"
SETTINGS = {"mailbox": True, "websocket": True, "publish": True, "publish_token": TOKEN,
            "threads": 2, "websocket_max_queued": 64 * 2**20}
CLI = [sys.executable, "-m", "wsgiprogress", "--listen", "127.0.0.1:0", "--threads", "2",
       "--mailbox", "--websocket", "--publish", "--publish-token", TOKEN,
       "--websocket-max-queued", "64M", "server_apps:app"]
SERVE = [sys.executable, "-c",
         "import logging, server_apps; logging.basicConfig(level=logging.INFO);"
         "from wsgiprogress.server import serve;"
         f"serve(server_apps.app, listen='127.0.0.1:0', **{SETTINGS!r})"]
#: Seconds from the signal to the process's end: a second for the closes,
#: the rest for the interpreter's exit on a loaded machine.
STOPS_WITHIN = 4.0


@contextlib.contextmanager
def server_process(args: List[str]) -> Iterator[Tuple["subprocess.Popen[str]", int]]:
    process, port = start_process(args, env={"PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def stopped_in(process: "subprocess.Popen[str]", signum: int) -> float:
    """Send *signum*; the seconds until the process ended (exit code 0)."""
    start = time.monotonic()
    assert stop_process(process, signum) == 0
    return time.monotonic() - start


class RawSession:
    """A WebSocket client over a plain socket (wsproto) that reads only when told."""

    def __init__(self, port: int, receive_buffer: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:  # before connecting: the window stays that small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(5)
        self.sock.connect((HOST, port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{HOST}:{port}",
                                               target=f"/mailbox/{NAME}")))
        self.events: List[Any] = []
        while not any(isinstance(e, AcceptConnection) for e in self.events):
            self._read()

    def _read(self) -> bool:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        self.events.extend(self.ws.events())
        return bool(data)

    def messages(self) -> List[Any]:
        """The text messages received, decoded from JSON."""
        messages, parts = [], []
        for event in self.events:
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    messages.append(json.loads("".join(parts)))
                    parts = []
        return messages

    def close_code(self, deadline: float) -> Any:
        """The code of the server's close frame, or None when the connection
        ended without one."""
        while time.monotonic() < deadline:
            closes = [e.code for e in self.events if isinstance(e, CloseConnection)]
            if closes:
                return closes[0]
            if not self._read():
                return None
        raise AssertionError("neither a close frame nor the end of the connection")


def publish(port: int, data: bytes) -> None:
    conn = HTTPConnection(HOST, port, timeout=5)
    conn.request("POST", f"/mailbox/{NAME}", data,
                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert conn.getresponse().status == 201
    conn.close()


def unsent(port: int, client_port: int) -> int:
    """Bytes the server's socket to the client at *client_port* has not
    got acknowledged (``tx_queue`` in /proc/net/tcp)."""
    wanted = (f"0100007F:{port:04X}", f"0100007F:{client_port:04X}")
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == wanted:
                return int(fields[4].split(":")[0], 16)
    return 0


# -- shutdown: 1001 ---------------------------------------------------------------


@pytest.mark.parametrize("args, signum", [
    pytest.param(CLI, signal.SIGTERM, id="cli-sigterm"),
    pytest.param(CLI, signal.SIGINT, id="cli-sigint"),
    pytest.param(SERVE, signal.SIGTERM, id="serve-sigterm"),
    pytest.param(SERVE, signal.SIGINT, id="serve-sigint"),
])
def test_a_stopped_server_closes_its_websockets_1001(args: List[str], signum: int) -> None:
    with server_process(args) as (process, port):
        with connect(f"ws://{HOST}:{port}/mailbox/{NAME}") as ws:
            publish(port, b"news")
            assert '"news"' in str(ws.recv(timeout=5))
            assert stopped_in(process, signum) < STOPS_WITHIN
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None, "no close frame: the client saw 1006"
        assert closed.value.rcvd.code == 1001


def test_the_close_comes_after_what_was_queued_for_a_slow_reader() -> None:
    with server_process(CLI) as (process, port):
        slow = RawSession(port, receive_buffer=4096)
        for number in range(32):  # 2 MiB, most of it waiting in the server
            publish(port, b"%05d" % number + b"x" * 65530)
        wait_until(lambda: unsent(port, slow.sock.getsockname()[1]) > 0)
        process.send_signal(signal.SIGTERM)
        assert slow.close_code(time.monotonic() + 5) == 1001
        assert [int(message["data"][:5]) for message in slow.messages()] == list(range(32))
        assert process.wait(STOPS_WITHIN) == 0
        slow.sock.close()


def test_shutdown_stays_bounded_with_many_idle_sessions_and_one_that_never_reads() -> None:
    with server_process(CLI) as (process, port):
        stuck = RawSession(port, receive_buffer=4096)
        stuck_port = stuck.sock.getsockname()[1]
        for _ in range(160):  # 10 MiB: more than the kernel holds for it
            publish(port, b"x" * 65536)
        wait_until(lambda: unsent(port, stuck_port) > 0)
        sessions = [RawSession(port) for _ in range(300)]
        assert stopped_in(process, signal.SIGTERM) < STOPS_WITHIN
        deadline = time.monotonic() + 5
        assert [s.close_code(deadline) for s in sessions] == [1001] * len(sessions)
        for session in [stuck, *sessions]:
            session.sock.close()


def test_the_loop_stops_at_once_when_nothing_says_goodbye() -> None:
    with server_process(CLI) as (process, port):
        assert exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", until=b"\r\n\r\n0")
        assert stopped_in(process, signal.SIGTERM) < STOPS_WITHIN


# -- 426 -------------------------------------------------------------------------------


def read_answer(sock: socket.socket) -> Tuple[str, List[str], bytes]:
    """One response with a Content-Length: the status line, the header lines, the body."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(": ")[1]) for line in lines
                  if line.startswith("Content-Length: "))
    while len(body) < length:
        body += sock.recv(65536)
    return status, lines, body


def test_an_unsupported_version_gets_426_naming_websocket_in_upgrade() -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with running(ok_app, **SETTINGS) as (_, port):
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall((f"GET /mailbox/{NAME} HTTP/1.1\r\nHost: t\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 8\r\n"
                          "\r\n").encode())
            status, lines, body = read_answer(sock)
            assert status == "HTTP/1.1 426 Upgrade Required"
            assert [line for line in lines if not line.startswith("Date: ")] == [
                "Cache-Control: no-cache, no-store, must-revalidate", "Connection: upgrade",
                f"Content-Length: {len(body)}", "Content-Type: text/plain; charset=utf-8",
                "Expires: Thu, 01 Jan 1970 00:00:01 GMT", "Pragma: no-cache",
                "Sec-Websocket-Version: 13", "Server: waitress", "Upgrade: websocket",
                "X-Content-Type-Options: nosniff"]
            # the reason names the version given (wsproto says "Missing header")
            assert body == b"not a WebSocket handshake: Sec-WebSocket-Version '8' is " \
                           b"not 13, the version this server speaks\n"
            # the connection stays open: a handshake the server takes follows
            sock.sendall((f"GET /mailbox/{NAME} HTTP/1.1\r\nHost: t\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          "\r\n").encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
