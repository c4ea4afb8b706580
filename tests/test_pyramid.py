"""``config.include("wsgiprogress")`` through WebTest with lint: tracking,
probes, strict settings, and how it composes with other execution policies,
the middleware and the server; then the Pyramid example, loaded from its
development.ini and served by the real server from the same file."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import webtest
from paste.deploy import loadapp
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.router import Router, default_execution_policy

from wsgiprogress import ConfigurationError, ProgressMiddleware
from wsgiprogress.pyramid import POLICY_KEY, ProgressExecutionPolicy

from server_support import (
    HOST,
    received_while,
    running_werkzeug,
    start_process,
    status_of,
    stop_process,
    wait_for_state,
    watched_upload,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_INI = ROOT / "examples" / "pyramid_app" / "development.ini"
MiB = 1024 * 1024


class Retry(Exception):
    """Raised by a view to ask the test's retrying policy for another attempt."""


def read_body(request: Request) -> int:
    """Read the body in 64 KiB pieces, as upload views do; its size."""
    total = 0
    while True:
        piece = request.body_file.read(65536)
        if not piece:
            return total
        total += len(piece)


def upload_view(request: Request) -> Response:
    size = read_body(request)
    if request.environ.get("test.attempt") == 1:
        raise Retry()
    return Response(f"{size} bytes")


def failing_view(request: Request) -> Response:
    read_body(request)
    raise RuntimeError("view failure")


def post_view(request: Request) -> Response:
    store = request.environ["wsgiprogress.mailbox"]
    store.post(request.matchdict["name"], request.text)
    return Response("posted")


def retry_twice(environ: Dict[str, Any], router: Router) -> Any:
    """An execution policy as pyramid_retry's: the body is made seekable (copied)
    before the first attempt, and every attempt reads the copy."""
    for attempt in (1, 2):
        environ["test.attempt"] = attempt
        with router.request_context(environ) as request:
            request.make_body_seekable()
            try:
                return router.invoke_request(request)
            except Retry:
                continue
    raise AssertionError("unreachable")


def make_app(settings: Optional[Dict[str, Any]] = None,
             policy: Optional[Callable[..., Any]] = None, policy_after: bool = False,
             includes: Tuple[str, ...] = ("wsgiprogress",)) -> Router:
    """A Pyramid application with the include, an upload view at /upload, a
    failing one at /fail and a mailbox poster at /post/{name}."""
    with Configurator(settings=settings) as config:
        if policy is not None and not policy_after:
            config.set_execution_policy(policy)
        for include in includes:
            config.include(include)
        if policy is not None and policy_after:
            config.set_execution_policy(policy)
        config.add_route("upload", "/upload")
        config.add_view(upload_view, route_name="upload")
        config.add_route("fail", "/fail")
        config.add_view(failing_view, route_name="fail")
        config.add_route("post", "/post/{name}")
        config.add_view(post_view, route_name="post")
    return config.make_wsgi_app()


def client_for(app: Any) -> webtest.TestApp:
    return webtest.TestApp(app, lint=True)


# --- the include -----------------------------------------------------------

def test_a_tracked_upload_is_done_with_exact_counts() -> None:
    client = client_for(make_app())
    reply = client.post("/upload?X-Progress-ID=pyramid-up-1", b"x" * 100_000,
                        content_type="application/octet-stream")
    assert reply.text == "100000 bytes"
    entry = client.get("/progress?X-Progress-ID=pyramid-up-1").json
    assert (entry["state"], entry["received"], entry["size"], entry["status"]) == \
        ("done", 100_000, 100_000, 200)
    assert entry["sent"] == entry["response_size"] == len(reply.body)


def test_the_id_may_come_as_a_header_and_untracked_requests_pass() -> None:
    client = client_for(make_app())
    client.post("/upload", b"x" * 10, headers={"X-Progress-ID": "pyramid-header-1"},
                content_type="application/octet-stream")
    assert client.get("/progress?X-Progress-ID=pyramid-header-1").json["received"] == 10
    assert client.post("/upload", b"x" * 10).text == "10 bytes"
    assert client.get("/progress?X-Progress-ID=never-seen-1").json["state"] == "unknown"
    client.get("/nothing", status=404)


