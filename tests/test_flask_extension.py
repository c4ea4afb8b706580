"""flask_progress.Progress: configuration from PROGRESS_* keys, the middleware
it installs, the probe and mailboxes it serves, and its Jinja helpers, through
WebTest with lint on."""
from __future__ import annotations

import json
import re
import time
from http.client import HTTPConnection
from typing import Any, Dict, Optional

import pytest
import webtest
from flask import Flask, render_template_string, request, url_for

from flask_progress import CONFIG_SETTINGS, Progress
from wsgiprogress import ConfigurationError
from wsgiprogress.settings import MIDDLEWARE_SETTINGS

from redis_support import redis_server
from server_apps import read_stream
from server_support import HOST, running

PID = "flask-upload-0001"
BODY = b"0123456789abcdef" * 6250  # 100 000 bytes
MAILBOX = "5eed" * 8  # 32 characters: readable under the default policy


def make_app(progress: Progress, config: Optional[Dict[str, Any]] = None) -> Flask:
    """An app with an upload view that reads the body in pieces, as a real
    handler does, and a view that posts to mailboxes."""
    app = Flask(__name__)
    app.config.update(config or {})

    @app.post("/upload")
    def upload() -> str:
        return f"{read_stream(request.stream)} bytes"

    @app.post("/notify")
    def notify() -> Dict[str, int]:
        return progress.post(request.args.getlist("to"), {"text": request.args["text"]})

    @app.get("/state/<progress_id>")
    def state(progress_id: str) -> str:
        entry = progress.get(progress_id)
        return "unknown" if entry is None else f"{entry.state} {entry.received}"

    @app.get("/helpers")
    def helpers() -> str:
        return render_template_string("{{ progress_id() }} {{ progress_id() }}\n"
                                      "{{ progress_script() }}")

    progress.init_app(app)
    return app


def client_for(config: Optional[Dict[str, Any]] = None, **options: Any) -> webtest.TestApp:
    return webtest.TestApp(make_app(Progress(**options), config), lint=True)


def upload(client: webtest.TestApp, progress_id: str = PID, body: bytes = BODY,
           status: int = 200) -> webtest.TestResponse:
    return client.post(f"/upload?X-Progress-ID={progress_id}", body,
                       content_type="application/octet-stream", status=status)


def test_a_tracked_upload_ends_done_with_its_counts() -> None:
    client = client_for()
    assert upload(client).text == "100000 bytes"
    entry = client.get(f"/progress?X-Progress-ID={PID}").json
    assert (entry["state"], entry["received"], entry["size"], entry["status"]) == (
        "done", 100_000, 100_000, 200)
    assert entry["sent"] == entry["response_size"] == len("100000 bytes")


def test_views_read_the_table_of_the_current_app() -> None:
    progress = Progress()
    app = make_app(progress)
    upload(webtest.TestApp(app, lint=True))
    with app.app_context():
        entry = progress.get(PID)
        assert entry is not None and entry.state == "done" and entry.received == 100_000
        assert progress.store is app.extensions["progress"].store
        assert progress.get("never-seen-id") is None


@pytest.mark.parametrize("dialect, expected", [
    pytest.param("native", {"state": "done", "received": 100_000, "size": 100_000},
                 id="native"),
    pytest.param("lighttpd", {"state": "done", "received": 100_000,
                              "request_size": 100_000}, id="lighttpd"),
    pytest.param("nginx", {"state": "done"}, id="nginx"),
])
def test_the_probe_answers_in_the_configured_dialect(dialect: str,
                                                     expected: Dict[str, Any]) -> None:
    client = client_for({"PROGRESS_DIALECT": dialect})
    upload(client)
    answer = json.loads(client.get(f"/progress?X-Progress-ID={PID}").body)
    assert {key: answer.get(key) for key in expected} == expected
    # the client's own dialect still wins over the configured default
    assert client.get(f"/progress?X-Progress-ID={PID}&dialect=native").json["state"] == "done"


def test_constructor_options_are_defaults_and_the_config_wins() -> None:
    progress = Progress(dialect="nginx", ttl=5)
    plain = make_app(progress)
    configured = make_app(progress, {"PROGRESS_DIALECT": "lighttpd"})
    assert (plain.config["PROGRESS_DIALECT"], plain.config["PROGRESS_TTL"]) == ("nginx", 5.0)
    assert configured.extensions["progress"].settings["dialect"] == "lighttpd"
    unknown = json.loads(webtest.TestApp(configured).get("/progress?X-Progress-ID=nobody12").body)
    assert unknown == {"state": "unknown"}


def test_every_middleware_setting_has_a_config_key() -> None:
    app = make_app(Progress())
    names = [s.name for s in MIDDLEWARE_SETTINGS]
    keys = [s.name for s in CONFIG_SETTINGS]
    assert len(keys) == len(set(keys)) == len(names)
    assert "PROGRESS_URL" in keys and "PROGRESS_MAILBOX" in keys
    assert all(key in app.config for key in keys)


