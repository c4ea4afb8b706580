"""Running :mod:`wsgiprogress.server` in-process for tests, and raw HTTP on loopback."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

import pytest
from waitress.trigger import trigger
from werkzeug.wsgi import get_input_stream

from wsgiprogress import ProgressMiddleware
from wsgiprogress.server import create_server

from server_apps import read_stream

HOST = "127.0.0.1"
MiB = 1024 * 1024
T = TypeVar("T")


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
        # the loop thread closes everything; with several listeners there is
        # one trigger per listener, and any open one will do
        for wake in [d for d in socket_map.values() if isinstance(d, trigger)]:
            try:
                wake.pull_trigger(close_all)
                break
            except OSError:
                continue
        thread.join(10)
        server.task_dispatcher.shutdown(timeout=2)
        assert not thread.is_alive(), "server loop did not stop"


def ok_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Reads the whole body and answers ``ok``: the application of tests about
    the server itself."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


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


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02,
               message: Optional[Callable[[], str]] = None) -> T:
    """Call *predicate* every *interval* seconds until it returns something
    true, and return that; fail the test after *timeout* seconds, with
    *message()* when given."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            pytest.fail(message() if message is not None
                        else f"{getattr(predicate, '__name__', predicate)} still false "
                             f"after {timeout} s")
        time.sleep(interval)


def wait_for_state(port: int, progress_id: str, states: Tuple[str, ...],
                   deadline: float = 5.0) -> Dict[str, Any]:
    """Poll until the entry reaches one of *states*; fail after *deadline* seconds."""
    last: Dict[str, Any] = {}

    def reached() -> Optional[Dict[str, Any]]:
        last.update(probe(port, progress_id))
        return dict(last) if last["state"] in states else None

    return wait_until(reached, deadline, message=lambda: f"still {last} after {deadline} s")


