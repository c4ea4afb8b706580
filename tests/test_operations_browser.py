"""A real browser follows a long-running operation: headless Chromium opens
the Flask operations example under our server and under werkzeug, presses
"Knit", and the page shows the application's steps as they happen (from the
monitor's event stream), then the final response (from the 303's location).
Cancel stops the application.

Needs Debian's chromium and chromium-driver (see ``test_browser.py``).
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from selenium.webdriver.common.by import By
from test_browser import chrome, wait_for

from wsgiprogress.middleware import ProgressMiddleware

from server_support import HOST, running, running_werkzeug

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.flask_operations import create_app  # noqa: E402

STEP = 0.7
PAGE_STATE = """
return {state: document.getElementById("state").textContent,
        bar: document.getElementById("bar").value,
        steps: Array.prototype.map.call(document.querySelectorAll("#steps li"),
                                        function (li) { return li.textContent; }),
        result: document.getElementById("result").textContent};
"""


@pytest.fixture(params=["server", "werkzeug"])
def door(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def serving(door: str, step: float) -> Iterator[str]:
    """The example, each step *step* seconds long, behind *door*; yields its URL."""
    app = create_app({"KNIT_SECONDS": step})
    if door == "server":
        with running(app) as (_, port):
            yield f"http://{HOST}:{port}"
    else:
        assert isinstance(app.wsgi_app, ProgressMiddleware)
        with running_werkzeug(app) as port:
            yield f"http://{HOST}:{port}"


def follow(driver: Any, until: Callable[[Dict[str, Any]], bool],
           deadline: float = 15.0) -> List[Dict[str, Any]]:
    """The page's state, sampled until *until* holds for a sample (the last)."""
    samples: List[Dict[str, Any]] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        samples.append(driver.execute_script(PAGE_STATE))
        if until(samples[-1]):
            return samples
        time.sleep(0.05)
    pytest.fail(f"the page never got there: {samples[-1:]}")


def test_the_page_shows_each_step_then_the_result(door: str, tmp_path: Path) -> None:
    with serving(door, STEP) as base, chrome(tmp_path / "profile") as driver:
        driver.get(base + "/")
        started = time.monotonic()
        driver.find_element(By.ID, "knit").click()
        samples = follow(driver, lambda s: s["result"] != "")
        final = samples[-1]
        assert final["steps"] == ["1/3 Casting on", "2/3 Knitting sweaters", "3/3 Binding off"]
        assert final["result"].replace(" ", "").strip() == '{"sweaters":3}'
        assert final["state"] == "done" and final["bar"] == 3
        # the steps appeared one by one while the work went on, not at the end
        counts = [len(sample["steps"]) for sample in samples]
        assert {1, 2} <= set(counts), counts
        assert time.monotonic() - started >= 3 * STEP


def test_cancel_stops_the_application(door: str, tmp_path: Path) -> None:
    # long steps: the click lands before the last one, even on a loaded machine
    with serving(door, 3 * STEP) as base, chrome(tmp_path / "profile") as driver:
        driver.get(base + "/")
        driver.find_element(By.ID, "knit").click()
        follow(driver, lambda s: len(s["steps"]) == 1)
        driver.find_element(By.ID, "cancel").click()
        final = follow(driver, lambda s: s["result"] != "", deadline=20)[-1]
        assert final["result"] == "cancelled" and final["state"] == "cancelled"
        # it stopped at its next step (the second, unless the click came late)
        assert final["steps"][0] == "1/3 Casting on" and len(final["steps"]) < 3
        wait_for(driver, 'return document.getElementById("knit").disabled === false')
