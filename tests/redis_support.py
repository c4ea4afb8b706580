"""A real redis-server for tests: started on a free loopback port in a
temporary directory, stopped (or killed) at the end."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.client import HTTPConnection
from typing import Any, Dict, Iterator, Tuple

import redis

from server_support import LoopbackProxy

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` simulate an outage."""

    def __init__(self, directory: str, persist: bool = False) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed (apt-get install redis-server)"
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: "subprocess.Popen[bytes] | None" = None
        #: Every write is in the append-only file before it is answered, so
        #: a restart (after :meth:`stop`) finds what was there.
        self.persist = persist

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "--bind", HOST, "--port", str(self.port), "--save", "",
             "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
             "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def script_calls(self) -> int:
        """How many scripts (EVALSHA) the server has run so far."""
        stats = self.client().info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    def pause_writes(self, milliseconds: int) -> None:
        """Hold every command that may write (scripts included) for a while."""
        self.client().execute_command("CLIENT", "PAUSE", str(milliseconds), "WRITE")

    def client(self) -> "redis.Redis[str]":
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=2)


@contextlib.contextmanager
def redis_server(persist: bool = False) -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="wsgiprogress-redis-") as directory:
        server = RedisServer(directory, persist)
        server.start()
        try:
            yield server
        finally:
            server.stop()


class HoldingProxy(LoopbackProxy):
    """A TCP proxy on loopback in front of *port* that holds every piece a
    client sends holding *word* for *seconds* before passing it on (what a
    busy Redis or network does to one command).  A context manager; ``.port``."""

    def __init__(self, port: int, word: bytes, seconds: float) -> None:
        super().__init__(port)
        self.word, self.seconds = word, seconds

    def forward(self, data: bytes, upstream: bool, ends: Tuple[socket.socket, socket.socket],
                state: Dict[str, Any]) -> bool:
        if upstream and self.word in data:
            time.sleep(self.seconds)
        return super().forward(data, upstream, ends, state)


class StallingProxy(LoopbackProxy):
    """A TCP proxy on loopback in front of *port* that, once :meth:`stall` is
    called, accepts connections and takes commands but passes none on (a
    frozen Redis), until :meth:`resume`.  A context manager; ``.port``."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.flowing = threading.Event()
        self.flowing.set()

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def __exit__(self, *exc: Any) -> None:
        self.resume()
        super().__exit__(*exc)

    def forward(self, data: bytes, upstream: bool, ends: Tuple[socket.socket, socket.socket],
                state: Dict[str, Any]) -> bool:
        if upstream:
            self.flowing.wait()
        return super().forward(data, upstream, ends, state)
def timed_get(port: int, path: str) -> Tuple[int, float]:
    """``GET`` *path*: the status and the seconds it took."""
    started = time.monotonic()
    conn = HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


