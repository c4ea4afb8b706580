"""The upload demo: served pages, and a tracked upload through it under both
servers the README names."""
from __future__ import annotations

import sys
from pathlib import Path

import webtest

from server_support import SlowUpload, running, running_werkzeug, wait_for_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.upload_demo import app  # noqa: E402


def test_pages_are_served() -> None:
    client = webtest.TestApp(app, lint=True)
    page = client.get("/")
    assert '<script src="/static/progress.js"></script>' in page.text
    script = client.get("/static/progress.js")
    assert script.content_type == "application/javascript" and b"WSGIProgress" in script.body
    client.get("/nothing", status=404)


def test_an_upload_is_tracked_through_the_demo() -> None:
    client = webtest.TestApp(app, lint=True)
    reply = client.post("/upload?X-Progress-ID=demo-upload-1", b"x" * 100_000)
    assert reply.text == "100000 bytes"
    entry = client.get("/progress?X-Progress-ID=demo-upload-1").json
    assert (entry["state"], entry["received"], entry["size"]) == ("done", 100_000, 100_000)


def test_under_both_servers() -> None:
    with running(app) as (_, port):
        upload = SlowUpload(port, "/upload?X-Progress-ID=demo-waitress", 2_000_000, delay=0)
        upload.start()
        upload.join(20)
        assert upload.reply.endswith(b"2000000 bytes")
        assert wait_for_state(port, "demo-waitress", ("done",))["received"] == 2_000_000
    with running_werkzeug(app) as port:
        upload = SlowUpload(port, "/upload?X-Progress-ID=demo-werkzeug", 2_000_000, delay=0)
        upload.start()
        upload.join(20)
        assert upload.reply.endswith(b"2000000 bytes")
        assert wait_for_state(port, "demo-werkzeug", ("done",))["received"] == 2_000_000
