"""A real browser: headless Chromium uploads a multi-megabyte file through the
Flask example's page under our server, with its upload throttled so the bar
must move, while a second browser watches the upload on the dashboard.

Needs Debian's chromium and chromium-driver; without them these tests fail
(they never skip): ``apt-get install chromium chromium-driver``.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from server_support import HOST, running

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.flask_upload import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install chromium chromium-driver"
TOKEN = "browser-dashboard-token-0123"
MiB = 1024 * 1024
FILE_SIZE = 24 * MiB
#: Bytes per second the browser may send: 24 MiB take about 6 s.
UPLOAD_THROUGHPUT = 4 * MiB
ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync")

RUNNING_ROWS = """
return Array.prototype.map.call(document.querySelectorAll("#running tbody tr"), function (tr) {
  var bar = tr.querySelector("progress");
  return {id: tr.cells[0].textContent, text: tr.cells[1].textContent,
          value: bar.hasAttribute("value") ? bar.value : null, state: tr.cells[3].textContent};
});
"""
FINISHED_ROWS = """
return Array.prototype.map.call(document.querySelectorAll("#finished tbody tr"), function (tr) {
  return {id: tr.cells[0].textContent, result: tr.cells[1].textContent};
});
"""
UPLOADER_STATE = """
return {value: document.getElementById("bar").value,
        info: document.getElementById("info").textContent,
        result: document.getElementById("result").textContent};
"""


@contextlib.contextmanager
def chrome(profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile; always quit on exit."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: the browser tests need it ({INSTALL})")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ARGS + (f"--user-data-dir={profile}",):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.fail(f"Chromium did not start ({INSTALL}): {exc.msg}")
    try:
        driver.set_page_load_timeout(20)
        driver.set_script_timeout(10)
        yield driver
    finally:
        driver.quit()


def html_app(page: str) -> Any:
    """A WSGI application that answers every request with the HTML *page*."""
    body = page.encode()

    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    block = bytes(range(256)) * 4096  # 1 MiB
    with path.open("wb") as file:
        for _ in range(FILE_SIZE // len(block)):
            file.write(block)
    return path


def wait_for(driver: webdriver.Chrome, script: str, deadline: float = 10.0) -> Any:
    """Run *script* until it returns something true; fail after *deadline* s."""
    end = time.monotonic() + deadline
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        assert time.monotonic() < end, f"still false after {deadline} s: {script}"
        time.sleep(0.05)


def test_the_bar_moves_and_the_dashboard_shows_the_upload(tmp_path: Path) -> None:
    path = big_file(tmp_path)
    # the app's Progress settings are the server's: the dashboard is configured there
    dashboard = create_app({"PROGRESS_DASHBOARD_URL": "/_dash", "PROGRESS_PUBLISH_TOKEN": TOKEN})
    with running(dashboard) as (_, port), \
            chrome(tmp_path / "uploader") as uploader, chrome(tmp_path / "operator") as operator:
        base = f"http://{HOST}:{port}"
        operator.get(f"{base}/_dash?token={TOKEN}")
        # the page's script sent the token on to the feed and showed its answer
        wait_for(operator, 'return document.getElementById("status").textContent'
                           '.indexOf("updated") === 0')
        assert operator.find_element(By.ID, "running-empty").is_displayed()

        uploader.get(f"{base}/")
        uploader.execute_cdp_cmd("Network.enable", {})
        uploader.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1,
            "uploadThroughput": UPLOAD_THROUGHPUT})
        uploader.find_element(By.NAME, "file").send_keys(str(path))
        uploader.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        samples: List[Dict[str, Any]] = []
        watched: List[Dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            samples.append(uploader.execute_script(UPLOADER_STATE))
            watched += operator.execute_script(RUNNING_ROWS)
            if samples[-1]["result"] or samples[-1]["info"].startswith("failed"):
                break
            time.sleep(0.05)
        # the probe may say "done" just before the upload's own answer arrives
        final = wait_for(uploader, UPLOADER_STATE.replace(
            "return {", "var s = {").rstrip() + " return s.result && s;")

        uploaded = uploader.execute_script(
            'return performance.getEntriesByType("resource").map(function (e) {'
            ' return e.name; }).filter(function (n) { return n.indexOf("/upload?") >= 0; });')
        finished = wait_for(operator, FINISHED_ROWS.replace("return Array", "var r = Array")
                            + " return r.length && r;", deadline=5)

    percents = sorted({s["value"] for s in samples if 0 < s["value"] < 100})
    assert len(percents) >= 2, f"the bar did not move: {samples[:3]} ... {samples[-3:]}"
    assert (final["value"], final["info"]) == (100, "done"), final
    assert final["result"] == f"Received big.bin: {FILE_SIZE} bytes"

    (upload_url,) = uploaded
    progress_id = re.search(r"X-Progress-ID=([0-9a-f]{32})", upload_url)
    assert progress_id is not None, upload_url
    mine = [row for row in watched if row["id"] == progress_id.group(1)]
    assert mine, f"the dashboard never showed {progress_id.group(1)}: {watched[-3:]}"
    moving = sorted({row["value"] for row in mine
                     if row["value"] is not None and 0 < row["value"] < 100})
    assert moving, mine
    assert any(row["state"] == "uploading" and re.match(r"\d+ % · .*/s", row["text"])
               for row in mine), mine
    assert {row["id"] for row in watched} == {progress_id.group(1)}
    assert finished == [{"id": progress_id.group(1), "result": "done (200)"}]
