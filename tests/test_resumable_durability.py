"""What a stored upload survives: a server killed with SIGKILL in the middle
of an append (restarted, it reports an offset whose bytes are all intact, and
the upload resumes from it), and a full disk (507, nothing corrupted, the
upload resumes once there is room).  The server runs in its own process
(tests/resumable_server.py)."""
from __future__ import annotations

import hashlib
import json
import signal
import socket
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from resumable_support import OCTETS, TUS, ServerProcess, counter, request
from server_support import HOST, wait_until

MiB = 1024 * 1024


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    (tmp_path / "calls").mkdir()
    process = ServerProcess(getattr(request, "param", "werkzeug"), tmp_path / "uploads",
                            tmp_path / "calls")
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL)


def create(port: int, size: int) -> Tuple[str, str]:
    reply = request(port, "POST", "/files/", {**TUS, "Upload-Length": str(size)})
    assert reply.status == 201, reply
    url = reply.headers["location"]
    return url, url.rsplit("/", 1)[1]


def offset_of(port: int, url: str) -> int:
    return int(request(port, "HEAD", url, TUS).headers["upload-offset"])


def test_sigkill_mid_append_keeps_every_byte_before_the_reported_offset(
        served: ServerProcess) -> None:
    size = 8 * MiB
    data = counter(size, 3)
    port = served.start("--sync-bytes", str(256 * 1024))
    url, upload_id = create(port, size)
    sock = socket.create_connection((HOST, port), timeout=10)
    try:
        sock.sendall(f"PATCH {url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                     f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())
        sock.sendall(data[:5 * MiB])
        # commits run while the body streams in: the append is under way
        reported = wait_until(lambda: offset_of(port, url) >= 4 * MiB and
                              offset_of(port, url), timeout=20)
        served.stop(signal.SIGKILL)
    finally:
        sock.close()
    stored = json.loads((served.uploads / f"{upload_id}.json").read_text())
    assert reported <= stored["offset"] <= 5 * MiB
    kept = (served.uploads / f"{upload_id}.bin").read_bytes()
    assert kept[:stored["offset"]] == data[:stored["offset"]]
    port = served.start()
    offset = offset_of(port, url)
    assert offset == stored["offset"]
    reply = request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(offset)}, data[offset:])
    assert reply.status == 204 and reply.headers["upload-offset"] == str(size)
    assert served.bodies() == [hashlib.sha256(data).hexdigest()]


@pytest.mark.parametrize("served", ["server", "werkzeug"], indirect=True)
def test_a_full_disk_is_507_and_corrupts_nothing(served: ServerProcess) -> None:
    size = 2 * MiB
    data = counter(size, 11)
    piece = 400_000  # under waitress's in-memory body buffer, so only we write files
    port = served.start("--fsize", str(1 * MiB))
    url, upload_id = create(port, size)
    for start in (0, piece):
        reply = request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(start)},
                        data[start:start + piece])
        assert reply.status == 204, reply
    full = request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(2 * piece)},
                   data[2 * piece:3 * piece])
    assert full.status == 507, full
    assert offset_of(port, url) == 2 * piece
    assert (served.uploads / f"{upload_id}.bin").read_bytes() == data[:2 * piece]
    assert json.loads((served.uploads / f"{upload_id}.json").read_text())["offset"] == 2 * piece
    served.stop()
    port = served.start()  # room again
    reply = request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(2 * piece)},
                    data[2 * piece:])
    assert reply.status == 204, reply
    assert served.bodies() == [hashlib.sha256(data).hexdigest()]