def status_of(reply: bytes) -> int:
    """The status code of a raw HTTP/1.x reply (werkzeug 2.0 answers HTTP/1.0); 0 if none."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    return int(match.group(1)) if match else 0


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


def open_fds(pid: int = 0) -> int:
    """How many descriptors process *pid* (default: this one) has open."""
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def sockets_on(port: int) -> int:
    """How many descriptors this process holds of TCP sockets whose local port
    is *port*: a server's listener and the connections it accepted (handed to
    an application or not), never a client's, nor another test's server."""
    port = int(port)  # waitress's effective_port may be a string
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            held += os.readlink(f"/proc/self/fd/{fd}") in inodes
        except OSError:  # closed meanwhile
            pass
    return held


class SlowUpload(threading.Thread):
    """A raw-socket client that POSTs *size* bytes in timed pieces.

    ``chunked`` sends ``Transfer-Encoding: chunked``; ``abort_after`` closes
    the socket once that many body bytes went out (with an RST when
    ``reset``, else a FIN).  ``sent`` counts the body bytes sent so far;
    ``reply`` holds what the server answered; ``error`` an OSError the
    client met.
    """

    def __init__(self, port: int, target: str, size: int, piece: int = 256 * 1024,
                 delay: float = 0.03, chunked: bool = False,
                 abort_after: Optional[int] = None, reset: bool = False,
                 headers: Tuple[str, ...] = (), timeout: float = 30.0) -> None:
        super().__init__(name="slow-upload", daemon=True)
        self.port, self.target, self.size, self.piece = port, target, size, piece
        self.delay, self.chunked, self.abort_after = delay, chunked, abort_after
        self.reset, self.headers, self.timeout = reset, headers, timeout
        self.sent = 0
        self.reply = b""
        self.error: Optional[OSError] = None

    def run(self) -> None:
        framing = ("Transfer-Encoding: chunked" if self.chunked
                   else f"Content-Length: {self.size}")
        head = "\r\n".join((f"POST {self.target} HTTP/1.1", "Host: test", framing,
                            *self.headers)) + "\r\n\r\n"
        sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        try:
            sock.sendall(head.encode())
            while self.sent < self.size:
                n = min(self.piece, self.size - self.sent)
                data = b"u" * n
                sock.sendall(b"%x\r\n%s\r\n" % (n, data) if self.chunked else data)
                self.sent += n
                if self.abort_after is not None and self.sent >= self.abort_after:
                    if self.reset:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    return
                time.sleep(self.delay)
            if self.chunked:
                sock.sendall(b"0\r\n\r\n")
            self.reply = read_response(sock)
        except OSError as exc:
            self.error = exc
        finally:
            sock.close()


def read_to_close(sock: socket.socket) -> bytes:
    """Everything *sock* receives until the server closes."""
    received = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return received
        received += piece


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, read from *sock*."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


def watch(port: int, progress_id: str, until: Callable[[], bool], interval: float = 0.03,
          deadline: float = 30.0, query: str = "") -> List[Dict[str, Any]]:
    """Probe every *interval* seconds until a final state, or *until()* is true,
    or *deadline*; returns every answer seen (at most ``deadline/interval``)."""
    seen: List[Dict[str, Any]] = []
    end = time.monotonic() + deadline
    conn = HTTPConnection(HOST, port, timeout=5)
    try:
        while time.monotonic() < end:
            conn.request("GET", f"/progress?X-Progress-ID={progress_id}{query}")
            seen.append(json.loads(conn.getresponse().read()))
            if seen[-1]["state"] in ("done", "error") or until():
                break
            time.sleep(interval)
    finally:
        conn.close()
    return seen


def watched_upload(port: int, progress_id: str, size: int, probe_port: int = 0,
                   interval: float = 0.03, **options: Any
                   ) -> Tuple[SlowUpload, List[Dict[str, Any]]]:
    """POST *size* bytes to ``/upload?X-Progress-ID=<progress_id>`` in timed
    pieces (*options* go to :class:`SlowUpload`) while polling *probe_port*
    (default: the same server) until the upload has ended; the finished
    client and every answer seen."""
    client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", size, **options)
    client.start()
    answers = watch(probe_port or port, progress_id, until=lambda: not client.is_alive(),
                    interval=interval)
    client.join(30)
    return client, answers


def received_while(answers: List[Dict[str, Any]], state: str) -> List[int]:
    """The distinct ``received`` values seen in *state*, in order."""
    values: List[int] = []
    for answer in answers:
        if answer["state"] == state and (not values or answer["received"] != values[-1]):
            values.append(answer["received"])
    return values


#: The largest body the live-upload suite's servers accept (our server's
#: ``max_request_body_size``, the middleware's ``max_request_size``).
LIVE_LIMIT = 16 * MiB
#: The size of ``GET /download`` from :func:`live_app`.
DOWNLOAD_SIZE = 24 * MiB


def live_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The live-upload suite's application, the same under every server.

    ``GET /download`` sends :data:`DOWNLOAD_SIZE` bytes in 64 KiB pieces.
    Anything else reads its body in 64 KiB pieces as werkzeug and Flask do
    (``get_input_stream``) and answers how many bytes came: ``/fail`` raises
    once the body is read, ``/reject`` answers 400, and a POST works 0.3 s
    first so that ``processing`` can be seen.
    """
    path = environ.get("PATH_INFO", "")
    if path == "/download":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(DOWNLOAD_SIZE))])
        return (b"d" * 65536 for _ in range(DOWNLOAD_SIZE // 65536))
    total = read_stream(get_input_stream(environ))
    if path == "/fail":
        raise RuntimeError("application failure")
    if environ["REQUEST_METHOD"] == "POST":
        time.sleep(0.3)
    body = str(total).encode()
    status = "400 Bad Request" if path == "/reject" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def progress_app() -> ProgressMiddleware:
    """:func:`live_app` behind the middleware, as werkzeug and gunicorn serve it
    in the live-upload suite (gunicorn loads ``server_support:progress_app()``)."""
    return ProgressMiddleware(live_app, max_request_size=LIVE_LIMIT, methods="POST GET")


@contextlib.contextmanager
def running_werkzeug(app: Any) -> Iterator[int]:
    """Serve *app* with werkzeug's threaded dev server on 127.0.0.1, port 0,
    in a thread; always shut down on exit."""
    from werkzeug.serving import make_server

    server = make_server(HOST, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-werkzeug", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not thread.is_alive(), "werkzeug server did not stop"


def read_until(sock: socket.socket, enough: Callable[[bytes], bool],
               deadline: float = 5.0) -> bytes:
    """What *sock* receives until *enough* of it came, it closed, or
    *deadline* seconds passed."""
    buffer = b""
    end = time.monotonic() + deadline
    while not enough(buffer) and time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            piece = sock.recv(65536)
        except socket.timeout:
            break
        if not piece:
            break
        buffer += piece
    return buffer


def read_events(sock: socket.socket, count: int, deadline: float = 5.0) -> List[str]:
    """The ``id:``/``data:``/``event:`` lines of the next *count* events, or of
    those that arrived within *deadline* seconds."""
    buffer = read_until(sock, lambda got: got.count(b"\ndata: ") >= count, deadline)
    return [line for line in buffer.decode().splitlines()
            if line.startswith(("id: ", "data: ", "event: "))]


def follow_events(port: int, path: str, over: Callable[[Dict[str, Any]], bool],
                  out: List[Dict[str, Any]]) -> threading.Thread:
    """Reads the JSON events of the event stream at *path* into *out*, in a
    thread, until one is *over* (or none came for 8 s)."""
    def read() -> None:
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                         "Accept: text/event-stream\r\n\r\n".encode())
            while not out or not over(out[-1]):
                lines = read_events(sock, 1, deadline=8)  # what arrived: one event or more
                data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
                if not data:
                    return
                out.extend(data)
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


TESTS = Path(__file__).parent
SERVING = re.compile(r"Serving on http://127\.0\.0\.1:(\d+)")


def start_process(args: List[str], cwd: Path = TESTS, env: Optional[Dict[str, str]] = None,
                  pattern: "re.Pattern[str]" = SERVING) -> "tuple[subprocess.Popen[str], int]":
    """Start a server process in *cwd* (default tests/) and wait (bounded) for
    the port it prints on stderr, found by *pattern*."""
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    deadline = time.monotonic() + 20
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()  # type: ignore[union-attr]
        if not line:
            break
        seen.append(line)
        match = pattern.search(line)
        if match:
            return process, int(match.group(1))
    process.kill()
    process.wait(5)
    pytest.fail("server did not start: " + "".join(seen))


def stop_group(process: "subprocess.Popen[Any]") -> int:
    """SIGTERM, then SIGKILL to the process group it leads (started with
    ``start_new_session=True``) after 10 s; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    if process.poll() is None:
        # still unreaped, so its pid is still its own group's id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
        return -signal.SIGKILL
    return process.returncode


def stop_process(process: "subprocess.Popen[str]", signum: int = signal.SIGINT) -> int:
    process.send_signal(signum)
    try:
        return process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


class LoopbackProxy:
    """A TCP proxy on loopback in front of *port*, a thread for each
    direction of each connection; :meth:`forward` decides what becomes of
    each piece (a subclass cuts or holds some).  A context manager; ``.port``."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.threads: List[threading.Thread] = []
        self.sockets: List[socket.socket] = []
        self.lock = threading.Lock()

    def __enter__(self) -> "LoopbackProxy":
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:  # idle keep-alive connections too
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive(), "proxy thread did not stop"

    def forward(self, data: bytes, upstream: bool, ends: Tuple[socket.socket, socket.socket],
                state: Dict[str, Any]) -> bool:
        """Pass *data* from ``ends[0]`` on to ``ends[1]`` (towards the server
        when *upstream*); *state* is this direction's own.  False: stop."""
        ends[1].sendall(data)
        return True

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection((HOST, self.upstream))
            with self.lock:
                self.sockets += [client, server]
            self._spawn(self._pipe, client, server, True)
            self._spawn(self._pipe, server, client, False)

    def _pipe(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        state: Dict[str, Any] = {}
        try:
            while True:
                data = source.recv(65536)
                if not data or not self.forward(data, upstream, (source, target), state):
                    break
        except OSError:
            pass
        finally:
            for sock in (source, target):  # the other direction's thread wakes too
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
