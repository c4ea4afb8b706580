"""
Small requests per second, tracked and untracked, against the bare servers.

    python3 benchmarks/bench_requests.py [--quick]

wrk (Debian's ``wrk``, a C load generator) drives each server in a subprocess
of its own on 127.0.0.1: a tracked 1 KiB POST (a new X-Progress-ID for every
request, so every one is tracked) and an untracked GET, on 8 keep-alive
connections.  Pairs run interleaved (bare, ours, bare, ours, ...) and each
goal is the median of the pairs' ratios:

1. our server ÷ bare waitress with the same settings: tracked POST >= 0.9,
   untracked GET >= 0.97;
2. the middleware on waitress ÷ bare waitress: tracked POST >= 0.9, GET >= 0.97;
3. the middleware on werkzeug ÷ bare werkzeug: the same goals.

Prints figures, ratios and PASS or MISS; always exits 0.  With ``--floor``
it prints, instead, what the goal leaves a middleware on waitress: the tracked
POST's ratio when the application only spins 1, 2.5, 5 and 10 µs of Python
(holding the interpreter lock) per request before answering.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterable, List, Tuple

import bench_support
from bench_support import serve_until_stdin_closes

HOST = "127.0.0.1"
THREADS = 4
CONNECTIONS = 8
BODY = b"x" * 1024

#: A new progress ID for every request, so each one is tracked.
TRACKED_POST = """
local n = 0
local body = string.rep("x", 1024)
request = function()
  n = n + 1
  return wrk.format("POST", "/upload?X-Progress-ID=wrk-%d-" .. n, nil, body)
end
"""
UNTRACKED_GET = """
request = function() return wrk.format("GET", "/page") end
"""


def tiny(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Reads the body and answers two bytes."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def spending(seconds: float) -> Callable[..., Iterable[bytes]]:
    """:func:`tiny` after spinning *seconds* of Python, as a middleware's
    work on the request would (``--floor``)."""
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return tiny(environ, start_response)
    return app


def serve(kind: str) -> None:
    import logging

    import waitress

    # a warning a request when the queue is not empty would measure stderr
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    from wsgiprogress import ProgressMiddleware
    from wsgiprogress.server import create_server
    from wsgiprogress.settings import TUNED_WAITRESS_DEFAULTS

    tuned = {name: value for name, (value, _) in TUNED_WAITRESS_DEFAULTS.items()}
    common = {"host": HOST, "port": 0, "threads": THREADS}
    if kind in ("werkzeug", "middleware-on-werkzeug"):
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        app = tiny if kind == "werkzeug" else ProgressMiddleware(tiny)
        server = make_server(HOST, 0, app, threaded=True)
        print(server.port, flush=True)
        import threading
        threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()),
                         daemon=True).start()
        server.serve_forever()
        return
    if kind == "ours":
        server = create_server(tiny, **common)
    elif kind == "waitress":
        server = waitress.create_server(tiny, **common, **tuned)
    elif kind == "middleware-on-waitress":
        server = waitress.create_server(ProgressMiddleware(tiny), **common, **tuned)
    elif kind.startswith("spend-"):
        server = waitress.create_server(spending(float(kind[6:]) / 1e6), **common, **tuned)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")
    serve_until_stdin_closes(server)


def wrk(port: int, script: str, seconds: int, run: int,
        connections: int = CONNECTIONS) -> float:
    """Requests per second that wrk measured on *connections* keep-alive
    connections; the script gets a run number so IDs never repeat between runs."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script.replace("wrk-%d-", f"wrk-{run}-"))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", file.name,
             f"http://{HOST}:{port}/"], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(file.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} failed responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


Runs = Dict[str, Tuple[List[float], List[float]]]


REQUEST_KINDS = (("tracked POST", TRACKED_POST), ("untracked GET", UNTRACKED_GET))


def compare(base: str, ours: str, pairs: int, seconds: int,
            kinds: Tuple[Tuple[str, str], ...] = REQUEST_KINDS) -> Runs:
    """Interleaved runs of *base* and *ours* for each request kind."""
    results: Runs = {}
    with bench_support.server_process(__file__, base) as base_port, \
            bench_support.server_process(__file__, ours) as our_port:
        for name, script in kinds:
            bare: List[float] = []
            mine: List[float] = []
            wrk(base_port, script, 1, 0)  # warm both up
            wrk(our_port, script, 1, 0)
            for run in range(1, pairs + 1):
                bare.append(wrk(base_port, script, seconds, run))
                mine.append(wrk(our_port, script, seconds, run))
            results[name] = (bare, mine)
    return results


def served_or_no_wrk(argv: List[str]) -> bool:
    """Serve when run as ``--serve KIND``, or say that wrk is missing: True
    when a benchmark's main has nothing more to do."""
    if len(argv) > 2 and argv[1] == "--serve":
        serve(argv[2])
        return True
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk")
        return True
    return False


def main(argv: List[str]) -> int:
    if served_or_no_wrk(argv):
        return 0
    quick = "--quick" in argv
    pairs, seconds = (3, 2) if quick else (7, 3)
    if "--floor" in argv:
        print(f"tracked POST, {CONNECTIONS} connections, {pairs} interleaved pairs of "
              f"{seconds:g} s: waitress whose application first spins N µs ÷ bare waitress")
        for spent in ("1", "2.5", "5", "10"):
            bare, mine = compare("waitress", f"spend-{spent}", pairs, seconds,
                                 REQUEST_KINDS[:1])["tracked POST"]
            ratio = statistics.median(m / b for b, m in zip(bare, mine))
            print(f"{spent:>4} µs  {statistics.median(mine):8.0f}/s  bare "
                  f"{statistics.median(bare):8.0f}/s  ratio {ratio:.3f}")
        return 0
    goals = {"tracked POST": 0.9, "untracked GET": 0.97}
    print(f"requests/s, {CONNECTIONS} keep-alive connections, {pairs} interleaved pairs "
          f"of {seconds:g} s; 1 KiB body for the POST")
    for base, ours in (("waitress", "ours"), ("waitress", "middleware-on-waitress"),
                       ("werkzeug", "middleware-on-werkzeug")):
        for name, (bare, mine) in compare(base, ours, pairs, seconds).items():
            ratio = statistics.median(m / b for b, m in zip(bare, mine))
            goal = goals[name]
            print(f"{name:14} {ours:24} {statistics.median(mine):8.0f}/s  {base:9} "
                  f"{statistics.median(bare):8.0f}/s  ratio {ratio:.3f} "
                  f"(goal >= {goal}) {'PASS' if ratio >= goal else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
