"""The operator dashboard: off by default, protected like the mailbox stats,
a feed that lists running and finished uploads under the middleware and our
server, and a page that shows client data only as text."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import webtest

from wsgiprogress import ConfigurationError, ProgressMiddleware, ProgressTable
from wsgiprogress.mailbox import MemoryMailboxes
from wsgiprogress.web.dashboard import Dashboard

from server_support import HOST, SlowUpload, running

TOKEN = "dashboard-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATIC = Path(__file__).resolve().parents[1] / "wsgiprogress" / "static"
MiB = 1024 * 1024


def inner(environ: Dict[str, Any], start_response: Any) -> Any:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    text = b"inner %d" % len(body)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(text)))])
    return [text]


def client(**settings: Any) -> webtest.TestApp:
    settings.setdefault("dashboard_url", "/_dash")
    settings.setdefault("publish_token", TOKEN)
    return webtest.TestApp(ProgressMiddleware(inner, **settings), lint=True)


# -- mounting and configuration ---------------------------------------------

def test_off_by_default_the_path_reaches_the_app() -> None:
    plain = webtest.TestApp(ProgressMiddleware(inner), lint=True)
    assert plain.app.front.dashboard is None
    for path in ("/_dashboard", "/_dashboard/data", "/_dash"):
        assert plain.get(path, headers=AUTH).text == "inner 0"


def test_off_by_default_under_our_server() -> None:
    with running(inner) as (_, port):
        status, _, body = get(port, "/_dashboard/data", AUTH)
    assert (status, body) == (200, b"inner 0")


def test_other_paths_still_reach_the_app() -> None:
    dash = client()
    assert dash.get("/_dash/other").text == "inner 0"
    assert dash.get("/_dashx").text == "inner 0"
    assert dash.post("/_dash/data/x", b"abc").text == "inner 3"


@pytest.mark.parametrize("settings, message", [
    pytest.param({"dashboard_url": "/_dash"},
                 "dashboard_url needs publish_token or an authorize hook", id="no-auth"),
    pytest.param({"dashboard_url": "_dash", "publish_token": TOKEN},
                 "dashboard_url: expected a URL path starting with '/', such as '/_dashboard', "
                 "or None for off, not '_dash'", id="relative"),
    pytest.param({"dashboard_url": "/a b", "publish_token": TOKEN},
                 "dashboard_url: expected a URL path", id="space"),
    pytest.param({"dashboard_url": "/_dash", "publish_token": "short"},
                 "publish_token: expected a secret of at least 16 characters", id="weak-token"),
    pytest.param({"dashbord_url": "/_dash"}, "did you mean 'dashboard_url'?", id="typo"),
])
def test_bad_configuration_raises(settings: Dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ProgressMiddleware(inner, **settings)
    assert message in str(info.value)


def test_the_server_refuses_the_same_configuration() -> None:
    with pytest.raises(ConfigurationError, match="needs publish_token or an authorize"):
        with running(inner, dashboard_url="/_dash"):
            pass


@pytest.mark.parametrize("value, expected", [
    pytest.param(None, None, id="none"), pytest.param("", None, id="empty"),
    pytest.param("None", None, id="none-string"), pytest.param("/ops/", "/ops/", id="path"),
])
def test_setting_values(value: Optional[str], expected: Optional[str]) -> None:
    token = TOKEN if expected else None  # a token without a dashboard is refused
    app = ProgressMiddleware(inner, dashboard_url=value, publish_token=token)
    assert (app.front.dashboard.url if app.front.dashboard else None) == expected


def test_authorize_alone_is_enough_without_mailboxes() -> None:
    app = ProgressMiddleware(inner, dashboard_url="/_dash", authorize=lambda e, n, a: False)
    assert app.front.dashboard is not None and app.front.mailbox_app is None
    alone = ProgressMiddleware(inner, authorize=lambda e, n, a: True)  # it guards the probe
    assert alone.front.dashboard is None and alone.front.mailbox_app is None


# -- protection ---------------------------------------------------------------

@pytest.mark.parametrize("path, headers, status", [
    pytest.param("/_dash", {}, 403, id="page-no-token"),
    pytest.param("/_dash/data", {}, 403, id="feed-no-token"),
    pytest.param("/_dash?token=wrong-token-0123456789", {}, 403, id="page-wrong-query"),
    pytest.param("/_dash/data", {"Authorization": "Bearer wrong-token-012345"}, 403,
                 id="feed-wrong-header"),
    pytest.param("/_dash/data", {"Authorization": TOKEN}, 403, id="feed-no-bearer"),
    pytest.param(f"/_dash/data?token={TOKEN}", {}, 403, id="feed-query-not-accepted"),
    pytest.param("/_dash", AUTH, 200, id="page-header"),
    pytest.param(f"/_dash?token={TOKEN}", {}, 200, id="page-query"),
    pytest.param(f"/_dash?a=1&token={TOKEN}", {}, 200, id="page-query-among-others"),
    pytest.param("/_dash/data", AUTH, 200, id="feed-header"),
])
def test_token(path: str, headers: Dict[str, str], status: int) -> None:
    answer = client().get(path, headers=headers, status=status)
    assert answer.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    if status == 403:
        assert answer.content_type == "text/plain" and "needs the" in answer.text


def test_authorize_hook_is_asked_for_stats() -> None:
    calls: List[Any] = []

    def authorize(environ: Dict[str, Any], name: Optional[str], action: str) -> bool:
        calls.append((name, action))
        return environ.get("HTTP_COOKIE") == "session=operator"

    dash = client(publish_token=None, authorize=authorize)
    dash.get("/_dash/data", status=403)
    dash.get(f"/_dash?token={TOKEN}", status=403)
    session = {"Cookie": "session=operator"}
    assert dash.get("/_dash", headers=session).content_type == "text/html"
    assert dash.get("/_dash/data", headers=session).json["counts"] == {
        "running": 0, "finished": 0}
    assert calls and set(calls) == {(None, "stats")}


def test_the_token_or_the_hook() -> None:
    dash = client(authorize=lambda environ, name, action: False)
    dash.get("/_dash/data", status=403)
    assert dash.get("/_dash/data", headers=AUTH).status_int == 200


def test_methods() -> None:
    dash = client()
    answer = dash.post("/_dash/data", b"", headers=AUTH, status=405)
    assert answer.headers["Allow"] == "GET, HEAD"
    assert dash.head("/_dash/data", headers=AUTH).body == b""
    assert dash.head(f"/_dash?token={TOKEN}").body == b""


# -- the page -----------------------------------------------------------------

def test_the_page_inlines_its_scripts_under_a_strict_policy() -> None:
    page = client().get(f"/_dash?token={TOKEN}")
    assert page.content_type == "text/html" and page.charset == "utf-8"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "unsafe" not in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert not re.search(r"<script src=\"\w+\.js\"></script>", page.text)
    assert "root.WSGIProgress = api" in page.text and "new Dashboard(" in page.text
    inline = re.findall(r"<(script|style)>(.*?)</\1>", page.text, re.DOTALL)
    assert [kind for kind, _ in inline] == ["style", "script", "script"]
    for _, body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert page.text.lower().count("</script") == 2  # the usage comment's is escaped


@pytest.mark.parametrize("name", ["dashboard.html", "dashboard.js"])
def test_the_page_never_parses_data_as_html(name: str) -> None:
    source = (STATIC / name).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"on", "srcdoc"):
        assert sink not in source, f"{name} uses {sink}"
    if name.endswith(".js"):
        assert "textContent" in source


# -- the feed -----------------------------------------------------------------

def test_the_feed_lists_finished_uploads_and_counts() -> None:
    dash = client()
    dash.post("/upload?X-Progress-ID=finished-0001", b"x" * 1000)
    dash.post("/upload?X-Progress-ID=finished-0002", b"x" * 10)
    dash.app.store.track("running-00001", 5000).add_received(1200)
    feed = dash.get("/_dash/data", headers=AUTH).json
    assert feed["counts"] == {"running": 1, "finished": 2}
    assert [e["id"] for e in feed["finished"]] == ["finished-0002", "finished-0001"]
    assert feed["finished"][1]["state"] == "done" and feed["finished"][1]["received"] == 1000
    (entry,) = feed["running"]
    assert (entry["id"], entry["state"], entry["received"], entry["size"]) == (
        "running-00001", "uploading", 1200, 5000)
    assert {"speed", "eta", "started"} <= set(entry)
    assert feed["mailboxes"] is None
    assert feed["waiters"] == {"waiting": 0, "limit": 50, "refused": 0}
    assert abs(feed["time"] - time.time()) < 5


def test_failed_uploads_show_why() -> None:
    dash = client(max_request_size=100)
    dash.post("/upload?X-Progress-ID=too-large-01", b"x" * 101, status=413)
    (entry,) = dash.get("/_dash/data", headers=AUTH).json["finished"]
    assert (entry["state"], entry["reason"], entry["status"]) == ("error", "too_large", 413)


def test_mailbox_counts_when_mailboxes_are_served() -> None:
    mailbox = MemoryMailboxes()
    dash = client(mailbox=mailbox)
    mailbox.post("0123456789abcdef0123456789abcdef", "hello")
    boxes = dash.get("/_dash/data", headers=AUTH).json["mailboxes"]
    assert boxes == {"mailboxes": 1, "messages": 1, "posted": 1, "dropped": 0, "delivered": 0}


def test_the_feed_lists_at_most_the_limit() -> None:
    table = ProgressTable()
    for i in range(5):
        table.track(f"upload-{i:04d}", 10)
    dashboard = Dashboard(table, token=TOKEN, url="/d", limit=3)
    data = dashboard.data()
    assert [e["id"] for e in data["running"]] == ["upload-0004", "upload-0003", "upload-0002"]
    assert (data["counts"]["running"], data["shown"]) == (5, 3)


def test_a_failing_store_answers_503() -> None:
    class Broken(ProgressTable):
        def recent(self, limit: int = 100) -> List[Any]:
            raise OSError("store down")

    dash = client(store=Broken())
    answer = dash.get("/_dash/data", headers=AUTH, status=503)
    assert answer.headers["Retry-After"] == "2"


def test_html_in_an_id_is_never_tracked() -> None:
    dash = client()
    evil = "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
    assert dash.post(f"/upload?X-Progress-ID={evil}", b"abc").text == "inner 3"
    assert dash.post("/upload", b"abc", headers={"X-Progress-ID": "<script>x</script>"}
                     ).text == "inner 3"
    feed = dash.get("/_dash/data", headers=AUTH).json
    assert feed["running"] == feed["finished"] == []


# -- live, under our server ---------------------------------------------------

def get(port: int, path: str, headers: Optional[Dict[str, str]] = None
        ) -> "tuple[int, Dict[str, str], bytes]":
    conn = HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_the_feed_follows_a_running_upload_under_our_server() -> None:
    size = 4 * MiB
    with running(inner, dashboard_url="/_dash", publish_token=TOKEN) as (_, port):
        assert get(port, "/_dash/data")[0] == 403
        status, headers, page = get(port, f"/_dash?token={TOKEN}")
        assert status == 200 and b"<title>wsgiprogress dashboard</title>" in page
        upload = SlowUpload(port, "/upload?X-Progress-ID=live-dash-01", size,
                            piece=128 * 1024, delay=0.03)
        upload.start()
        seen: List[Dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while upload.is_alive() and time.monotonic() < deadline:
            status, _, body = get(port, "/_dash/data", AUTH)
            assert status == 200
            feed = json.loads(body)
            seen += [dict(e, running_count=feed["counts"]["running"]) for e in feed["running"]]
            time.sleep(0.05)
        upload.join(10)
        assert upload.reply.endswith(b"inner %d" % size)
        uploading = [e for e in seen if e["state"] == "uploading"]
        assert uploading, seen[-3:]
        assert {e["id"] for e in seen} == {"live-dash-01"}
        assert {e["running_count"] for e in uploading} == {1}
        received = sorted({e["received"] for e in uploading})
        assert len(received) >= 3 and 0 < received[0] < received[-1] < size
        assert all(e["size"] == size for e in uploading)
        assert any(e["speed"] > 0 and e["eta"] is not None for e in uploading)
        finished: List[Dict[str, Any]] = []
        deadline = time.monotonic() + 5
        while not finished and time.monotonic() < deadline:
            finished = json.loads(get(port, "/_dash/data", AUTH)[2])["finished"]
        assert [(e["id"], e["state"], e["received"]) for e in finished] == [
            ("live-dash-01", "done", size)]


def test_mailbox_counts_under_our_server() -> None:
    with running(inner, mailbox=True, dashboard_url="/_dash", publish_token=TOKEN) as (
            server, port):
        server.mailbox.post("0123456789abcdef0123456789abcdef", "hi")
        status, _, body = get(port, "/_dash/data", AUTH)
    assert status == 200
    assert json.loads(body)["mailboxes"]["posted"] == 1
