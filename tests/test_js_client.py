"""The JS client (wsgiprogress/static/progress.js) under Node: it parses what
our probe really sends, in every dialect."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, List, Optional

import pytest

from wsgiprogress.progress.entry import ProgressEntry
from wsgiprogress.web.dialects import render

HARNESS = Path(__file__).parent / "js" / "harness.js"


def call(name: str, *args: Any) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the JS client tests: apt-get install -y nodejs")
    done = subprocess.run([node, str(HARNESS)], input=json.dumps({"call": name, "args": args}),
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def probe_body(dialect: str, entry: Optional[ProgressEntry]) -> str:
    return render(dialect, "json", None, "client-test", entry)[1].decode()


def test_ids_are_32_random_hex_digits() -> None:
    ids = {call("makeId") for _ in range(3)}
    assert len(ids) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize("url, expected", [
    pytest.param("/upload", "/upload?X-Progress-ID=abc", id="plain"),
    pytest.param("/upload?a=1", "/upload?a=1&X-Progress-ID=abc", id="query"),
    pytest.param("/upload?x-progress-id=old&a=1", "/upload?a=1&X-Progress-ID=abc", id="replace"),
    pytest.param("/upload?fooX-Progress-ID=1", "/upload?fooX-Progress-ID=1&X-Progress-ID=abc",
                 id="whole-name-only"),
    pytest.param("/upload?a=1#top", "/upload?a=1&X-Progress-ID=abc#top", id="fragment"),
])
def test_the_id_is_attached_to_urls(url: str, expected: str) -> None:
    assert call("withId", url, "abc") == expected


def test_the_probe_url_follows_the_servers_id_name_and_dialect() -> None:
    assert call("probeUrlFor", "abc", {}) == \
        "/progress?X-Progress-ID=abc&dialect=native&format=json"
    assert call("probeUrlFor", "abc", {"url": "/p?x=1", "idName": "Upload-Key",
                                       "dialect": "nginx"}, "&wait=5") == \
        "/p?x=1&Upload-Key=abc&dialect=nginx&format=json&wait=5"


UPLOADING = ProgressEntry("client-test", "uploading", received=250, size=1000, speed=50.0)
CHUNKED = ProgressEntry("client-test", "uploading", received=250, size=None, speed=50.0)
DONE = ProgressEntry("client-test", "done", received=1000, size=1000, status=200)
FAILED = ProgressEntry("client-test", "error", received=10, size=1000, status=413,
                       reason="too_large")


@pytest.mark.parametrize("dialect", ["native", "lighttpd", "nginx"])
@pytest.mark.parametrize("entry, state, received, size, percent", [
    pytest.param(None, None, 0, None, None, id="unknown"),
    pytest.param(UPLOADING, "uploading", 250, 1000, 25, id="uploading"),
    pytest.param(CHUNKED, "uploading", 250, None, None, id="chunked"),
    pytest.param(DONE, "done", 1000, 1000, 100, id="done"),
    pytest.param(FAILED, "error", None, None, None, id="error"),
])
def test_every_dialect_normalizes_the_same(dialect: str, entry: Optional[ProgressEntry],
                                           state: Optional[str], received: Optional[int],
                                           size: Optional[int], percent: Optional[int]) -> None:
    result = call("normalize", json.loads(probe_body(dialect, entry)))
    if entry is None:
        assert result["state"] == {"nginx": "starting"}.get(dialect, "unknown")
        return
    assert result["state"] == state
    if state == "error":
        assert result["status"] == 413
        return
    if not (dialect == "nginx" and state == "done"):  # nginx says only "done"
        assert (result["received"], result["size"]) == (received, size)
    assert result["percent"] == percent


def test_speed_and_eta_are_computed_when_the_dialect_lacks_them() -> None:
    samples: List[Any] = [
        [0, probe_body("nginx", ProgressEntry("x", "uploading", received=0, size=3000))],
        [1000, probe_body("nginx", ProgressEntry("x", "uploading", received=1000, size=3000))],
        [2000, probe_body("nginx", ProgressEntry("x", "uploading", received=2000, size=3000))],
    ]
    last = call("samples", samples)[-1]
    assert (last["speed"], last["eta"], last["percent"]) == (1000, 1, 66)
    assert last["text"] == "66 % · 1.0 kB/s · 1 s left"


def test_native_speed_and_eta_are_used_as_sent() -> None:
    entry = ProgressEntry("x", "uploading", received=500_000, size=1_000_000, speed=250_000.0)
    only = call("samples", [[0, probe_body("native", entry)]])[0]
    assert (only["speed"], only["eta"]) == (250000, 2)
    assert only["text"] == "50 % · 250.0 kB/s · 2 s left"
