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

Beside each figure, the server process's CPU time per request (user and
system, all threads), the median over the runs.
Prints figures, ratios and PASS or MISS; always exits 0.

With ``--floor`` it prints, instead, what the goal leaves a middleware on
waitress: the tracked POST's ratio when the application only spins 1, 2.5, 5
and 10 µs of Python (holding the interpreter lock) per request before
answering.  With ``--decompose``, the middleware's tracked POST on waitress
taken apart, each step ÷ bare waitress: a registry of IDs in a locked dict
(the least any keeper of entries does: a yardstick, not our code); the
leanest tracking middleware (ID found and checked, claimed in a locked dict,
the body counted, the status noted, the entry ended at ``close``: the second
yardstick); the leanest middleware with the features ours has for a plain
tracked request (expiry, duplicates, capacity, response bytes, waking
waiting clients, cancel: the third; all three in ``yardsticks.py``); the
middleware on a POST without an ID (routing and the ID look-up); the store's
``track`` and the tracker's ``finish`` alone around the bare application (no
input or response wrapper); the whole middleware.
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
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Tuple

import bench_support
from bench_support import serve_until_stdin_closes
from yardsticks import featured, leanest, registry

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
UNTRACKED_POST = """
local body = string.rep("x", 1024)
request = function() return wrk.format("POST", "/upload", nil, body) end
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


def track_and_finish(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """*app* between the store's ``track`` and the tracker's ``finish``, as
    the middleware calls them, without its wrappers (``--decompose``)."""
    from wsgiprogress import ProgressMiddleware

    rules = ProgressMiddleware(app).rules

    def tracked(environ: Dict[str, Any],
                start_response: Callable[..., Any]) -> Iterable[bytes]:
        tracker = rules.track("POST", environ["PATH_INFO"], None, environ["QUERY_STRING"],
                              int(environ["CONTENT_LENGTH"]))
        try:
            return app(environ, start_response)
        finally:
            if tracker is not None:
                tracker.finish()
    return tracked


#: ``--decompose``'s steps that wrap the bare application on bare waitress
WRAPPERS = {"registry": registry, "leanest": leanest, "featured": featured,
            "track-and-finish": track_and_finish}


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
    elif kind in WRAPPERS:
        server = waitress.create_server(WRAPPERS[kind](tiny), **common, **tuned)
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


class Pairs(NamedTuple):
    """Interleaved runs of one request kind: requests/s and the server's CPU
    µs per request, of the baseline and of ours."""

    bare: List[float]
    mine: List[float]
    bare_cpu: List[float]
    mine_cpu: List[float]

    @property
    def ratio(self) -> float:
        """The median of the pairs' requests/s ratios."""
        return statistics.median(m / b for b, m in zip(self.bare, self.mine))

    def figures(self) -> str:
        """Medians: ours, then the baseline, requests/s and CPU per request."""
        return (f"{statistics.median(self.mine):8.0f}/s {statistics.median(self.mine_cpu):5.0f}"
                f" µs CPU  bare {statistics.median(self.bare):8.0f}/s "
                f"{statistics.median(self.bare_cpu):5.0f} µs CPU")


REQUEST_KINDS = (("tracked POST", TRACKED_POST), ("untracked GET", UNTRACKED_GET))


def measured(server: Tuple[int, int], script: str, seconds: int, run: int) -> Tuple[float, float]:
    """requests/s of a wrk run against *server* (port, process id), and the
    server's CPU µs per request over that run."""
    port, pid = server
    used = bench_support.cpu_seconds(pid)
    rate = wrk(port, script, seconds, run)
    return rate, (bench_support.cpu_seconds(pid) - used) / (rate * seconds) * 1e6


def compare(base: str, ours: str, pairs: int, seconds: int,
            kinds: Tuple[Tuple[str, str], ...] = REQUEST_KINDS) -> Dict[str, Pairs]:
    """Interleaved runs of *base* and *ours* for each request kind."""
    results: Dict[str, Pairs] = {}
    with bench_support.server_subprocess(__file__, base) as base_server, \
            bench_support.server_subprocess(__file__, ours) as our_server:
        for name, script in kinds:
            runs = Pairs([], [], [], [])
            wrk(base_server[0], script, 1, 0)  # warm both up
            wrk(our_server[0], script, 1, 0)
            for run in range(1, pairs + 1):
                for server, rates, cpu in ((base_server, runs.bare, runs.bare_cpu),
                                           (our_server, runs.mine, runs.mine_cpu)):
                    rate, cost = measured(server, script, seconds, run)
                    rates.append(rate)
                    cpu.append(cost)
            results[name] = runs
    return results


#: ``--decompose``: each step of the middleware's tracked POST, with its request
STEPS = (("registry", "a locked dict of IDs (yardstick)", TRACKED_POST),
         ("leanest", "the leanest tracking (yardstick)", TRACKED_POST),
         ("featured", "our features, leanest (yardstick)", TRACKED_POST),
         ("middleware-on-waitress", "the middleware, POST without an ID", UNTRACKED_POST),
         ("track-and-finish", "the store's track and finish alone", TRACKED_POST),
         ("middleware-on-waitress", "the whole middleware, tracked POST", TRACKED_POST))


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
            runs = compare("waitress", f"spend-{spent}", pairs, seconds,
                           REQUEST_KINDS[:1])["tracked POST"]
            print(f"{spent:>4} µs  {runs.figures()}  ratio {runs.ratio:.3f}")
        return 0
    if "--decompose" in argv:
        print(f"{CONNECTIONS} connections, {pairs} interleaved pairs of {seconds:g} s, "
              "each step on waitress ÷ bare waitress")
        for kind, step, script in STEPS:
            runs = compare("waitress", kind, pairs, seconds, (("", script),))[""]
            print(f"{step:36} {runs.figures()}  ratio {runs.ratio:.3f}")
        return 0
    goals = {"tracked POST": 0.9, "untracked GET": 0.97}
    print(f"requests/s and server CPU µs per request, {CONNECTIONS} keep-alive connections, "
          f"{pairs} interleaved pairs of {seconds:g} s; 1 KiB body for the POST")
    for base, ours in (("waitress", "ours"), ("waitress", "middleware-on-waitress"),
                       ("werkzeug", "middleware-on-werkzeug")):
        for name, runs in compare(base, ours, pairs, seconds).items():
            goal = goals[name]
            print(f"{name:14} {ours:24} {runs.figures().replace('bare', base)}  ratio "
                  f"{runs.ratio:.3f} (goal >= {goal}) {'PASS' if runs.ratio >= goal else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
