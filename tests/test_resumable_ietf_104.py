"""IETF resumable uploads, interop version 6: ``104 Upload Resumption
Supported`` on our server (draft -05, section "Upload Creation").  A creation
request with a body learns its upload's Location before the body is sent;
cut mid-body (FIN or RST), the server keeps what arrived, HEAD there reports
it and a PATCH completes it; the application sees one byte-exact request.
No 104 without the interop header, to HTTP/1.0, for a creation without a
body (careful creation), for a request refused at its head, with an
authorize hook, or under the middleware (WSGI has no interim responses);
generated heads get a 104 exactly when the draft allows one."""
from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resumable_support import (
    IETF,
    PARTIAL,
    Recorder,
    counter,
    cut,
    read_head,
    request,
    serving,
    sha256,
)
from server_support import HOST, probe, read_to_close, wait_until

MiB = 1024 * 1024
PROGRESS_ID = "ietf-interim-0001"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Tuple[int, Recorder, Path]]:
    """Our server, its application, and its upload directory."""
    app = Recorder()
    with serving("server", app, resumable_dir=str(tmp_path)) as port:
        yield port, app, tmp_path


def creation_head(size: int, complete: str = "?1", path: str = f"/media/clip?X-Progress-ID="
                  f"{PROGRESS_ID}", version: str = "1.1", **fields: str) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return (f"POST {path} HTTP/{version}\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
            f"Upload-Complete: {complete}\r\nContent-Type: video/mp4\r\n{extra}"
            f"Content-Length: {size}\r\n\r\n").encode()


def head_offset(port: int, location: str) -> int:
    reply = request(port, "HEAD", location, IETF)
    assert reply.status == 204, reply
    assert reply.headers["upload-complete"] == "?0"
    return int(reply.headers["upload-offset"])


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_the_104_comes_before_the_body_and_a_cut_creation_resumes_byte_exact(
        served: Any, rst: bool) -> None:
    port, app, directory = served
    data = counter(4 * MiB, 3)
    sent = 1_500_000
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(creation_head(len(data)))
    # the 104 arrives while not one byte of the body was sent
    status, fields = read_head(sock)
    assert status == 104
    assert fields["upload-draft-interop-version"] == "6"
    location = fields["location"]
    assert location.startswith("/files/") and len(location) > len("/files/") + 20
    assert "max-size=" in fields["upload-limit"] and "expires=" in fields["upload-limit"]
    sock.sendall(data[:sent])
    # progress counts the body as it arrives, under the creating request's ID
    assert wait_until(lambda: probe(port, PROGRESS_ID)["received"] >= sent)
    assert probe(port, PROGRESS_ID)["state"] == "uploading"
    cut(sock, rst)
    # what arrived is kept: HEAD reports it once the server saw the cut
    offset = wait_until(lambda: head_offset(port, location) or None)
    assert offset == sent
    head = request(port, "HEAD", location, IETF)
    assert (head.headers["upload-length"], head.headers["cache-control"]) == (
        str(len(data)), "no-store")
    assert app.calls == []
    reply = request(port, "PATCH", location, {**PARTIAL, "Upload-Offset": str(offset),
                                              "Upload-Complete": "?1"}, data[offset:])
    assert reply.status == 201 and reply.headers["x-app"] == "recorder"
    assert (reply.headers["upload-offset"], reply.headers["upload-complete"]) == (
        str(len(data)), "?1")
    assert len(app.calls) == 1
    call = app.calls[0]
    assert (call.method, call.path, call.query, call.content_type) == (
        "POST", "/media/clip", f"X-Progress-ID={PROGRESS_ID}", "video/mp4")
    assert (call.size, call.body_sha256) == (len(data), sha256(data))
    assert "HTTP_UPLOAD_COMPLETE" not in call.headers
    done = probe(port, PROGRESS_ID)
    assert (done["state"], done["received"]) == ("done", len(data))
    # the application is never called twice; no body is left half-stored
    assert head_offset_complete(port, location) == len(data)
    assert len(app.calls) == 1
    assert not list(directory.glob("*.part-*"))


