"""Operations shared by several processes: gunicorn with three ``gthread``
workers and the Redis backend on a real redis-server.  An operation runs
in the worker that took its request; its monitor is read, long-polled,
followed to the final response and cancelled through every worker."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Dict, Iterator, List

import pytest
import requests

from gunicorn_support import Gunicorn, running_gunicorn
from operations_apps import RESULT
from redis_support import RedisServer
from server_support import HOST, wait_until

WORKERS = 3


@pytest.fixture(scope="module")
def served(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    env = {"WSGIPROGRESS_BACKEND": redis.url, "WSGIPROGRESS_PREFIX": "ops-gunicorn:"}
    log = tmp_path_factory.mktemp("gunicorn") / "operations.log"
    with running_gunicorn(log, "operations_apps:make_app()", "gthread", "--threads", "4",
                          workers=WORKERS, env=env) as server:
        wait_until(lambda: len(server.workers()) == WORKERS, 30)
        yield server


def base_of(server: Gunicorn) -> str:
    return f"http://{HOST}:{server.port}"


def test_the_monitor_follows_the_steps_from_any_worker(served: Gunicorn) -> None:
    base = base_of(served)
    wool = b"w" * 500
    answer = requests.post(base + "/knit", data=wool, timeout=15,
                           headers={"Prefer": "respond-async, wait=1"}, allow_redirects=False)
    assert answer.status_code == 202, answer.text
    location = base + answer.headers["Location"]
    polled = [answer.json()["steps"]["done"]]
    answered_by = {answer.headers["X-Worker"]}
    while True:
        start = time.monotonic()
        monitor = requests.get(location + "?wait=10", allow_redirects=False, timeout=15,
                               headers={"Connection": "close"})
        # woken through Redis at the next step, whichever worker holds the poll
        assert time.monotonic() - start < 2.5
        answered_by.add(monitor.headers["X-Worker"])
        if monitor.status_code == 303:
            break
        polled.append(monitor.json()["steps"]["done"])
    assert polled == [1, 2, 3]
    final = requests.get(base + monitor.headers["Location"], timeout=5)
    assert (final.status_code, final.content, final.headers["X-Sweaters"]) == \
        (201, RESULT % len(wool), "3")

    # every worker reads it
    assert {r.status_code for r in from_every_worker(served, location).values()} == {303}


def from_every_worker(served: Gunicorn, url: str) -> Dict[str, requests.Response]:
    """GET *url* on fresh connections until every worker has answered: the
    last answer of each, by its pid."""
    answers: Dict[str, requests.Response] = {}

    def burst() -> bool:
        def read() -> None:
            reply = requests.get(url, allow_redirects=False, timeout=5,
                                 headers={"Connection": "close"})
            answers[reply.headers["X-Worker"]] = reply
        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        return set(answers) >= {str(pid) for pid in served.workers()}
    wait_until(burst, 20, interval=0)
    return answers


def test_cancel_through_another_worker(served: Gunicorn) -> None:
    base = base_of(served)
    close = {"Connection": "close"}  # a fresh connection: any worker may take it
    elsewhere: List[str] = []
    for _ in range(20):  # until one cancel went to a worker the operation does not run in
        answer = requests.post(base + "/knit", headers={"Prefer": "respond-async", **close},
                               timeout=5, allow_redirects=False)
        assert answer.status_code == 202
        location = base + answer.headers["Location"]
        cancelled = requests.delete(location, timeout=5, headers=close)
        assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
        # the application saw the flag and stopped; waited for, so that the
        # operations of this loop never fill a worker's operation threads (past
        # them a request runs as usual and answers 201)
        status = wait_until(lambda at=location: requests.get(at, timeout=5).json().get("status"),
                            10)
        assert status == 409
        if cancelled.headers["X-Worker"] != answer.headers["X-Worker"]:
            elsewhere.append(location)
            break
    assert elsewhere, "every cancel went to the operation's own worker"


def test_the_probe_of_an_accepted_request_follows_it_from_any_worker(
        served: Gunicorn) -> None:
    base = base_of(served)
    progress_id = uuid.uuid4().hex
    close = {"Connection": "close"}  # a fresh connection: any worker may take it
    answer = requests.post(f"{base}/knit?X-Progress-ID={progress_id}", data=b"w" * 500,
                           headers={"Prefer": "respond-async, wait=0", **close}, timeout=5)
    assert answer.status_code == 202
    probe = f"{base}/progress?X-Progress-ID={progress_id}"
    seen = []
    while not seen or seen[-1][0] not in ("done", "error"):
        entry = requests.get(probe + "&wait=10", headers=close, timeout=15).json()
        seen.append((entry["state"], (entry.get("steps") or {}).get("done"),
                     entry["status"]))
    assert seen[-4:] == [("processing", 1, None), ("processing", 2, None),
                         ("processing", 3, None), ("done", 3, 201)], seen
    ended = {(r.json()["state"], r.json()["status"])
             for r in from_every_worker(served, probe).values()}
    assert ended == {("done", 201)}


def test_unknown_ids_are_404(served: Gunicorn) -> None:
    reply = requests.get(base_of(served) + "/operations/" + "A" * 32, timeout=5)
    assert reply.status_code == 404
