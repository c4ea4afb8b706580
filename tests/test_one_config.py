"""One configuration wherever it is read: an application that carries its own
middleware (Flask's Progress, Pyramid's include, a plain ProgressMiddleware)
keeps its settings under our server, which serves that middleware's store and
probe, takes its max_request_size as the 413 limit, and refuses to start when
it was told something else."""
from __future__ import annotations

import json
import textwrap
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import pytest
from flask import Flask, request
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_progress import Progress, config_key
from wsgiprogress import ConfigurationError, ProgressMiddleware
from wsgiprogress.cli import run
from wsgiprogress.mailbox import MemoryMailboxes
from wsgiprogress.progress.table import ProgressTable
from wsgiprogress.pyramid import POLICY_KEY
from wsgiprogress.server import create_server
from wsgiprogress.server.adopt import PYRAMID_POLICY, find_middleware

from server_apps import read_stream
from server_support import (
    HOST,
    MiB,
    SlowUpload,
    exchange,
    received_while,
    running,
    status_of,
    wait_until,
)

PROBE = "/upload-progress"
LIMIT = 10 * MiB


def flask_app(config: Optional[Dict[str, Any]] = None) -> Flask:
    """A Flask app with Progress whose upload view reads the body in pieces."""
    app = Flask(__name__)
    app.config.update({"PROGRESS_URL": PROBE, "PROGRESS_MAX_REQUEST_SIZE": "10M"}
                      if config is None else config)

    @app.post("/upload")
    def upload() -> str:
        return f"{read_stream(request.stream)} bytes"

    Progress(app)
    return app


def upload_view(request: Request) -> Response:
    total = 0
    while True:
        piece = request.body_file.read(65536)
        if not piece:
            return Response(f"{total} bytes")
        total += len(piece)


def pyramid_app(settings: Optional[Dict[str, Any]] = None) -> Any:
    """A Pyramid app with config.include("wsgiprogress")."""
    with Configurator(settings={"wsgiprogress.progress_url": PROBE,
                                "wsgiprogress.max_request_size": "10M"}
                      if settings is None else settings) as config:
        config.include("wsgiprogress")
        config.add_route("upload", "/upload")
        config.add_view(upload_view, route_name="upload")
    return config.make_wsgi_app()


def plain_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    size = 0
    while True:
        piece = environ["wsgi.input"].read(65536)
        if not piece:
            break
        size += len(piece)
    body = f"{size} bytes".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def plain_middleware() -> ProgressMiddleware:
    return ProgressMiddleware(plain_app, progress_url=PROBE, max_request_size="10M")


APPS = [
    pytest.param(flask_app, "PROGRESS_URL", "PROGRESS_MAX_REQUEST_SIZE", id="flask"),
    pytest.param(pyramid_app, "wsgiprogress.progress_url", "wsgiprogress.max_request_size",
                 id="pyramid"),
    pytest.param(plain_middleware, "progress_url", "max_request_size", id="middleware"),
]


def probe_at(port: int, progress_id: str, path: str = PROBE) -> Dict[str, Any]:
    conn = HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", f"{path}?X-Progress-ID={progress_id}")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:200])
        return json.loads(body)  # type: ignore[no-any-return]
    finally:
        conn.close()


@pytest.mark.parametrize("make, url_key, size_key", APPS)
def test_the_servers_probe_is_where_the_application_says(
        make: Callable[[], Any], url_key: str, size_key: str) -> None:
    app = make()
    progress_id = "one-config-live-0001"
    size = 6 * MiB
    with running(app) as (server, port):
        client = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", size, delay=0.03)
        client.start()
        seen: List[Dict[str, Any]] = []

        def ended() -> bool:
            seen.append(probe_at(port, progress_id))
            return seen[-1]["state"] in ("done", "error")

        wait_until(ended, 30, interval=0.04)
        client.join(30)
        assert server.progress_front is find_middleware(app).middleware.front  # type: ignore
    assert client.error is None and status_of(client.reply) == 200, client.reply[:200]
    assert client.reply.endswith(f"{size} bytes".encode())
    growing = received_while(seen, "uploading")
    assert len(growing) >= 3 and growing == sorted(growing), seen
    assert (seen[-1]["state"], seen[-1]["received"], seen[-1]["size"]) == ("done", size, size)


@pytest.mark.parametrize("make, url_key, size_key", APPS)
def test_the_applications_max_request_size_is_the_servers_413(
        make: Callable[[], Any], url_key: str, size_key: str) -> None:
    with running(make()) as (server, port):
        assert server.adj.max_request_body_size == LIMIT
        head = (f"POST /upload?X-Progress-ID=one-config-413-0001 HTTP/1.1\r\nHost: test\r\n"
                f"Content-Length: {20 * MiB}\r\n\r\n").encode()
        reply = exchange(port, head + b"x" * 65536, read_for=5, until=b"\r\n\r\n")
        assert status_of(reply) == 413, reply[:200]
        entry = probe_at(port, "one-config-413-0001")
        assert (entry["state"], entry["reason"]) == ("error", "too_large")


@pytest.mark.parametrize("make, url_key, size_key", APPS)
def test_a_contradicting_server_setting_refuses_to_start(
        make: Callable[[], Any], url_key: str, size_key: str) -> None:
    app = make()
    with pytest.raises(ConfigurationError) as info:
        create_server(app, host=HOST, port=0, progress_url="/a")
    assert str(info.value) == (f"progress_url: the server says '/a', the application's "
                               f"{url_key} says '{PROBE}'; set one")
    with pytest.raises(ConfigurationError) as info:
        create_server(app, host=HOST, port=0, max_request_body_size="20M")
    assert str(info.value) == (f"max_request_body_size: the server says {20 * MiB}, the "
                               f"application's {size_key} says {LIMIT}; set one")


