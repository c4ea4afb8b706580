"""IETF resumable uploads, interop version 6 (draft -05; the reference's
section 2), at both front doors: creation on any application URL, careful
creation, HEAD, appends, 409 with the real offset and problem details,
completion with the application's own response carrying Upload-Offset, the
kept response on a repeated completing request, cancellation, and no 104 for
careful creation (the 104 of a creation with a body: test_resumable_ietf_104.py)."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

from wsgiprogress.resumable.storage import DirectoryStorage

from resumable_support import IETF, PARTIAL, Recorder, counter, request, serving, sha256
from server_support import HOST, read_to_close

PROBLEMS = "https://iana.org/assignments/http-problem-types#"


@pytest.fixture(params=["server", "werkzeug"], scope="module")
def door(request: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Tuple[int, Recorder, Path]]:
    directory = tmp_path_factory.mktemp(f"ietf-{request.param}")
    app = Recorder()
    with serving(request.param, app, resumable_dir=str(directory)) as port:
        yield port, app, directory


def careful_creation(port: int, length: int, path: str = "/files/", **headers: str) -> str:
    reply = request(port, "POST", path, {**IETF, "Upload-Complete": "?0",
                                         "Upload-Length": str(length), **headers})
    assert reply.status == 201, reply
    assert reply.headers["upload-complete"] == "?0"
    assert reply.headers["upload-offset"] == "0"
    assert "max-size=" in reply.headers["upload-limit"]
    assert "expires=" in reply.headers["upload-limit"]
    return reply.headers["location"]


def append(port: int, url: str, offset: int, data: bytes, done: bool) -> Any:
    return request(port, "PATCH", url, {**PARTIAL, "Upload-Offset": str(offset),
                                        "Upload-Complete": "?1" if done else "?0"}, data)


def test_careful_creation_appends_and_completion_as_tus_js_client_sends_them(door: Any) -> None:
    port, app, _ = door
    data = counter(3_000_000)
    url = careful_creation(port, len(data), "/files/",
                           **{"Upload-Metadata": "filename YmxvYi5iaW4="})
    head = request(port, "HEAD", url, IETF)
    assert head.status == 204
    assert (head.headers["upload-offset"], head.headers["upload-complete"],
            head.headers["upload-length"], head.headers["cache-control"]) == (
        "0", "?0", str(len(data)), "no-store")
    first = append(port, url, 0, data[:1_200_000], False)
    assert first.status == 201
    assert (first.headers["upload-offset"], first.headers["upload-complete"]) == ("1200000", "?0")
    assert append(port, url, 1_200_000, data[1_200_000:2_400_000], False).status == 201
    calls = len(app.calls)
    last = append(port, url, 2_400_000, data[2_400_000:], True)
    assert last.status == 201 and last.headers["x-app"] == "recorder"  # the app's own answer
    assert last.headers["upload-offset"] == str(len(data))  # without it the client retries
    assert last.headers["upload-complete"] == "?1"
    assert len(app.calls) == calls + 1
    call = app.calls[-1]
    assert (call.method, call.path, call.body_sha256) == ("POST", "/files/", sha256(data))
    assert call.content_type == "application/octet-stream"
    assert call.headers["HTTP_UPLOAD_METADATA"] == "filename YmxvYi5iaW4="
    # the client lost that answer and asks again: the same answer, no second call
    again = append(port, url, len(data), b"", True)
    assert (again.status, again.body) == (last.status, last.body)
    assert len(app.calls) == calls + 1
    head = request(port, "HEAD", url, IETF)
    assert (head.headers["upload-offset"], head.headers["upload-complete"]) == (
        str(len(data)), "?1")
    late = append(port, url, 0, b"x", False)
    assert late.status == 400
    assert json.loads(late.body)["type"] == PROBLEMS + "completed-upload"


def test_creation_on_an_application_url_gives_the_app_that_request(door: Any) -> None:
    port, app, _ = door
    url = careful_creation(port, 10, "/upload/avatar?X-Progress-ID=avatar-upload-0001",
                           **{"Content-Type": "image/png", "X-Token": "t"})
    assert url.startswith("/files/")
    reply = append(port, url, 0, b"0123456789", True)
    assert reply.status == 201
    call = app.calls[-1]
    assert (call.method, call.path, call.query) == (
        "POST", "/upload/avatar", "X-Progress-ID=avatar-upload-0001")
    assert (call.content_type, call.content_length, call.headers["HTTP_X_TOKEN"]) == (
        "image/png", "10", "t")
    assert "HTTP_UPLOAD_DRAFT_INTEROP_VERSION" not in call.headers


def test_a_whole_upload_in_one_request_is_answered_by_the_app(door: Any) -> None:
    port, app, _ = door
    data = counter(70_000)
    reply = request(port, "PUT", "/documents/7", {**IETF, "Upload-Complete": "?1"}, data)
    assert reply.status == 201 and reply.headers["x-app"] == "recorder"
    assert reply.headers["upload-offset"] == "70000"
    assert reply.headers["location"].startswith("/files/")
    assert (app.calls[-1].method, app.calls[-1].body_sha256) == ("PUT", sha256(data))


def test_a_wrong_offset_is_409_with_problem_details_and_the_real_offset(door: Any) -> None:
    port, _, _ = door
    url = careful_creation(port, 100)
    assert append(port, url, 0, counter(30), False).status == 201
    reply = append(port, url, 50, counter(10), False)
    assert reply.status == 409
    assert reply.headers["upload-offset"] == "30"
    problem = json.loads(reply.body)
    assert problem["type"] == PROBLEMS + "mismatching-upload-offset"
    assert (problem["expected-offset"], problem["provided-offset"]) == (30, 50)


@pytest.mark.parametrize("method, headers", [
    ("HEAD", {"Upload-Offset": "0"}), ("HEAD", {"Upload-Complete": "?0"}),
    ("HEAD", {"Upload-Length": "1"}), ("DELETE", {"Upload-Offset": "0"}),
])
def test_fields_a_request_must_not_carry_are_400(door: Any, method: str, headers: Any) -> None:
    port, _, _ = door
    url = careful_creation(port, 10)
    assert request(port, method, url, {**IETF, **headers}).status == 400


@pytest.mark.parametrize("headers, status", [
    ({"Upload-Complete": "yes"}, 400),
    ({"Upload-Complete": "?0", "Upload-Offset": "0"}, 400),
    ({"Upload-Complete": "?1", "Upload-Length": "5"}, 400),  # Content-Length says 3
])
def test_bad_creations_are_refused(door: Any, headers: Any, status: int) -> None:
    port, app, _ = door
    calls = len(app.calls)
    assert request(port, "POST", "/files/", {**IETF, **headers}, b"abc").status == status
    assert len(app.calls) == calls


def test_appending_past_the_length_or_with_the_wrong_type_is_refused(door: Any) -> None:
    port, _, _ = door
    url = careful_creation(port, 10)
    assert append(port, url, 0, b"x" * 11, False).status == 400
    wrong = request(port, "PATCH", url, {**IETF, "Upload-Offset": "0", "Upload-Complete": "?0",
                                         "Content-Type": "application/octet-stream"}, b"x")
    assert wrong.status == 415


def test_reaching_the_length_completes_without_upload_complete(door: Any) -> None:
    # tus-js-client with a Node stream sends ?0 on every PATCH
    port, app, _ = door
    url = careful_creation(port, 20)
    assert append(port, url, 0, counter(10), False).status == 201
    reply = append(port, url, 10, counter(10, 10), False)
    assert reply.headers["upload-offset"] == "20" and reply.headers["x-app"] == "recorder"
    assert app.calls[-1].body_sha256 == sha256(counter(20))


def test_cancellation_and_concurrent_appends(door: Any) -> None:
    port, _, directory = door
    url = careful_creation(port, 10)
    storage = DirectoryStorage(str(directory), ttl=60, max_size=10, max_uploads=10,
                               max_disk=None)
    with storage.locked(url.rsplit("/", 1)[1]):
        busy = append(port, url, 0, b"x", False)
    assert busy.status == 409 and busy.headers["upload-offset"] == "0"
    assert request(port, "DELETE", url, IETF).status == 204
    assert request(port, "HEAD", url, IETF).status == 404
    assert request(port, "DELETE", url, IETF).status == 404


def test_careful_creation_gets_no_interim_response(door: Any) -> None:
    port, _, _ = door
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"POST /files/ HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
                     b"Upload-Complete: ?0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        reply = read_to_close(sock)
    assert reply.startswith(b"HTTP/1.1 201 ") or reply.startswith(b"HTTP/1.0 201 ")
    assert b" 104 " not in reply


def test_other_interop_versions_go_to_the_application(door: Any) -> None:
    port, app, _ = door
    reply = request(port, "POST", "/upload", {"Upload-Draft-Interop-Version": "8",
                                              "Upload-Complete": "?1"}, b"abc")
    assert reply.status == 201 and reply.headers["x-app"] == "recorder"
    assert app.calls[-1].upload == {}


def test_problem_details_are_application_problem_json(door: Any) -> None:
    # RFC 9457 section 3; the draft's 409 and 400 examples
    port, _, _ = door
    url = careful_creation(port, 100)
    reply = append(port, url, 50, counter(10), False)
    assert reply.status == 409
    assert reply.headers["content-type"].split(";")[0] == "application/problem+json"


def test_refusing_an_append_to_an_active_upload_still_tells_its_offset(door: Any) -> None:
    # draft -05, Upload Append: Upload-Offset on success and on failure while active
    port, _, _ = door
    url = careful_creation(port, 10)
    assert append(port, url, 0, counter(4), False).status == 201
    past = append(port, url, 4, counter(7, 4), False)  # 11 > Upload-Length 10
    assert past.status == 400
    # what fits may be kept (a body our server stored whole is not): the truth either way
    offset = request(port, "HEAD", url, IETF).headers["upload-offset"]
    assert offset in ("4", "10")
    assert (past.headers["upload-offset"], past.headers["upload-complete"]) == (offset, "?0")
    wrong_type = request(port, "PATCH", url, {**IETF, "Upload-Offset": offset,
                                              "Upload-Complete": "?1",
                                              "Content-Type": "text/plain"}, b"")
    assert wrong_type.status == 415 and wrong_type.headers["upload-offset"] == offset
    no_offset = request(port, "PATCH", url, {**PARTIAL, "Upload-Complete": "?1"}, b"")
    assert no_offset.status == 400 and no_offset.headers["upload-offset"] == offset


def test_options_announce_the_upload_limit_to_an_ietf_client(door: Any) -> None:
    # draft -05, Upload-Limit: OPTIONS to a target that supports creation MUST carry it
    port, _, _ = door
    for path in ("/files/", careful_creation(port, 10)):
        reply = request(port, "OPTIONS", path, IETF)
        assert reply.status in (200, 204), (path, reply)
        assert reply.headers["upload-limit"].startswith("max-size=")


@pytest.mark.parametrize("complete, offset", [
    pytest.param("?1;source=app", "0", id="boolean-with-parameter"),
    pytest.param(" ?1", "0;unit=bytes", id="integer-with-parameter"),
])
def test_structured_fields_with_parameters_are_understood(door: Any, complete: str,
                                                          offset: str) -> None:
    # RFC 9651 section 4.2: an Item is a bare item and its parameters, unknown ones ignored
    port, app, _ = door
    url = careful_creation(port, 3)
    reply = request(port, "PATCH", url, {**PARTIAL, "Upload-Offset": offset,
                                         "Upload-Complete": complete}, b"abc")
    assert reply.status == 201 and reply.headers["x-app"] == "recorder"
    assert app.calls[-1].body_sha256 == sha256(b"abc")


@pytest.mark.parametrize("field, value", [
    pytest.param("Upload-Complete", "?1;", id="empty-parameter"),
    pytest.param("Upload-Complete", "?1 ;a", id="space-before-parameter"),
    pytest.param("Upload-Offset", "1234567890123456", id="integer-over-15-digits"),
    pytest.param("Upload-Offset", "-0", id="negative"),
])
def test_malformed_structured_fields_are_400(door: Any, field: str, value: str) -> None:
    port, _, _ = door
    url = careful_creation(port, 3)
    headers = {**PARTIAL, "Upload-Offset": "0", "Upload-Complete": "?0", field: value}
    assert request(port, "PATCH", url, headers, b"a").status == 400


@pytest.mark.parametrize("door_name", ["server", "werkzeug"])
def test_a_kept_204_gets_no_content_length(door_name: str, tmp_path: Path) -> None:
    # RFC 9110 section 8.6: never a Content-Length on a 204
    def no_content(environ: Any, start_response: Any) -> Any:
        environ["wsgi.input"].read()
        start_response("204 No Content", [("X-App", "no-content")])
        return []

    with serving(door_name, no_content, resumable_dir=str(tmp_path)) as port:
        reply = request(port, "PUT", "/doc", {**IETF, "Upload-Complete": "?1"}, b"abc")
        assert reply.status == 204 and reply.headers["x-app"] == "no-content"
        assert reply.headers["upload-offset"] == "3"
        assert "content-length" not in reply.headers


@pytest.mark.parametrize("door_name", ["server", "werkzeug"])
def test_a_whole_request_no_upload_can_be_made_for_is_the_apps(door_name: str,
                                                               tmp_path: Path) -> None:
    # draft -05, Feature Detection: a client unsure of support sends ?1 so
    # that the request works as a plain one; iOS 18 URLSession sends
    # "Upload-Draft-Interop-Version: 6" and "Upload-Complete: ?1" on every
    # request with a body.  A full upload store or a body over
    # resumable_max_size must not fail what the application would answer.
    app = Recorder()
    with serving(door_name, app, resumable_dir=str(tmp_path), resumable_max_uploads=1,
                 resumable_max_size=1000) as port:
        careful_creation(port, 10)  # the store is full now
        whole = {**IETF, "Upload-Complete": "?1", "Content-Type": "application/json"}
        for body in (b'{"grant_type": "client_credentials"}', counter(5000)):
            reply = request(port, "POST", "/oauth2/access_token", whole, body)
            assert reply.status == 201 and reply.headers["x-app"] == "recorder", reply
            assert "location" not in reply.headers and reply.interim == ()
            call = app.calls[-1]
            assert (call.path, call.body_sha256) == ("/oauth2/access_token", sha256(body))
        # a first part cannot work as a plain request: refused, as before
        part = request(port, "POST", "/files/", {**IETF, "Upload-Complete": "?0"}, b"abc")
        assert part.status == 503 and len(app.calls) == 2


def test_the_partial_upload_media_type_is_case_insensitive(door: Any) -> None:
    # RFC 9110 section 8.3.1
    port, _, _ = door
    url = careful_creation(port, 10)
    reply = request(port, "PATCH", url, {**IETF, "Content-Type": "Application/Partial-Upload",
                                         "Upload-Offset": "0", "Upload-Complete": "?0"}, b"abc")
    assert reply.status == 201 and reply.headers["upload-offset"] == "3"
