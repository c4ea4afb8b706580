"""The nginx dialect as the clients written for the nginx module read it, in
headless Chromium against our server: real jQuery (npm, pinned in
tests/js/jquery) makes the requests of jquery.uploadProgress (the ID in the
query or in a header, ``dataType`` ``json`` or ``jsonp``) and of
django-progressbarupload (``$.getJSON``), and a bare XHR ``eval``\\s the
answer as the module's README sample does.  Each gets the object the module
gives it, in every state.  Fails (never skips) without Chromium or npm."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable

import pytest
from test_browser import chrome

from wsgiprogress import ProgressTable

from npm_support import npm_ci
from server_support import HOST, running

PID = "0123456789abcdef0123456789abcdef"  # what these clients make: 32 hex digits
PAGE = b"""<!doctype html><meta charset="utf-8"><title>jquery</title>
<script src="/jquery.js"></script>"""
#: Each client's request and parser, after ``var id = arguments[0], done =
#: arguments[1];``: *done* hands the parsed answer (or the failure) back.
CLIENTS = {
    "uploadProgress-query-json": """
        $.ajax({type: "GET", url: "/progress?X-Progress-ID=" + id, dataType: "json",
                success: done, error: failed});""",
    "uploadProgress-query-jsonp": """
        $.ajax({type: "GET", url: "/progress?X-Progress-ID=" + id, dataType: "jsonp",
                success: done, error: failed});""",
    "uploadProgress-header-json": """
        $.ajax({type: "GET", url: "/progress", dataType: "json",
                beforeSend: function (xhr) { xhr.setRequestHeader("X-Progress-ID", id); },
                success: done, error: failed});""",
    "progressbarupload-getJSON": """
        $.getJSON("/progress", {"X-Progress-ID": id}, done).fail(failed);""",
}
#: The module's README sample, asking for the format of the module's default
#: output (``jsonp`` without a callback) or of its java_output (``legacy``).
README_EVAL = """
    var req = new XMLHttpRequest();
    req.open("GET", "/progress?format=%s", true);
    req.setRequestHeader("X-Progress-ID", id);
    req.onload = function () { done(eval(req.responseText)); };
    req.send(null);"""
CLIENTS.update({f"readme-eval-{fmt}": README_EVAL % fmt for fmt in ("jsonp", "legacy")})
PRELUDE = """var id = arguments[0], done = arguments[1];
function failed(xhr, status, error) { done("failed: " + status + " " + error); }
"""
#: What the module answers in each state (README; reference section 2.4).
STATES: Dict[str, Dict[str, Any]] = {
    "unknown": {"state": "starting"},
    "starting": {"state": "starting"},
    "uploading": {"state": "uploading", "received": 400, "size": 1000},
    "done": {"state": "done"},
    "too_large": {"state": "error", "status": 413},
    "app_error": {"state": "error", "status": 500},
}


def into(table: ProgressTable, state: str) -> None:
    """Put PID's entry in *state* through the table's public API."""
    if state == "unknown":
        return
    tracker = table.track(PID, 1000)
    assert tracker is not None
    if state == "too_large":
        tracker.fail("too_large", 413)
    elif state != "starting":
        tracker.add_received(400)
        if state == "app_error":
            tracker.fail("app_error", 500)
        elif state == "done":
            tracker.add_received(600)
            tracker.body_complete()
            tracker.start_response(200, 0)
            tracker.finish()


@pytest.fixture(scope="module")
def jquery() -> bytes:
    return (npm_ci("jquery", "jquery") / "jquery" / "dist" / "jquery.js").read_bytes()


@pytest.mark.parametrize("state", list(STATES))
def test_clients_of_the_nginx_module_read_every_state(state: str, jquery: bytes,
                                                      tmp_path: Path) -> None:
    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body, kind = (jquery, "application/javascript") \
            if environ["PATH_INFO"] == "/jquery.js" else (PAGE, "text/html; charset=utf-8")
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    table = ProgressTable()
    into(table, state)
    with running(app, store=table, dialect="nginx") as (_, port), \
            chrome(tmp_path / "p") as browser:
        browser.get(f"http://{HOST}:{port}/")
        read = {name: browser.execute_async_script(PRELUDE + script, PID)
                for name, script in CLIENTS.items()}
    assert read == {name: STATES[state] for name in CLIENTS}
