"""Resumable requests (the http-progress drafts) on our server: a request with
``Expect: 100-continue`` and ``Prefer: resume`` learns its locations in the
100 Continue; cut mid-body, the server keeps what arrived; HEAD at the
request-content location reports it; a ``message/byterange`` PATCH (or the
IETF append) completes it; the application sees the whole request once and
the response-message location replays its answer.  The drafts' scenario: a
1,000,000-byte counter, cut after more than 100 kB, the resume cut again."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from resumable_support import PARTIAL, Recorder, counter, cut, read_head, request, serving, sha256
from server_support import HOST, probe, wait_until

SIZE = 1_000_000
PROGRESS_ID = "resume-request-0001"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Tuple[int, Recorder]]:
    app = Recorder()
    with serving("server", app, resumable_dir=str(tmp_path)) as port:
        yield port, app


def start_request(port: int, data: bytes, sent: int) -> Dict[str, str]:
    """POST /print with Prefer: resume; send *sent* bytes, then cut (RST)."""
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(f"POST /print?X-Progress-ID={PROGRESS_ID} HTTP/1.1\r\nHost: x\r\n"
                 "Expect: 100-continue\r\nPrefer: resume\r\nContent-Type: text/x-counter\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode())
    status, fields = read_head(sock)
    assert status == 100, fields
    sock.sendall(data[:sent])
    wait_until(lambda: probe(port, PROGRESS_ID)["received"] >= sent)
    cut(sock, rst=True)
    return fields


def offset_of(port: int, location: str) -> int:
    reply = request(port, "HEAD", location)
    assert reply.status == 200, reply
    assert reply.headers["content-length"] == reply.headers["upload-offset"]
    return int(reply.headers["upload-offset"])


def byterange_head(location: str, first: int, size: int, total: int) -> bytes:
    part = (f"Content-Range: bytes {first}-{total - 1}/{total}\r\n"
            f"Content-Length: {total - first}\r\n\r\n").encode()
    return (f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: message/byterange\r\n"
            f"Content-Length: {len(part) + total - first}\r\n\r\n").encode() + part


def test_the_drafts_scenario_cut_twice_ends_byte_exact(served: Any) -> None:
    port, app = served
    data = counter(SIZE)
    fields = start_request(port, data, 150_000)
    location = fields["request-content-location"]
    assert location.startswith("/files/")
    assert fields["response-message-location"] == location + "/response"
    first = wait_until(lambda: offset_of(port, location) or None)
    assert first == 150_000
    # the resume breaks too, after 400000 more bytes
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(byterange_head(location, first, SIZE - first, SIZE))
        sock.sendall(data[first:first + 400_000])
        wait_until(lambda: probe(port, PROGRESS_ID)["received"] >= first + 400_000)
        cut(sock, rst=False)
    second = wait_until(lambda: offset_of(port, location) > first and offset_of(port, location))
    assert second == first + 400_000
    assert app.calls == []
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(byterange_head(location, second, SIZE - second, SIZE) + data[second:])
        status, answer = read_head(sock)
    assert status == 201 and answer["x-app"] == "recorder"  # the POST's own answer
    assert len(app.calls) == 1
    call = app.calls[0]
    assert (call.method, call.path, call.query, call.content_type) == (
        "POST", "/print", f"X-Progress-ID={PROGRESS_ID}", "text/x-counter")
    assert (call.size, call.body_sha256) == (SIZE, sha256(data))
    assert "HTTP_PREFER" not in call.headers and "HTTP_EXPECT" not in call.headers
    kept = request(port, "GET", fields["response-message-location"])
    assert kept.status == 201 and kept.body == b'{"call": 1, "size": 1000000}'
    message = request(port, "GET", fields["response-message-location"],
                      {"Accept": "message/http"})
    assert message.body.startswith(b"HTTP/1.1 201 Created\r\n")
    assert offset_of(port, location) == SIZE
    assert request(port, "DELETE", fields["response-message-location"]).status == 204
    assert request(port, "GET", fields["response-message-location"]).status == 404


def test_a_whole_resumable_request_is_answered_by_the_app_once(served: Any) -> None:
    port, app = served
    data = counter(300_000)
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"PUT /doc HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Prefer: resume\r\nContent-Length: 300000\r\n\r\n")
        status, fields = read_head(sock)
        assert status == 100 and "request-content-location" in fields
        sock.sendall(data)
        status, answer = read_head(sock)
    assert status == 201
    assert [(c.method, c.path, c.body_sha256) for c in app.calls] == [
        ("PUT", "/doc", sha256(data))]
    assert request(port, "GET", fields["response-message-location"]).status == 201


def test_a_resumable_request_the_authorize_hook_refuses_leaves_nothing_stored(
        tmp_path: Path) -> None:
    def authorize(environ: Dict[str, Any], name: Any, action: str) -> bool:
        return environ.get("HTTP_X_USER") == "alice"

    app = Recorder()
    with serving("server", app, resumable_dir=str(tmp_path), authorize=authorize) as port:
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b"PUT /doc HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Prefer: resume\r\nContent-Length: 300000\r\n\r\n")
            status, fields = read_head(sock)
            assert status == 100  # the body is kept as it arrives, before the hook is asked
            sock.sendall(counter(300_000))
            status, _ = read_head(sock)
        assert status == 403
        location = fields["request-content-location"]
        assert request(port, "HEAD", location, {"X-User": "alice"}).status == 404
        assert os.listdir(tmp_path) == []  # not even until it expires
    assert app.calls == []


def test_the_ietf_append_completes_a_resumable_request(served: Any) -> None:
    port, app = served
    data = counter(200_000, 5)
    fields = start_request(port, data, 120_000)
    location = fields["request-content-location"]
    offset = wait_until(lambda: offset_of(port, location) or None)
    reply = request(port, "PATCH", location, {**PARTIAL, "Upload-Offset": str(offset),
                                              "Upload-Complete": "?1"}, data[offset:])
    assert reply.status == 201 and reply.headers["upload-offset"] == str(len(data))
    assert [c.body_sha256 for c in app.calls] == [sha256(data)]


def test_a_wrong_range_is_409_with_the_real_offset(served: Any) -> None:
    port, _ = served
    data = counter(200_000)
    location = start_request(port, data, 110_000)["request-content-location"]
    offset = wait_until(lambda: offset_of(port, location) or None)
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(byterange_head(location, offset - 10, 0, len(data)) +
                     data[offset - 10:])
        status, fields = read_head(sock)
    assert status == 409 and fields["upload-offset"] == str(offset)
    bad = request(port, "PATCH", location, {"Content-Type": "message/byterange"},
                  b"Content-Type: text/plain\r\n\r\nxyz")
    assert bad.status == 400
    assert request(port, "PATCH", location, {"Content-Type": "text/plain"}, b"x").status == 415


@pytest.mark.parametrize("head", [
    b"POST /print HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    b"POST /print HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    b"Prefer: resume=ignore-incomplete\r\nContent-Length: 5\r\n\r\n",
])
def test_without_prefer_resume_the_100_continue_is_plain(served: Any, head: bytes) -> None:
    port, app = served
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head)
        status, fields = read_head(sock)
        assert status == 100 and fields == {}
        sock.sendall(b"hello")
        status, _ = read_head(sock)
    assert status == 201 and app.calls[-1].upload == {}
