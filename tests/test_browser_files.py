"""A real browser uploads a form with three files, throttled to 4 MiB/s, and
the page draws a bar per file from the probe's ``files``: each reaches 100 %
in order, on our server and through the middleware under werkzeug and
gunicorn's gthread worker.  Fails (never skips) without Chromium, as
``test_browser.py`` does."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from per_file_app import page_app, per_file_app
from selenium.webdriver.common.by import By
from test_browser import UPLOAD_THROUGHPUT, chrome, wait_for
from test_per_file import recent_werkzeug

from gunicorn_support import gunicorn
from server_support import HOST, probe, running, running_werkzeug, wait_until

MiB = 1024 * 1024
SIZES = (3 * MiB, 2 * MiB, 3 * MiB)


@contextlib.contextmanager
def served(kind: str, tmp_path: Path) -> Iterator[int]:
    if kind == "ours":
        with running(page_app, per_file=True) as (_, port):
            yield port
    elif kind == "werkzeug":
        with running_werkzeug(per_file_app()) as port:
            yield port
    else:
        with gunicorn(tmp_path / "gunicorn.log", "per_file_app:per_file_app()", "gthread",
                      "--threads", "4") as port:
            yield port


def files(tmp_path: Path) -> List[Path]:
    paths = []
    for n, size in enumerate(SIZES):
        path = tmp_path / f"file{n}.bin"
        path.write_bytes(bytes([n]) * size)
        paths.append(path)
    return paths


def submit(browser: Any, page: str, paths: List[Path], throughput: int) -> None:
    """Open *page*, throttle uploads to *throughput* bytes/s, pick *paths* and submit."""
    browser.get(page)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": throughput})
    for input_, path in zip(browser.find_elements(By.CSS_SELECTOR, "input[type=file]"), paths):
        input_.send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


@recent_werkzeug
@pytest.mark.parametrize("kind", ["ours", "werkzeug", "gunicorn-gthread"])
def test_a_bar_per_file_reaches_100_in_order(kind: str, tmp_path: Path) -> None:
    paths = files(tmp_path)
    with served(kind, tmp_path) as port, chrome(tmp_path / "profile") as browser:
        submit(browser, f"http://{HOST}:{port}/", paths, UPLOAD_THROUGHPUT)
        result = wait_for(browser, 'return document.getElementById("result").textContent',
                          deadline=60)
        answer = wait_for(browser, "return window.answer", deadline=10)
        samples: List[List[int]] = browser.execute_script("return window.samples")
        bars: Any = browser.execute_script(
            "return [0, 1, 2].map(function (i) { return document.getElementById('bar' + i)"
            ".value; })")
    assert result == "done", (result, samples[-3:])
    assert int(answer) > sum(SIZES)  # the whole form reached the application
    assert bars == [100, 100, 100]
    for n in range(3):  # seen part-way, each of them
        assert any(0 < sample[n] < 100 for sample in samples), (n, samples)
    for sample in samples:  # in order: a file starts once the one before it is complete
        for n in range(1, 3):
            assert sample[n] == 0 or sample[n - 1] == 100, samples


def test_the_page_cancels_its_upload(tmp_path: Path) -> None:
    paths = files(tmp_path)
    token = "browser-cancel-token-0123456789"
    with running(page_app, mailbox=True, publish_token=token) as (_, port), \
            chrome(tmp_path / "profile") as browser:
        submit(browser, f"http://{HOST}:{port}/?token={token}", paths, MiB)
        progress_id = wait_for(browser, "return window.job && window.job.id")
        wait_until(lambda: probe(port, progress_id)["state"] == "uploading")
        answer = browser.execute_async_script(
            "var done = arguments[0];"
            "window.job.cancel(function (ok, status) { done([ok, status]); });")
        result = wait_for(browser, 'return document.getElementById("result").textContent')
        final = probe(port, progress_id)
    assert answer == [True, 200]
    assert result == "failed cancelled"
    assert (final["state"], final["reason"]) == ("error", "cancelled")
    assert final["received"] < sum(SIZES)
