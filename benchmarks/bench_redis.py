"""
The Redis backend across processes against the memory backend in one
process, measured in one run on loopback.

    python3 benchmarks/bench_redis.py [--quick]

Starts its own redis-server (Debian's ``redis-server``) on a free port and
our servers in subprocesses; stops them all at the end.

1. Freshness of ``received`` polled through another process during a paced
   upload (goal <= 250 ms), against polling the uploading process on memory://.
2. Redis writes per upload-second (goal <= 5).
3. Publish -> delivery to a long-poll waiting in another process (goal p99
   <= 20 ms), and to 1000 such waiters, against one process on memory://.

Prints figures, ratios and PASS or MISS; always exits 0.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Iterator, List

import redis
from bench_mailbox import many_waiters, one_waiter
from bench_mailbox import server_process as mailbox_server
from bench_server import lags, percentile, verdict
from bench_server import server_process as upload_server

HOST = "127.0.0.1"
MiB = 1024 * 1024
STATE_WRITES = 4


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen([executable, "--bind", HOST, "--port", str(port), "--save",
                                    "", "--appendonly", "no", "--dir", directory],
                                   stdout=subprocess.DEVNULL)
        url = f"redis://{HOST}:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            for _ in range(100):
                with contextlib.suppress(redis.ConnectionError):
                    client.ping()
                    break
                time.sleep(0.05)
            yield url
        finally:
            process.kill()
            process.wait(10)


def writes(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha",
                                                                     "cmdstat_eval"))


def freshness(url: str, quick: bool) -> List[str]:
    size, pace = (16 if quick else 48) * MiB, 16 * MiB
    with upload_server("ours") as port:
        _, memory = lags(port, port, size, pace)
    with upload_server(url) as upload_port, upload_server(url) as probe_port:
        before = writes(url)
        _, shared = lags(upload_port, probe_port, size, pace)
        total = writes(url) - before
    seconds = size / pace
    # begin, processing, response start, end: written at once, the rest throttled
    rate = (total - STATE_WRITES) / seconds
    p99, base = percentile(shared, .99), percentile(memory, .99)
    return [
        f"freshness, {size // MiB} MiB paced at {pace // MiB} MiB/s: polled through another "
        f"process on Redis p50 {statistics.median(shared) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} "
        f"ms; one process on memory:// p99 {base * 1e3:.1f} ms  [{verdict(p99 <= 0.25)} "
        "goal <= 250 ms]",
        f"Redis writes during a {seconds:.0f} s upload: {total}, of which {STATE_WRITES} for "
        f"state changes; throttled writes per upload-second {rate:.1f}  "
        f"[{verdict(rate <= 5)} goal <= 5 plus each state change]",
    ]


def delivery(url: str, quick: bool) -> List[str]:
    rounds = 100 if quick else 400
    with mailbox_server() as port:
        memory_one = one_waiter(port, rounds)
        memory_many, _ = many_waiters(port)
    with mailbox_server(url) as wait_port, mailbox_server(url) as publish_port:
        shared_one = one_waiter(wait_port, rounds, publish_port)
        shared_many, missing = many_waiters(wait_port, publish_port)
    p99 = percentile(shared_one, .99)
    many99 = percentile(shared_many, .99)
    return [
        f"publish -> delivery to a waiter in another process: p50 "
        f"{statistics.median(shared_one) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms; one process "
        f"on memory:// p99 {percentile(memory_one, .99) * 1e3:.2f} ms; ratio "
        f"{p99 / percentile(memory_one, .99):.2f}  [{verdict(p99 <= 0.02)} goal p99 <= 20 ms]",
        f"1000 waiters in another process: {len(shared_many)} delivered, {missing} missing, "
        f"p99 {many99 * 1e3:.0f} ms; one process on memory:// p99 "
        f"{percentile(memory_many, .99) * 1e3:.0f} ms; ratio "
        f"{many99 / percentile(memory_many, .99):.2f}",
    ]


def main(argv: List[str]) -> int:
    quick = "--quick" in argv
    print(f"wsgiprogress Redis benchmark ({'quick' if quick else 'full'}; Python "
          f"{sys.version.split()[0]}; redis-py {redis.__version__})")
    with redis_server() as url:
        for section in (freshness, delivery):
            for line in section(url, quick):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
