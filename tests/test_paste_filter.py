"""The PasteDeploy filter ``[filter:x] use = egg:wsgiprogress``, loaded from
ini files with ``paste.deploy``: values converted, typos refused."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Dict, Iterable

import pytest
import webtest
from paste.deploy import loadapp, loadfilter

from wsgiprogress import ConfigurationError, ProgressMiddleware
from wsgiprogress.paste import filter_app_factory

import server_apps


def write_ini(tmp_path: Path, filter_lines: str, extra: str = "") -> str:
    """An ini whose ``main`` pipeline runs ``server_apps:app`` behind the
    filter configured by *filter_lines*; its ``config:`` URI."""
    ini = tmp_path / "site.ini"
    ini.write_text(textwrap.dedent("""\
        [app:counter]
        use = call:server_apps:app_factory

        [filter:progress]
        use = egg:wsgiprogress
        """) + textwrap.dedent(filter_lines) + textwrap.dedent("""
        [pipeline:main]
        pipeline = progress counter
        """) + textwrap.dedent(extra))
    return f"config:{ini}"


def test_values_are_converted(tmp_path: Path) -> None:
    app = loadapp(write_ini(tmp_path, """\
        ttl = 60
        capacity = 5
        methods = post, PUT
        max_request_size = 1K
        dialect = nginx
        progress_url = /upload-progress
        allowed_origins = https://a.example https://b.example
        """, extra="""
        [DEFAULT]
        debug = true
        """))
    assert isinstance(app, ProgressMiddleware)
    assert app.app is server_apps.app
    assert (app.store.ttl, app.store.capacity) == (60.0, 5)
    assert app.rules.methods == frozenset({"POST", "PUT"})
    assert app.max_request_size == 1024
    assert app.front.progress_url == "/upload-progress"
    assert app.front.probe.dialect == "nginx"
    assert app.front.probe.allowed_origins == ("https://a.example", "https://b.example")
    # [DEFAULT]'s debug belongs to every section: the filter does not read it
    assert app.rules.debug is False


def test_the_configured_filter_tracks_and_answers(tmp_path: Path) -> None:
    app = loadapp(write_ini(tmp_path, """\
        methods = POST PUT
        max_request_size = 1K
        dialect = nginx
        progress_url = /upload-progress
        """))
    client = webtest.TestApp(app, lint=True)
    assert client.put("/any?X-Progress-ID=pastefilter1", b"x" * 1000).text == "1000"
    answer = client.get("/upload-progress?X-Progress-ID=pastefilter1")
    assert answer.text == '{ "state" : "done" }\r\n'
    client.post("/any?X-Progress-ID=pastefilter2", b"x" * 1025, status=413)
    assert client.get("/upload-progress?X-Progress-ID=pastefilter2&dialect=native").json[
        "reason"] == "too_large"
    # the default probe path is the application's now
    assert client.get("/progress?X-Progress-ID=pastefilter1").text == "0"


def test_filter_with_on_an_app_section(tmp_path: Path) -> None:
    ini = tmp_path / "filter-with.ini"
    ini.write_text(textwrap.dedent("""\
        [app:main]
        use = call:server_apps:app_factory
        filter-with = progress

        [filter:progress]
        use = egg:wsgiprogress
        ttl = 5
        """))
    app = loadapp(f"config:{ini}")
    assert isinstance(app, ProgressMiddleware) and app.store.ttl == 5.0


@pytest.mark.parametrize("lines, message", [
    pytest.param("ttl = soon", "ttl: expected a number of seconds >= 0, not 'soon'",
                 id="bad-seconds"),
    pytest.param("debug = ture",
                 "debug: expected true or false (1/0, yes/no, on/off), not 'ture'",
                 id="bool-typo"),
    pytest.param("methods = post!", "methods: expected HTTP methods such as 'POST PUT', "
                                    "not 'post!'", id="bad-method"),
    pytest.param("max_request_size = 10 parsecs", "max_request_size: expected a size in bytes",
                 id="bad-size"),
    pytest.param("progress_url = progress", "progress_url: expected a URL path starting "
                                            "with '/'", id="relative-url"),
    pytest.param("dialect = apache", "dialect: expected one of native, lighttpd, nginx, "
                                     "not 'apache'", id="bad-dialect"),
    pytest.param("tll = 60", "unknown setting 'tll'; did you mean 'ttl'?", id="typo-name"),
    pytest.param("max_request_body_size = 10", "unknown setting 'max_request_body_size'; "
                 "did you mean 'max_request_size'?", id="server-setting-name"),
    pytest.param("zzzz = 1", "unknown setting 'zzzz'; known settings: allowed_origins, ",
                 id="unknown-name"),
    pytest.param("publish = true", "publish configures mailboxes: turn mailbox on too",
                 id="mailbox-setting-without-mailbox"),
])
def test_bad_settings_raise_when_loaded(tmp_path: Path, lines: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        loadapp(write_ini(tmp_path, lines + "\n"))
    assert str(info.value).startswith(message), str(info.value)


def echo_mailbox(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Posts the body to the mailbox named by the path, through the store the
    filter put in the environ."""
    store = environ["wsgiprogress.mailbox"]
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    ids = store.post(environ["PATH_INFO"].rsplit("/", 1)[1], body.decode())
    reply = str(list(ids.values())[0]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(reply)))])
    return [reply]


def test_mailbox_on_serves_mailboxes_and_hands_the_store_to_the_app(tmp_path: Path) -> None:
    ini = tmp_path / "mailbox.ini"
    ini.write_text(textwrap.dedent("""\
        [filter:progress]
        use = egg:wsgiprogress
        mailbox = yes
        mailbox_url = /inbox
        """))
    app = loadfilter(f"config:{ini}", name="progress")(echo_mailbox)
    client = webtest.TestApp(app, lint=True)
    name = "0123456789abcdef" * 2
    client.post(f"/post/{name}", b"report ready")
    answer = client.get(f"/inbox/{name}").json
    assert [m["data"] for m in answer["messages"]] == ["report ready"]


def test_global_conf_is_not_read() -> None:
    app = filter_app_factory(server_apps.app, {"here": "/srv", "__file__": "/srv/x.ini",
                                               "debug": "true"}, ttl="7")
    assert app.store.ttl == 7.0 and app.rules.debug is False


def test_the_publish_token_guards_a_dashboard_without_mailboxes() -> None:
    from wsgiprogress.paste import make_middleware

    token = "dashboard-token-0123456789"
    middleware = make_middleware(lambda environ, start_response: [],
                                 {"dashboard_url": "/_dash", "publish_token": token})
    client = webtest.TestApp(middleware, lint=True)
    client.get("/_dash/data", status=403)
    feed = client.get("/_dash/data", headers={"Authorization": f"Bearer {token}"}).json
    assert feed["running"] == [] and feed["mailboxes"] is None