@pytest.mark.parametrize("settings, message", [
    pytest.param({"ttl": 60}, "ttl: the server says 60.0, the application's PROGRESS_TTL "
                              "says 30.0 (its default); set one", id="app-default"),
    pytest.param({"methods": "POST PUT"},
                 "methods: the server says 'POST PUT', the application's PROGRESS_METHODS "
                 "says 'POST' (its default); set one", id="methods"),
    pytest.param({"store": ProgressTable()},
                 "store: the server was given a progress store, the application has its "
                 "own; leave it out, the server uses the application's", id="other-store"),
    pytest.param({"mailbox": True},
                 "mailbox: the server says True, the application's PROGRESS_MAILBOX says "
                 "False (its default); set one", id="mailbox-on"),
    pytest.param({"authorize": lambda environ, name, action: True},
                 "authorize: the server was given a hook, the application's middleware has "
                 "its own settings; pass authorize to the application", id="authorize"),
])
def test_anything_the_server_would_ignore_refuses(settings: Dict[str, Any],
                                                  message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_server(flask_app(), host=HOST, port=0, **settings)
    assert str(info.value).startswith(message)


def test_agreeing_settings_and_the_applications_own_store_are_accepted() -> None:
    app = flask_app()
    store = app.extensions["progress"].store
    with running(app, progress_url=PROBE, max_request_body_size=str(LIMIT),
                 store=store) as (server, port):
        assert server.progress_store is store
        assert server.adj.max_request_body_size == LIMIT
        assert probe_at(port, "nobody-uploads-this")["state"] == "unknown"


def test_the_servers_own_limit_stands_when_the_application_sets_none() -> None:
    with running(flask_app({}), max_request_body_size="3M") as (server, _):
        assert server.adj.max_request_body_size == 3 * MiB


def test_waiters_follow_the_servers_connections_unless_the_application_bounds_them() -> None:
    with running(flask_app(), threads=8, connection_limit=200) as (server, _):
        # parked on the I/O loop: the connections minus a quarter, not the threads
        assert server.progress_front.waiters.limit == 150
    app = flask_app({"PROGRESS_MAX_WAITERS": 5})
    with running(app, threads=8) as (server, _):
        assert server.progress_front.waiters.limit == 5
    with pytest.raises(ConfigurationError, match="max_waiters: the server says 4, the "
                                                 "application's PROGRESS_MAX_WAITERS says 5"):
        create_server(app, host=HOST, port=0, max_waiters=4)


def test_the_cli_refuses_a_contradiction_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "one_config_cli_app.py").write_text(textwrap.dedent("""\
        from flask import Flask
        from flask_progress import Progress

        app = Flask(__name__)
        app.config["PROGRESS_URL"] = "/b"
        Progress(app)
        """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "one_config_cli_app", raising=False)
    code = run(["wsgiprogress-serve", "--listen", "127.0.0.1:0", "--progress-url", "/a",
                "one_config_cli_app:app"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "wsgiprogress-serve: progress_url: the server says '/a', the application's "
        "PROGRESS_URL says '/b'; set one"]


def test_the_middleware_is_found_through_the_wrappers_we_know() -> None:
    flask = flask_app()
    assert find_middleware(flask).middleware is flask.extensions["progress"].middleware  # type: ignore
    flask.wsgi_app = ProxyFix(flask.wsgi_app)  # type: ignore[method-assign]
    assert find_middleware(flask).spell("ttl") == "PROGRESS_TTL"  # type: ignore[union-attr]
    pyramid = pyramid_app()
    found = find_middleware(ProxyFix(pyramid))
    assert found is not None and found.middleware is pyramid.registry[POLICY_KEY].middleware
    assert found.spell("ttl") == "wsgiprogress.ttl"
    inner = plain_middleware()
    found = find_middleware(ProgressMiddleware(ProxyFix(inner), progress_url="/outer"))
    assert found is not None and found.middleware.front.progress_url == "/outer"
    assert find_middleware(ProxyFix(inner)).middleware is inner  # type: ignore[union-attr]


class Loop:
    """A wrapper whose app is itself."""

    def __init__(self) -> None:
        self.app = self

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return plain_app(environ, start_response)


@pytest.mark.parametrize("app", [
    pytest.param(plain_app, id="plain"),
    pytest.param(Flask(__name__), id="flask-without-progress"),
    pytest.param(ProxyFix(plain_app), id="wrapped"),
    pytest.param(Loop(), id="loop"),
])
def test_an_application_without_middleware_gets_the_servers_own(app: Any) -> None:
    assert find_middleware(app) is None
    with running(app, progress_url="/p", max_request_body_size="2M") as (server, port):
        assert server.progress_front.progress_url == "/p"
        assert server.adj.max_request_body_size == 2 * MiB
        assert probe_at(port, "nobody-uploads-this", "/p")["state"] == "unknown"


def test_the_server_spells_keys_as_flask_and_pyramid_do() -> None:
    assert PYRAMID_POLICY == POLICY_KEY
    found = find_middleware(flask_app())
    # one spelling: Flask's own config_key names the application's keys
    assert found is not None and found.spell is config_key


def test_a_flag_left_off_and_a_mailbox_store_in_the_middleware_agree() -> None:
    mailboxes = MemoryMailboxes()
    app = ProgressMiddleware(plain_app, mailbox=mailboxes)
    for flag in (False, True):
        with running(app, mailbox=flag, debug=False) as (server, _):
            assert server.mailbox is mailboxes