def test_config_strings_are_converted() -> None:
    app = make_app(Progress(), {"PROGRESS_TTL": "60", "PROGRESS_METHODS": "post put",
                                "PROGRESS_MAX_REQUEST_SIZE": "1K", "PROGRESS_MAILBOX": "on"})
    settings = app.extensions["progress"].settings
    assert (settings["ttl"], settings["methods"], settings["max_request_size"],
            settings["mailbox"]) == (60.0, ("POST", "PUT"), 1024, True)
    client = webtest.TestApp(app, lint=True)
    assert "limit is 1024 bytes" in upload(client, status=413).text
    entry = client.get(f"/progress?X-Progress-ID={PID}").json
    assert (entry["state"], entry["reason"], entry["status"]) == ("error", "too_large", 413)


@pytest.mark.parametrize("config, message", [
    pytest.param({"PROGRESS_TTL": "soon"},
                 "PROGRESS_TTL: expected a number of seconds >= 0, not 'soon'", id="bad-ttl"),
    pytest.param({"PROGRESS_DIALECT": "apache"},
                 "PROGRESS_DIALECT: expected one of native, lighttpd, nginx", id="bad-dialect"),
    pytest.param({"PROGRESS_MAILBOX": "maybe"},
                 "PROGRESS_MAILBOX: expected true or false", id="lenient-bool"),
    pytest.param({"PROGRESS_URL": "progress"},
                 "PROGRESS_URL: expected a URL path starting with '/'", id="bad-path"),
    pytest.param({"PROGRESS_BACKEND": "mysql://db"},
                 "PROGRESS_BACKEND: expected memory:// or a Redis URL", id="bad-backend"),
    pytest.param({"PROGRESS_TLL": 60},
                 "unknown setting 'PROGRESS_TLL'; did you mean 'PROGRESS_TTL'?",
                 id="typo-key"),
    pytest.param({"PROGRESS_MAX_REQUEST_BODY_SIZE": "1G"},
                 "did you mean 'PROGRESS_MAX_REQUEST_SIZE'?", id="waitress-name"),
    pytest.param({"PROGRESS_FOO": 1},
                 "unknown setting 'PROGRESS_FOO'; known settings: PROGRESS_ALLOWED_ORIGINS, ",
                 id="unknown-key"),
])
def test_bad_config_raises_at_init_app(config: Dict[str, Any], message: str) -> None:
    progress = Progress()
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigurationError) as info:
        progress.init_app(app)
    assert message in str(info.value)
    assert "progress" not in app.extensions and "progress" not in app.blueprints


def test_config_keys_that_are_no_strings_are_left_alone() -> None:
    app = Flask(__name__)
    app.config.update({1: "one", ("a", "b"): 2, "PROGRESS_TTL": 60})
    Progress(app)
    assert app.extensions["progress"].settings["ttl"] == 60.0


def test_of_several_bad_keys_the_first_written_is_named() -> None:
    written = [f"PROGRESS_NO_SUCH_KEY_{n}" for n in range(8)]
    app = Flask(__name__)
    app.config.update(dict.fromkeys(written, 1))
    with pytest.raises(ConfigurationError, match=f"unknown setting '{written[0]}'"):
        Progress(app, ttl=60)  # the constructor's defaults first, then the config