def head_offset_complete(port: int, location: str) -> int:
    reply = request(port, "HEAD", location, IETF)
    assert reply.status == 204 and reply.headers["upload-complete"] == "?1", reply
    return int(reply.headers["upload-offset"])


def test_a_whole_creation_gets_its_104_then_the_apps_answer_with_the_same_location(
        served: Any) -> None:
    port, app, _ = served
    data = counter(300_000)
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(creation_head(len(data), path="/documents/9"))
        status, interim = read_head(sock)
        assert status == 104
        assert "upload-offset" not in interim  # the first 104 carries the Location
        sock.sendall(data)
        status, final = read_head(sock)
    assert status == 201 and final["x-app"] == "recorder"
    assert final["location"] == interim["location"]
    assert (final["upload-offset"], final["upload-complete"]) == ("300000", "?1")
    assert (app.calls[-1].path, app.calls[-1].body_sha256) == ("/documents/9", sha256(data))


def test_a_first_part_gets_a_104_and_ends_in_201_incomplete(served: Any) -> None:
    port, app, _ = served
    data = counter(500_000, 7)
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(creation_head(200_000, "?0", "/media/part",
                                   **{"Upload-Length": str(len(data))}))
        status, interim = read_head(sock)
        assert status == 104
        sock.sendall(data[:200_000])
        status, final = read_head(sock)
    location = interim["location"]
    assert status == 201 and final["location"] == location
    assert (final["upload-complete"], final["upload-offset"]) == ("?0", "200000")
    assert app.calls == []
    last = request(port, "PATCH", location, {**PARTIAL, "Upload-Offset": "200000",
                                             "Upload-Complete": "?1"}, data[200_000:])
    assert last.status == 201 and last.interim == ()  # an append is no creation
    assert (len(app.calls), app.calls[0].body_sha256) == (1, sha256(data))


def test_a_body_that_arrives_before_its_upload_is_made_needs_no_104(served: Any) -> None:
    # head and body in one send (http.client joins a small body to its head):
    # the request is whole in the read that brought its head, before the
    # background made its upload; the final answer carries the Location
    port, app, _ = served
    reply = request(port, "PUT", "/small", {**IETF, "Upload-Complete": "?1"}, b"abc")
    assert reply.status == 201 and reply.headers["location"].startswith("/files/")
    assert reply.interim == ()
    assert app.calls[-1].body_sha256 == sha256(b"abc")


def test_with_expect_100_continue_the_104_comes_first(served: Any) -> None:
    port, app, _ = served
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(creation_head(5000, **{"Expect": "100-continue"}))
        first, fields = read_head(sock)
        second, _ = read_head(sock)
        assert (first, second) == (104, 100)
        sock.sendall(counter(5000))
        status, final = read_head(sock)
    assert status == 201 and final["location"] == fields["location"]
    assert app.calls[-1].body_sha256 == sha256(counter(5000))


def test_a_pipelined_creation_gets_its_104_after_the_answer_before_it(served: Any) -> None:
    port, app, _ = served
    ahead = b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(ahead + creation_head(4000, path="/second"))
        answers: List[int] = [read_head(sock)[0]]
        sock.recv(len(b'{"call": 1, "size": 3}'), socket.MSG_WAITALL)
        answers.append(read_head(sock)[0])  # the 104, in order: after the first answer
        sock.sendall(counter(4000))
        answers.append(read_head(sock)[0])
    assert answers == [201, 104, 201]
    assert [call.path for call in app.calls] == ["/first", "/second"]


