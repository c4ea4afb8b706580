"""
Servers in subprocesses for the benchmarks, so a client never shares the
server's interpreter lock: a script run with ``--serve KIND`` builds its
server and hands it to :func:`serve_until_stdin_closes`; the measuring side
opens it with :func:`server_process`.

.. code-block:: python

    with server_process(__file__, "ours") as port:
        ...

:func:`nginx_with_module` starts a peer: Debian's nginx with one dynamic
module, on a free loopback port, or yields ``None`` when it is not installed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple


def serve_until_stdin_closes(server: Any) -> None:
    """Print *server*'s port, serve until standard input closes (the parent
    went away or is done), then stop."""
    print(server.effective_port, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.close(),
                                     server.task_dispatcher.shutdown(timeout=1)),
                     daemon=True).start()
    with contextlib.suppress(Exception):
        server.run()


def cpu_times(pid: int) -> Tuple[float, float]:
    """The user and the system time a process has used so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """The user and system time a process has used so far (Linux), summed."""
    return sum(cpu_times(pid))


@contextlib.contextmanager
def server_subprocess(script: str, kind: str,
                      env: Optional[Dict[str, str]] = None) -> Iterator[Tuple[int, int]]:
    """``script --serve kind`` in a subprocess; yields its port and process
    id; always stopped."""
    process = subprocess.Popen([sys.executable, script, "--serve", kind], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline()), process.pid
    finally:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def server_process(script: str, kind: str,
                   env: Optional[Dict[str, str]] = None) -> Iterator[int]:
    """``script --serve kind`` in a subprocess; yields its port; always stopped."""
    with server_subprocess(script, kind, env) as (port, _):
        yield port


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def nginx_executable() -> Optional[str]:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(path)),
        None)


@contextlib.contextmanager
def nginx_with_module(module: str, http: str, host: str = "127.0.0.1",
                      connections: int = 1024) -> Iterator[Optional[Tuple[int, int]]]:
    """nginx (one worker) loading *module* from ``/usr/lib/nginx/modules``,
    with *http* (the ``http`` block's body; ``{port}`` is the port to listen
    on) under a temporary prefix; yields the port and the master's process
    id, or None when nginx or the module is not installed.  Always stopped."""
    nginx, path = nginx_executable(), f"/usr/lib/nginx/modules/{module}"
    if nginx is None or not os.path.exists(path):
        yield None
        return
    port = free_port(host)
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as prefix:
        for folder in ("logs", "temp"):
            os.makedirs(os.path.join(prefix, folder))
        with open(os.path.join(prefix, "nginx.conf"), "w") as conf:
            conf.write(f"""
load_module {path};
worker_processes 1;
worker_rlimit_nofile {connections + 64};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/temp;
  {http.replace("{port}", f"{host}:{port}")}
}}
""")
        process = subprocess.Popen([nginx, "-p", prefix, "-c", f"{prefix}/nginx.conf",
                                    "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        try:
            wait_for_port(host, port)
            yield port, process.pid
        finally:
            process.terminate()
            process.wait(10)


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once something accepts connections on *host*:*port*."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