def test_the_probe_is_answered_in_front_of_pyramid_in_every_dialect() -> None:
    client = client_for(make_app())
    client.post("/upload?X-Progress-ID=pyramid-dialect-1", b"x" * 10)
    assert client.get("/progress?X-Progress-ID=pyramid-dialect-1&dialect=lighttpd").json[
        "state"] == "done"
    assert client.get("/progress?X-Progress-ID=pyramid-dialect-1&dialect=nginx").text == \
        '{ "state" : "done" }\r\n'
    client.get("/progress", status=400)


def test_settings_are_converted() -> None:
    app = make_app({
        "wsgiprogress.ttl": "60", "wsgiprogress.capacity": "5",
        "wsgiprogress.methods": "POST PUT", "wsgiprogress.max_request_size": "1K",
        "wsgiprogress.dialect": "nginx", "wsgiprogress.progress_url": "/upload-progress",
        "wsgiprogress.debug": "off",
        # not ours: left alone
        "pyramid.reload_templates": "true", "wsgiprogress": "ignored", "tm.attempts": "3",
    })
    middleware = app.registry[POLICY_KEY].middleware
    assert (middleware.store.ttl, middleware.store.capacity) == (60.0, 5)
    assert middleware.rules.methods == frozenset({"POST", "PUT"})
    assert (middleware.max_request_size, middleware.rules.debug) == (1024, False)
    client = client_for(app)
    assert client.put("/upload?X-Progress-ID=pyramid-put-1", b"x" * 1024).text == "1024 bytes"
    assert client.get("/upload-progress?X-Progress-ID=pyramid-put-1").text == \
        '{ "state" : "done" }\r\n'
    client.post("/upload?X-Progress-ID=pyramid-big-1", b"x" * 1025, status=413)
    assert client.get("/upload-progress?X-Progress-ID=pyramid-big-1&dialect=native").json[
        "reason"] == "too_large"
    client.get("/progress?X-Progress-ID=pyramid-put-1", status=404)  # Pyramid's now


@pytest.mark.parametrize("settings, message", [
    pytest.param({"wsgiprogress.tll": "60"},
                 "unknown setting 'wsgiprogress.tll'; did you mean 'wsgiprogress.ttl'?",
                 id="typo-name"),
    pytest.param({"wsgiprogres.ttl": "60"},
                 "setting 'wsgiprogres.ttl' is read by nothing: did you mean "
                 "'wsgiprogress.ttl'? (the include reads wsgiprogress. and a setting's name)",
                 id="typo-prefix"),
    pytest.param({"pyramid.reload_templates": "true", "wsgiprogress_mailbox": "true"},
                 "setting 'wsgiprogress_mailbox' is read by nothing: did you mean "
                 "'wsgiprogress.mailbox'?", id="underscore-for-dot"),
    pytest.param({"WSGIProgress.ttl": "60"},
                 "setting 'WSGIProgress.ttl' is read by nothing: did you mean "
                 "'wsgiprogress.ttl'?", id="capitals"),
    pytest.param({"wsgiprogress.zzzz": "1"},
                 "unknown setting 'wsgiprogress.zzzz'; known settings: "
                 "wsgiprogress.allowed_origins, ", id="unknown-name"),
    pytest.param({"wsgiprogress.ttl": "soon"},
                 "wsgiprogress.ttl: expected a number of seconds >= 0, not 'soon'",
                 id="bad-seconds"),
    pytest.param({"wsgiprogress.debug": "ture"},
                 "wsgiprogress.debug: expected true or false (1/0, yes/no, on/off), "
                 "not 'ture'", id="bool-typo"),
    pytest.param({"wsgiprogress.capacity": 0},
                 "wsgiprogress.capacity: expected a whole number >= 1, not 0", id="native-value"),
    pytest.param({"wsgiprogress.max_request_size": "10 parsecs"},
                 "wsgiprogress.max_request_size: expected a size in bytes", id="bad-size"),
    pytest.param({"wsgiprogress.publish_token": "x" * 20},
                 "wsgiprogress.publish_token configures mailboxes: "
                 "turn wsgiprogress.mailbox on too", id="mailbox-setting-alone"),
])
def test_bad_settings_raise_from_config_include(settings: Dict[str, Any],
                                                 message: str) -> None:
    config = Configurator(settings=settings)
    with pytest.raises(ConfigurationError) as info:
        config.include("wsgiprogress")
    assert str(info.value).startswith(message), str(info.value)