@pytest.mark.parametrize("options, message", [
    pytest.param({"tll": 60}, "unknown setting 'tll'; did you mean 'ttl'?", id="typo"),
    pytest.param({"capacity": 0}, "capacity: expected a whole number >= 1", id="bad-value"),
])
def test_bad_options_raise_at_construction(options: Dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Progress(**options)


@pytest.mark.parametrize("key, value", [
    ("PROGRESS_PUBLISH", True), ("PROGRESS_PUBLISH_TOKEN", "t" * 20),
    ("PROGRESS_MAILBOX_URL", "/inbox"),
])
def test_mailbox_settings_without_mailboxes_are_refused(key: str, value: Any) -> None:
    app = Flask(__name__)
    app.config[key] = value
    with pytest.raises(ConfigurationError,
                       match=f"{key} configures mailboxes: turn PROGRESS_MAILBOX on too"):
        Progress(app)


def test_authorize_guards_the_probe_the_mailboxes_and_the_dashboard() -> None:
    alone = Flask(__name__)  # the hook guards the probe even without the others
    Progress(alone, authorize=lambda environ, name, action: action != "progress")
    webtest.TestApp(alone, lint=True).get("/progress?X-Progress-ID=0123456789", status=403)
    app = Flask(__name__)
    app.config["PROGRESS_DASHBOARD_URL"] = "/_dash"
    Progress(app, authorize=lambda environ, name, action: action == "stats")
    client = webtest.TestApp(app, lint=True)
    assert client.get("/_dash/data").json["running"] == []


def test_a_second_init_app_on_the_same_app_raises() -> None:
    progress = Progress()
    app = make_app(progress)
    wsgi_app = app.wsgi_app
    for again in (progress, Progress()):
        with pytest.raises(RuntimeError, match="already been registered on this Flask app "
                                               "'test_flask_extension'. Import and use that"):
            again.init_app(app)
    assert app.wsgi_app is wsgi_app  # not wrapped twice


def test_an_unregistered_app_is_refused() -> None:
    registered, other = Progress(), Progress()
    app = make_app(registered)
    with app.app_context(), pytest.raises(RuntimeError, match=r"call progress\.init_app\(app\)"):
        other.get(PID)


def test_one_progress_object_keeps_separate_tables_per_app() -> None:
    progress = Progress()
    first, second = make_app(progress), make_app(progress, {"PROGRESS_DIALECT": "nginx"})
    upload(webtest.TestApp(first, lint=True))
    assert webtest.TestApp(first).get(f"/progress?X-Progress-ID={PID}").json["state"] == "done"
    assert webtest.TestApp(second).get(f"/progress?X-Progress-ID={PID}&dialect=native"
                                       ).json["state"] == "unknown"
    with first.app_context():
        assert progress.get(PID) is not None
    with second.app_context():
        assert progress.get(PID) is None
    assert first.extensions["progress"].store is not second.extensions["progress"].store


def test_a_post_from_a_view_reaches_the_mailbox_endpoint() -> None:
    other = "0ddba11" * 5
    client = client_for({"PROGRESS_MAILBOX": True})
    ids = client.post(f"/notify?to={MAILBOX}&to={other}&text=ready").json
    assert set(ids) == {MAILBOX, other}
    with client.app.test_request_context():
        url = url_for("progress.mailbox", name=MAILBOX)
    assert url == f"/mailbox/{MAILBOX}"
    answer = client.get(url).json
    assert [json.loads(m["data"]) for m in answer["messages"]] == [{"text": "ready"}]
    assert answer["messages"][0]["id"] == ids[MAILBOX] == answer["cursor"]


def test_mailboxes_are_off_by_default() -> None:
    progress = Progress()
    client = webtest.TestApp(make_app(progress), lint=True)
    client.get(f"/mailbox/{MAILBOX}", status=404)
    with client.app.app_context(), pytest.raises(ConfigurationError,
                                                 match="set PROGRESS_MAILBOX = True"):
        progress.post(MAILBOX, "hello")


def test_the_probe_url_follows_the_config_and_script_name() -> None:
    client = client_for({"PROGRESS_URL": "/uploads/progress"})
    upload(client)
    client.get(f"/progress?X-Progress-ID={PID}", status=404)
    assert client.get(f"/uploads/progress?X-Progress-ID={PID}").json["state"] == "done"
    with client.app.test_request_context(base_url="http://example.com/site/"):
        assert url_for("progress.probe", **{"X-Progress-ID": PID}) == (
            f"/site/uploads/progress?X-Progress-ID={PID}")
        assert url_for("progress.static", filename="progress.js") == (
            "/site/uploads/progress/static/progress.js")


def test_the_jinja_helpers_render_an_id_and_a_working_script_tag() -> None:
    client = client_for()
    ids, tag = client.get("/helpers").text.split("\n")
    first, second = ids.split(" ")
    assert re.fullmatch("[0-9a-f]{32}", first) and re.fullmatch("[0-9a-f]{32}", second)
    assert first != second
    match = re.fullmatch(r'<script src="([^"]+)"></script>', tag)
    assert match, tag
    script = client.get(match.group(1))
    assert script.status_int == 200
    assert script.content_type in ("text/javascript", "application/javascript")
    assert b"WSGIProgress" in script.body


def test_a_redis_backend_is_shared_by_apps_in_different_processes() -> None:
    with redis_server() as server:
        progress = Progress(backend=server.url, mailbox=True)
        # two apps stand for two worker processes: they share nothing but Redis
        writer, reader = make_app(progress), make_app(progress)
        try:
            upload(webtest.TestApp(writer, lint=True))
            with writer.test_request_context():
                ids = progress.post(MAILBOX, "from the writer")
            client = webtest.TestApp(reader, lint=True)
            answer = client.get(f"/mailbox/{MAILBOX}").json
            assert [(m["id"], m["data"]) for m in answer["messages"]] == [
                (ids[MAILBOX], "from the writer")]
            deadline = time.monotonic() + 5
            while client.get(f"/progress?X-Progress-ID={PID}").json["state"] != "done":
                assert time.monotonic() < deadline, "the upload never showed as done"
                time.sleep(0.05)
        finally:
            for app in (writer, reader):
                app.extensions["progress"].middleware.front.close()


def test_views_read_the_servers_table_when_it_counts() -> None:
    app = make_app(Progress())
    with running(app) as (server, port):
        conn = HTTPConnection(HOST, port, timeout=10)
        conn.request("POST", "/upload?X-Progress-ID=served-by-ours", b"x" * 5000)
        assert conn.getresponse().read() == b"5000 bytes"
        conn.request("GET", "/state/served-by-ours")
        assert conn.getresponse().read() == b"done 5000"  # the server's entry
        conn.close()
    # the server serves the app's store; "done 5000" above: counted once
    assert server.progress_store is app.extensions["progress"].store
