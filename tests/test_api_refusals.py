"""The Python API refuses nonsense at construction, in one line that says what
to do: no WSGI application, a misspelled Flask key, an application route the
probe would shadow, a blueprint named as ours."""
from __future__ import annotations

from typing import Any, Dict, Iterable

import pytest
import webtest
from flask import Blueprint, Flask, render_template_string, url_for

from flask_progress import Progress
from wsgiprogress import ConfigurationError, ProgressMiddleware
from wsgiprogress.server import create_server
from wsgiprogress.web.front import Front

from server_support import HOST


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


NOT_APPS = [
    pytest.param(None, "the application is None; pass the WSGI application object, the "
                       "callable that takes (environ, start_response)", id="none"),
    pytest.param("myapp:app", "pass the application object, not its import path "
                              "'myapp:app'; wsgiprogress-serve takes 'module:app'",
                 id="import-path"),
    pytest.param(b"myapp:app", "pass the application object, not its import path "
                               "b'myapp:app'; wsgiprogress-serve takes 'module:app'",
                 id="bytes"),
    pytest.param(42, "int 42 is not a WSGI application; pass the callable that takes "
                     "(environ, start_response)", id="number"),
    pytest.param({"debug": True}, "dict {'debug': True} is not a WSGI application; pass the "
                                  "callable that takes (environ, start_response)", id="dict"),
]


