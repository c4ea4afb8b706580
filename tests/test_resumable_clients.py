"""Real clients nobody here wrote, against both front doors on loopback:
tuspy 1.1 (tus 1.0, sha1 checksums, resuming from a stored URL) and
tus-js-client 4.3.1 under Node (tus 1.0 and ``ietf-draft-05``, aborted mid-
upload and resumed from its URL).  Each upload reaches the application once,
byte-exact; one progress ID covers the upload across its connections."""
from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
from tusclient import client as tus_client

from npm_support import npm_ci
from resumable_support import OCTETS, TUS, Recorder, counter, request, serving, sha256
from server_support import HOST, probe, wait_until

JS = Path(__file__).parent / "js" / "tus"


def js_payload(size: int) -> bytes:
    """What tests/js/tus/upload.js sends: byte i is (i * 7 + (i >> 8)) & 255."""
    return bytes((i * 7 + (i >> 8)) & 255 for i in range(size))


@pytest.fixture(params=["server", "werkzeug"], scope="module")
def door(request: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Tuple[int, Recorder]]:
    directory = tmp_path_factory.mktemp(f"clients-{request.param}")
    app = Recorder()
    with serving(request.param, app, resumable_dir=str(directory)) as port:
        yield port, app


def test_tuspy_uploads_in_checksummed_chunks_and_resumes_from_the_url(door: Any) -> None:
    port, app = door
    data = counter(2_500_000)
    tus = tus_client.TusClient(f"http://{HOST}:{port}/files/")
    first = tus.uploader(file_stream=io.BytesIO(data), chunk_size=400_000,
                         metadata={"filename": "big.bin"}, upload_checksum=True)
    first.upload_chunk()
    first.upload_chunk()  # the process stops here; it kept the URL
    calls = len(app.calls)
    resumed = tus.uploader(file_stream=io.BytesIO(data), chunk_size=400_000,
                           url=first.url, upload_checksum=True)
    assert resumed.offset == 800_000  # from HEAD
    resumed.upload()
    assert len(app.calls) == calls + 1
    call = app.calls[-1]
    assert (call.size, call.body_sha256) == (len(data), sha256(data))
    assert call.upload["metadata"].startswith("filename ")


def node_upload(job: Dict[str, Any]) -> Dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed: apt-get install -y nodejs")
    npm_ci("tus", "tus-js-client")
    done = subprocess.run([node, str(JS / "upload.js")], input=json.dumps(job),
                          capture_output=True, text=True, timeout=60, check=True)
    result: Dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("override", [
    pytest.param(False, id="patch"),
    # tus 1.0.0: X-HTTP-Method-Override tunnels PATCH; tus-js-client's
    # overridePatchMethod sends it in both protocols, as tusd takes it
    pytest.param(True, id="post-with-method-override"),
])
@pytest.mark.parametrize("protocol", ["tus-v1", "ietf-draft-05"])
def test_tus_js_client_resumes_an_aborted_upload(door: Any, protocol: str,
                                                 override: bool) -> None:
    port, app = door
    size = 2_000_000
    calls = len(app.calls)
    outcome = node_upload({"endpoint": f"http://{HOST}:{port}/files/", "protocol": protocol,
                           "size": size, "chunkSize": 300_000, "abortAt": 600_000,
                           "metadata": {"filename": "movie.mp4"},
                           "overridePatchMethod": override})
    assert "error" not in outcome, outcome
    assert outcome["abortedAfter"] >= 600_000 and outcome["url"] == outcome["firstUrl"]
    assert outcome["offset"] == str(size)
    assert len(app.calls) == calls + 1
    assert (app.calls[-1].size, app.calls[-1].body_sha256) == (size, sha256(js_payload(size)))
    if protocol == "tus-v1":
        assert outcome["responseStatus"] == 204
        kept = request(port, "GET", outcome["messageLocation"])
        assert json.loads(kept.body) == {"call": calls + 1, "size": size}
    else:  # the application's own answer
        assert outcome["responseStatus"] == 201
        assert json.loads(outcome["responseBody"]) == {"call": calls + 1, "size": size}


def test_one_progress_id_counts_the_whole_upload_across_connections(door: Any) -> None:
    port, app = door
    progress_id = "resumable-progress-0001"
    size = 900_000
    data = counter(size)
    created = request(port, "POST", f"/files/?X-Progress-ID={progress_id}",
                      {**TUS, "Upload-Length": str(size)})
    url = created.headers["location"]
    seen = []
    for start in range(0, size - 300_000, 300_000):
        reply = request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(start)},
                        data[start:start + 300_000])
        assert reply.status == 204
        answer = probe(port, progress_id)
        seen.append((answer["state"], answer["received"], answer["size"]))
    assert seen == [("uploading", 300_000, size), ("uploading", 600_000, size)]
    request(port, "PATCH", url, {**OCTETS, "Upload-Offset": "600000"}, data[600_000:])
    final = wait_until(lambda: (lambda a: a if a["state"] == "done" else None)(
        probe(port, progress_id)))
    assert (final["received"], final["size"], final["status"]) == (size, size, 201)
    assert app.calls[-1].upload["progress_id"] == progress_id


@pytest.mark.parametrize("door_name", ["server", "werkzeug"])
def test_progress_moves_during_an_append_and_a_cut_keeps_what_arrived(
        door_name: str, tmp_path: Path) -> None:
    progress_id = "resumable-progress-0002"
    size = 2_000_000
    data = counter(size)
    with serving(door_name, Recorder(), resumable_dir=str(tmp_path)) as port:
        url = request(port, "POST", f"/files/?X-Progress-ID={progress_id}",
                      {**TUS, "Upload-Length": str(size)}).headers["location"]
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(f"PATCH {url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                         "Content-Type: application/offset+octet-stream\r\n"
                         f"Upload-Offset: 0\r\nContent-Length: {size}\r\n\r\n".encode())
            sock.sendall(data[:700_000])
            wait_until(lambda: probe(port, progress_id)["received"] >= 600_000)
            assert probe(port, progress_id)["state"] == "uploading"
        # the connection broke at 700000: what arrived is kept (our server
        # appends it in the background)
        offset = wait_until(lambda: int(request(port, "HEAD", url, TUS).headers[
            "upload-offset"]) or None)
        assert offset == 700_000
        assert probe(port, progress_id)["received"] == 700_000
        reply = request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(offset)},
                        data[offset:])
        assert reply.status == 204
        assert (tmp_path / (url.rsplit("/", 1)[1] + ".bin")).read_bytes() == data
        assert [p.name for p in tmp_path.iterdir() if ".part-" in p.name] == []
