"""
The cost of per-file progress, measured in one run on loopback.

    python3 benchmarks/bench_per_file.py [--quick]

A 256 MiB single-file ``multipart/form-data`` upload, tracked, to our server
with ``per_file`` off and on: there the decoder runs on the I/O thread that
also reads the socket, the costliest place (the middleware parses on the
application's thread as it reads).  Each server runs in a subprocess of its
own on 127.0.0.1, port 0.

Goal: per_file on / per_file off >= 0.95 (the median of interleaved rounds'
ratios).  Prints figures and PASS or MISS; always exits 0.
"""
from __future__ import annotations

import contextlib
import statistics
import sys
import time
from typing import Dict, List

import bench_support
from bench_server import HOST, THREADS, MiB, request, sink, verdict

BOUNDARY = "----wsgiprogressBenchBoundary7MA4YWxkTrZu0gW"


def make_server(kind: str) -> object:
    from wsgiprogress.server import create_server

    return create_server(sink, host=HOST, port=0, threads=THREADS,
                         per_file=kind == "per-file-on")


def form(size: int) -> List[bytes]:
    """One file part of *size* bytes, as a browser sends it, in 1 MiB pieces."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"upload\"; "
            f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    # bytes that hold CR and LF like real files do (a boundary needs both)
    piece = (bytes(range(256)) * 4096)[:MiB]
    return [head, *(piece for _ in range(size // MiB)), tail]


def upload_seconds(port: int, pieces: List[bytes]) -> float:
    size = sum(len(p) for p in pieces)
    head = (f"POST /upload?X-Progress-ID=bench-per-file-id HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n")
    start = time.perf_counter()
    answer = request(port, head, pieces)
    elapsed = time.perf_counter() - start
    assert answer.endswith(b"%d" % size), answer[-200:]
    return elapsed


def main(quick: bool) -> None:
    size = (64 if quick else 256) * MiB
    rounds = 3 if quick else 7
    pieces = form(size)
    kinds = ["per-file-off", "per-file-on"]
    seconds: Dict[str, List[float]] = {kind: [] for kind in kinds}
    with contextlib.ExitStack() as stack:
        ports = {kind: stack.enter_context(bench_support.server_process(__file__, kind))
                 for kind in kinds}
        for _ in range(rounds):  # interleaved, so a noisy moment hits both
            for kind in kinds:
                seconds[kind].append(upload_seconds(ports[kind], pieces))
    ratio = statistics.median(off / on for off, on in
                              zip(seconds["per-file-off"], seconds["per-file-on"]))
    rate = {kind: size / statistics.median(values) / MiB for kind, values in seconds.items()}
    print(f"one-file form of {size // MiB} MiB on our server, medians of {rounds} interleaved "
          f"rounds: per_file off {rate['per-file-off']:.0f} MiB/s, "
          f"on {rate['per-file-on']:.0f} MiB/s")
    print(f"per_file on / off, median of the rounds' ratios: {ratio:.3f}  "
          f"[{verdict(ratio >= 0.95)} goal >= 0.95]")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        bench_support.serve_until_stdin_closes(make_server(sys.argv[2]))
    else:
        main("--quick" in sys.argv)
