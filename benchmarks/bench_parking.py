"""
Ten thousand waiting clients parked in one server process, and a thousand
clients dribbling request heads, measured in one run on loopback.

    python3 benchmarks/bench_parking.py [--quick]

Servers run in subprocesses on 127.0.0.1, port 0, with their defaults
(ours: ``wsgiprogress.server`` with mailboxes and HTTP publishing on), and
are stopped at the end.  The clients live in this process, on one selector
(the soft ``RLIMIT_NOFILE`` is raised to the hard one); ordinary requests are
timed from another process (``--ordinary``), so they never wait for this
one's interpreter lock.

1. Parking: 10,000 waiters on 4 mailboxes, half long-polls (``wait=``),
   half event streams.  The server's RSS and threads before and after
   (goals: <= 8 KiB a waiter, no thread a waiter); one publish to each
   mailbox -> all 10,000 delivered (goal p99 <= 1 s); an ordinary request
   while they are parked and during the publish (goal p99 <= 50 ms), beside
   the same request with nobody parked (the floor); descriptors the server
   holds once every waiter has gone (back to the floor's).
2. Dribbling: 1000 clients send a request head a byte a second, reconnecting
   when closed; an ordinary request on a new connection meanwhile (goal p99
   <= 1 s; a request unanswered after 3 s counts as a timeout).  Ours with
   its defaults and with waitress's ``connection_limit`` of 100 (shedding at
   the limit), beside plain waitress with its defaults (the floor).

Prints figures, ratios and PASS or MISS; always exits 0.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Tuple

import bench_support
from bench_mailbox import connect, http
from bench_support import percentile, serve_until_stdin_closes, verdict

HOST = "127.0.0.1"
TOKEN = os.environ.get("BENCH_TOKEN") or "bench-token-" + os.urandom(8).hex()
BOXES = [f"parking{k}" + "0" * 24 + "x" for k in range(4)]  # unguessable: 33 characters
MARK = b"to everyone"
ORDINARY = f"GET /hello HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
HEAD = f"GET /dribble HTTP/1.1\r\nHost: {HOST}\r\nX-Pad: {'a' * 2000}\r\n\r\n".encode()


def hello(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]


def serve(kind: str) -> None:
    import waitress

    # at the connection limit both log a line every quarter second: keep the figures readable
    for name in ("waitress", "wsgiprogress"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from wsgiprogress.server import create_server

    if kind == "waitress":
        server = waitress.create_server(hello, host=HOST, port=0)
    else:
        limit: Dict[str, Any] = {"connection_limit": 100} if kind == "ours-100" else {}
        server = create_server(hello, host=HOST, port=0, mailbox=True, publish=True,
                               publish_token=TOKEN, max_wait=300,
                               websocket=kind == "ours-websocket", **limit)
    serve_until_stdin_closes(server)


def server(kind: str) -> Any:
    return bench_support.server_subprocess(__file__, kind, dict(os.environ, BENCH_TOKEN=TOKEN))


def ordinary(port: int, timeout: float = 3.0) -> float:
    """Seconds for one ordinary request on a new connection; inf past *timeout*."""
    start = time.perf_counter()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(ORDINARY)
            data = b""
            while b"hello\n" not in data:
                sock.settimeout(max(0.001, timeout - (time.perf_counter() - start)))
                chunk = sock.recv(65536)
                if not chunk:
                    return float("inf")
                data += chunk
    except OSError:
        return float("inf")
    return time.perf_counter() - start


def ordinary_loop(port: int) -> None:
    """``--ordinary PORT``: an ordinary request every 10 ms until standard
    input closes; prints ``[[monotonic start, seconds], ...]``."""
    done = threading.Event()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    print("ready", flush=True)
    timings = []
    while not done.is_set():
        start = time.monotonic()
        timings.append((start, ordinary(port)))
        done.wait(0.01)
    print(json.dumps(timings), flush=True)


class Ordinary:
    """An ``--ordinary`` process against *port*; :meth:`stop` returns its timings."""

    def __init__(self, port: int) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--ordinary", str(port)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline() == "ready\n"

    def stop(self) -> List[Tuple[float, float]]:
        out, _ = self.process.communicate("", timeout=30)
        return [(start, took) for start, took in json.loads(out)]


def proc(pid: int) -> Tuple[int, int, int]:
    """The server's RSS in KiB, its threads and its open descriptors."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return (int(fields["VmRSS"].split()[0]), int(fields["Threads"]),
            len(os.listdir(f"/proc/{pid}/fd")))


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Waiters:
    """*count* waiting clients on one selector, half long-polls, half event streams."""

    def __init__(self, port: int, count: int, cursors: Dict[str, int]) -> None:
        self.selector = selectors.DefaultSelector()
        self.data: Dict[socket.socket, bytes] = {}
        self.kind: Dict[socket.socket, str] = {}
        self.answered_early = 0  # long-polls answered before the publish (503, timeout)
        self.closed = 0
        for n in range(count):
            box = BOXES[n % len(BOXES)]
            sock = connect(port)
            if n % 2:
                request = (f"GET /mailbox/{box} HTTP/1.1\r\nHost: {HOST}\r\n"
                           "Accept: text/event-stream\r\n\r\n")
            else:
                request = (f"GET /mailbox/{box}?after={cursors[box]}&wait=300 HTTP/1.1\r\n"
                           f"Host: {HOST}\r\n\r\n")
            sock.sendall(request.encode())
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.data[sock], self.kind[sock] = b"", "sse" if n % 2 else "poll"
            if n % 200 == 199:
                self.drain(0)

    def drain(self, timeout: float) -> None:
        """Read and drop what came before the publish (event-stream heads, retry hints)."""
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = self.read(sock)
            if data and self.kind[sock] == "poll":
                self.answered_early += 1

    def read(self, sock: socket.socket) -> bytes:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            data = b""
        if not data:
            self.closed += 1
            self.selector.unregister(sock)
            self.kind[sock] = "gone"
        return data

    def delivered(self, start: float, deadline: float) -> List[float]:
        """Seconds from *start* until each waiter has the message, until *deadline*."""
        waiting = {sock for sock, kind in self.kind.items() if kind != "gone"}
        took: List[float] = []
        while waiting and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                self.data[sock] = self.data[sock][-64:] + self.read(sock)
                if sock in waiting and MARK in self.data[sock]:
                    took.append(time.monotonic() - start)
                    waiting.discard(sock)
                elif self.kind[sock] == "gone":
                    waiting.discard(sock)
        return took

    def close(self) -> None:
        for sock in self.data:
            sock.close()
        self.selector.close()


