"""
Resumable uploads, measured in one run on loopback.

    python3 benchmarks/bench_resumable.py [--quick] [--trials N]

1. Throughput: a resumable upload without breaks (tus: POST, then one PATCH
   of the whole body, stored with fsync, then given to the application) ÷ a
   plain tracked upload (one POST) of the same size to the same server, the
   median of interleaved rounds' ratios (goal >= 0.9).
2. The randomized trial (tests/resumable_trial.py): N uploads (default 1000)
   of up to 8 MiB, each cut 1–5 times (FIN or RST) at random offsets and
   resumed through tus or the IETF draft, on both front doors; every upload
   must reach the application exactly once, byte-exact (goal: all).
3. 200 concurrent resumable uploads, all byte-exact (goal: all).
4. Where the records live: the same tus upload with the Redis backend
   (records and locks in Redis, bytes in the directory) ÷ with the
   directory's own records and flock, two servers in the same run: one
   large upload (goal >= 0.9) and rounds of 64 KiB uploads, where the round
   trips to Redis weigh most (figure only).

The throughput servers run in subprocesses (the client never shares their
interpreter lock); the trials use in-process servers from the test helpers.
Prints figures, ratios and PASS or MISS; always exits 0.
"""
from __future__ import annotations

import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List

import bench_server
import bench_support
from bench_support import serve_until_stdin_closes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

HOST = "127.0.0.1"
MiB = 1024 * 1024


