"""
Idle mailbox WebSockets on our server, measured in one run on loopback.

    python3 benchmarks/bench_websocket.py [--quick]

One server process (``wsgiprogress.server`` with ``websocket`` on, no
compression, its defaults otherwise; started by ``bench_parking.py --serve
ours-websocket``) holds 10,000 WebSockets on 4 mailboxes, opened from this
process on one selector (its ``RLIMIT_NOFILE`` is raised).  Goals (issue 12's
WebSocket issue): at most 16 KiB of server RSS and no thread per socket; one
publish to each mailbox reaches all 10,000 within p99 1 s.

Prints figures and PASS or MISS; always exits 0.
"""
from __future__ import annotations

import base64
import os
import selectors
import socket
import statistics
import sys
import threading
import time
from typing import Callable, Dict, List

from bench_parking import (
    BOXES,
    HOST,
    MARK,
    ms,
    p99,
    proc,
    publish_all,
    raise_fd_limit,
    server,
    waiting_count,
)
from bench_support import verdict

HANDSHAKE = ("GET /mailbox/{box} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n")


class Sockets:
    """*count* WebSockets on one selector; ``data`` holds what each received."""

    def __init__(self, port: int, count: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.data: Dict[socket.socket, bytes] = {}
        for n in range(count):
            sock = socket.create_connection((HOST, port), timeout=30)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(HANDSHAKE.format(box=BOXES[n % len(BOXES)], host=HOST, key=key).encode())
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.data[sock] = b""

    def read(self, until: float, done: Callable[[bytes], bool],
             start: float = 0.0) -> List[float]:
        """Read until every socket's data satisfies *done* or *until*; the
        seconds after *start* at which each one did."""
        pending = {sock for sock, data in self.data.items() if not done(data)}
        took: List[float] = []
        while pending and time.monotonic() < until:
            for key, _ in self.selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    piece = sock.recv(65536)
                except BlockingIOError:
                    continue
                self.data[sock] += piece
                if sock in pending and (done(self.data[sock]) or not piece):
                    pending.discard(sock)
                    took.append(time.monotonic() - start)
                if not piece:
                    self.selector.unregister(sock)
        return took

    def close(self) -> None:
        for sock in self.data:
            sock.close()


def main(argv: List[str]) -> int:
    count = 3000 if "--quick" in argv else 10_000
    print(f"wsgiprogress WebSocket benchmark ({'quick' if count < 10_000 else 'full'}; Python "
          f"{sys.version.split()[0]}; client descriptor limit {raise_fd_limit()})")
    with server("ours-websocket") as (port, pid):
        publish_all(port)  # every path once before the floor is read
        rss0, threads0, _ = proc(pid)
        started = time.monotonic()
        sockets = Sockets(port, count)
        opened = sockets.read(time.monotonic() + 120, lambda data: b"\r\n\r\n" in data)
        upgraded = sum(data.startswith(b"HTTP/1.1 101") for data in sockets.data.values())
        deadline = time.monotonic() + 60
        while waiting_count(port) < upgraded and time.monotonic() < deadline:
            time.sleep(0.2)
        took_to_open = time.monotonic() - started
        rss1, threads1, fds1 = proc(pid)
        for sock in sockets.data:
            sockets.data[sock] = b""
        start = time.monotonic()
        announcer = threading.Thread(target=publish_all, args=(port,))
        announcer.start()
        took = sockets.read(start + 30, lambda data: MARK in data, start)
        announcer.join(30)
        threads2 = proc(pid)[1]
        sockets.close()
    per = (rss1 - rss0) * 1024 / upgraded if upgraded else float("inf")
    print(f"  {upgraded} of {count} upgraded ({len(opened)} answered) in {took_to_open:.1f} s; "
          f"descriptors {fds1}")
    print(f"  server RSS {rss0 / 1024:.1f} MiB -> {rss1 / 1024:.1f} MiB: {per / 1024:.2f} KiB "
          f"a socket  [{verdict(per <= 16 * 1024)} goal <= 16 KiB]")
    print(f"  server threads {threads0} -> {threads1} open -> {threads2} after the publish  "
          f"[{verdict(max(threads1, threads2) - threads0 < upgraded / 100)} goal no thread "
          "a socket]")
    print(f"  publish to {len(BOXES)} mailboxes -> {len(took)} of {upgraded} delivered: p50 "
          f"{ms(statistics.median(took) if took else float('inf'))}, p99 {ms(p99(took))}  "
          f"[{verdict(p99(took) <= 1 and len(took) >= upgraded)} goal p99 <= 1 s, all]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