@pytest.mark.parametrize("not_an_app, message", NOT_APPS)
def test_the_middleware_refuses_what_is_no_application(not_an_app: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ProgressMiddleware(not_an_app)
    assert str(info.value) == f"ProgressMiddleware: {message}"


@pytest.mark.parametrize("not_an_app, message", NOT_APPS)
def test_create_server_refuses_what_is_no_application(not_an_app: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_server(not_an_app, host=HOST, port=0)
    assert str(info.value) == f"create_server: {message}"


def test_a_long_repr_is_cut_short() -> None:
    with pytest.raises(ConfigurationError) as info:
        ProgressMiddleware(list(range(100)))
    assert len(str(info.value)) < 200 and "..." in str(info.value)


def test_settings_beside_a_front_are_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        ProgressMiddleware(app, front=Front({}), ttl=5, store=None, authorize=lambda *a: True)
    assert str(info.value) == ("ProgressMiddleware: authorize, ttl configure the front=; give "
                               "them to Front(...), not beside it")


def test_publish_without_a_token_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="publish needs publish_token"):
        ProgressMiddleware(app, mailbox=True, publish=True)


def init(config: Dict[str, Any], **options: Any) -> Flask:
    flask = Flask(__name__)
    flask.config.update(config)
    Progress(**options).init_app(flask)
    return flask


@pytest.mark.parametrize("key, known", [
    pytest.param("PROGRES_TTL", "PROGRESS_TTL", id="letter-missing"),
    pytest.param("PROGESS_URL", "PROGRESS_URL", id="another-missing"),
    pytest.param("progress_ttl", "PROGRESS_TTL", id="lower-case"),
    pytest.param("Progress_Max_Request_Size", "PROGRESS_MAX_REQUEST_SIZE", id="mixed-case"),
    pytest.param("PORGRESS_BACKEND", "PROGRESS_BACKEND", id="swapped"),
    pytest.param("PROGRESSS_MAILBOX", "PROGRESS_MAILBOX", id="letter-extra"),
    pytest.param("PROGRESS-DIALECT", "PROGRESS_DIALECT", id="dash"),
])
def test_a_misspelled_prefix_is_refused_with_a_suggestion(key: str, known: str) -> None:
    flask = Flask(__name__)
    flask.config[key] = "60"
    with pytest.raises(ConfigurationError) as info:
        Progress(flask)
    assert str(info.value) == (
        f"config key {key!r} is read by nothing: did you mean {known!r}? (Flask-Progress "
        "reads PROGRESS_ and a setting's name, in capitals)")
    assert "progress" not in flask.extensions and "progress" not in flask.blueprints


@pytest.mark.parametrize("key", [
    "PROCESS_TTL", "PROGRESSBAR_URL", "MY_PROGRESS_URL", "UPLOAD_PROGRESS_TTL", "PROGRESS",
    "SECRET_KEY", "MAX_CONTENT_LENGTH", "PROPAGATE_EXCEPTIONS", "PREFERRED_URL_SCHEME",
])
def test_keys_that_are_not_near_misses_are_left_alone(key: str) -> None:
    flask = init({key: "value"})
    assert "progress" in flask.extensions


def with_route(rule: str, config: Dict[str, Any], **options: Any) -> Flask:
    flask = Flask(__name__)
    flask.config.update(config)
    flask.add_url_rule(rule, "mine", lambda **kw: "mine")
    Progress(**options).init_app(flask)
    return flask


@pytest.mark.parametrize("rule, config, key, url", [
    pytest.param("/progress", {}, "PROGRESS_URL", "/progress", id="probe"),
    pytest.param("/up", {"PROGRESS_URL": "/up"}, "PROGRESS_URL", "/up", id="moved-probe"),
    pytest.param("/mailbox/<name>", {"PROGRESS_MAILBOX": True}, "PROGRESS_MAILBOX_URL",
                 "/mailbox", id="mailbox"),
    pytest.param("/_dash", {"PROGRESS_DASHBOARD_URL": "/_dash", "PROGRESS_PUBLISH_TOKEN": "t" * 32},
                 "PROGRESS_DASHBOARD_URL", "/_dash", id="dashboard"),
    pytest.param("/_dash/data", {"PROGRESS_DASHBOARD_URL": "/_dash",
                                 "PROGRESS_PUBLISH_TOKEN": "t" * 32},
                 "PROGRESS_DASHBOARD_URL", "/_dash", id="dashboard-feed"),
])
def test_an_application_route_the_middleware_would_shadow_is_refused(
        rule: str, config: Dict[str, Any], key: str, url: str) -> None:
    flask = Flask(__name__)
    flask.config.update(config)
    flask.add_url_rule(rule, "mine", lambda **kw: "mine")
    before = flask.wsgi_app
    with pytest.raises(ConfigurationError) as info:
        Progress(flask)
    assert str(info.value) == (
        f"the app's route 'mine' ({rule}) is under {key} {url!r}, which the middleware "
        f"answers before Flask: set {key} to another path, or move the route")
    assert flask.wsgi_app == before and "progress" not in flask.blueprints


@pytest.mark.parametrize("rule, config", [
    pytest.param("/progress", {"PROGRESS_URL": "/upload-progress"}, id="probe-moved"),
    pytest.param("/mailbox/<name>", {}, id="mailboxes-off"),
    pytest.param("/<path:page>", {"PROGRESS_MAILBOX": True}, id="catch-all"),
    pytest.param("/progress/", {}, id="trailing-slash"),
])
def test_routes_the_middleware_leaves_alone_are_accepted(rule: str,
                                                         config: Dict[str, Any]) -> None:
    flask = with_route(rule, config)
    assert "progress" in flask.extensions


def test_a_blueprint_named_progress_is_refused_and_ours_can_be_renamed() -> None:
    flask = Flask(__name__)
    flask.register_blueprint(Blueprint("progress", __name__))
    with pytest.raises(ConfigurationError) as info:
        Progress(flask)
    assert str(info.value) == ("the app 'test_api_refusals' has a blueprint named 'progress' "
                               "already: pass Progress(blueprint_name=...) with another name")
    Progress(flask, blueprint_name="uploads")

    @flask.get("/page")
    def page() -> str:
        return render_template_string("{{ url_for('uploads.probe') }} {{ progress_script() }}")

    client = webtest.TestApp(flask, lint=True)
    assert client.get("/page").text == (
        '/progress <script src="/progress/static/progress.js"></script>')
    assert b"WSGIProgress" in client.get("/progress/static/progress.js").body
    with flask.test_request_context():
        assert url_for("uploads.probe") == "/progress"


@pytest.mark.parametrize("name", ["", "a.b", None])
def test_a_blueprint_name_flask_cannot_take_is_refused(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="blueprint_name: expected a name without "
                                                 "dots such as 'uploads', not "):
        Progress(blueprint_name=name)
