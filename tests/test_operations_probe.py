"""The request's own progress after ``202 Accepted``: its probe (the
X-Progress-ID it was sent with) follows the application that runs on —
``processing`` with the reported steps, in every dialect as far as the
dialect can say it, by long-poll and event stream — and ends when the
application does, with its final status, at both front doors and with the
Redis backend.  The connection that got the 202 no longer ends it."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from http.client import HTTPConnection
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import requests

from wsgiprogress import ProgressMiddleware
from wsgiprogress.progress.table import ProgressTable
from wsgiprogress.progress.tracker import Tracker

from operations_apps import REPORTED, SEEN, slow
from redis_support import RedisServer
from server_support import (
    HOST,
    follow_events,
    probe,
    running,
    running_werkzeug,
    status_of,
    wait_until,
)

WOOL = b"w" * 1000
TOKEN = "knitting-token-" + "k" * 20
STEP_LABEL = "Knitting sweaters"


@contextlib.contextmanager
def front_door(kind: str, app: Any = slow, **settings: Any) -> Iterator[Tuple[int, Any]]:
    """*app* (:func:`slow`) with operations on behind *kind*; yields the port
    and the progress store; closes the front door's stores after."""
    settings.setdefault("operations", True)
    with contextlib.ExitStack() as stack:
        if kind == "server":
            server, port = stack.enter_context(running(app, threads=6, **settings))
            front = server.progress_front
        else:
            app = ProgressMiddleware(app, **settings)
            front = app.front
            port = stack.enter_context(running_werkzeug(app))
        stack.callback(front.close)  # a Redis backend's threads and connections too
        yield port, front.store