@pytest.mark.parametrize("head", [
    # not the interop version this server speaks: the application's request
    b"POST /up HTTP/1.1\r\nHost: x\r\nUpload-Complete: ?1\r\nContent-Length: 3\r\n",
    b"POST /up HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: 8\r\n"
    b"Upload-Complete: ?1\r\nContent-Length: 3\r\n",
    # careful creation: no body, the 201 carries the Location at once
    b"POST /files/ HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
    b"Upload-Complete: ?0\r\nUpload-Length: 3\r\nContent-Length: 0\r\n",
    # refused at its head: a 400 alone
    b"POST /up HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
    b"Upload-Complete: ?1\r\nUpload-Length: 5\r\nContent-Length: 3\r\n",
    b"POST /up HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
    b"Upload-Complete: ?0\r\nUpload-Offset: 0\r\nContent-Length: 3\r\n",
    b"POST /up HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
    b"Upload-Complete: yes\r\nContent-Length: 3\r\n",
    # HTTP/1.0 never gets a 1xx (RFC 9110): created all the same
    b"POST /up HTTP/1.0\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
    b"Upload-Complete: ?1\r\nContent-Length: 3\r\n",
], ids=["no-interop", "interop-8", "careful", "sizes-differ", "offset", "bad-flag", "http10"])
def test_no_104_unless_an_interop_6_creation_has_a_body_to_keep(served: Any,
                                                                head: bytes) -> None:
    port, _, _ = served
    body = b"" if b"Content-Length: 0" in head else b"abc"
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n" + body)
        reply = read_to_close(sock)
    assert reply[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ")
    assert reply[9:12] in (b"201", b"400"), reply
    assert b" 104 " not in reply


def test_with_an_authorize_hook_no_104_goes_out_before_it_said_yes(tmp_path: Path) -> None:
    app = Recorder()
    asked: List[Any] = []

    def authorize(environ: Any, name: Any, action: str) -> bool:
        asked.append((name, action))
        return environ.get("HTTP_X_TOKEN") == "yes"

    with serving("server", app, resumable_dir=str(tmp_path), authorize=authorize) as port:
        refused = request(port, "POST", "/up", {**IETF, "Upload-Complete": "?1"}, b"abc")
        allowed = request(port, "POST", "/up", {**IETF, "Upload-Complete": "?1",
                                                "X-Token": "yes"}, b"abc")
    assert (refused.status, refused.interim) == (403, ())
    assert (allowed.status, allowed.interim) == (201, ())
    assert (None, "upload") in asked and len(app.calls) == 1
    assert not list(tmp_path.glob("*.part-*"))  # nothing stored for the refused one


def test_the_middleware_sends_no_104(tmp_path: Path) -> None:
    app = Recorder()
    with serving("werkzeug", app, resumable_dir=str(tmp_path)) as port:
        reply = request(port, "POST", "/up", {**IETF, "Upload-Complete": "?1"}, counter(9000))
    assert reply.status == 201 and reply.interim == ()
    assert reply.headers["location"].startswith("/files/")


def test_a_creation_cut_before_its_body_leaves_an_empty_upload_that_resumes(
        served: Any) -> None:
    port, app, _ = served
    data = counter(70_000, 11)
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(creation_head(len(data), path="/early"))
    status, fields = read_head(sock)
    assert status == 104
    cut(sock, rst=True)
    assert head_offset(port, fields["location"]) == 0  # made before its 104 went out
    reply = request(port, "PATCH", fields["location"], {**PARTIAL, "Upload-Offset": "0",
                                                        "Upload-Complete": "?1"}, data)
    assert reply.status == 201 and app.calls[-1].body_sha256 == sha256(data)


def test_an_upload_that_cannot_be_made_gets_no_104_and_its_100_still_comes(
        tmp_path: Path) -> None:
    app = Recorder()
    with serving("server", app, resumable_dir=str(tmp_path), resumable_max_uploads=1) as port:
        assert request(port, "POST", "/files/", {**IETF, "Upload-Complete": "?0",
                                                 "Upload-Length": "9"}).status == 201
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(creation_head(3000, **{"Expect": "100-continue"}))
            status, _ = read_head(sock)
            assert status == 100  # the client that waits for it is not left hanging
            sock.sendall(counter(3000))
            status, fields = read_head(sock)
        plain = request(port, "POST", "/up", {**IETF, "Upload-Complete": "?1"}, b"abc")
    # whole requests: the application answers them as plain ones (feature detection)
    assert status == plain.status == 201 and "location" not in fields
    assert plain.interim == () and "location" not in plain.headers
    assert [call.body_sha256 for call in app.calls] == [sha256(counter(3000)), sha256(b"abc")]


def may_announce(method: str, interop: Optional[str], complete: Optional[str],
                 length: Optional[str], offset: bool, size: int) -> bool:
    """The oracle, from draft -05: a 104 for a valid creation (interop 6,
    POST/PUT/PATCH, ``Upload-Complete`` a boolean, no ``Upload-Offset``,
    ``Upload-Length`` agreeing with the content) that has a body to keep."""
    if interop != "6" or method not in ("POST", "PUT", "PATCH") or offset or size == 0 \
            or complete not in ("?0", "?1"):
        return False
    if length is None:
        return True
    return length.isdigit() and (int(length) == size if complete == "?1"
                                 else int(length) >= size)


@pytest.mark.timeout(120)
def test_generated_creation_heads_get_a_104_exactly_when_the_draft_allows(
        served: Any) -> None:
    port, _, _ = served

    def field(valid: List[Optional[str]], invalid: List[Optional[str]]) -> Any:
        # half the heads are creations with every field right, the others
        # get any value: both sides of the oracle are tried
        return st.one_of(st.sampled_from(valid), st.sampled_from(valid + invalid))

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(field(["POST", "PUT", "PATCH"], ["GET", "DELETE"]),
           field(["6"], ["5", "8", " 6", None]),
           field(["?0", "?1"], ["?2", "yes", None]),
           field(["same", None], ["more", "less", "x1"]),
           field([None], ["0"]), st.integers(0, 5000))
    def check(method: str, interop: Optional[str], complete: Optional[str],
              length_kind: Optional[str], offset: Optional[str], size: int) -> None:
        length = {"same": str(size), "more": str(size + 7), "less": str(max(size - 1, 0)),
                  "x1": "x1", None: None}[length_kind]
        fields = {"Upload-Draft-Interop-Version": interop, "Upload-Complete": complete,
                  "Upload-Length": length, "Upload-Offset": offset}
        head = f"{method} /generated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in fields.items() if value is not None)
        announced = may_announce(method, interop, complete, length, offset is not None, size)
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(f"{head}Content-Length: {size}\r\n\r\n".encode())
            if announced:  # it comes before one byte of the body was sent
                status, interim = read_head(sock)
                assert status == 104 and interim["location"].startswith("/files/")
            sock.sendall(counter(size))
            reply = read_to_close(sock)
        assert reply.startswith(b"HTTP/1.1 ") and b" 104 " not in reply, reply[:200]
        if announced:
            assert reply[9:12] == b"201" and b"\r\nLocation: " + interim[
                "location"].encode() in reply

    check()


@pytest.mark.parametrize("door", ["server", "werkzeug"])
def test_our_endpoints_answer_their_paths_as_without_the_interop_header(
        tmp_path: Path, door: str) -> None:
    # the probe, a mailbox and the dashboard are never upload targets: no 104,
    # no upload made, the same answer as without the interop header
    token = "endpoint-token-0123456789"
    directory = tmp_path / "uploads"
    directory.mkdir()
    auth = {"Authorization": f"Bearer {token}"}
    with serving(door, Recorder(), resumable_dir=str(directory), mailbox=True, publish=True,
                 publish_token=token, dashboard_url="/_dashboard") as port:
        for path in (f"/progress?X-Progress-ID={PROGRESS_ID}",
                     "/mailbox/0123456789abcdef0123456789abcdef", "/_dashboard"):
            plain = request(port, "POST", path, auth, b"hello")
            creation = request(port, "POST", path, {**auth, **IETF, "Upload-Complete": "?1"},
                               b"hello")
            assert (creation.status, creation.interim) == (plain.status, ()), path
            assert re.sub(rb"\d+", b"N", creation.body) == re.sub(rb"\d+", b"N", plain.body)
            assert "location" not in creation.headers
        if door == "server":  # a resumable request there: a plain 100 Continue
            with socket.create_connection((HOST, port), timeout=10) as sock:
                sock.sendall(b"POST /_dashboard HTTP/1.1\r\nHost: x\r\nExpect: 100-continue"
                             b"\r\nPrefer: resume\r\nContent-Length: 5\r\n\r\n")
                status, fields = read_head(sock)
            assert status == 100 and "request-content-location" not in fields
        assert list(directory.iterdir()) == []
        mailbox = request(port, "GET", "/mailbox/0123456789abcdef0123456789abcdef?after=0")
        assert mailbox.body.count(b"hello") == 2
