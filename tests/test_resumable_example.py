"""The resumable upload example (examples/resumable_upload.py): its page
uploads a file with the JS client's resumable mode in real Chromium, through a
network that drops twice mid-upload; the page resumes each time and the
application receives the whole file once.

Needs Debian's chromium and chromium-driver (never skipped; see test_browser.py)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import webtest
from selenium.webdriver.common.by import By
from test_browser import chrome, wait_for

from resumable_support import CuttingProxy
from server_support import HOST, running

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples import resumable_upload  # noqa: E402

MiB = 1024 * 1024
FILE_SIZE = 24 * MiB


def test_the_page_and_its_scripts_are_served() -> None:
    client = webtest.TestApp(resumable_upload.app, lint=True)
    page = client.get("/")
    assert '<script src="/static/resumable.js"></script>' in page.text
    for script in ("/static/progress.js", "/static/resumable.js"):
        assert b"WSGIProgress" in client.get(script).body


def test_the_page_resumes_after_network_drops_in_chromium(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * (FILE_SIZE // 256))
    app = resumable_upload.ProgressMiddleware(resumable_upload.demo,
                                              resumable_dir=str(tmp_path / "uploads"))
    with running(app) as (_, port), CuttingProxy(port, cuts=2, after=3 * MiB) as proxy, \
            chrome(tmp_path / "profile") as browser:
        browser.get(f"http://{HOST}:{proxy.port}/")
        browser.find_element(By.NAME, "file").send_keys(str(path))
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        result = wait_for(browser, 'return document.getElementById("result").textContent',
                          deadline=60)
        retries = browser.execute_script(
            'return document.getElementById("retries").textContent')
        info = wait_for(browser, 'var t = document.getElementById("info").textContent;'
                                 ' return t === "done" && t;', deadline=10)
    assert result == f"Received big.bin: {FILE_SIZE} bytes, resumably"
    assert proxy.cut == 2
    # Chromium retries a request cut on a reused connection once by itself;
    # the page resumes the others from the bytes the server kept
    assert re.fullmatch(r"Resumed [12] time\(s\), the last from byte [1-9]\d*", retries), retries
    assert info == "done"