@pytest.fixture(params=["server", "werkzeug"])
def door(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def accepted(port: int, prefer: str, progress_id: str) -> Tuple[requests.Response, str]:
    """POST the wool with *prefer* and the progress ID; the 202 and the run."""
    run = uuid.uuid4().hex
    answer = requests.post(f"http://{HOST}:{port}/knit?X-Progress-ID={progress_id}",
                           data=WOOL, headers={"Prefer": prefer, "X-Run": run},
                           allow_redirects=False, timeout=15)
    assert answer.status_code == 202, answer.text
    return answer, run


def raw_probe(port: int, progress_id: str, query: str = "") -> bytes:
    conn = HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", f"/progress?X-Progress-ID={progress_id}{query}")
        return conn.getresponse().read()
    finally:
        conn.close()


def long_polls(port: int, progress_id: str) -> List[Tuple[Dict[str, Any], float]]:
    """Long-poll the probe (``wait=10``) from its current answer until the
    request ended: each answer and when it came."""
    answers = [(probe(port, progress_id), time.monotonic())]
    while answers[-1][0]["state"] not in ("done", "error"):
        answers.append((probe(port, progress_id, "&wait=10", timeout=15), time.monotonic()))
    return answers


def probe_stream(port: int, progress_id: str, out: List[Dict[str, Any]]) -> threading.Thread:
    """Reads the probe's event stream into *out* until the request ended."""
    return follow_events(port, f"/progress?X-Progress-ID={progress_id}",
                         lambda event: event["state"] in ("done", "error"), out)


@pytest.mark.parametrize("prefer", ["respond-async, wait=0", "respond-async, wait=1"])
def test_after_the_202_the_probe_follows_the_steps_then_ends_with_the_final_status(
        door: str, prefer: str) -> None:
    with front_door(door) as (port, store):
        progress_id = uuid.uuid4().hex
        answer, run = accepted(port, prefer, progress_id)
        streamed: List[Dict[str, Any]] = []
        stream = probe_stream(port, progress_id, streamed)
        polled = long_polls(port, progress_id)
        states = [(a["state"], (a.get("steps") or {}).get("done"), a["status"]) for a, _ in polled]
        # the 202 at 0 s comes before the first step (0.5 s), at 1 s after it
        first = [("processing", None, None)] if prefer.endswith("0") else []
        assert states == [*first, ("processing", 1, None), ("processing", 2, None),
                          ("processing", 3, None), ("done", 3, 201)], states
        assert all(a["steps"]["label"] == STEP_LABEL and a["steps"]["total"] == 3
                   for a, _ in polled if a.get("steps"))
        assert polled[-1][0]["received"] == polled[-1][0]["size"] == len(WOOL)
        # each long-poll woke at the step, long before its wait ran out
        reported = REPORTED[run]
        for step in (2, 3):
            woke = next(t for a, t in polled if (a.get("steps") or {}).get("done") == step)
            assert 0 <= woke - reported[step - 1] < 0.9, (step, woke - reported[step - 1])
        stream.join(10)
        seen = [(e["state"], (e.get("steps") or {}).get("done")) for e in streamed]
        assert seen[-1] == ("done", 3) and streamed[-1]["status"] == 201, streamed
        assert {("processing", 1), ("processing", 2), ("processing", 3)} <= set(seen), seen
        monitor = requests.get(f"http://{HOST}:{port}" + answer.headers["Location"],
                               allow_redirects=False, timeout=5)
        assert monitor.status_code == 303  # the monitor ended before the probe said so
        wait_until(lambda: not store.live, 5)  # nothing left behind
        assert store.counts()["running"] == 0


def test_the_nginx_and_lighttpd_dialects_say_what_they_can(door: str) -> None:
    """They have no steps: during them, nginx says ``uploading`` with the whole
    body received and lighttpd ``running``, as for any request its
    application still works on; then ``done``, in their own bytes."""
    with front_door(door) as (port, _):
        progress_id = uuid.uuid4().hex
        _, run = accepted(port, "respond-async, wait=0", progress_id)
        wait_until(lambda: "step 2" in SEEN.get(run, ()), 5)
        during = [raw_probe(port, progress_id, "&dialect=nginx"),
                  raw_probe(port, progress_id, "&dialect=lighttpd"),
                  raw_probe(port, progress_id, "&dialect=nginx&format=legacy")]
        assert probe(port, progress_id)["state"] == "processing"  # they came during it
        assert during == [
            b'{ "state" : "uploading", "received" : 1000, "size" : 1000 }\r\n',
            b'{"state": "running", "received": 1000, "sent": 0, "request_size": 1000, '
            b'"response_size": 0}',
            b"new Object({ 'state' : 'uploading', 'received' : 1000, 'size' : 1000 })\r\n"]
        # the nginx long-poll has nothing to say until the end: it answers then
        start = time.monotonic()
        ended = raw_probe(port, progress_id, "&dialect=nginx&wait=10")
        assert ended == b'{ "state" : "done" }\r\n' and time.monotonic() - start < 4
        assert raw_probe(port, progress_id, "&dialect=lighttpd") == (
            b'{"state": "done", "received": 1000, "sent": 0, "request_size": 1000, '
            b'"response_size": 0}')


def test_the_client_leaving_after_the_202_does_not_end_the_request(door: str) -> None:
    with front_door(door) as (port, _):
        progress_id = uuid.uuid4().hex
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall((f"POST /knit?X-Progress-ID={progress_id} HTTP/1.1\r\nHost: x\r\n"
                          f"Prefer: respond-async\r\nContent-Length: {len(WOOL)}\r\n\r\n"
                          ).encode() + WOOL)
            assert status_of(sock.recv(13)) == 202  # then leaves, the rest unread
        assert probe(port, progress_id)["state"] == "processing"
        polled = long_polls(port, progress_id)
        assert (polled[-1][0]["state"], polled[-1][0]["status"]) == ("done", 201)


def test_a_delete_on_the_probe_cancels_the_operation(door: str) -> None:
    with front_door(door, mailbox=True, publish_token=TOKEN) as (port, store):
        progress_id = uuid.uuid4().hex
        answer, run = accepted(port, "respond-async, wait=1", progress_id)
        cancelled = requests.delete(f"http://{HOST}:{port}/progress?X-Progress-ID={progress_id}",
                                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert cancelled.status_code == 200
        wait_until(lambda: "cancelled" in SEEN.get(run, ()), 5)
        assert SEEN[run] == ["step 1", "cancelled"]
        entry = probe(port, progress_id)
        assert (entry["state"], entry["reason"]) == ("error", "cancelled")
        monitor = f"http://{HOST}:{port}" + answer.headers["Location"]
        record = wait_until(lambda: (lambda r: r if r.get("status") else None)(
            requests.get(monitor, allow_redirects=False, timeout=5).json()), 5)
        assert (record["state"], record["status"]) == ("cancelled", 409)
        wait_until(lambda: not store.live, 5)


def test_a_monitor_cancel_ends_the_probe_cancelled_with_the_status(door: str) -> None:
    with front_door(door) as (port, _):
        progress_id = uuid.uuid4().hex
        answer, run = accepted(port, "respond-async, wait=0", progress_id)
        assert requests.delete(f"http://{HOST}:{port}" + answer.headers["Location"],
                               timeout=5).status_code == 202
        polled = long_polls(port, progress_id)
        final = polled[-1][0]
        assert (final["state"], final["reason"], final["status"]) == ("error", "cancelled", 409)
        assert SEEN[run] == ["cancelled"]


def test_an_application_that_fails_after_the_202_ends_the_probe_app_error() -> None:
    def failing(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        environ["wsgi.input"].read()
        environ["wsgiprogress.operation"].report(1, 2, "Carding")
        threading.Event().wait(0.5)
        raise RuntimeError("out of wool")

    app = ProgressMiddleware(failing, operations=True)
    with running_werkzeug(app) as port:
        progress_id = uuid.uuid4().hex
        requests.post(f"http://{HOST}:{port}/x?X-Progress-ID={progress_id}", data=WOOL,
                      headers={"Prefer": "respond-async"}, timeout=5)
        final = long_polls(port, progress_id)[-1][0]
        assert (final["state"], final["reason"], final["steps"]["done"]) == \
            ("error", "app_error", 1)
        assert not app.store.live


def test_with_redis_another_process_reads_the_steps_and_the_end(redis: RedisServer) -> None:
    """Two servers on one Redis: the request runs on one, its probe is
    long-polled on the other, woken through Redis at each step."""
    settings = dict(backend=redis.url, key_prefix="ops-probe:")
    with front_door("server", **settings) as (port, store), \
            front_door("server", **settings) as (other, _):
        progress_id = uuid.uuid4().hex
        _, run = accepted(port, "respond-async, wait=0", progress_id)
        polled = long_polls(other, progress_id)
        steps = [(a["state"], (a.get("steps") or {}).get("done"), a["status"]) for a, _ in polled]
        assert steps[-4:] == [("processing", 1, None), ("processing", 2, None),
                              ("processing", 3, None), ("done", 3, 201)], steps
        woke = next(t for a, t in polled if (a.get("steps") or {}).get("done") == 2)
        assert 0 <= woke - REPORTED[run][1] < 0.9
        wait_until(lambda: not store.live, 5)


# -- the tracker of a request that outlives its response ----------------------------


@pytest.mark.parametrize(("status", "cancelled", "expected"), [
    pytest.param(201, False, ("done", None, 201), id="done"),
    pytest.param(404, False, ("error", "http_error", 404), id="http-error"),
    pytest.param(None, False, ("error", "app_error", None), id="app-error"),
    pytest.param(409, True, ("error", "cancelled", 409), id="cancelled"),
])
def test_a_detached_tracker_ends_only_when_settled(
        status: Any, cancelled: bool, expected: Tuple[Any, ...]) -> None:
    table = ProgressTable()
    tracker = table.track("detached-" + uuid.uuid4().hex, size=4)
    assert tracker is not None
    tracker.add_received(4)
    stopped: List[bool] = []
    tracker.detach(lambda: stopped.append(True))
    tracker.start_response("202 Accepted", 80)  # the connection's 202 ...
    tracker.add_produced(80)
    tracker.add_sent(80)
    tracker.finish()
    tracker.fail("aborted")  # ... and its end change nothing
    entry = table.read(tracker.id)
    assert (entry.state, entry.status, entry.sent, entry.response_size) == \
        ("processing", None, 0, None)
    tracker.report_steps({"done": 1, "total": 1, "label": None})
    assert table.read(tracker.id).steps == {"done": 1, "total": 1, "label": None}
    tracker.settle(status, cancelled)
    entry = table.get(tracker.id)
    assert (entry.state, entry.reason, entry.status) == expected
    assert not table.live and not stopped
    tracker.settle(200)  # once only
    assert table.get(tracker.id).status == expected[2]


def test_cancelling_a_detached_tracker_cancels_its_operation() -> None:
    table = ProgressTable()
    tracker = table.track("detached-" + uuid.uuid4().hex, size=None)
    assert isinstance(tracker, Tracker)
    stopped: List[bool] = []
    tracker.detach(lambda: stopped.append(True))
    assert tracker.cancel() and stopped == [True]
    assert (table.get(tracker.id).state, table.get(tracker.id).reason) == ("error", "cancelled")
    tracker.settle(409, cancelled=True)  # the application stops later: nothing changes
    assert table.get(tracker.id).status is None
