"""examples/redirect_after_upload.py, the README's Post/Redirect/Get example:
a multipart upload through it, sent slowly, is answered with 303 See Other
while the probe shows it arrive, under werkzeug (the middleware counts) and
under our server (the server counts); and headless Chromium, with its upload
throttled, sees the bar move and lands on the page the redirect led to.

The browser test needs Debian's chromium and chromium-driver and fails (never
skips) without them, as tests/test_browser.py does.
"""
from __future__ import annotations

import socket
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.by import By
from test_browser import chrome, wait_for

from server_support import HOST, probe, read_response, running, running_werkzeug, status_of

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from examples.redirect_after_upload import app  # noqa: E402

MiB = 1024 * 1024
BOUNDARY = "----wsgiprogress-redirect-example"


class SlowMultipart(threading.Thread):
    """POSTs one file field, ``file``, of *size* bytes as multipart/form-data
    in timed pieces; ``reply`` holds the raw answer, ``error`` an OSError."""

    def __init__(self, port: int, target: str, size: int, piece: int = 128 * 1024,
                 delay: float = 0.02) -> None:
        super().__init__(name="slow-multipart", daemon=True)
        self.port, self.target, self.size, self.piece, self.delay = (
            port, target, size, piece, delay)
        self.reply = b""
        self.error: "OSError | None" = None

    def run(self) -> None:
        opening = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                   "filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                   ).encode()
        closing = f"\r\n--{BOUNDARY}--\r\n".encode()
        length = len(opening) + self.size + len(closing)
        head = (f"POST {self.target} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()
        try:
            with socket.create_connection((HOST, self.port), timeout=30) as sock:
                sock.sendall(head + opening)
                sent = 0
                while sent < self.size:
                    n = min(self.piece, self.size - sent)
                    sock.sendall(b"x" * n)
                    sent += n
                    time.sleep(self.delay)
                sock.sendall(closing)
                self.reply = read_response(sock)
        except OSError as exc:
            self.error = exc


def get(port: int, path: str) -> "tuple[int, str]":
    conn = HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("server", ["werkzeug", "wsgiprogress"])
def test_an_upload_is_answered_with_303_while_its_progress_is_live(server: str) -> None:
    size = 6 * MiB
    progress_id = f"redirect-example-{server}"
    context = running_werkzeug(app) if server == "werkzeug" else running(app)
    with context as served:
        port = served if server == "werkzeug" else served[1]
        status, page = get(port, "/")
        assert status == 200 and "WSGIProgress.upload(event.target" in page, page
        assert "progress.js" in page, page
        client = SlowMultipart(port, f"/upload?X-Progress-ID={progress_id}", size)
        client.start()
        seen: List[Dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while client.is_alive() and time.monotonic() < deadline:
            seen.append(probe(port, progress_id))
            time.sleep(0.05)
        client.join(30)
        assert client.error is None, client.error
        final = probe(port, progress_id)

    assert status_of(client.reply) == 303, client.reply[:300]
    head = client.reply.partition(b"\r\n\r\n")[0].decode("latin-1")
    location = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                    if line.lower().startswith("location:"))
    assert urlsplit(location).path == "/uploaded", location
    assert parse_qs(urlsplit(location).query) == {"name": ["big.bin"], "size": [str(size)]}

    assert (final["state"], final["status"]) == ("done", 303), final
    assert final["received"] == final["size"] > size  # the file and its multipart framing
    # the body was seen arriving, not only once it was all there
    growing = sorted({a["received"] for a in seen
                      if a["state"] == "uploading" and 0 < a["received"] < final["size"]})
    assert len(growing) >= 3, seen[:3]


def test_the_answer_page_shows_what_arrived() -> None:
    with running_werkzeug(app) as port:
        status, page = get(port, "/uploaded?name=big.bin&size=42")
    assert status == 200 and '<p id="uploaded">Received big.bin: 42 bytes.</p>' in page


def test_in_a_browser_the_bar_moves_and_the_page_follows_the_redirect(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * 4096 * 12)  # 12 MiB: about 3 s at 4 MiB/s
    with running(app) as (_, port), chrome(tmp_path / "profile") as browser:
        browser.get(f"http://{HOST}:{port}/")
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1,
            "uploadThroughput": 4 * MiB})
        browser.find_element(By.NAME, "file").send_keys(str(path))
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        values = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if "/uploaded" in browser.current_url:
                    break
                values.add(browser.execute_script(
                    'var bar = document.getElementById("bar"); return bar && bar.value;'))
            except Exception:  # the page is navigating away
                pass
            time.sleep(0.05)
        text = wait_for(browser, 'var p = document.getElementById("uploaded");'
                                 ' return p && p.textContent;')
        url = browser.current_url
    moving = sorted(v for v in values if isinstance(v, (int, float)) and 0 < v < 100)
    assert len(moving) >= 2, f"the bar did not move: {sorted(values, key=str)}"
    assert urlsplit(url).path == "/uploaded", url
    assert text == f"Received big.bin: {path.stat().st_size} bytes."
