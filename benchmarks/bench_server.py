"""
The server against bare waitress, measured in one run on loopback.

    python3 benchmarks/bench_server.py [--quick]

Every server runs in a subprocess of its own (so the client does not share
its interpreter lock) on 127.0.0.1, port 0, and is stopped at the end.

1. Tracked upload throughput ÷ bare waitress with the same settings, the median
   of interleaved rounds' ratios (goal >= 0.99); each round's pair back to
   back, each side first in half the rounds (the upload after a switch of
   server process is the slower one), after one upload to each server.
2. Our defaults ÷ waitress's defaults, same upload (goal >= 3x).
3. Probe latency while every worker thread is blocked: ours ÷ the middleware on
   plain waitress, where probes queue behind the application (goal p99 <= 10 ms).
4. Freshness: how far the ``received`` a poller sees lags the bytes the client
   has sent, during a paced upload (goal: within 256 KiB or 100 ms).

Prints figures, ratios and PASS or MISS; always exits 0 (a noisy machine:
compare ratios, do not clock).
"""
from __future__ import annotations

import bisect
import contextlib
import json
import logging
import socket
import statistics
import sys
import threading
import time
from typing import Any, Callable, ContextManager, Dict, Iterable, Iterator, List, Tuple

import bench_support
from bench_support import percentile, serve_until_stdin_closes, verdict

HOST = "127.0.0.1"
MiB = 1024 * 1024
KiB = 1024
THREADS = 4
BLOCK_SECONDS = 3.0

# -- the served side (run as: bench_server.py --serve KIND) -------------------------


