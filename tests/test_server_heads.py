"""Our server sends a response's head together with its first body bytes (one
``send``, where waitress makes two), and otherwise writes exactly what
waitress writes: the same bytes for every kind of response, the head alone at
once when the application asks for it (``write(b"")``), and the head of a
response that never writes a body."""
from __future__ import annotations

import contextlib
import re
import socket
import threading
from typing import Any, Dict, Iterable, Iterator, List

import pytest
import waitress

from wsgiprogress.server.sending import SentBytes

from server_support import HOST, exchange, read_to_close, running

BODY = b"x" * 3000
_release = threading.Event()


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/sized":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(BODY)))])
        return [BODY]
    if path == "/chunked":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"one", b"", b"two", b"three"])
    if path == "/not-modified":
        start_response("304 Not Modified", [("ETag", '"v1"')])
        return [b"ignored body"]
    if path == "/empty":
        start_response("200 OK", [("Content-Length", "0")])
        return []
    if path == "/short":  # says 10 bytes, writes more: waitress cuts it
        start_response("200 OK", [("Content-Length", "10")])
        return [b"0123456789abcdef"]
    if path == "/lists":  # header pairs as lists, which waitress accepts too
        start_response("200 OK", [["Content-Type", "text/plain"], ["Content-Length", "2"]])
        return [b"ok"]
    if path == "/own-date":  # the application's own Date and Server
        start_response("200 OK", [("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
                                  ("Server", "mine"), ("content-length", "2")])
        return [b"ok"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        import io
        return environ["wsgi.file_wrapper"](io.BytesIO(BODY), 1024)
    if path == "/head-first":  # write(b""): the head now, the body later
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"")
        _release.wait(10)
        return [b"late"]
    raise AssertionError(path)


@contextlib.contextmanager
def waitress_server() -> Iterator[int]:
    server = waitress.create_server(app, host=HOST, port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        server.close()
        thread.join(5)


@contextlib.contextmanager
def serving(server: str) -> Iterator[int]:
    """Our server or plain waitress, serving :func:`app`; yields the port."""
    if server == "waitress":
        with waitress_server() as port:
            yield port
    else:
        with running(app) as (_, port):
            yield port


def normalized(reply: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", reply)


REQUESTS = [f"{method} {path} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()
            for method in ("GET", "HEAD")
            for path in ("/sized", "/chunked", "/not-modified", "/empty", "/short", "/file",
                         "/lists", "/own-date")
            for version, extra in (("1.1", ""), ("1.1", "Connection: close\r\n"),
                                   ("1.0", "Connection: keep-alive\r\n"), ("1.0", ""))]


def test_every_kind_of_response_is_byte_for_byte_waitress() -> None:
    with running(app) as (_, ours), waitress_server() as theirs:
        for request in REQUESTS:
            mine = normalized(exchange(ours, request, read_for=0.5))
            assert mine.startswith(b"HTTP/1."), request
            assert mine == normalized(exchange(theirs, request, read_for=0.5)), request


def test_the_head_and_a_small_body_leave_in_one_send(monkeypatch: pytest.MonkeyPatch) -> None:
    sends: List[int] = []
    send = SentBytes.send

    def counting(self: Any, data: Any, *args: Any, **kw: Any) -> int:
        sends.append(len(data))
        return send(self, data, *args, **kw)
    monkeypatch.setattr(SentBytes, "send", counting)
    with running(app) as (_, port):
        reply = exchange(port, b"GET /sized HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert reply.endswith(BODY)
    assert sends == [len(reply)]  # head and body together


@pytest.mark.parametrize("server", ["ours", "waitress"])
def test_an_empty_write_sends_the_head_at_once(server: str) -> None:
    _release.clear()
    with serving(server) as port, socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"GET /head-first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:  # arrives while the body is held back
            piece = sock.recv(4096)
            assert piece, head
            head += piece
        assert head.startswith(b"HTTP/1.1 200 OK")
        _release.set()
        rest = read_to_close(sock)
    assert (head + rest).endswith(b"\r\n\r\n4\r\nlate\r\n0\r\n\r\n")
