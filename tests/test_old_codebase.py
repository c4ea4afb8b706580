"""An old codebase: every piece gives live progress with the versions an
older Flask or Pyramid project has installed, and installing the wheel there
upgrades nothing.

The live tests run everywhere: on the newest releases in the main run, and
in the old-codebase leg of ``.ci/run`` on :data:`OLD_SET` (Flask 1.1.4,
Werkzeug 1.0.1, waitress 1.4.4, Pyramid 1.10).  They use only what both have:
no ``app.post`` (Flask 2.0), werkzeug's ``make_server`` (``run_simple`` is
``make_server(...).serve_forever()``).

Only the leg selects the last two tests (``-m old_codebase_leg``; setup.cfg
deselects them elsewhere): that the leg's own interpreter really has the old
set, and the ``pip freeze`` check (a fresh venv from the package index, about
30 s).  They never skip: a missing tool or index fails them.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import sys
import time
from http.client import HTTPConnection
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List

import pytest

from wsgiprogress import ProgressMiddleware

from server_apps import read_stream
from server_support import (
    HOST,
    MiB,
    received_while,
    running,
    running_werkzeug,
    wait_for_state,
    watched_upload,
)

#: What the old-codebase leg installs, as ``pip freeze`` spells it (WebOb and
#: the rest of Pyramid's dependencies are whatever pip picks for Pyramid 1.10).
OLD_SET = ("Flask==1.1.4", "Werkzeug==1.0.1", "MarkupSafe==1.1.1", "itsdangerous==1.1.0",
           "Jinja2==2.11.3", "click==7.1.2", "waitress==1.4.4", "pyramid==1.10.8")
ROOT = Path(__file__).resolve().parents[1]

SIZE = 4 * MiB
#: 16 pieces 50 ms apart: the upload lasts about 0.8 s, probes every 30 ms.
PIECES = {"piece": 256 * 1024, "delay": 0.05}




def read_declared(environ: Dict[str, Any]) -> int:
    """Read the body by its Content-Length: werkzeug 1.0's ``wsgi.input`` is
    the socket, and reading on to the end would wait for the client."""
    stream, left = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0)
    while left > 0:
        piece = stream.read(min(65536, left))
        if not piece:
            break
        left -= len(piece)
    return int(environ.get("CONTENT_LENGTH") or 0) - left


def plain_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = str(read_declared(environ)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def assert_live(port: int, progress_id: str) -> None:
    """Upload :data:`SIZE` bytes slowly to *port* while probing it: the
    probes see ``received`` grow during the upload, then ``done`` with every byte."""
    client, answers = watched_upload(port, progress_id, SIZE, **PIECES)
    assert client.error is None, client.error
    assert client.reply.startswith(b"HTTP/1."), client.reply[:200]
    assert b" 200 " in client.reply.split(b"\r\n", 1)[0], client.reply[:300]
    growing = received_while(answers, "uploading")
    assert len([r for r in growing if 0 < r < SIZE]) >= 3, (
        f"received did not grow during the upload: {growing}; states seen "
        f"{[a['state'] for a in answers]}")
    assert growing == sorted(growing), growing
    final = answers[-1]
    if final["state"] != "done":  # the response may still be leaving
        final = wait_for_state(port, progress_id, ("done", "error"))
    assert (final["state"], final["received"], final["size"]) == ("done", SIZE, SIZE), final


# --- the middleware under werkzeug ----------------------------------------------

def test_middleware_is_live_under_werkzeug_make_server() -> None:
    app = ProgressMiddleware(plain_app, max_request_size=16 * MiB)
    with running_werkzeug(app) as port:
        assert_live(port, "old-werkzeug-mw1")


# --- our server -------------------------------------------------------------------

def test_our_server_is_live() -> None:
    with running(plain_app, max_request_body_size=16 * MiB) as (_, port):
        assert_live(port, "old-server-0001")


def test_our_server_sees_a_waiting_client_leave() -> None:
    """A long-poll holds a worker thread; its client's close gives it back
    at once (waitress 2.0+: channel_request_lookahead; 1.4: the channel peeks)."""
    name = "feedfacefeedfacefeedfacefeedface"
    with running(plain_app, mailbox=True, threads=4) as (server, port):
        conn = HTTPConnection(HOST, port, timeout=10)
        conn.request("GET", f"/mailbox/{name}")
        response = conn.getresponse()
        assert response.status == 200, response.read()
        cursor = json.loads(response.read())["cursor"]
        conn.close()
        waiters = server.mailbox.waiters
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.sendall(f"GET /mailbox/{name}?after={cursor}&wait=25 HTTP/1.1\r\n"
                     "Host: t\r\n\r\n".encode())
        assert until(lambda: len(waiters) == 1), "the long-poll never waited"
        sock.close()
        started = time.monotonic()
        assert until(lambda: len(waiters) == 0), "the waiter outlived its client by 5 s"
        assert time.monotonic() - started < 2.0


def until(condition: Callable[[], bool], deadline: float = 5.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- Flask ----------------------------------------------------------------------

def flask_app() -> Any:
    from flask import Flask, request

    from flask_progress import Progress

    app = Flask(__name__)
    app.config["PROGRESS_MAX_REQUEST_SIZE"] = "16M"

    @app.route("/upload", methods=["POST"])  # app.post needs Flask 2.0
    def upload() -> str:
        return str(read_stream(request.stream))

    Progress(app)
    return app


def test_flask_extension_is_live_under_werkzeug() -> None:
    with running_werkzeug(flask_app()) as port:
        assert_live(port, "old-flask-wz-001")


def test_flask_extension_is_live_under_our_server() -> None:
    with running(flask_app(), max_request_body_size=16 * MiB) as (_, port):
        assert_live(port, "old-flask-srv-01")


# --- Pyramid ----------------------------------------------------------------------

def pyramid_app() -> Any:
    from pyramid.config import Configurator
    from pyramid.response import Response

    def upload(request: Any) -> Any:
        return Response(str(read_stream(request.body_file)))

    with Configurator(settings={"wsgiprogress.max_request_size": "16M"}) as config:
        config.include("wsgiprogress")
        config.add_route("upload", "/upload")
        config.add_view(upload, route_name="upload", request_method="POST")
    return config.make_wsgi_app()


def test_pyramid_include_is_live_under_our_server() -> None:
    with running(pyramid_app(), max_request_body_size=16 * MiB) as (_, port):
        assert_live(port, "old-pyramid-srv1")


def test_pyramid_include_is_live_under_werkzeug() -> None:
    with running_werkzeug(pyramid_app()) as port:
        assert_live(port, "old-pyramid-wz01")


# --- the old-codebase leg only ------------------------------------------------------

#: Selected only by the old-codebase leg of .ci/run (``-m old_codebase_leg``):
#: elsewhere they are deselected by setup.cfg, never skipped.
leg_only = pytest.mark.old_codebase_leg


@leg_only
def test_the_leg_runs_on_the_old_set() -> None:
    installed = [f"{pin.split('==')[0]}=={version(pin.split('==')[0])}" for pin in OLD_SET]
    assert installed == list(OLD_SET)


def freeze(python: Path, env: Dict[str, str]) -> List[str]:
    from test_packaging import run
    return run([str(python), "-m", "pip", "freeze", "--all"], cwd=python.parent,
               env=env).stdout.splitlines()


@leg_only
@pytest.mark.timeout(900)
def test_installing_the_wheel_upgrades_nothing(tmp_path: Path) -> None:
    from test_packaging import BUILD_JUNK, clean_env, run

    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_JUNK))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
         "--wheel-dir", str(dist), str(source)], cwd=tmp_path, env=clean_env(), timeout=300)
    wheels = list(dist.glob("wsgiprogress-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=clean_env())
    python, env = venv / "bin" / "python", clean_env(venv)
    run([str(python), "-m", "pip", "install", "--quiet", *OLD_SET], cwd=tmp_path, env=env,
        timeout=600)
    before = freeze(python, env)
    # an ordinary install: pip resolves install_requires against what is there
    run([str(python), "-m", "pip", "install", str(wheels[0])], cwd=tmp_path, env=env,
        timeout=300)
    after = freeze(python, env)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    print("pip freeze before:", *before, sep="\n  ")
    print("changes:", added, removed)
    assert removed == [], f"installing the wheel changed {removed} into {added}"
    # "wsgiprogress==0.2" or "wsgiprogress @ file:///...whl"
    assert [re.split(r"[=@ ]", line)[0] for line in added] == ["wsgiprogress"], added
    # and it works there: the server on waitress 1.4.4 answers a probe
    answer = run([str(python), "-c", SMOKE], cwd=tmp_path, env=env, timeout=60).stdout
    assert answer.strip() == "unknown", answer


SMOKE = """
import json, threading
from http.client import HTTPConnection
from wsgiprogress.server import create_server
server = create_server(lambda e, s: [], host="127.0.0.1", port=0)
threading.Thread(target=server.run, daemon=True).start()
conn = HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
conn.request("GET", "/progress?X-Progress-ID=smoke-test-0001")
print(json.loads(conn.getresponse().read())["state"])
"""

