"""tus 1.0 on the wire (tus 1.0.0 protocol.md, the reference's section 3), at
both front doors: discovery, creation (with upload, deferred length), HEAD,
PATCH offsets (409 with the real offset, nothing written), checksums (460,
nothing appended), termination, expiry, concatenation, IDs and Upload-Concat
URLs that try to leave the directory; the application is called once, with
the creating request rebuilt, and its response is kept."""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from wsgiprogress.resumable.storage import DirectoryStorage

from resumable_support import OCTETS, TUS, Recorder, Reply, counter, request, serving, sha256
from server_support import wait_until

DOORS = ["server", "werkzeug"]


@pytest.fixture(params=DOORS, scope="module")
def door(request: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Tuple[int, Recorder, Path]]:
    directory = tmp_path_factory.mktemp(f"uploads-{request.param}")
    app = Recorder()
    with serving(request.param, app, resumable_dir=str(directory),
                 resumable_max_size=64 * 1024 * 1024) as port:
        yield port, app, directory


def create(port: int, length: int, **headers: str) -> str:
    reply = request(port, "POST", "/files/", {**TUS, "Upload-Length": str(length), **headers})
    assert reply.status == 201, reply
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert reply.headers["location"].startswith("/files/")
    return reply.headers["location"]


def patch(port: int, url: str, offset: int, data: bytes, **headers: str) -> Reply:
    return request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(offset), **headers}, data)


