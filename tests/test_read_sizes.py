"""Reads ask for little until one fills what it asked for (an upload), then
for ``recv_bytes``: a small request's read never asks for a buffer above
glibc's mmap threshold (wsgiprogress.server.reading)."""
from __future__ import annotations

import socket
from typing import Any, List
from unittest import mock

from waitress import wasyncore

from wsgiprogress.server.channel import ProgressChannel
from wsgiprogress.server.reading import FIRST_READ

from server_support import HOST, exchange, ok_app, running


def test_a_small_request_reads_little_and_an_upload_reads_recv_bytes() -> None:
    asked: List[int] = []  # what each read of a connection asked the socket for
    original = wasyncore.dispatcher.recv

    def recording(self: Any, buffer_size: int) -> bytes:
        if isinstance(self, ProgressChannel):  # not waitress's trigger
            asked.append(buffer_size)
        return original(self, buffer_size)  # type: ignore[no-any-return]

    with mock.patch.object(wasyncore.dispatcher, "recv", recording), \
            running(ok_app) as (server, port):
        recv_bytes = server.adj.recv_bytes
        assert recv_bytes > FIRST_READ
        answer = exchange(port, b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                          read_for=5)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert asked and set(asked) == {FIRST_READ}
        asked.clear()
        size = 8 * recv_bytes
        with socket.create_connection((HOST, port), timeout=10) as upload:
            upload.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % size + b"x" * size)
            answer = b""
            while not answer.endswith(b"ok"):
                data = upload.recv(65536)
                assert data, answer
                answer += data
        assert asked[0] == FIRST_READ
        assert recv_bytes in asked  # an upload's reads ask for recv_bytes
