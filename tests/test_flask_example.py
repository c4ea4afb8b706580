"""The Flask upload example: its page, and a multi-megabyte upload followed
live under our server and under werkzeug."""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import sys
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest
import webtest
from flask import Flask

from server_support import SlowUpload, received_while, running, running_werkzeug, watch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.flask_upload import app as module_app  # noqa: E402
from examples.flask_upload import create_app  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture
def client() -> webtest.TestApp:
    return webtest.TestApp(create_app(), lint=True)


def test_the_page_has_the_bar_the_client_and_the_probe_url(client: webtest.TestApp) -> None:
    page = client.get("/")
    assert '<progress id="bar" max="100" value="0"></progress>' in page.text
    assert 'action="/upload"' in page.text and 'url: "/progress"' in page.text
    src = re.search(r'<script src="([^"]+)"></script>', page.text)
    assert src is not None and src.group(1) == "/progress/static/progress.js"
    script = client.get(src.group(1))
    assert "WSGIProgress.upload(event.target" in page.text
    assert b"root.WSGIProgress = api" in script.body


def test_module_app_is_the_factory_product() -> None:
    assert isinstance(module_app, Flask) and "progress" in module_app.extensions


def test_a_form_upload_is_received_and_tracked(client: webtest.TestApp) -> None:
    content = b"x" * (600 * 1024)  # over werkzeug's in-memory limit: spooled to disk
    reply = client.post("/upload?X-Progress-ID=flask-form-0001",
                        upload_files=[("file", "big.bin", content)])
    assert reply.json == {"filename": "big.bin", "size": len(content)}
    entry = client.get("/progress?X-Progress-ID=flask-form-0001").json
    assert entry["state"] == "done" and entry["received"] == entry["size"] > len(content)


def test_a_form_without_the_file_field_is_refused(client: webtest.TestApp) -> None:
    client.post("/upload", upload_files=[("other", "a.txt", b"a")], status=400)


def test_a_huge_form_field_that_is_not_a_file_is_refused(client: webtest.TestApp) -> None:
    # the form parser keeps such a field in memory; werkzeug before 2.2.3
    # checked the bound per piece read only (CVE-2023-25577), so there the
    # request's MAX_CONTENT_LENGTH is the only bound
    assert client.app.config["MAX_CONTENT_LENGTH"] == 1 << 30
    werkzeug = tuple(int(part) for part in importlib.metadata.version("werkzeug").split(".")[:3])
    status = 413 if werkzeug >= (2, 2, 3) else 200
    client.post("/upload", {"note": "n" * 600_000}, upload_files=[("file", "a.bin", b"x")],
                status=status)


def test_a_raw_body_is_received(client: webtest.TestApp) -> None:
    reply = client.post("/upload", b"y" * 300_000, content_type="application/octet-stream")
    assert reply.json == {"filename": "request body", "size": 300_000}


def test_the_configured_limit_answers_413_before_the_handler() -> None:
    client = webtest.TestApp(create_app({"PROGRESS_MAX_REQUEST_SIZE": "64K"}), lint=True)
    client.post("/upload?X-Progress-ID=flask-limit-01", b"z" * 65537,
                content_type="application/octet-stream", status=413)
    entry = client.get("/progress?X-Progress-ID=flask-limit-01").json
    assert (entry["state"], entry["reason"]) == ("error", "too_large")


@contextlib.contextmanager
def on_our_server(app: Flask) -> Iterator[int]:
    with running(app) as (_, port):
        yield port


@contextlib.contextmanager
def on_werkzeug(app: Flask) -> Iterator[int]:
    with running_werkzeug(app) as port:
        yield port


@pytest.mark.parametrize("serve, counted_by_app", [
    pytest.param(on_our_server, False, id="wsgiprogress-server"),
    pytest.param(on_werkzeug, True, id="werkzeug"),
])
def test_a_large_upload_is_followed_live(
        serve: Callable[[Flask], ContextManager[int]], counted_by_app: bool) -> None:
    app = create_app()
    size = 8 * MiB
    progress_id = f"flask-live-{int(counted_by_app)}-upload"
    with serve(app) as port:
        upload = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", size,
                            piece=256 * 1024, delay=0.025)
        upload.start()
        seen = watch(port, progress_id, until=lambda: False, interval=0.05)
        upload.join(30)
    uploading = received_while(seen, "uploading")
    assert len(uploading) >= 3 and uploading == sorted(uploading), seen
    final = seen[-1]
    assert (final["state"], final["received"], final["size"], final["status"]) == (
        "done", size, size, 200)
    body = upload.reply.partition(b"\r\n\r\n")[2]
    assert json.loads(body) == {"filename": "request body", "size": size}
    # one store under either server (ours serves the app's), each byte counted once
    entry = app.extensions["progress"].store.get(progress_id)
    assert entry is not None and entry.received == size