def test_mailbox_setting_serves_mailboxes_and_hands_views_the_store() -> None:
    client = client_for(make_app({"wsgiprogress.mailbox": "true"}))
    name = "0123456789abcdef" * 2
    client.post(f"/post/{name}", "your report is ready", content_type="text/plain")
    answer = client.get(f"/mailbox/{name}").json
    assert [m["data"] for m in answer["messages"]] == ["your report is ready"]


def test_an_error_in_the_view_is_recorded_and_raised() -> None:
    client = client_for(make_app())
    with pytest.raises(RuntimeError, match="view failure"):
        client.post("/fail?X-Progress-ID=pyramid-fail-1", b"x" * 100)
    entry = client.get("/progress?X-Progress-ID=pyramid-fail-1").json
    assert (entry["state"], entry["reason"], entry["received"]) == ("error", "app_error", 100)


@pytest.mark.parametrize("policy_after", [False, True], ids=["policy-first", "include-first"])
def test_a_retrying_policy_is_wrapped_and_the_body_counted_once(policy_after: bool) -> None:
    app = make_app(policy=retry_twice, policy_after=policy_after)
    assert isinstance(app.execution_policy, ProgressExecutionPolicy)
    assert app.execution_policy.policy is retry_twice
    client = client_for(app)
    reply = client.post("/upload?X-Progress-ID=pyramid-retry-1", b"x" * 100_000,
                        content_type="application/octet-stream")
    assert reply.text == "100000 bytes"  # from the second attempt, which read the copy
    entry = client.get("/progress?X-Progress-ID=pyramid-retry-1").json
    assert (entry["state"], entry["received"], entry["size"]) == ("done", 100_000, 100_000)


def test_including_twice_wraps_once() -> None:
    app = make_app(includes=("wsgiprogress", "wsgiprogress.pyramid", "wsgiprogress"))
    assert isinstance(app.execution_policy, ProgressExecutionPolicy)
    assert app.execution_policy.policy is default_execution_policy


def test_under_the_middleware_the_include_stands_aside() -> None:
    inner = make_app({"wsgiprogress.progress_url": "/inner-progress"})
    client = client_for(ProgressMiddleware(inner))
    client.post("/upload?X-Progress-ID=pyramid-stack-1", b"x" * 5000)
    outer = client.get("/progress?X-Progress-ID=pyramid-stack-1").json
    assert (outer["state"], outer["received"], outer["size"]) == ("done", 5000, 5000)
    assert client.get("/inner-progress?X-Progress-ID=pyramid-stack-1").json[
        "state"] == "unknown"


