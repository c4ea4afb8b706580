"""Live progress through a real nginx in front of our server, with the
README's ``location`` block ("Behind a reverse proxy").

The block is read from README.md, between the ``<!-- nginx-proxy -->`` and
``<!-- /nginx-proxy -->`` markers, so the README shows exactly what is tested
here; only its upstream address is pointed at the test server.  Each test
starts its own nginx (Debian's ``nginx-light``) in the foreground, with a
prefix, configuration, pid file, logs and temporary directories of its own,
on a free loopback port, and stops it at the end.

The negative cases leave one line of the block out and show what it is for:
without ``proxy_request_buffering off`` (or, for a chunked body, without
``proxy_http_version 1.1``) nginx reads the whole body before it opens the
connection to our server, so every probe during the upload says ``unknown``;
without ``client_max_body_size`` nginx answers 413 above 1 MiB; without
``proxy_buffering off`` nginx reads a whole download into its buffers at once,
so the server's ``sent`` and ``done`` say nothing about the client.

Without nginx these tests fail when the environment variable ``CI`` is set,
and skip otherwise, saying ``apt-get install nginx-light``.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from server_support import (
    DOWNLOAD_SIZE,
    HOST,
    LIVE_LIMIT,
    MiB,
    SlowUpload,
    live_app,
    probe,
    received_while,
    running,
    status_of,
    stop_group,
    wait_for_state,
    watched_upload,
)

README = Path(__file__).resolve().parents[1] / "README.md"
INSTALL = "apt-get install nginx-light"
#: The README block's upstream, replaced by the test server's address.
UPSTREAM = "proxy_pass http://127.0.0.1:8080;"
SNIPPET = re.compile(r"<!-- nginx-proxy -->\s*```nginx\n(?P<block>.*?)```\s*<!-- /nginx-proxy -->",
                     re.S)
#: The upload every test sends: 6 MiB in 256 KiB pieces, one every 40 ms
#: (about a second), so that probes land in the middle of it.
SIZE = 6 * MiB
PIECE = 256 * 1024
DELAY = 0.04


def readme_block() -> str:
    """The ``location`` block between the README's ``nginx-proxy`` markers."""
    found = SNIPPET.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md must hold one ```nginx block between " \
                            "<!-- nginx-proxy --> and <!-- /nginx-proxy -->"
    block: str = found[0]
    assert block.count(UPSTREAM) == 1, f"the README's nginx block must say {UPSTREAM!r} once"
    for directive in ("proxy_http_version 1.1;", "proxy_request_buffering off;",
                      "proxy_buffering off;", "client_max_body_size 0;"):
        assert directive in block, f"the README's nginx block lost {directive!r}"
    return block


def without(block: str, directive: str) -> str:
    """*block* with the line that sets *directive* (and its comment) left out."""
    lines = block.splitlines(keepends=True)
    kept = [line for line in lines if not line.strip().startswith(directive + " ")]
    assert len(kept) == len(lines) - 1, f"{directive} is not set on one line of the block"
    return "".join(kept)


def nginx_executable() -> str:
    """nginx's path; fails (``CI`` set) or skips (``CI`` unset) without it."""
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
         if os.access(path, os.X_OK)), None)
    if found:
        return found
    message = f"nginx is not installed: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the reverse-proxy tests may not skip)")
    pytest.skip(f"{message} (skipped only because CI is unset)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def temp_paths(executable: str, prefix: Path) -> str:
    """``*_temp_path`` directives for every module this nginx was built with,
    so that nothing is written outside *prefix*."""
    built = subprocess.run([executable, "-V"], capture_output=True, text=True,
                           timeout=10).stderr
    lines = [f"client_body_temp_path {prefix / 'client_body'};"]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in built:
            lines.append(f"{module}_temp_path {prefix / module};")
    return "\n    ".join(lines)


def nginx_conf(executable: str, prefix: Path, port: int, upstream: int, location: str) -> str:
    # a master running as root would switch its workers to "nobody", who may
    # not write the (root-only) temporary directories
    user = "user root;\n" if os.geteuid() == 0 else ""
    location = location.replace(UPSTREAM, f"proxy_pass http://{HOST}:{upstream};")
    return f"""{user}worker_processes 1;
pid {prefix / 'nginx.pid'};
lock_file {prefix / 'nginx.lock'};
error_log {prefix / 'error.log'} warn;
events {{
    worker_connections 64;
}}
http {{
    access_log {prefix / 'access.log'};
    {temp_paths(executable, prefix)}
    server {{
        listen {HOST}:{port};
        server_name test;
{location}
    }}
}}
"""


class Nginx:
    """One nginx in the foreground (``daemon off;``) under *prefix*."""

    def __init__(self, executable: str, prefix: Path, upstream: int, location: str) -> None:
        self.executable, self.prefix = executable, prefix
        self.upstream, self.location = upstream, location
        self.port = 0
        self.process: "Optional[subprocess.Popen[bytes]]" = None

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # the free port may be taken before nginx binds it
            self.port = free_port()
            config = self.prefix / "nginx.conf"
            config.write_text(nginx_conf(self.executable, self.prefix, self.port,
                                         self.upstream, self.location))
            with open(self.prefix / "stderr.log", "wb") as stderr:
                # a session of its own: its workers can be killed with it
                self.process = subprocess.Popen(
                    [self.executable, "-p", f"{self.prefix}/", "-c", str(config),
                     "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                    start_new_session=True)
            if self._wait_listening():
                return
            self.stop()
            if "Address already in use" not in self.logs():
                break
        pytest.fail(f"nginx did not start:\n{self.logs()}\n{config.read_text()}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, self.port), timeout=1).close()
                return True
            time.sleep(0.02)
        return False

    def logs(self) -> str:
        return "\n".join((self.prefix / name).read_text(errors="replace")
                         for name in ("stderr.log", "error.log")
                         if (self.prefix / name).exists())

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown); SIGKILL to its group after 10 s."""
        process, self.process = self.process, None
        if process is not None:
            stop_group(process)


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """Our server, tracking POSTs and GETs (``/download``), on a free loopback port."""
    with running(live_app, max_request_body_size=LIVE_LIMIT, methods="POST GET") as (_, port):
        yield port


@pytest.fixture
def nginx(tmp_path: Path, upstream: int) -> Iterator[Callable[[str], int]]:
    """Starts nginx in front of :func:`upstream` with a ``location`` block;
    returns its port.  Every nginx started is stopped at the end."""
    executable = nginx_executable()
    started: List[Nginx] = []

    def start(location: str) -> int:
        server = Nginx(executable, tmp_path / f"nginx{len(started)}", upstream, location)
        started.append(server)
        server.start()
        return server.port

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def finished(client: SlowUpload) -> bytes:
    client.join(30)
    assert not client.is_alive(), "the upload did not end within 30 s"
    assert client.error is None, client.error
    return client.reply


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_progress_is_live_through_nginx_with_the_readme_block(
        nginx: Callable[[str], int], chunked: bool) -> None:
    port = nginx(readme_block())
    progress_id = f"nginx-live-{int(chunked)}-{time.monotonic_ns()}"
    client, answers = watched_upload(port, progress_id, SIZE, piece=PIECE, delay=DELAY,
                                     chunked=chunked)
    reply = finished(client)
    assert status_of(reply) == 200 and reply.endswith(b"\r\n\r\n%d" % SIZE), reply[:300]
    # probes through nginx saw the body arrive, piece by piece
    growing = [r for r in received_while(answers, "uploading") if r < SIZE]
    assert len(growing) >= 3 and growing == sorted(growing), \
        [(a["state"], a["received"]) for a in answers]
    first = next(i for i, a in enumerate(answers) if a["state"] == "uploading")
    assert all(a["state"] != "unknown" for a in answers[first:]), answers
    entry = wait_for_state(port, progress_id, ("done",))
    assert (entry["received"], entry["size"], entry["status"]) == (SIZE, SIZE, 200), entry
    # a chunked body reached our server chunked: its size was unknown until the end
    sizes = {a["size"] for a in answers if a["state"] == "uploading"}
    assert sizes == ({None} if chunked else {SIZE}), sizes


@pytest.mark.parametrize("left_out, chunked", [
    pytest.param("proxy_request_buffering", False, id="request-buffering-on"),
    pytest.param("proxy_http_version", True, id="http-1.0-upstream-chunked"),
])
def test_a_buffering_nginx_gives_no_live_progress(
        nginx: Callable[[str], int], left_out: str, chunked: bool) -> None:
    """nginx's default request buffering: it reads the whole body before it
    connects to our server, so until then the probe says ``unknown``."""
    port = nginx(without(readme_block(), left_out))
    progress_id = f"nginx-buffered-{int(chunked)}-{time.monotonic_ns()}"
    client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", SIZE, piece=PIECE,
                        delay=DELAY, chunked=chunked)
    client.start()
    during: List[Dict[str, Any]] = []
    while client.is_alive():
        answer = probe(port, progress_id)
        # read after the answer: at most one more piece may be on its way, so
        # with two or more still unsent nginx cannot have had the whole body
        if client.sent + 2 * PIECE <= SIZE:
            during.append(answer)
        time.sleep(0.03)
    reply = finished(client)
    assert status_of(reply) == 200 and reply.endswith(b"\r\n\r\n%d" % SIZE), reply[:300]
    assert len(during) >= 10, f"only {len(during)} probes during the upload"
    assert {a["state"] for a in during} == {"unknown"}, during
    # our server tracked the request all the same, once nginx sent it on
    entry = wait_for_state(port, progress_id, ("done",))
    assert entry["received"] == SIZE, entry


def test_nginx_default_body_limit_answers_413(nginx: Callable[[str], int]) -> None:
    port = nginx(without(readme_block(), "client_max_body_size"))
    progress_id = f"nginx-limit-{time.monotonic_ns()}"
    client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", 2 * MiB, piece=PIECE,
                        delay=0)
    client.start()
    client.join(30)
    assert status_of(client.reply) == 413, (client.reply[:300], client.error)
    assert probe(port, progress_id)["state"] == "unknown"


class EventStream:
    """A raw ``text/event-stream`` response, read as it arrives: its events
    with when they came, the body de-chunked if nginx chunked it."""

    def __init__(self, port: int, target: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.raw = b""
        self.head: Optional[bytes] = None
        self.body = b""
        self.parsed = 0  # how much of self.body became events
        self.events: List[Tuple[Dict[str, Any], Any]] = []

    def read(self, deadline: float, mark: Callable[[], Any], until: Callable[[], bool]) -> None:
        """Read until *until()* or *deadline*; each event is stored with
        what *mark()* said when it arrived."""
        end = time.monotonic() + deadline
        while not until() and time.monotonic() < end:
            self.sock.settimeout(max(0.05, min(0.2, end - time.monotonic())))
            try:
                piece = self.sock.recv(65536)
            except socket.timeout:
                continue
            assert piece, f"the event stream closed: {self.raw[-500:]!r}"
            self.raw += piece
            self._parse(mark())

    def _parse(self, mark: Any) -> None:
        if self.head is None:
            if b"\r\n\r\n" not in self.raw:
                return
            self.head, _, self.raw = self.raw.partition(b"\r\n\r\n")
            assert status_of(self.head) == 200, self.head
        if b"transfer-encoding: chunked" in self.head.lower():
            while True:
                size_line, found, rest = self.raw.partition(b"\r\n")
                if not found:
                    break
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                self.body += rest[:size]
                self.raw = rest[size + 2:]
        else:
            self.body, self.raw = self.body + self.raw, b""
        while b"\n\n" in self.body[self.parsed:]:
            end = self.body.index(b"\n\n", self.parsed)
            for line in self.body[self.parsed:end].decode().splitlines():
                if line.startswith("data: "):
                    self.events.append((json.loads(line[6:]), mark))
            self.parsed = end + 2

    def close(self) -> None:
        self.sock.close()


def test_progress_events_stream_live_through_nginx(nginx: Callable[[str], int]) -> None:
    port = nginx(readme_block())
    progress_id = f"nginx-sse-{time.monotonic_ns()}"
    stream = EventStream(port, f"/progress?X-Progress-ID={progress_id}&transport=sse")
    try:
        # the stream's first event (the entry, unknown so far) came through
        stream.read(5, lambda: 0, lambda: bool(stream.events))
        assert stream.events and stream.events[0][0]["state"] == "unknown", stream.events
        client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", SIZE, piece=PIECE,
                            delay=DELAY)
        client.start()
        # each event is marked with how much the client had sent when it arrived
        stream.read(30, lambda: client.sent,
                    lambda: any(e["state"] in ("done", "error") for e, _ in stream.events))
        reply = finished(client)
    finally:
        stream.close()
    assert status_of(reply) == 200, reply[:300]
    states = [event for event, _ in stream.events]
    assert states[-1]["state"] == "done" and states[-1]["received"] == SIZE, states[-3:]
    # events arrived while the body was still being sent, with received growing
    live = [event["received"] for event, sent in stream.events
            if event["state"] == "uploading" and sent + 2 * PIECE <= SIZE]
    assert len(set(live)) >= 3 and live == sorted(live), \
        [(e["state"], e["received"], sent) for e, sent in stream.events]


@pytest.mark.parametrize("left_out", [None, "proxy_buffering"],
                         ids=["readme-block", "response-buffering-on"])
def test_download_progress_through_nginx(nginx: Callable[[str], int],
                                         left_out: Optional[str]) -> None:
    """With ``proxy_buffering off`` the server sends a download as fast as the
    client takes it; without, nginx takes all of it at once into its buffers
    and temporary files, and the download is ``done`` for the server while
    the client has hardly started."""
    block = readme_block()
    port = nginx(block if left_out is None else without(block, left_out))
    progress_id = f"nginx-download-{time.monotonic_ns()}"
    sock = socket.create_connection((HOST, port), timeout=10)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET /download?X-Progress-ID={progress_id} HTTP/1.1\r\n"
                     "Host: test\r\n\r\n".encode())
        received = 0
        # a slow client: 64 KiB every 10 ms, until it has 2 MiB of 24
        while received < 2 * MiB:
            piece = sock.recv(65536)
            assert piece, "nginx closed the download"
            received += len(piece)
            time.sleep(0.01)
        if left_out is None:
            # what the kernel's socket buffers hold (a few MiB) counts as sent
            entry = probe(port, progress_id)
            assert entry["state"] == "processing" and entry["sent"] < DOWNLOAD_SIZE, entry
        else:
            # while the client still has only 2 MiB
            entry = wait_for_state(port, progress_id, ("done",))
            assert entry["sent"] == DOWNLOAD_SIZE, entry
    finally:
        sock.close()
