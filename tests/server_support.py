"""Running :mod:`wsgiprogress.server` in-process for tests, and raw HTTP on loopback."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.client import HTTPConnection
from typing import Any, Dict, Iterator, Optional, Tuple

from waitress.trigger import trigger

from wsgiprogress.server import create_server

HOST = "127.0.0.1"


@contextlib.contextmanager
def running(app: Any, **settings: Any) -> Iterator[Tuple[Any, int]]:
    """Serve *app* on 127.0.0.1, port 0, in a thread; always stopped on exit."""
    settings.setdefault("threads", 4)
    if "listen" not in settings:
        settings.update(host=HOST, port=0)
    server = create_server(app, **settings)
    thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
    thread.start()
    # one listener: a TcpWSGIServer; several: a MultiSocketServer with .map
    socket_map = server.map if hasattr(server, "map") else server._map
    try:
        yield server, getattr(server, "effective_port", 0)
    finally:
        def close_all() -> None:
            for dispatcher in list(socket_map.values()):
                dispatcher.close()
        wake = next(d for d in socket_map.values() if isinstance(d, trigger))
        wake.pull_trigger(close_all)
        thread.join(10)
        server.task_dispatcher.shutdown(timeout=2)
        assert not thread.is_alive(), "server loop did not stop"


def probe(port: int, progress_id: str, query: str = "", timeout: float = 5.0) -> Dict[str, Any]:
    """One native probe answer as a dict."""
    conn = HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", f"/progress?X-Progress-ID={progress_id}{query}")
        response = conn.getresponse()
        assert response.status == 200, response.read()
        return json.loads(response.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def wait_for_state(port: int, progress_id: str, states: Tuple[str, ...],
                   deadline: float = 5.0) -> Dict[str, Any]:
    """Poll until the entry reaches one of *states*; fail after *deadline* seconds."""
    end = time.monotonic() + deadline
    while True:
        answer = probe(port, progress_id)
        if answer["state"] in states:
            return answer
        assert time.monotonic() < end, f"still {answer} after {deadline} s"
        time.sleep(0.02)


def exchange(port: int, request: bytes, read_for: float = 1.0,
             until: Optional[bytes] = None) -> bytes:
    """Send raw *request* bytes; collect what comes back for up to *read_for*
    seconds, until the server closes or *until* appears."""
    sock = socket.create_connection((HOST, port), timeout=read_for)
    received = b""
    end = time.monotonic() + read_for
    try:
        sock.sendall(request)
        while time.monotonic() < end and (until is None or until not in received):
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            received += data
    finally:
        sock.close()
    return received


def open_fds() -> int:
    """How many descriptors this process has open."""
    import os
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))
