"""
Cost of the core: a counted ``read()`` and a request through the middleware,
as ratios to the bare operation measured in the same run.

    python3 benchmarks/bench_core.py [--quick]

Targets: at most 1 µs extra per counted read, at most 2 µs extra per
untracked request.  Prints PASS or MISS per target; always exits 0 (the
machine is noisy: compare ratios, do not clock).
"""
from __future__ import annotations

import io
import sys
import timeit
from typing import Any, Callable, Dict, Iterable, List

from wsgiprogress import ProgressMiddleware, ProgressTable
from wsgiprogress.middleware import CountingInput

REPEAT = 7


def best(stmt: Callable[[], Any], number: int) -> float:
    """Seconds per call: the minimum over REPEAT runs, the least disturbed."""
    return min(timeit.repeat(stmt, number=number, repeat=REPEAT)) / number


class Endless:
    """A request body that never ends and costs next to nothing to read, so
    the difference to it is the counting alone (an upload in progress: the
    store is updated every 256 KiB or 50 ms, as in real uploads)."""

    def __init__(self, size: int) -> None:
        self.piece = b"x" * size

    def read(self, size: int = -1) -> bytes:
        return self.piece


def reads(quick: bool) -> List[str]:
    lines = []
    number = 20_000 if quick else 100_000
    for size in (1024, 8192, 65536):
        bare_stream = Endless(size)
        table = ProgressTable()
        tracker = table.track(f"bench-read-{size}", 10**15)  # never completes
        assert tracker is not None
        counted = CountingInput(Endless(size), tracker)  # type: ignore[arg-type]
        bare = best(lambda s=bare_stream, n=size: s.read(n), number)
        wrapped = best(lambda s=counted, n=size: s.read(n), number)
        extra = (wrapped - bare) * 1e6
        lines.append(f"read({size:>5}): bare {bare * 1e6:6.3f} µs, counted {wrapped * 1e6:6.3f} µs"
                     f" -> +{extra:5.3f} µs per read, ratio {wrapped / bare:4.2f}  "
                     f"[{'PASS' if extra <= 1.0 else 'MISS'} target <= 1 µs]")
    return lines


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def requests(quick: bool) -> List[str]:
    number = 20_000 if quick else 100_000
    wrapped = ProgressMiddleware(app)

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def call(application: Any, environ: Dict[str, Any]) -> Callable[[], Any]:
        def once() -> None:
            result = application(environ, start_response)
            for _ in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return once

    cases = {
        "untracked GET": {"REQUEST_METHOD": "GET", "PATH_INFO": "/page", "QUERY_STRING": "a=1"},
        "untracked POST (no id)": {"REQUEST_METHOD": "POST", "PATH_INFO": "/upload",
                                   "QUERY_STRING": "a=1", "CONTENT_LENGTH": "0"},
    }
    lines = []
    for name, environ in cases.items():
        bare = best(call(app, dict(environ)), number)
        through = best(call(wrapped, dict(environ)), number)
        extra = (through - bare) * 1e6
        lines.append(f"{name:<24}: bare {bare * 1e6:6.3f} µs, middleware {through * 1e6:6.3f} µs"
                     f" -> +{extra:5.3f} µs, ratio {through / bare:4.2f}  "
                     f"[{'PASS' if extra <= 2.0 else 'MISS'} target <= 2 µs]")

    counter = iter(range(10**9))

    def tracked() -> None:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "CONTENT_LENGTH": "1024",
                   "QUERY_STRING": f"X-Progress-ID=bench-{next(counter):012d}",
                   "wsgi.input": io.BytesIO(b"x" * 1024)}
        result = wrapped(environ, start_response)
        environ["wsgi.input"].read(1024)
        for _ in result:
            pass
        result.close()  # type: ignore[attr-defined]

    def bare_post() -> None:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "CONTENT_LENGTH": "1024",
                   "wsgi.input": io.BytesIO(b"x" * 1024)}
        result = app(environ, start_response)
        environ["wsgi.input"].read(1024)
        for _ in result:
            pass

    tracked_number = number // 10
    bare = best(bare_post, tracked_number)
    through = best(tracked, tracked_number)
    lines.append(f"{'tracked POST, 1 KiB':<24}: bare {bare * 1e6:6.3f} µs, tracked "
                 f"{through * 1e6:6.3f} µs -> +{(through - bare) * 1e6:5.2f} µs end to end "
                 f"(begin, count, finish), ratio {through / bare:4.2f}")
    return lines


def main(argv: List[str] = sys.argv) -> int:
    quick = "--quick" in argv
    print(f"wsgiprogress core benchmark ({'quick' if quick else 'full'}; "
          f"min of {REPEAT} runs; Python {sys.version.split()[0]})")
    for line in reads(quick) + requests(quick):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
