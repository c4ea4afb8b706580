"""The randomized resumable-upload trial: random sizes, the connection cut
(FIN or RST) one to five times at random offsets mid-body, the upload
resumed through tus or the IETF draft after asking for the offset, as real
clients do.  Used by tests/test_resumable_trials.py (a bounded count) and
benchmarks/bench_resumable.py (1000 trials of up to 8 MiB).

.. code-block:: python

    outcome = run_trial(port, random.Random(7), max_size=1 << 20, protocol="tus")
    outcome.upload_id, outcome.size, outcome.cuts
"""
from __future__ import annotations

import hashlib
import random
import socket
import time
from typing import List, NamedTuple, Optional, Sequence

from resumable_support import IETF, OCTETS, PARTIAL, TUS, counter, cut, request

HOST = "127.0.0.1"
PROTOCOLS = ("tus", "ietf")


class Outcome(NamedTuple):
    """One finished trial: the upload, what was sent, where it was cut."""

    upload_id: str
    protocol: str
    size: int
    sha256: str
    cuts: List[int]
    requests: int


def payload(size: int, seed: int) -> bytes:
    """A counter starting at *seed*: every offset's byte is known and most differ."""
    return counter(size, seed)


def _send_cut(port: int, head: bytes, body: bytes, rst: bool) -> None:
    """Send *head* and *body*, then drop the connection: RST or FIN."""
    sock = socket.create_connection((HOST, port), timeout=10)
    try:
        sock.sendall(head + body)
        cut(sock, rst)
    except OSError:
        pass  # the server may answer and close first
    finally:
        sock.close()


def _patch_head(url: str, protocol: str, offset: int, length: int) -> bytes:
    if protocol == "tus":
        fields = {**OCTETS, "Upload-Offset": str(offset)}
    else:
        fields = {**PARTIAL, "Upload-Offset": str(offset), "Upload-Complete": "?1"}
    lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return (f"PATCH {url} HTTP/1.1\r\nHost: {HOST}\r\n{lines}"
            f"Content-Length: {length}\r\n\r\n").encode()


def _offset(port: int, url: str, protocol: str) -> int:
    reply = request(port, "HEAD", url, TUS if protocol == "tus" else IETF)
    assert reply.status in (200, 204), reply
    return int(reply.headers["upload-offset"])


def run_trial(port: int, rng: random.Random, max_size: int, protocol: Optional[str] = None,
              deadline: float = 60.0, others: Sequence[int] = ()) -> Outcome:
    """One upload cut 1–5 times and resumed until the server answers it
    whole; returns what the server must have given the application.

    :param others: ports of more hosts sharing the uploads: each request
        then goes to one of them all, at random.
    """
    hosts = (port, *others)

    def pick() -> int:
        return rng.choice(hosts) if others else port

    protocol = protocol or rng.choice(PROTOCOLS)
    size = rng.randint(2, max_size)
    data = payload(size, rng.randrange(256))
    cuts = sorted(rng.sample(range(1, size), min(size - 1, rng.randint(1, 5))))
    if protocol == "tus":
        created = request(pick(), "POST", "/files/", {**TUS, "Upload-Length": str(size)})
    else:
        created = request(pick(), "POST", "/trial", {**IETF, "Upload-Complete": "?0",
                                                   "Upload-Length": str(size)})
    assert created.status == 201, created
    url = created.headers["location"]
    requests = 1
    end = time.monotonic() + deadline
    pending = list(cuts)
    while time.monotonic() < end:
        offset = _offset(pick(), url, protocol)
        requests += 1
        assert offset <= size
        while pending and pending[0] <= offset:
            pending.pop(0)
        head = _patch_head(url, protocol, offset, size - offset)
        requests += 1
        if pending:
            _send_cut(pick(), head, data[offset:pending.pop(0)], rng.random() < 0.5)
            continue
        reply = _finish(pick(), head, data[offset:])
        # tus answers 204; the IETF draft the application's own 2xx
        if reply is not None and reply[9:12] in ((b"204",) if protocol == "tus"
                                                 else (b"200", b"201", b"204")):
            return Outcome(url.rsplit("/", 1)[1], protocol, size,
                           hashlib.sha256(data).hexdigest(), cuts, requests)
        # 409/423: an earlier, cut request still held the upload; ask again
        time.sleep(0.01)
    raise AssertionError(f"trial did not finish: {protocol} size {size} cuts {cuts}")


def _finish(port: int, head: bytes, body: bytes) -> Optional[bytes]:
    with socket.create_connection((HOST, port), timeout=30) as sock:
        try:
            sock.sendall(head + body)
        except OSError:
            pass  # refused before the body was read (409, 423): the answer says so
        reply = b""
        try:
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                reply += chunk
        except OSError:
            return None
        return reply
