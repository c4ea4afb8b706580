"""
Servers in subprocesses for the benchmarks, so a client never shares the
server's interpreter lock: a script run with ``--serve KIND`` builds its
server and hands it to :func:`serve_until_stdin_closes`; the measuring side
opens it with :func:`server_process`.

.. code-block:: python

    with server_process(__file__, "ours") as port:
        ...
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, Optional


def serve_until_stdin_closes(server: Any) -> None:
    """Print *server*'s port, serve until standard input closes (the parent
    went away or is done), then stop."""
    print(server.effective_port, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.close(),
                                     server.task_dispatcher.shutdown(timeout=1)),
                     daemon=True).start()
    with contextlib.suppress(Exception):
        server.run()


@contextlib.contextmanager
def server_process(script: str, kind: str,
                   env: Optional[Dict[str, str]] = None) -> Iterator[int]:
    """``script --serve kind`` in a subprocess; yields its port; always stopped."""
    process = subprocess.Popen([sys.executable, script, "--serve", kind], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait(10)


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