def publish_all(port: int) -> None:
    with connect(port) as sock:
        for box in BOXES:
            http(sock, "POST", f"/mailbox/{box}", MARK,
                 f"Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\n")


def cursors(port: int) -> Dict[str, int]:
    with connect(port) as sock:
        return {box: int(http(sock, "GET", f"/mailbox/{box}")["cursor"]) for box in BOXES}


def waiting_count(port: int) -> int:
    """The server's count of waiting clients; -1 when it did not answer in 30 s
    (new connections wait in the listen backlog while it accepts thousands)."""
    try:
        with connect(port) as sock:
            return int(http(sock, "GET", "/mailbox/_stats",
                            headers=f"Authorization: Bearer {TOKEN}\r\n")["waiters"])
    except OSError:
        return -1


def p99(values: List[float]) -> float:
    return percentile(values, .99) if values else float("inf")


def ms(seconds: float) -> str:
    return "timeout" if seconds == float("inf") else f"{seconds * 1e3:.1f} ms"


def parking(count: int, quiet: float) -> None:
    print(f"1. {count} parked waiters (half long-poll, half event stream) on "
          f"{len(BOXES)} mailboxes, our server with its defaults")
    with server("ours") as (port, pid):
        warm = Waiters(port, 8, cursors(port))  # every path once: its imports in the floor
        publish_all(port)
        warm.delivered(time.monotonic(), time.monotonic() + 5)
        warm.close()
        prober = Ordinary(port)
        time.sleep(quiet)
        idle = [took for _, took in prober.stop()]
        time.sleep(1.0)
        rss0, threads0, fds0 = proc(pid)
        started = time.monotonic()
        waiters = Waiters(port, count, cursors(port))
        deadline = time.monotonic() + 300
        while waiting_count(port) < count and time.monotonic() < deadline:
            waiters.drain(0.2)
        parked_in = time.monotonic() - started
        waiters.drain(0.5)
        rss1, threads1, fds1 = proc(pid)
        prober = Ordinary(port)
        end_quiet = time.monotonic() + quiet
        while time.monotonic() < end_quiet:
            waiters.drain(0.1)
        parked = waiting_count(port)
        start = time.monotonic()
        announcer = threading.Thread(target=publish_all, args=(port,))
        announcer.start()
        took = waiters.delivered(start, start + 30)
        end = time.monotonic()
        threads2 = proc(pid)[1]
        timings = prober.stop()
        announcer.join(30)
        waiters.close()
        deadline = time.monotonic() + 10
        while proc(pid)[2] > fds0 and time.monotonic() < deadline:
            time.sleep(0.1)
        fds3, left = proc(pid)[2], waiting_count(port)
    meanwhile = [t for s, t in timings if s < start]
    during = [t for s, t in timings if start <= s <= end]
    per = (rss1 - rss0) * 1024 / parked if parked else float("inf")
    print(f"  parked {parked} of {count} in {parked_in:.1f} s ({waiters.answered_early} "
          f"long-polls answered early, {waiters.closed} closed by the server)")
    print(f"  server RSS {rss0 / 1024:.1f} MiB -> {rss1 / 1024:.1f} MiB: {per / 1024:.2f} KiB "
          f"a waiter  [{verdict(per <= 8192)} goal <= 8 KiB]")
    print(f"  server threads {threads0} -> {threads1} parked -> {threads2} after the publish  "
          f"[{verdict(max(threads1, threads2) - threads0 < parked / 100)} goal no thread a "
          f"waiter]; descriptors {fds0} -> {fds1}")
    print(f"  publish to {len(BOXES)} mailboxes -> {len(took)} of {parked} delivered: p50 "
          f"{ms(statistics.median(took) if took else float('inf'))}, p99 {ms(p99(took))}  "
          f"[{verdict(p99(took) <= 1 and len(took) >= parked)} goal p99 <= 1 s, all]")
    worst = max(p99(meanwhile), p99(during))
    print(f"  ordinary request, nobody parked (floor): {len(idle)} requests, p99 {ms(p99(idle))}")
    print(f"  ordinary request, {parked} parked: {len(meanwhile)} requests, p99 "
          f"{ms(p99(meanwhile))}; during the publish: {len(during)}, p99 {ms(p99(during))}; "
          f"worst / floor {worst / p99(idle):.1f}  [{verdict(worst <= 0.05)} goal p99 <= 50 ms]")
    print(f"  after every waiter left: {left} waiting, descriptors {fds3} (floor {fds0})  "
          f"[{verdict(fds3 <= fds0 and left == 0)} no slot or descriptor kept]")