def test_options_announce_version_extensions_size_and_checksums(door: Any) -> None:
    port, _, _ = door
    reply = request(port, "OPTIONS", "/files/")
    assert reply.status == 204
    assert reply.headers["tus-version"] == "1.0.0"
    assert set(reply.headers["tus-extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination",
        "expiration", "checksum", "concatenation"}
    assert reply.headers["tus-max-size"] == str(64 * 1024 * 1024)
    assert set(reply.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}
    assert reply.headers["upload-limit"] == f"max-size={64 * 1024 * 1024}"  # IETF discovery


def test_a_request_without_tus_resumable_is_refused_with_412(door: Any) -> None:
    port, app, _ = door
    calls = len(app.calls)
    reply = request(port, "POST", "/files/", {"Upload-Length": "10"})
    assert reply.status == 412 and reply.headers["tus-version"] == "1.0.0"
    assert len(app.calls) == calls


def test_upload_in_pieces_calls_the_app_once_with_the_creating_request(door: Any) -> None:
    port, app, _ = door
    data = counter(1_000_000)
    metadata = "filename " + base64.b64encode(b"report.pdf").decode() + ",private"
    url = create(port, len(data), **{"Upload-Metadata": metadata, "X-Custom": "kept"})
    head = request(port, "HEAD", url, TUS)
    assert head.status == 200
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["upload-metadata"] == metadata
    assert head.headers["cache-control"] == "no-store"
    assert "upload-expires" in head.headers
    calls = len(app.calls)
    for start in range(0, len(data), 300_000):
        reply = patch(port, url, start, data[start:start + 300_000])
        assert reply.status == 204, reply
        assert reply.headers["upload-offset"] == str(min(start + 300_000, len(data)))
    assert len(app.calls) == calls + 1
    call = app.calls[-1]
    assert (call.method, call.path, call.size, call.content_length) == (
        "POST", "/files/", len(data), str(len(data)))
    assert call.body_sha256 == sha256(data)
    assert call.content_type == "application/octet-stream"
    assert call.headers["HTTP_UPLOAD_METADATA"] == metadata
    assert call.headers["HTTP_X_CUSTOM"] == "kept"
    assert "HTTP_TUS_RESUMABLE" not in call.headers
    assert call.upload["id"] == url.rsplit("/", 1)[1]
    assert call.upload["size"] == len(data) and call.upload["metadata"] == metadata
    # the final PATCH pointed at the kept response; it is the application's
    location = reply.headers["response-message-location"]
    kept = request(port, "GET", location)
    assert kept.status == 201 and kept.headers["x-app"] == "recorder"
    assert kept.body == f'{{"call": {len(app.calls)}, "size": {len(data)}}}'.encode()
    as_message = request(port, "GET", location, {"Accept": "message/http"})
    assert as_message.headers["content-type"] == "message/http"
    assert as_message.body.startswith(b"HTTP/1.1 201 Created\r\n")
    assert as_message.body.endswith(b"\r\n\r\n" + kept.body)
    # a client that lost the final answer: the real offset, never a second call
    again = patch(port, url, 900_000, data[900_000:])
    assert again.status == 409 and again.headers["upload-offset"] == str(len(data))
    assert request(port, "HEAD", url, TUS).headers["upload-offset"] == str(len(data))
    assert len(app.calls) == calls + 1


def test_a_wrong_offset_is_409_with_the_real_offset_and_nothing_written(door: Any) -> None:
    port, app, directory = door
    url = create(port, 100)
    assert patch(port, url, 0, counter(40)).status == 204
    for wrong in (0, 39, 41, 100):
        reply = patch(port, url, wrong, counter(10, wrong))
        assert reply.status == 409, reply
        assert reply.headers["upload-offset"] == "40"
    stored = (directory / (url.rsplit("/", 1)[1] + ".bin")).read_bytes()
    assert stored == counter(40)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksums_are_checked_and_a_mismatch_appends_nothing(door: Any, algorithm: str) -> None:
    port, _, _ = door
    url = create(port, 2000)
    first, second = counter(1000), counter(1000, 1000)

    def checksum(data: bytes) -> str:
        return f"{algorithm} " + base64.b64encode(hashlib.new(algorithm, data).digest()).decode()

    reply = patch(port, url, 0, first, **{"Upload-Checksum": checksum(first)})
    assert reply.status == 204 and reply.headers["upload-offset"] == "1000"
    bad = patch(port, url, 1000, second, **{"Upload-Checksum": checksum(first)})
    assert bad.status == 460 and bad.headers["upload-offset"] == "1000"
    assert request(port, "HEAD", url, TUS).headers["upload-offset"] == "1000"
    assert patch(port, url, 1000, second, **{"Upload-Checksum": checksum(second)}).status == 204


def test_an_unknown_checksum_algorithm_or_content_type_is_refused(door: Any) -> None:
    port, _, _ = door
    url = create(port, 10)
    assert patch(port, url, 0, b"x" * 10, **{"Upload-Checksum": "crc32 AAAA"}).status == 400
    wrong_type = request(port, "PATCH", url, {**TUS, "Upload-Offset": "0",
                                              "Content-Type": "text/plain"}, b"x" * 10)
    assert wrong_type.status == 415
    assert request(port, "HEAD", url, TUS).headers["upload-offset"] == "0"


def test_deferred_length_is_set_by_a_later_patch(door: Any) -> None:
    port, app, _ = door
    url = create_deferred = request(port, "POST", "/files/", {
        **TUS, "Upload-Defer-Length": "1"}).headers["location"]
    assert create_deferred
    head = request(port, "HEAD", url, TUS)
    assert head.headers["upload-defer-length"] == "1" and "upload-length" not in head.headers
    calls = len(app.calls)
    assert patch(port, url, 0, counter(500)).status == 204
    assert len(app.calls) == calls
    done = patch(port, url, 500, counter(500, 500), **{"Upload-Length": "1000"})
    assert done.status == 204 and done.headers["upload-offset"] == "1000"
    assert app.calls[-1].body_sha256 == sha256(counter(1000))
    assert request(port, "POST", "/files/", {**TUS, "Upload-Defer-Length": "2"}).status == 400
    assert request(port, "POST", "/files/", TUS).status == 400


def test_creation_with_upload_answers_the_offset(door: Any) -> None:
    port, app, _ = door
    data = counter(5000)
    reply = request(port, "POST", "/files/", {**OCTETS, "Upload-Length": "8000"}, data)
    assert reply.status == 201 and reply.headers["upload-offset"] == "5000"
    whole = request(port, "POST", "/files/?X-Progress-ID=creation-with-upload-0001",
                    {**OCTETS, "Upload-Length": "5000"}, data)
    assert whole.status == 201 and whole.headers["upload-offset"] == "5000"
    assert app.calls[-1].body_sha256 == sha256(data)
    assert app.calls[-1].query == "X-Progress-ID=creation-with-upload-0001"


def test_termination_removes_the_upload(door: Any) -> None:
    port, _, directory = door
    url = create(port, 100)
    upload_id = url.rsplit("/", 1)[1]
    assert request(port, "DELETE", url, TUS).status == 204
    assert request(port, "HEAD", url, TUS).status == 404
    assert patch(port, url, 0, b"x").status == 404
    assert not list(directory.glob(upload_id + "*"))


def test_over_the_maximum_size_is_413(door: Any) -> None:
    port, _, _ = door
    reply = request(port, "POST", "/files/", {**TUS, "Upload-Length": str(64 * 1024 * 1024 + 1)})
    assert reply.status == 413


def test_concatenation_gives_the_app_the_parts_in_order(door: Any) -> None:
    port, app, _ = door
    parts = [counter(3000), counter(1234, 99)]
    urls = []
    for data in parts:
        url = create(port, len(data), **{"Upload-Concat": "partial"})
        assert patch(port, url, 0, data).status == 204
        urls.append(url)
    calls = len(app.calls)
    final = request(port, "POST", "/files/", {**TUS, "Upload-Concat": "final;" + " ".join(
        f"http://127.0.0.1:{port}{u}" for u in urls)})
    assert final.status == 201, final
    assert len(app.calls) == calls + 1  # partials never reach the application
    assert app.calls[-1].body_sha256 == sha256(b"".join(parts))
    head = request(port, "HEAD", final.headers["location"], TUS)
    assert head.headers["upload-offset"] == str(sum(map(len, parts)))
    assert head.headers["upload-concat"].startswith("final;")
    assert patch(port, final.headers["location"], 0, b"x").status == 403


@pytest.mark.parametrize("concat", [
    "final;/files/../../../etc/passwd",
    "final;/files/..%2F..%2Fetc%2Fpasswd",
    "final;/files/" + "A" * 31 + ".",
    "final;",
    "everything",
])
def test_upload_concat_urls_cannot_name_anything_but_partial_uploads(door: Any,
                                                                     concat: str) -> None:
    port, app, _ = door
    calls = len(app.calls)
    assert request(port, "POST", "/files/", {**TUS, "Upload-Concat": concat}).status == 400
    assert len(app.calls) == calls


@pytest.mark.parametrize("path", [
    "/files/../../etc/passwd", "/files/..%2F..%2Fetc%2Fpasswd", "/files/%00",
    "/files/" + "a" * 33, "/files/" + "a" * 31 + "/",
])
def test_ids_that_are_not_ours_are_404(door: Any, path: str) -> None:
    port, _, _ = door
    for method in ("HEAD", "PATCH", "DELETE"):
        reply = request(port, method, path, OCTETS if method == "PATCH" else TUS)
        assert reply.status in (404, 400), (method, reply)
        assert "upload-offset" not in reply.headers


def test_a_second_append_while_one_runs_is_423_with_the_offset(door: Any) -> None:
    port, _, directory = door
    url = create(port, 100)
    storage = DirectoryStorage(str(directory), ttl=60, max_size=100, max_uploads=10,
                               max_disk=None)
    with storage.locked(url.rsplit("/", 1)[1]):  # another process appends
        reply = patch(port, url, 0, b"x" * 10)
    assert reply.status == 423 and reply.headers["upload-offset"] == "0"
    assert patch(port, url, 0, b"x" * 10).status == 204


def test_an_application_failure_is_kept_and_never_repeated(tmp_path: Path) -> None:
    calls = []

    def failing(environ: Dict[str, Any], start_response: Any) -> Any:
        calls.append(environ["wsgi.input"].read())
        raise RuntimeError("boom")

    with serving("server", failing, resumable_dir=str(tmp_path)) as port:
        url = create(port, 10)
        reply = patch(port, url, 0, b"0123456789")
        assert reply.status == 204
        kept = request(port, "GET", reply.headers["response-message-location"])
        assert kept.status == 500
        assert patch(port, url, 0, b"0123456789").status == 409
    assert calls == [b"0123456789"]


def test_an_expired_upload_is_gone(tmp_path: Path) -> None:
    with serving("server", Recorder(), resumable_dir=str(tmp_path), resumable_ttl=0.3) as port:
        url = create(port, 10)
        assert request(port, "HEAD", url, TUS).status == 200
        wait_until(lambda: request(port, "HEAD", url, TUS).status == 404, timeout=5)
        assert patch(port, url, 0, b"x").status == 404
        create(port, 10)  # a creation sweeps the expired ones
        assert not list(tmp_path.glob(url.rsplit("/", 1)[1] + "*"))


def test_bounds_answer_503_and_507(tmp_path: Path) -> None:
    with serving("server", Recorder(), resumable_dir=str(tmp_path / "count"),
                 resumable_max_uploads=2) as port:
        create(port, 10)
        create(port, 10)
        full = request(port, "POST", "/files/", {**TUS, "Upload-Length": "10"})
        assert full.status == 503 and "retry-after" in full.headers
    with serving("server", Recorder(), resumable_dir=str(tmp_path / "disk"),
                 resumable_max_disk=1000) as port:
        create(port, 600)
        assert request(port, "POST", "/files/", {**TUS, "Upload-Length": "600"}).status == 507
        assert len(os.listdir(tmp_path / "disk")) == 3  # the first upload's files only


def test_the_authorize_hook_decides_who_uses_an_upload(tmp_path: Path) -> None:
    asked = []

    def authorize(environ: Dict[str, Any], name: Any, action: str) -> bool:
        if action != "upload":
            return True
        asked.append(name)
        return environ.get("HTTP_X_USER") == "alice"

    alice = {"X-User": "alice"}
    with serving("server", Recorder(), resumable_dir=str(tmp_path), authorize=authorize) as port:
        assert request(port, "POST", "/files/", {**TUS, "Upload-Length": "3"}).status == 403
        url = create(port, 3, **alice)
        upload_id = url.rsplit("/", 1)[1]
        assert request(port, "HEAD", url, TUS).status == 403
        assert patch(port, url, 0, b"abc").status == 403
        assert patch(port, url, 0, b"abc", **alice).status == 204
    assert asked == [None, None, upload_id, upload_id, upload_id]


def test_every_refusal_carries_tus_resumable(tmp_path: Path) -> None:
    # tus 1.0.0 core: Tus-Resumable in every response but OPTIONS, the
    # authorize hook's 403 included
    with serving("server", Recorder(), resumable_dir=str(tmp_path),
                 authorize=lambda environ, name, action: name is None) as port:
        url = create(port, 3)
        for reply in (request(port, "HEAD", url, TUS), patch(port, url, 0, b"abc"),
                      request(port, "DELETE", url, TUS)):
            assert reply.status == 403
            assert reply.headers["tus-resumable"] == "1.0.0"


def test_a_final_upload_names_its_partials_by_their_locations(tmp_path: Path) -> None:
    # tus 1.0.0 concatenation: HEAD on a final upload lists the partial
    # uploads' URLs, the ones their creation answered, mount prefix included
    with serving("server", Recorder(), resumable_dir=str(tmp_path), url_prefix="/app") as port:
        urls = []
        for data in (b"abc", b"defg"):
            reply = request(port, "POST", "/app/files/", {**TUS, "Upload-Length": str(len(data)),
                                                          "Upload-Concat": "partial"})
            urls.append(reply.headers["location"])
            assert urls[-1].startswith("/app/files/")
            assert patch(port, urls[-1], 0, data).status == 204
        final = request(port, "POST", "/app/files/",
                        {**TUS, "Upload-Concat": "final;" + " ".join(urls)})
        assert final.status == 201, final
        head = request(port, "HEAD", final.headers["location"], TUS)
        assert head.headers["upload-concat"] == "final;" + " ".join(urls)


def test_media_types_are_case_insensitive(door: Any) -> None:
    # RFC 9110 section 8.3.1: type and subtype compare case-insensitively
    port, _, _ = door
    url = create(port, 6)
    mixed = {**TUS, "Content-Type": "Application/Offset+Octet-Stream"}
    reply = request(port, "PATCH", url, {**mixed, "Upload-Offset": "0"}, b"abc")
    assert reply.status == 204 and reply.headers["upload-offset"] == "3"
    with_upload = request(port, "POST", "/files/", {**mixed, "Upload-Length": "3"}, b"abc")
    assert with_upload.status == 201 and with_upload.headers["upload-offset"] == "3"


def test_only_a_post_tunnels_another_method(door: Any) -> None:
    # X-HTTP-Method-Override stands in for PATCH and DELETE on a POST (tusd
    # reads it on POST only): a GET never deletes nor appends
    port, _, _ = door
    url = create(port, 6)
    assert request(port, "GET", url, {**TUS, "X-HTTP-Method-Override": "DELETE"}).status == 405
    head = request(port, "HEAD", url, TUS)
    assert head.status == 200 and head.headers["upload-offset"] == "0"
    tunnelled = request(port, "POST", url, {**OCTETS, "Upload-Offset": "0",
                                            "X-HTTP-Method-Override": "PATCH"}, b"abc")
    assert tunnelled.status == 204 and tunnelled.headers["upload-offset"] == "3"
    deleted = request(port, "POST", url, {**TUS, "X-HTTP-Method-Override": "delete"})
    assert deleted.status == 204
    assert request(port, "HEAD", url, TUS).status == 404


@pytest.mark.parametrize("headers, body", [
    pytest.param({**TUS, "Content-Type": "text/plain", "Upload-Offset": "0"}, b"abc",
                 id="415-media-type"),
    pytest.param({**OCTETS}, b"abc", id="400-no-offset"),
    pytest.param({**OCTETS, "Upload-Offset": "zero"}, b"abc", id="400-bad-offset"),
    pytest.param({**OCTETS, "Upload-Offset": "0", "Upload-Checksum": "crc32 AAAA"}, b"abc",
                 id="400-checksum-algorithm"),
    pytest.param({**OCTETS, "Upload-Offset": "0", "Upload-Length": "9"}, b"abc",
                 id="400-length-set"),
    pytest.param({**OCTETS, "Upload-Offset": "0"}, b"0123456789", id="past-the-length"),
])
def test_every_refused_patch_tells_the_offset(door: Any, headers: Dict[str, str],
                                              body: bytes) -> None:
    # tus 1.0.0 and the reference's section 4: tus-js-client reads
    # Upload-Offset in every answer to a PATCH; a refusal changes nothing
    port, _, _ = door
    url = create(port, 6)
    reply = request(port, "PATCH", url, headers, body)
    assert 400 <= reply.status < 500, reply
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert reply.headers["upload-offset"] == "0"
    assert request(port, "HEAD", url, TUS).headers["upload-offset"] == "0"
