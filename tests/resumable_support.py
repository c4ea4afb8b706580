"""Shared parts of the resumable-upload tests: an application that records
each call it gets, and the two front doors serving it on loopback."""
from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import struct
import sys
import threading
from http.client import HTTPConnection, HTTPResponse, parse_headers
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from wsgiprogress import ProgressMiddleware, keys

from server_support import (
    HOST,
    LoopbackProxy,
    running,
    running_werkzeug,
    start_process,
    stop_process,
)


class Call(NamedTuple):
    """One call of the application: what it saw."""

    method: str
    path: str
    query: str
    body_sha256: str
    size: int
    content_length: str
    content_type: str
    headers: Dict[str, str]
    upload: Dict[str, Any]


class Recorder:
    """A WSGI application that reads the whole body in pieces and records
    the call; it answers 201 with a small JSON body naming the call."""

    def __init__(self, status: str = "201 Created") -> None:
        self.calls: List[Call] = []
        self.lock = threading.Lock()
        self.status = status

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        digest = hashlib.sha256()
        size = 0
        stream = environ["wsgi.input"]
        declared = environ.get("CONTENT_LENGTH")
        remaining = int(declared) if declared else -1  # PEP 3333: no more than that
        while remaining:
            chunk = stream.read(65536 if remaining < 0 else min(65536, remaining))
            remaining -= len(chunk) if remaining > 0 else 0
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
        with self.lock:
            self.calls.append(Call(
                environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", ""),
                digest.hexdigest(), size, environ.get("CONTENT_LENGTH", ""),
                environ.get("CONTENT_TYPE", ""),
                {k: v for k, v in environ.items() if k.startswith("HTTP_")},
                dict(environ.get(keys.UPLOAD) or {})))
            number = len(self.calls)
        body = json.dumps({"call": number, "size": size}).encode()
        start_response(self.status, [("Content-Type", "application/json"),
                                     ("Content-Length", str(len(body))),
                                     ("X-App", "recorder")])
        return [body]


@contextlib.contextmanager
def serving(door: str, app: Any, **settings: Any) -> Iterator[int]:
    """*app* served on loopback by *door*: ``server`` (wsgiprogress.server)
    or ``werkzeug`` (its threaded server with the middleware); the port."""
    if door == "server":
        with running(app, **settings) as (_, port):
            yield port
    else:
        with running_werkzeug(ProgressMiddleware(app, **settings)) as port:
            yield port


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Reply(NamedTuple):
    status: int
    headers: Dict[str, str]
    body: bytes
    #: The interim responses before it (status, lower-cased fields), 100 aside.
    interim: Tuple[Tuple[int, Dict[str, str]], ...] = ()


class InterimResponse(HTTPResponse):
    """http.client's response that reads past interim responses (102, 104)
    as httpx and aiohttp do; http.client skips only 100 and would return
    the first 1xx as the final response.  It keeps them in :attr:`interim`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interim: List[Tuple[int, Dict[str, str]]] = []

    def _read_status(self) -> Tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status in (100, 101) or not 100 <= status < 200:
                return version, status, reason
            fields = parse_headers(self.fp)
            self.interim.append((status, {k.lower(): v for k, v in fields.items()}))


class Connection(HTTPConnection):
    response_class = InterimResponse


def request(port: int, method: str, path: str, headers: Optional[Dict[str, str]] = None,
            body: bytes = b"", timeout: float = 10.0) -> Reply:
    """One request on a fresh connection; the reply with lower-cased header
    names, and the interim responses that came before it."""
    conn = Connection(HOST, port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if body or method in ("POST", "PATCH", "PUT"):
            sent.setdefault("Content-Length", str(len(body)))
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        assert isinstance(response, InterimResponse)
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read(), tuple(response.interim))
    finally:
        conn.close()


def read_head(sock: socket.socket) -> Tuple[int, Dict[str, str]]:
    """One response head off a raw socket (interim or final): its status and
    lower-cased fields."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, data
        data += chunk
    lines = data.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}


def cut(sock: socket.socket, rst: bool) -> None:
    """Drop the connection: with RST (SO_LINGER 0), or FIN (the server reads
    the end of the stream)."""
    if rst:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        sock.shutdown(socket.SHUT_WR)
    sock.close()


TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
IETF = {"Upload-Draft-Interop-Version": "6"}
PARTIAL = {**IETF, "Content-Type": "application/partial-upload"}


def counter(size: int, start: int = 0) -> bytes:
    """The drafts' test payload: a repeating counter, *size* bytes from *start*."""
    pattern = bytes(range(256)) * (size // 256 + 2)
    offset = start % 256
    return pattern[offset:offset + size]


class CuttingProxy(LoopbackProxy):
    """A TCP proxy on loopback in front of *port* that drops the connection
    of each of the first *cuts* PATCH requests (RST) once *after* bytes of
    it went upstream: a network that fails mid-upload.  A context manager;
    ``.port``."""

    def __init__(self, port: int, cuts: int, after: int) -> None:
        super().__init__(port)
        self.cuts = cuts
        self.after = after
        self.cut = 0

    def forward(self, data: bytes, upstream: bool, ends: Tuple[socket.socket, socket.socket],
                state: Dict[str, Any]) -> bool:
        if upstream and not state.get("doomed") and data.startswith(b"PATCH "):
            # a request begins (browsers reuse connections): doom it?
            with self.lock:
                state["doomed"] = self.cut < self.cuts
                self.cut += state["doomed"]
            state["sent"] = 0
        sent = state.get("sent", 0)
        if state.get("doomed") and sent + len(data) > self.after:
            ends[1].sendall(data[:self.after - sent])
            for sock in ends:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # wakes the other direction's thread, so the close happens
                sock.shutdown(socket.SHUT_RDWR)
            return False
        ends[1].sendall(data)
        state["sent"] = sent + len(data)
        return True


class ServerProcess:
    """tests/resumable_server.py over *uploads*, restartable; *options*
    go to every start."""

    def __init__(self, door: str, uploads: Path, calls: Path,
                 options: Sequence[str] = ()) -> None:
        self.door = door
        self.uploads = uploads
        self.calls = calls
        self.options = list(options)
        self.process = None  # type: Optional[object]
        self.port = 0

    def start(self, *extra: str) -> int:
        process, self.port = start_process(
            [sys.executable, "resumable_server.py", self.door, str(self.uploads),
             str(self.calls), *self.options, *extra])
        self.process = process
        return self.port

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, signum)  # type: ignore[arg-type]
            self.process = None

    def bodies(self) -> List[str]:
        return [path.read_text() for path in sorted(self.calls.iterdir())]