def dribble(port: int, count: int, seconds: float) -> Tuple[List[float], int, int]:
    """*count* clients dribbling a request head for *seconds* (reconnecting when
    closed) while ordinary requests are timed; returns their seconds, the
    dribblers' reconnections and the 408 answers they got."""
    stop = threading.Event()
    counts = {"reconnected": 0, "408": 0}

    def dribblers() -> None:
        selector = selectors.DefaultSelector()
        sent: Dict[socket.socket, int] = {}

        def open_one() -> None:
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((HOST, port))
            selector.register(sock, selectors.EVENT_READ)
            sent[sock] = 0

        for _ in range(count):
            open_one()
        next_byte = time.monotonic()
        while not stop.is_set():
            for key, _ in selector.select(max(0.0, next_byte - time.monotonic())):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                counts["408"] += b" 408 " in data
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    del sent[sock]
                    counts["reconnected"] += 1
                    open_one()
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for sock, n in list(sent.items()):
                    try:
                        sent[sock] += sock.send(HEAD[n % len(HEAD):n % len(HEAD) + 1])
                    except OSError:
                        pass  # not connected yet (waits in the backlog), or reset
        for sock in sent:
            sock.close()
        selector.close()

    thread = threading.Thread(target=dribblers)
    thread.start()
    time.sleep(2.0)  # every dribbler has sent a byte or two
    deadline = time.monotonic() + seconds
    took = []
    while time.monotonic() < deadline:
        took.append(ordinary(port, min(3.0, max(0.5, deadline - time.monotonic()))))
        time.sleep(0.1)
    stop.set()
    thread.join(30)
    return took, counts["reconnected"], counts["408"]


def dribbling(count: int, seconds: float) -> None:
    print(f"2. {count} clients dribbling request heads a byte a second, {seconds:.0f} s; "
          "an ordinary request on a new connection meanwhile")
    results = {}
    for kind, label in (("ours", "ours, defaults"),
                        ("ours-100", "ours, connection_limit 100"),
                        ("waitress", "floor: plain waitress, defaults")):
        with server(kind) as (port, _):
            took, reconnected, timed_out = dribble(port, count, seconds)
        answered = [t for t in took if t != float("inf")]
        results[kind] = p99(took)
        print(f"  {label}: {len(answered)} of {len(took)} answered, p50 "
              f"{ms(statistics.median(took))}, p99 {ms(p99(took))}; dribblers closed "
              f"{reconnected} times ({timed_out} with 408)")
    print(f"  [{verdict(results['ours'] <= 1)} goal p99 <= 1 s with our defaults; with "
          f"connection_limit 100: {verdict(results['ours-100'] <= 1)}; plain waitress "
          f"{ms(results['waitress'])}]")


def main(argv: List[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(argv[1])
        return 0
    if argv[:1] == ["--ordinary"]:
        ordinary_loop(int(argv[1]))
        return 0
    quick = "--quick" in argv
    limit = raise_fd_limit()
    count = min(10_000, limit - 200)
    print(f"wsgiprogress parking benchmark ({'quick' if quick else 'full'}; Python "
          f"{sys.version.split()[0]}; client descriptor limit {limit})")
    for phase, args in ((parking, (count, 1.0 if quick else 3.0)),
                        (dribbling, (1000, 8.0 if quick else 40.0))):
        try:
            phase(*args)
        except Exception as exc:  # a figure missing is a finding, never a failed run
            print(f"  MISS: {phase.__name__} stopped: {exc!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
