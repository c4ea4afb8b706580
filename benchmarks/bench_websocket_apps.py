"""
A Flask-Sock echo route under our server against gunicorn's gthread worker,
measured in one run on loopback.

    python3 benchmarks/bench_websocket_apps.py [--quick]

One client (websocket-client) sends a 32-byte text message and waits for the
echo, one round trip at a time.  Rounds alternate between the two servers
(each in a subprocess of its own, 4 threads, 127.0.0.1, port 0), so the
machine's noise hits both.

Goals: round trip p50 <= 1 ms under our server, and within 1.5x of the same
application under gunicorn gthread.  Prints figures, the ratio and PASS or
MISS; always exits 0.
"""
from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import bench_support
import websocket
from flask import Flask
from flask_sock import Sock

HOST = "127.0.0.1"
THREADS = 4
MESSAGE = "x" * 32
HERE = Path(__file__).resolve().parent

app = Flask(__name__)
sock = Sock(app)


@sock.route("/echo")
def echo(ws: object) -> None:
    while True:
        ws.send(ws.receive())  # type: ignore[attr-defined]


@contextlib.contextmanager
def ours() -> Iterator[int]:
    with bench_support.server_process(__file__, "ours") as port:
        yield port


@contextlib.contextmanager
def gunicorn() -> Iterator[int]:
    """The same application under ``gunicorn -k gthread`` (one worker)."""
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:0", "--workers", "1",
            "--worker-class", "gthread", "--threads", str(THREADS), "--chdir", str(HERE),
            "--log-level", "info", "--error-logfile", "-", "bench_websocket_apps:app"]
    from gunicorn.config import KNOWN_SETTINGS
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        argv.insert(-1, "--no-control-socket")  # gunicorn 24+: one fixed path otherwise
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        for line in process.stderr:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
        else:
            raise RuntimeError("gunicorn exited")
        bench_support.wait_for_port(HOST, port)
        # gunicorn answers once its worker booted
        websocket.create_connection(f"ws://{HOST}:{port}/echo", timeout=30).close()
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(10)


def round_trips(port: int, count: int) -> List[float]:
    """Seconds per echo, *count* of them on one connection, after a warm-up."""
    client = websocket.create_connection(f"ws://{HOST}:{port}/echo", timeout=10)
    try:
        for _ in range(50):
            client.send(MESSAGE)
            client.recv()
        times = []
        for _ in range(count):
            start = time.perf_counter()
            client.send(MESSAGE)
            reply = client.recv()
            times.append(time.perf_counter() - start)
            assert reply == MESSAGE
        return times
    finally:
        client.close()


def main(argv: List[str]) -> int:
    if argv[:1] == ["--serve"]:
        from wsgiprogress.server import create_server
        bench_support.serve_until_stdin_closes(create_server(
            app, host=HOST, port=0, threads=THREADS, websocket=True))
        return 0
    quick = "--quick" in argv
    rounds, count = (2, 500) if quick else (5, 2000)
    print(f"Flask-Sock echo benchmark ({'quick' if quick else 'full'}; Python "
          f"{sys.version.split()[0]}): {rounds} interleaved rounds of {count} round trips")
    mine: List[float] = []
    theirs: List[float] = []
    ratios: List[float] = []
    for _ in range(rounds):
        with ours() as port:
            ours_round = round_trips(port, count)
        with gunicorn() as port:
            theirs_round = round_trips(port, count)
        mine += ours_round
        theirs += theirs_round
        ratios.append(statistics.median(ours_round) / statistics.median(theirs_round))
    p50, base = statistics.median(mine) * 1e3, statistics.median(theirs) * 1e3
    ratio = statistics.median(ratios)
    print(f"our server:       p50 {p50:.3f} ms, p99 "
          f"{sorted(mine)[int(len(mine) * .99)] * 1e3:.3f} ms  "
          f"[{'PASS' if p50 <= 1 else 'MISS'} goal p50 <= 1 ms]")
    print(f"gunicorn gthread: p50 {base:.3f} ms, p99 "
          f"{sorted(theirs)[int(len(theirs) * .99)] * 1e3:.3f} ms")
    print(f"ours / gunicorn, median of the rounds' p50 ratios: {ratio:.2f} "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})  "
          f"[{'PASS' if ratio <= 1.5 else 'MISS'} goal <= 1.5x]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