def sink(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the whole body and answers its size."""
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    while remaining:
        chunk = stream.read(min(remaining, MiB))
        if not chunk:
            break
        remaining -= len(chunk)
    body = environ.get("CONTENT_LENGTH", "0").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def serve() -> None:
    """Our server with resumable uploads; the backend is ``BENCH_BACKEND``."""
    from wsgiprogress.server import create_server
    directory = tempfile.mkdtemp(prefix="bench-resumable-")
    serve_until_stdin_closes(create_server(sink, host=HOST, port=0, threads=4,
                                           resumable_dir=directory,
                                           backend=os.environ.get("BENCH_BACKEND",
                                                                  "memory://"),
                                           max_request_body_size=2 ** 31))


def exchange(port: int, head: str, body: bytes = b"") -> bytes:
    """One request (``Connection: close``), its body sent in 1 MiB pieces."""
    view = memoryview(body)
    return bench_server.request(port, head, (view[i:i + MiB] for i in range(0, len(body), MiB)))


def plain_seconds(port: int, body: bytes, number: int) -> float:
    start = time.perf_counter()
    answer = exchange(port, f"POST /upload?X-Progress-ID=bench-plain-{number:08d} HTTP/1.1\r\n"
                            f"Host: {HOST}\r\nContent-Length: {len(body)}\r\n"
                            "Connection: close\r\n\r\n", body)
    elapsed = time.perf_counter() - start
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return elapsed


def resumable_seconds(port: int, body: bytes, number: int) -> float:
    start = time.perf_counter()
    created = exchange(port, f"POST /files/?X-Progress-ID=bench-tus-{number:08d} HTTP/1.1\r\n"
                             f"Host: {HOST}\r\nTus-Resumable: 1.0.0\r\n"
                             f"Upload-Length: {len(body)}\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n")
    location = next(line.split(b": ", 1)[1].decode() for line in created.split(b"\r\n")
                    if line.lower().startswith(b"location:"))
    answer = exchange(port, f"PATCH {location} HTTP/1.1\r\nHost: {HOST}\r\n"
                            "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                            "Content-Type: application/offset+octet-stream\r\n"
                            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n", body)
    elapsed = time.perf_counter() - start
    assert answer.startswith(b"HTTP/1.1 204"), answer[:300]
    return elapsed


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def throughput(quick: bool) -> None:
    size = (16 if quick else 64) * MiB
    rounds = 3 if quick else 7
    body = bytes(range(256)) * (size // 256)
    with bench_support.server_process(__file__, "ours") as port:
        plain_seconds(port, body, 0)  # warm up
        resumable_seconds(port, body, 0)
        ratios = []
        for number in range(1, rounds + 1):
            plain = plain_seconds(port, body, number)
            resumable = resumable_seconds(port, body, number)
            ratios.append(plain / resumable)  # throughput ratio: resumable ÷ plain
    ratio = statistics.median(ratios)
    print(f"throughput, {size // MiB} MiB: resumable ÷ plain tracked upload = {ratio:.3f} "
          f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})  goal >= 0.9  {verdict(ratio >= 0.9)}")


def trials(count: int, max_size: int) -> None:
    from resumable_support import Recorder, serving
    from resumable_trial import run_trial

    for door in ("server", "werkzeug"):
        app = Recorder()
        rng = random.Random(f"bench-{door}")
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as directory, \
                serving(door, app, resumable_dir=directory) as port:
            outcomes = [run_trial(port, rng, max_size, deadline=120) for _ in range(count)]
        calls = Counter(call.upload["id"] for call in app.calls)
        got = {call.upload["id"]: (call.size, call.body_sha256) for call in app.calls}
        exact = sum(1 for o in outcomes if calls[o.upload_id] == 1 and
                    got[o.upload_id] == (o.size, o.sha256))
        cuts = sum(len(o.cuts) for o in outcomes)
        print(f"trials, {door}: {exact}/{count} byte-exact and called once, {cuts} cuts, "
              f"{len(app.calls)} calls, {time.monotonic() - started:.0f} s  "
              f"goal all  {verdict(exact == count == len(app.calls))}")


def concurrent(count: int) -> None:
    from resumable_support import OCTETS, TUS, Recorder, counter, request, serving, sha256

    app = Recorder()
    failures: List[str] = []
    with tempfile.TemporaryDirectory() as directory, \
            serving("server", app, resumable_dir=directory, threads=8,
                    connection_limit=1000) as port:
        def one(number: int) -> None:
            data = counter(200_000 + number, number)
            try:
                url = request(port, "POST", "/files/", {**TUS, "Upload-Length": str(len(data))},
                              timeout=60).headers["location"]
                for start in range(0, len(data), 65536):
                    reply = request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(start)},
                                    data[start:start + 65536], timeout=60)
                    assert reply.status == 204, reply
            except Exception as exc:  # counted below
                failures.append(repr(exc))

        threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    wanted = sorted(sha256(counter(200_000 + n, n)) for n in range(count))
    exact = sorted(call.body_sha256 for call in app.calls) == wanted
    print(f"concurrent: {count} uploads, {len(app.calls)} calls, {len(failures)} failures, "
          f"{time.monotonic() - started:.1f} s  goal all byte-exact  "
          f"{verdict(exact and not failures)}")


def stores(quick: bool) -> None:
    from redis_support import redis_server

    size = (16 if quick else 64) * MiB
    rounds = 3 if quick else 7
    body = bytes(range(256)) * (size // 256)
    small = body[:64 * 1024]
    batch = 20 if quick else 50
    with redis_server() as redis, \
            bench_support.server_process(__file__, "ours") as directory_port, \
            bench_support.server_process(__file__, "ours",
                                         {**os.environ, "BENCH_BACKEND": redis.url}) as redis_port:
        for port in (directory_port, redis_port):
            resumable_seconds(port, body, 0)  # warm up
        large, many = [], []
        for number in range(1, rounds + 1):
            large.append(resumable_seconds(directory_port, body, number) /
                         resumable_seconds(redis_port, body, number))
            per_store = [sum(resumable_seconds(port, small, number * 1000 + i)
                             for i in range(batch)) for port in (directory_port, redis_port)]
            many.append(per_store[0] / per_store[1])
    ratio = statistics.median(large)
    print(f"stores, {size // MiB} MiB: Redis records ÷ directory records = {ratio:.3f} "
          f"(rounds {', '.join(f'{r:.2f}' for r in large)})  goal >= 0.9  "
          f"{verdict(ratio >= 0.9)}")
    print(f"stores, 64 KiB uploads: Redis records ÷ directory records = "
          f"{statistics.median(many):.3f} (rounds {', '.join(f'{r:.2f}' for r in many)})  "
          "figure only")


def main(argv: List[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve()
        return 0
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("wsgiprogress").setLevel(logging.ERROR)
    quick = "--quick" in argv
    count = int(argv[argv.index("--trials") + 1]) if "--trials" in argv else (
        50 if quick else 1000)
    throughput(quick)
    stores(quick)
    concurrent(200)
    trials(count, (1 if quick else 8) * MiB)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
