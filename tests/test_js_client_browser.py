"""The JS client (wsgiprogress/static/progress.js) in headless Chromium
against our server: its stop conditions hold when the server pushes
progress (EventSource) as when it polls, an upload the server did not track
ends with its answer, and so does one whose probe the authorize hook
refuses, attach() keeps what a form without an action posts to, and a form
with a field named "action" is uploaded where it says.
Fails (never skips) without Chromium, as ``test_browser.py`` does."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List
from urllib.parse import parse_qs

from selenium.webdriver.common.by import By
from test_browser import chrome, wait_for

from server_support import HOST, SlowUpload, probe, running, wait_until

CLIENT = Path(__file__).resolve().parents[1] / "wsgiprogress" / "static" / "progress.js"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>client</title>
<script src="/progress.js"></script></head>
<body>
<form id="form" method="post"><input name="note" value="n"><button>Send</button></form>
<form id="named" action="/save" method="post"><input type="hidden" name="action" value="save">
</form>
<script>
// every EventSource the client opens, by URL
window.streams = [];
var Native = window.EventSource;
window.EventSource = function (url) { window.streams.push(url); return new Native(url); };
</script>
</body></html>
"""

# upload() of a FormData (note: arguments[0]) to /upload, polled every
# arguments[1] ms; window.ended hears how it ended
UPLOAD = """
var data = new FormData();
data.append("note", arguments[0]);
window.job = WSGIProgress.upload(data, {action: "/upload", interval: arguments[1],
  onDone: function (p) { window.ended = ["done", p.status]; },
  onError: function (p) { window.ended = ["error", p.reason, p.status]; }});"""


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The page (any path), the client, and ``POST`` answered with its query string."""
    path = environ.get("PATH_INFO", "")
    if path == "/progress.js":
        body, kind = CLIENT.read_bytes(), "application/javascript"
    elif environ["REQUEST_METHOD"] == "POST":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body, kind = f"posted to {path}?{environ['QUERY_STRING']}".encode(), "text/plain"
    else:
        body, kind = PAGE.encode(), "text/html; charset=utf-8"
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def test_an_id_that_never_appears_ends_as_unknown_when_pushed_too(tmp_path: Path) -> None:
    # polled, maxUnknown "unknown" answers in a row end it; pushed, the server
    # says "unknown" once and then nothing until the stream's end (300 s), so
    # the client gives the same time: maxUnknown x interval
    with running(app) as (_, port), chrome(tmp_path / "p") as browser:
        browser.get(f"http://{HOST}:{port}/")
        started = time.monotonic()
        browser.execute_script("""
            window.heard = [];
            WSGIProgress.track("never-uploaded-0001", {interval: 100, maxUnknown: 5,
              onProgress: function (p) { window.heard.push(p.state); },
              onError: function (p) { window.ended = [p.state, p.reason]; }});""")
        ended = wait_for(browser, "return window.ended", deadline=10)
        elapsed = time.monotonic() - started
        streams = browser.execute_script("return window.streams")
        heard = browser.execute_script("return window.heard")
    assert ended == ["error", "unknown"]
    assert len(streams) == 1 and "transport=sse" in streams[0]  # pushed, not polled
    assert heard == ["unknown"]  # the server said it once
    assert 0.4 < elapsed < 5, elapsed


def test_attach_keeps_the_query_of_a_form_without_an_action(tmp_path: Path) -> None:
    # a form without an action posts to the page's own URL, query and all
    # (HTML: the document's URL); attach() only adds the ID to it
    with running(app) as (_, port), chrome(tmp_path / "p") as browser:
        browser.get(f"http://{HOST}:{port}/album?album=3")
        progress_id = browser.execute_script(
            "return WSGIProgress.attach(document.getElementById('form')).id")
        browser.find_element(By.TAG_NAME, "button").click()
        answer = wait_for(browser, "return document.body.textContent.indexOf('posted') === 0"
                          " && document.body.textContent")
    path, _, query = answer[len("posted to "):].partition("?")
    assert path == "/album"
    assert parse_qs(query) == {"album": ["3"], "X-Progress-ID": [progress_id]}


def test_an_upload_the_store_had_no_room_for_ends_with_its_answer(tmp_path: Path) -> None:
    # capacity 1, held by another upload: the page's runs untracked, and the
    # probe says "unknown" throughout; the answer (200) ends it as done
    with running(app, capacity=1) as (_, port), chrome(tmp_path / "p") as browser:
        holder = SlowUpload(port, "/upload?X-Progress-ID=holds-the-slot-01", 4 * 1024 * 1024,
                            piece=64 * 1024, delay=0.05)
        holder.start()
        try:
            wait_until(lambda: probe(port, "holds-the-slot-01")["state"] == "uploading")
            browser.get(f"http://{HOST}:{port}/")
            browser.execute_script(UPLOAD, "untracked", 100)
            ended = wait_for(browser, "return window.ended", deadline=10)
            progress_id = browser.execute_script("return window.job.id")
            assert probe(port, progress_id)["state"] == "unknown"  # untracked indeed
        finally:
            holder.join(30)
    assert ended == ["done", 200]


def test_an_upload_whose_probe_is_refused_ends_with_its_answer(tmp_path: Path) -> None:
    # the authorize hook refuses the page's probe (403) while the upload itself
    # is accepted and held until the test lets it go: the refusal stops the
    # probing (the stream, then one poll) without ending anything, and the
    # upload's answer ends it, never as "network"
    asked: List[str] = []
    release = threading.Event()

    def authorize(environ: Dict[str, Any], progress_id: str, action: str) -> bool:
        asked.append(action)
        return action != "progress"

    def held(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            release.wait(10)
        return app(environ, start_response)

    with running(held, authorize=authorize) as (_, port), \
            chrome(tmp_path / "p") as browser:
        browser.get(f"http://{HOST}:{port}/")
        browser.execute_script(UPLOAD, "refused probe", 50)
        wait_until(lambda: asked.count("progress") >= 2)  # the stream, then a poll
        # the old client retried for 50 + 100 + 150 + 200 ms and then gave up
        ending = time.monotonic() + 1.5
        while time.monotonic() < ending and not browser.execute_script("return window.ended"):
            time.sleep(0.05)
        before = browser.execute_script("return window.ended")
        release.set()
        ended = wait_for(browser, "return window.ended", deadline=10)
        streams = browser.execute_script("return window.streams")
    assert before is None  # nothing ended while the upload was still held
    assert ended == ["done", 200]
    assert len(streams) == 1 and asked.count("progress") == 2  # no polling after the refusal


def test_a_form_with_a_field_named_action_is_uploaded_to_its_action(tmp_path: Path) -> None:
    # form.action is that field, not the URL (the form's named-property getter)
    with running(app) as (_, port), chrome(tmp_path / "p") as browser:
        browser.get(f"http://{HOST}:{port}/")
        progress_id, answer = browser.execute_async_script("""
            var done = arguments[0];
            try {
              var job = WSGIProgress.upload(document.getElementById("named"), {interval: 100});
              job.xhr.addEventListener("load", function () {
                done([job.id, job.xhr.responseText]); });
            } catch (e) { done([null, String(e)]); }""")
        attached = browser.execute_script("""
            var form = document.getElementById("named");
            WSGIProgress.attach(form, {id: "0123456789abcdef0123456789abcdef"});
            return form.getAttribute("action");""")
    assert answer == f"posted to /save?X-Progress-ID={progress_id}"
    assert attached == "/save?X-Progress-ID=0123456789abcdef0123456789abcdef"
