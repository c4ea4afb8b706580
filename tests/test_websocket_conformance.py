"""WebSocket conformance of our server's endpoints at the edges: the 426 of
an unsupported version names the protocol in ``Upgrade`` with ``Connection:
upgrade`` (RFC 9110 §15.5.22, §7.8), over raw sockets."""
from __future__ import annotations

import base64
import os
import socket
from typing import List, Tuple

from server_support import HOST, ok_app, running

NAME = "0123456789abcdef0123456789abcdef"
TOKEN = "websocket-token-0123456789"
SETTINGS = {"mailbox": True, "websocket": True, "publish": True, "publish_token": TOKEN,
            "threads": 2, "websocket_max_queued": 64 * 2**20}


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
            assert body.startswith(b"not a WebSocket handshake")
            # the connection stays open: a handshake the server takes follows
            sock.sendall((f"GET /mailbox/{NAME} HTTP/1.1\r\nHost: t\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                          "\r\n").encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