def test_importing_the_package_does_not_import_pyramid() -> None:
    # PasteDeploy's .pth file imports the "paste" namespace at start-up
    code = ("import sys; before = set(sys.modules); import wsgiprogress; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & "
            "{'pyramid', 'webob', 'paste', 'zope'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- the example -------------------------------------------------------------

@pytest.fixture()
def example_ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example's development.ini listening on 127.0.0.1, port 0."""
    monkeypatch.syspath_prepend(str(ROOT))  # for use = call:examples.pyramid_app:main
    text, count = re.subn(r"(?m)^listen = .*$", "listen = 127.0.0.1:0",
                          EXAMPLE_INI.read_text())
    assert count == 1
    ini = tmp_path / "development.ini"
    ini.write_text(text)
    return ini


def test_example_pipeline_pages_and_a_tracked_form_upload(example_ini: Path) -> None:
    app = loadapp(f"config:{example_ini}")
    assert isinstance(app, ProgressMiddleware) and isinstance(app.app, Router)
    client = client_for(app)
    page = client.get("/")
    assert '<script src="/static/progress.js"></script>' in page.text
    assert b"WSGIProgress" in client.get("/static/progress.js").body
    reply = client.post("/upload?X-Progress-ID=pyramid-form-1",
                        upload_files=[("file", "big.bin", b"u" * 300_000)])
    assert reply.json == {"bytes": 300_000, "name": "big.bin"}
    entry = client.get("/progress?X-Progress-ID=pyramid-form-1").json
    assert entry["state"] == "done"
    assert entry["received"] == entry["size"] == int(reply.request.environ["CONTENT_LENGTH"])


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "application/octet-stream"])
def test_example_streams_a_raw_body_whatever_its_type(example_ini: Path,
                                                      content_type: str) -> None:
    # curl --data-binary says urlencoded: WebOb would parse that in memory
    client = client_for(loadapp(f"config:{example_ini}"))
    reply = client.post("/upload", b"a=" + b"z" * 300_000, content_type=content_type)
    assert reply.json == {"bytes": 300_002, "name": None}


def get(port: int, path: str) -> "tuple[int, bytes]":
    conn = HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def slow_upload_is_seen_live(port: int, progress_id: str, size: int) -> Dict[str, Any]:
    """Upload *size* bytes slowly; check the probe saw the body arrive and the
    final entry counts every byte exactly once; the final entry."""
    client, answers = watched_upload(port, progress_id, size, piece=256 * 1024, delay=0.03,
                                     headers=("Content-Type: application/octet-stream",))
    assert client.error is None, client.error
    assert status_of(client.reply) == 200, client.reply[:200]
    assert json.loads(client.reply.partition(b"\r\n\r\n")[2]) == {"bytes": size, "name": None}
    growing = received_while(answers, "uploading")
    assert len(growing) >= 3, answers
    assert growing == sorted(set(growing)), growing
    entry = wait_for_state(port, progress_id, ("done",))
    assert (entry["received"], entry["size"], entry["status"]) == (size, size, 200)
    return entry


SERVE_FROM_INI = ("import logging, sys; logging.basicConfig(level=logging.INFO);"
                  "from paste.deploy import loadapp, loadserver;"
                  "uri = 'config:' + sys.argv[1];"
                  "loadserver(uri)(loadapp(uri))")


@pytest.mark.parametrize("command", [
    pytest.param([sys.executable, "-c", SERVE_FROM_INI], id="loadserver"),
    pytest.param([sys.executable, "-m", "pyramid.scripts.pserve"], id="pserve"),
])
def test_example_served_by_the_server_from_its_ini(example_ini: Path,
                                                   command: List[str]) -> None:
    process, port = start_process([*command, str(example_ini)], cwd=ROOT,
                                  env={"PYTHONPATH": str(ROOT)})
    try:
        status, body = get(port, "/")
        assert status == 200 and b"/static/progress.js" in body
        assert get(port, "/static/progress.js")[0] == 200
        # the server serves the filter's store and probe; the filter stood
        # aside, so every byte was counted once
        slow_upload_is_seen_live(port, "pyramid-served-1", 6 * MiB)
    finally:
        assert stop_process(process) == 0


def test_example_pipeline_under_werkzeug_the_filter_counts(example_ini: Path) -> None:
    with running_werkzeug(loadapp(f"config:{example_ini}")) as port:
        slow_upload_is_seen_live(port, "pyramid-werkzeug-1", 6 * MiB)


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    yield