def sink(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/upload`` reads and drops the body; ``/block`` holds its worker thread."""
    if environ["PATH_INFO"] == "/block":
        time.sleep(BLOCK_SECONDS)
    stream, total = environ["wsgi.input"], 0
    while True:
        piece = stream.read(MiB)
        if not piece:
            break
        total += len(piece)
    body = b"%d" % total
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def make_server(kind: str) -> Any:
    import waitress

    from wsgiprogress import ProgressMiddleware
    from wsgiprogress.server import create_server
    from wsgiprogress.settings import TUNED_WAITRESS_DEFAULTS

    tuned = {name: value for name, (value, _) in TUNED_WAITRESS_DEFAULTS.items()}
    common = {"host": HOST, "port": 0, "threads": THREADS}
    if kind == "ours":
        return create_server(sink, **common)
    if kind.startswith("redis://"):
        return create_server(sink, backend=kind, **common)
    if kind == "waitress-tuned":
        return waitress.create_server(sink, **common, **tuned)
    if kind == "waitress-defaults":
        return waitress.create_server(sink, **common)
    if kind == "middleware-on-waitress":
        return waitress.create_server(ProgressMiddleware(sink), **common, **tuned)
    raise SystemExit(f"unknown server kind {kind!r}")


def serve(kind: str) -> None:
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # blocked on purpose
    serve_until_stdin_closes(make_server(kind))


def server_process(kind: str) -> ContextManager[int]:
    """A server of *kind* in a subprocess; yields its port; always stopped."""
    return bench_support.server_process(__file__, kind)


# -- the client side -----------------------------------------------------------------


def request(port: int, head: str, body: Iterable[bytes] = ()) -> bytes:
    """Sends one request (``Connection: close``) and returns the whole response.

    The write side stays open: waitress takes a half-close for a client that left.
    """
    with socket.create_connection((HOST, port), timeout=60) as sock:
        sock.sendall(head.encode("latin-1"))
        for piece in body:
            sock.sendall(piece)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def upload_head(size: int, progress_id: str = "") -> str:
    query = f"?X-Progress-ID={progress_id}" if progress_id else ""
    return (f"POST /upload{query} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {size}\r\n"
            "Connection: close\r\n\r\n")


def upload_seconds(port: int, size: int, tracked: bool) -> float:
    piece = b"x" * MiB
    start = time.perf_counter()
    answer = request(port, upload_head(size, "bench-upload-id" if tracked else ""),
                     (piece for _ in range(size // MiB)))
    elapsed = time.perf_counter() - start
    assert answer.endswith(b"%d" % size), answer[-200:]
    return elapsed


def probe(port: int, progress_id: str) -> Dict[str, Any]:
    answer = request(port, f"GET /progress?X-Progress-ID={progress_id} HTTP/1.1\r\n"
                           f"Host: {HOST}\r\nConnection: close\r\n\r\n")
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


# -- the measurements ------------------------------------------------------------------


def throughput(quick: bool) -> List[str]:
    size = (128 if quick else 256) * MiB
    rounds = 6 if quick else 10
    pair = [("waitress-tuned", False), ("ours", True)]
    seconds: Dict[str, List[float]] = {"waitress-tuned": [], "ours": [], "waitress-defaults": []}
    with contextlib.ExitStack() as stack:
        ports = {kind: stack.enter_context(server_process(kind)) for kind in seconds}
        for kind in seconds:  # one upload each first: the first into a process is slower
            upload_seconds(ports[kind], size, kind == "ours")
        # each round's pair back to back, in turns of order: an upload right
        # after another process's runs measurably slower than a repeat, so
        # each side goes first in half the rounds
        for turn in range(rounds):
            for kind, tracked in (pair if turn % 2 == 0 else pair[::-1]):
                seconds[kind].append(upload_seconds(ports[kind], size, tracked))
        for _ in range(rounds // 2):  # apart: whatever follows it ran slow at times
            seconds["waitress-defaults"].append(
                upload_seconds(ports["waitress-defaults"], size, False))
    same = statistics.median(bare / ours for bare, ours in
                             zip(seconds["waitress-tuned"], seconds["ours"]))
    rate = {kind: size / statistics.median(values) / MiB for kind, values in seconds.items()}
    defaults = rate["ours"] / rate["waitress-defaults"]
    return [
        f"upload {size // MiB} MiB, medians of {rounds} interleaved rounds (waitress defaults: "
        f"{rounds // 2} after them): ours tracked "
        f"{rate['ours']:.0f} MiB/s, bare waitress same settings "
        f"{rate['waitress-tuned']:.0f} MiB/s, waitress defaults "
        f"{rate['waitress-defaults']:.0f} MiB/s",
        f"tracked / bare waitress (same settings), median of the rounds' ratios: {same:.3f}  "
        f"[{verdict(same >= 0.99)} goal >= 0.99]",
        f"our defaults / waitress defaults: {defaults:.2f}x  [{verdict(defaults >= 3)} goal >= 3x]",
    ]


def block_workers(port: int) -> List[threading.Thread]:
    """Occupies every worker (and queues more) for BLOCK_SECONDS."""
    head = f"GET /block HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    threads = [threading.Thread(target=request, args=(port, head), daemon=True)
               for _ in range(THREADS * 2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # let them reach the workers
    return threads


def probe_latencies(port: int, count: int, within: float) -> List[float]:
    latencies: List[float] = []
    deadline = time.perf_counter() + within
    while len(latencies) < count and time.perf_counter() < deadline:
        start = time.perf_counter()
        probe(port, "bench-probe-id")
        latencies.append(time.perf_counter() - start)
    return latencies


def probes(quick: bool) -> List[str]:
    count = 100 if quick else 400
    results = {}
    for kind in ("ours", "middleware-on-waitress"):
        with server_process(kind) as port:
            blockers = block_workers(port)
            results[kind] = probe_latencies(port, count, BLOCK_SECONDS - 0.5)
            for thread in blockers:
                thread.join(BLOCK_SECONDS * 4)
    ours, theirs = results["ours"], results["middleware-on-waitress"]
    p99 = percentile(ours, 0.99) * 1e3
    return [
        f"probe while all {THREADS} workers are blocked: ours p50 "
        f"{statistics.median(ours) * 1e3:.2f} ms, p99 {p99:.2f} ms ({len(ours)} probes)  "
        f"[{verdict(p99 <= 10)} goal p99 <= 10 ms]",
        f"middleware on plain waitress: first probe answered after "
        f"{theirs[0] * 1e3:.0f} ms (queued behind the application); "
        f"ratio {theirs[0] / percentile(ours, 0.99):.0f}x slower than our p99",
    ]


def freshness(quick: bool) -> List[str]:
    size, pace = (32 if quick else 96) * MiB, 32 * MiB
    with server_process("ours") as port:
        byte_lags, time_lags = lags(port, port, size, pace)
    within = sum(b <= 256 * KiB or t <= 0.1 for b, t in zip(byte_lags, time_lags))
    return [
        f"freshness during a {size // MiB} MiB upload paced at {pace // MiB} MiB/s, "
        f"{len(byte_lags)} probes: lag p50 {statistics.median(byte_lags) / KiB:.0f} KiB / "
        f"{statistics.median(time_lags) * 1e3:.1f} ms, p99 {percentile(byte_lags, .99) / KiB:.0f}"
        f" KiB / {percentile(time_lags, .99) * 1e3:.1f} ms; within 256 KiB or 100 ms: "
        f"{within}/{len(byte_lags)}  [{verdict(within == len(byte_lags))}]",
        "(the client's count includes bytes still in kernel buffers, so these lags "
        "are upper bounds)",
    ]


def lags(upload_port: int, probe_port: int, size: int,
         pace: int) -> Tuple[List[int], List[float]]:
    """Uploads *size* bytes at *pace* bytes/s to *upload_port* while polling
    *probe_port* every 10 ms: how many bytes and seconds each answer lagged."""
    piece = 64 * KiB
    sent_at: List[Tuple[int, float]] = []  # (bytes sent so far, when)
    samples: List[Tuple[float, int]] = []  # (probe sent, received shown)

    def paced() -> Iterator[bytes]:
        data = b"x" * piece
        start = time.perf_counter()
        for n in range(size // piece):
            delay = start + n * piece / pace - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield data
            sent_at.append(((n + 1) * piece, time.perf_counter()))

    uploader = threading.Thread(
        target=request, args=(upload_port, upload_head(size, "bench-fresh-id"), paced()))
    uploader.start()
    while uploader.is_alive():
        asked = time.perf_counter()
        shown = probe(probe_port, "bench-fresh-id").get("received") or 0
        samples.append((asked, shown))
        time.sleep(0.01)
    uploader.join()
    sent_times = [when for _, when in sent_at]
    byte_lags, time_lags = [], []
    for asked, shown in samples:
        sent = sent_at[bisect.bisect_right(sent_times, asked) - 1][0] if asked >= sent_times[0] \
            else 0
        if sent == 0 or shown >= size:
            continue
        byte_lags.append(max(0, sent - shown))
        # the first byte the poller could not see yet: when did the client send it?
        first_unseen = bisect.bisect_right([b for b, _ in sent_at], shown)
        time_lags.append(max(0.0, asked - sent_at[first_unseen][1]))
    return byte_lags, time_lags


def main(argv: List[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(argv[1])
        return 0
    quick = "--quick" in argv
    print(f"wsgiprogress server benchmark ({'quick' if quick else 'full'}; Python "
          f"{sys.version.split()[0]}; {THREADS} worker threads)")
    for section in (throughput, probes, freshness):
        for line in section(quick):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
