"""Reads ask for little until one fills what it asked for (an upload), then
for ``recv_bytes``: a small request's read never asks for a buffer above
glibc's mmap threshold; a body's file is appended to without a seek until it
is read, and reaches the application byte for byte
(wsgiprogress.server.reading)."""
from __future__ import annotations

import hashlib
import io
import os
import socket
import tempfile
from typing import Any, Dict, Iterable, List, Tuple
from unittest import mock

import pytest
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


def digest_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Answers the SHA-256 of the body it read, and how long it was."""
    body = environ["wsgi.input"].read()
    answer = b"%s %d" % (hashlib.sha256(body).hexdigest().encode(), len(body))
    start_response("200 OK", [("Content-Length", str(len(answer)))])
    return [answer]


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("length", [0, 1, 8191, 8192, 30_000, 200_000, 3 * 2**20 + 7])
def test_a_body_past_inbuf_overflow_reaches_the_application_byte_for_byte(length: int) -> None:
    body = os.urandom(length)
    expected = b"%s %d" % (hashlib.sha256(body).hexdigest().encode(), length)
    with running(digest_app, inbuf_overflow=10_000) as (_, port):
        for framing, payload in ((b"Content-Length: %d\r\n" % length, body),
                                 (b"Transfer-Encoding: chunked\r\n", chunked(body, 7_777))):
            for tracked in (b"", b"?X-Progress-ID=body-%d" % length):
                with socket.create_connection((HOST, port), timeout=10) as conn:
                    conn.sendall(b"POST /digest%s HTTP/1.1\r\nHost: t\r\n%sConnection: close"
                                 b"\r\n\r\n" % (tracked, framing))
                    for start in range(0, len(payload), 65_536):  # reads of every size
                        conn.sendall(payload[start:start + 65_536])
                    answer = b""
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            break
                        answer += data
                assert answer.startswith(b"HTTP/1.1 200 OK"), answer
                assert answer.endswith(b"\r\n\r\n" + expected)


def test_an_upload_appends_to_its_body_file_without_seeking() -> None:
    """waitress seeks to the end and back on every append; until the body
    is read there is nothing to seek back for (wsgiprogress.server.reading)."""
    seeks: List[Tuple[int, ...]] = []
    made = tempfile.TemporaryFile

    class Counted(io.BufferedRandom):
        def seek(self, *args: int) -> int:
            seeks.append(args)
            return super().seek(*args)

    kept: List[Any] = []  # the files made: their wrappers would close them when freed

    def counted(mode: str = "w+b", *args: Any, **kw: Any) -> Any:
        file = made(mode, *args, **kw)
        kept.append(file)
        return Counted(file.raw)  # the same file, seeks counted

    size = 64 * 2**20
    with mock.patch("tempfile.TemporaryFile", counted), running(digest_app) as (_, port):
        with socket.create_connection((HOST, port), timeout=30) as upload:
            upload.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % size)
            piece = b"x" * 2**20
            for _ in range(size // len(piece)):
                upload.sendall(piece)
            answer = b""
            while b" %d" % size not in answer:
                data = upload.recv(65536)
                assert data, answer
                answer += data
    assert hashlib.sha256(b"x" * size).hexdigest().encode() in answer
    assert kept  # the body went to a file
    # one seek to the end when the body moves to its file, one back when it is read
    assert len(seeks) <= 4, seeks
