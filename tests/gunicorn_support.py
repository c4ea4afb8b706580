"""Running an application under gunicorn in a real process for tests: port 0,
bounded start, always stopped."""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import signal
import subprocess
import sys
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional

import pytest

from server_support import HOST

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 30.0


def _gunicorn_settings() -> List[str]:
    """The names of the settings the installed gunicorn knows."""
    try:
        config = importlib.import_module("gunicorn.config")
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.fail("gunicorn is not installed: pip install -e '.[test]' brings it")
    return [setting.name for setting in config.KNOWN_SETTINGS]


def _gunicorn_argv(app: str, worker_class: str, workers: int, extra: List[str]) -> List[str]:
    argv = [sys.executable, "-m", "gunicorn",
            "--bind", f"{HOST}:0",          # the kernel picks; the log tells us which
            "--workers", str(workers), "--worker-class", worker_class, *extra,
            "--chdir", str(ROOT),           # examples/ and the tree's wsgiprogress
            "--timeout", "60", "--graceful-timeout", "3",
            "--log-level", "info", "--error-logfile", "-"]
    if "control_socket_disable" in _gunicorn_settings():
        # gunicorn 24+ opens a control socket at one fixed path by default:
        # two servers at once (or two test runs) would fight over it
        argv.append("--no-control-socket")
    return [*argv, app]


def _stop(process: "subprocess.Popen[bytes]") -> None:
    """SIGTERM the master (it stops its worker), SIGKILL its process group
    if it has not exited within 10 s."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    if process.poll() is None:
        # still unreaped, so its pid is still its own group's id: the group is
        # our own session's, the master and the worker it forked
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


class Gunicorn(NamedTuple):
    """A running gunicorn: the port it serves and its master's pid."""

    port: int
    pid: int

    def workers(self) -> List[int]:
        """The pids of the master's workers (its child processes)."""
        workers = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                stat = Path("/proc", name, "stat").read_text()
            except OSError:
                continue  # exited while we looked
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            if int(stat.rpartition(")")[2].split()[1]) == self.pid:
                workers.append(int(name))
        return workers


@contextlib.contextmanager
def running_gunicorn(log_path: Path, app: str, worker_class: str, *extra: str,
                     workers: int = 1, env: Optional[Dict[str, str]] = None
                     ) -> Iterator[Gunicorn]:
    """Run *app* (``module:name`` from the project or tests/, or gunicorn's
    ``module:factory()``) under gunicorn; yields it once a worker answers
    ``GET /``.  Always stopped on exit."""
    path = [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH")]
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, path))}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(_gunicorn_argv(app, worker_class, workers, list(extra)),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=ROOT, env=env, start_new_session=True)
    try:
        yield Gunicorn(_wait_until_serving(process, log_path), process.pid)
    finally:
        _stop(process)


@contextlib.contextmanager
def gunicorn(log_path: Path, app: str, worker_class: str, *extra: str, workers: int = 1,
             env: Optional[Dict[str, str]] = None) -> Iterator[int]:
    """:func:`running_gunicorn`, yielding only the port."""
    with running_gunicorn(log_path, app, worker_class, *extra, workers=workers,
                          env=env) as server:
        yield server.port


def _wait_until_serving(process: "subprocess.Popen[bytes]", log_path: Path) -> int:
    """The port from gunicorn's "Listening at" line, once a request to the
    worker succeeded; fails with the log after START_TIMEOUT seconds."""
    deadline = time.monotonic() + START_TIMEOUT
    port = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n"
                        + log_path.read_text(errors="replace"))
        if port is None:
            match = LISTENING.search(log_path.read_text(errors="replace"))
            port = int(match.group(1)) if match else None
        if port is not None:
            # listening is not serving: the worker still has to import the app
            try:
                conn = HTTPConnection(HOST, port, timeout=max(0.5, deadline - time.monotonic()))
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read()
                conn.close()
            except OSError:
                pass
            else:
                assert response.status < 500, body[:200]
                return port
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not serve within {START_TIMEOUT} s:\n"
                + log_path.read_text(errors="replace"))
