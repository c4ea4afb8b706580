"""Long-running operations over real sockets, at both front doors (our
server, and the middleware under werkzeug): ``Prefer: respond-async`` → 202
and a status monitor that follows the application's steps (long-poll and
event stream), 303 to the final response byte for byte, cancellation,
bounds; ``102 Processing`` on our server only, and never unasked (requests,
curl)."""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import requests

from wsgiprogress import ProgressMiddleware

from operations_apps import RESULT, SEEN, big, slow
from server_support import (
    HOST,
    MiB,
    follow_events,
    probe,
    running,
    running_werkzeug,
    wait_until,
)

#: The application's own headers, which every copy of its answer carries.
APP_HEADERS = ("Content-Type", "Content-Length", "X-Sweaters", "Set-Cookie")
WOOL = b"w" * 1000


@contextlib.contextmanager
def front_door(kind: str, app: Any = slow, **settings: Any) -> Iterator[str]:
    """*app* with operations on, behind *kind*; yields the base URL."""
    settings.setdefault("operations", True)
    if kind == "server":
        with running(app, threads=6, **settings) as (_, port):
            yield f"http://{HOST}:{port}"
    else:
        with running_werkzeug(ProgressMiddleware(app, **settings)) as port:
            yield f"http://{HOST}:{port}"


@pytest.fixture(params=["server", "werkzeug"])
def door(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def knit(base: str, prefer: str = "", **headers: str) -> Tuple[requests.Response, float, str]:
    """POST the wool; returns the answer, its seconds and the run's name."""
    run = uuid.uuid4().hex
    if prefer:
        headers["Prefer"] = prefer
    start = time.monotonic()
    answer = requests.post(base + "/knit", data=WOOL, headers={"X-Run": run, **headers},
                           allow_redirects=False, timeout=15)
    return answer, time.monotonic() - start, run


def sse_states(base: str, location: str, out: List[Dict[str, Any]]) -> threading.Thread:
    """Reads the monitor's event stream into *out* until the operation ended."""
    return follow_events(int(base.rsplit(":", 1)[1]), location,
                         lambda event: event["state"] != "running", out)


def test_respond_async_then_the_monitor_follows_the_steps_then_303(door: str) -> None:
    with front_door(door) as base:
        direct, direct_seconds, _ = knit(base)
        answer, seconds, _ = knit(base, "respond-async, wait=1")
        assert answer.status_code == 202, answer.text
        assert 0.9 <= seconds < 2.0, seconds
        assert 2.9 <= direct_seconds, direct_seconds  # without the preference: as today
        assert answer.headers["Preference-Applied"] == "respond-async, wait=1"
        assert answer.headers["Retry-After"] == "1"
        location = answer.headers["Location"]
        assert answer.headers["Content-Location"] == location
        assert location.startswith("/operations/") and len(location) >= len("/operations/") + 22
        accepted = answer.json()
        assert accepted["state"] == "running" and accepted["steps"] == \
            {"done": 1, "total": 3, "label": "Knitting sweaters"}
        streamed: List[Dict[str, Any]] = []
        stream = sse_states(base, location, streamed)
        polled = [accepted["steps"]["done"]]
        while True:  # each long-poll answers on the next change
            monitor = requests.get(base + location + "?wait=10", allow_redirects=False,
                                   timeout=15)
            if monitor.status_code == 303:
                break
            assert monitor.status_code == 200, monitor.text
            state = monitor.json()
            assert monitor.headers["Progress"] == \
                f'{state["steps"]["done"]}/3 "Knitting sweaters"'
            assert monitor.headers["Retry-After"] == "1"
            polled.append(state["steps"]["done"])
        assert polled == [1, 2, 3], polled
        done = monitor.json()
        assert (done["state"], done["status"]) == ("done", 201)
        assert monitor.headers["Location"] == location + "/response"
        stream.join(10)
        steps = [event["steps"]["done"] for event in streamed]
        assert steps == sorted(steps) and {1, 2, 3} <= set(steps), streamed
        assert (streamed[-1]["state"], streamed[-1]["status"]) == ("done", 201)
        final = requests.get(base + monitor.headers["Location"], timeout=5)
        assert final.status_code == direct.status_code == 201
        assert final.content == direct.content == RESULT % len(WOOL)
        assert [(n, final.headers[n]) for n in APP_HEADERS] == \
            [(n, direct.headers[n]) for n in APP_HEADERS]
        followed = requests.get(base + location, timeout=5)  # clients that follow 303
        assert (followed.status_code, followed.content) == (201, final.content)
        message = requests.get(base + location + "/response",
                               headers={"Accept": "message/http"}, timeout=5)
        assert message.headers["Content-Type"] == "message/http"
        assert message.content == (
            b"HTTP/1.1 201 Created\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nX-Sweaters: 3\r\nSet-Cookie: yarn=red; Path=/\r\n\r\n"
            % len(final.content) + final.content)
        assert requests.delete(base + location, timeout=5).status_code == 204
        assert requests.get(base + location, timeout=5).status_code == 404
        assert requests.get(base + location + "/response", timeout=5).status_code == 404


@pytest.mark.parametrize(("prefer", "applied"), [
    pytest.param("respond-async, wait=30", False, id="in-time"),
    pytest.param("respond-async, wait=soon", False, id="malformed-wait"),
    pytest.param("respond-async", True, id="no-wait"),
    pytest.param("respond-async, wait=0", True, id="wait-0"),
])
def test_the_preference_is_a_hint(prefer: str, applied: bool) -> None:
    with front_door("server", operations_max_wait=5) as base:
        answer, seconds, _ = knit(base, prefer)
        if applied:
            assert answer.status_code == 202 and seconds < 0.5, (answer, seconds)
            assert answer.headers["Preference-Applied"] == prefer
        else:  # the application's own answer, as without the preference
            assert (answer.status_code, answer.content) == (201, RESULT % len(WOOL))
            assert "Preference-Applied" not in answer.headers


@pytest.mark.parametrize("wait", ["30", "99999999999"])  # delta-seconds of any length
def test_wait_is_capped_by_the_setting(wait: str) -> None:
    with front_door("server", operations_max_wait=1) as base:
        answer, seconds, _ = knit(base, f"respond-async, wait={wait}")
        assert answer.status_code == 202 and 0.9 <= seconds < 2.0, (answer, seconds)
        assert answer.headers["Preference-Applied"] == "respond-async, wait=1"


def test_cancel_reaches_the_application(door: str) -> None:
    with front_door(door) as base:
        answer, _, run = knit(base, "respond-async")
        location = base + answer.headers["Location"]
        cancelled = requests.delete(location, timeout=5)
        assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
        wait_until(lambda: "cancelled" in SEEN.get(run, ()), 5)
        state = wait_until(lambda: requests.get(location, timeout=5).json().get("status"), 5)
        monitor = requests.get(location, allow_redirects=False, timeout=5).json()
        assert (state, monitor["state"]) == (409, "cancelled")
        assert SEEN[run] == ["cancelled"]  # it stopped before its first step
        response = requests.get(location + "/response", timeout=5)
        assert (response.status_code, response.text) == \
            (410, "cancelled: its final response is not kept\n")
        assert requests.delete(location, timeout=5).status_code == 204
        assert requests.get(location, timeout=5).status_code == 404


def test_the_probe_shows_processing_with_the_steps(door: str) -> None:
    with front_door(door) as base:
        progress_id = uuid.uuid4().hex
        port = int(base.rsplit(":", 1)[1])
        worker = threading.Thread(target=requests.post, daemon=True, kwargs=dict(
            url=f"{base}/knit?X-Progress-ID={progress_id}", data=WOOL, timeout=15))
        worker.start()
        entry = wait_until(lambda: (lambda e: e if (e.get("steps") or {}).get("done") == 2
                                    else None)(probe(port, progress_id)), 5)
        assert entry["state"] == "processing" and entry["received"] == len(WOOL)
        assert entry["steps"] == {"done": 2, "total": 3, "label": "Knitting sweaters"}
        worker.join(10)


def test_a_full_pool_runs_the_request_as_usual_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wsgiprogress")
    with front_door("server", operations_threads=1) as base:
        first, _, _ = knit(base, "respond-async")
        assert first.status_code == 202
        answers: List[requests.Response] = []
        others = [threading.Thread(target=lambda: answers.append(
            knit(base, "respond-async")[0])) for _ in range(2)]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join(15)
        assert [(a.status_code, a.content) for a in answers] == [(201, RESULT % 1000)] * 2
        busy = [r for r in caplog.records if "operation threads busy" in r.getMessage()]
        assert len(busy) == 1, [r.getMessage() for r in busy]


def test_kept_responses_are_bounded_and_expire() -> None:
    settings = dict(app=big, max_kept_response="1M", max_kept_bytes="1M", operations_ttl=2)
    with front_door("server", **settings) as base:
        kept = requests.post(base + "/big", headers={"Prefer": "respond-async",
                                                     "X-Pieces": "16"}, timeout=5)
        dropped = requests.post(base + "/big", headers={"Prefer": "respond-async",
                                                        "X-Pieces": "17"}, timeout=5)
        for answer in (kept, dropped):  # requests follows nothing on a 202
            assert answer.status_code == 202
        done = wait_until(lambda: (lambda r: r if r.status_code == 303 else None)(
            requests.get(base + kept.headers["Location"], allow_redirects=False)), 5)
        body = requests.get(base + done.headers["Location"], timeout=5).content
        assert body == bytes(range(256)) * 256 * 16  # 1 MiB, from a file on disk
        gone = wait_until(lambda: (lambda r: r if r.json()["state"] == "done" else None)(
            requests.get(base + dropped.headers["Location"], allow_redirects=False)), 5)
        assert gone.status_code == 200  # no 303: nothing was kept
        response = requests.get(base + dropped.headers["Location"] + "/response", timeout=5)
        assert response.status_code == 410 and "max_kept_response" in response.text
        wait_until(lambda: requests.get(base + kept.headers["Location"],
                                        timeout=5).status_code == 404, 6)


def test_the_authorize_hook_guards_reading_and_cancelling() -> None:
    def authorize(environ: Dict[str, Any], name: str, action: str) -> bool:
        return environ.get("HTTP_X_ROLE") == "owner" or action == "operation"

    app = ProgressMiddleware(slow, operations=True, authorize=authorize)
    with running_werkzeug(app) as port:
        base = f"http://{HOST}:{port}"
        answer, _, _ = knit(base, "respond-async")
        location = base + answer.headers["Location"]
        assert requests.get(location, timeout=5).status_code == 200
        assert requests.delete(location, timeout=5).status_code == 403
        assert requests.delete(location, headers={"X-Role": "owner"}, timeout=5).status_code \
            == 202
        assert requests.get(base + "/operations/" + "A" * 32, timeout=5).status_code == 404
        for path in ("/other", "/response/x", "%2F..%2Fetc"):
            assert requests.get(location + path, timeout=5).status_code == 404, path
        assert requests.get(base + "/operations/short", timeout=5).status_code == 404
        assert requests.put(location, timeout=5).status_code == 405


# -- 102 Processing: our server only, only when asked -----------------------------------

def raw(base: str, request: bytes, until: bytes = b"knitted", seconds: float = 8) -> bytes:
    with socket.create_connection((HOST, int(base.rsplit(":", 1)[1])), timeout=seconds) as sock:
        sock.sendall(request)
        received = b""
        end = time.monotonic() + seconds
        while until not in received and time.monotonic() < end:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    return received


def post(version: str, prefer: str) -> bytes:
    return (f"POST /knit HTTP/{version}\r\nHost: x\r\nPrefer: {prefer}\r\n"
            f"Content-Length: {len(WOOL)}\r\n\r\n").encode() + WOOL


def test_prefer_processing_sends_102_with_progress_on_our_server() -> None:
    with front_door("server") as base:
        reply = raw(base, post("1.1", "processing"))
        heads = reply.split(b"\r\n\r\n")
        interim = [head for head in heads if head.startswith(b"HTTP/1.1 102")]
        assert interim[0].startswith(b"HTTP/1.1 102 Processing\r\nLocation: /operations/")
        assert interim[0].endswith(b"\r\nProgress: 0/")
        assert [head.split(b"\r\n")[-1] for head in interim[1:]] == [
            b'Progress: %d/3 "Knitting sweaters"' % n for n in (1, 2, 3)]
        assert b"Location" not in b"".join(interim[1:])
        final = heads[len(interim)]
        assert final.startswith(b"HTTP/1.1 201 Created") and reply.endswith(RESULT % 1000)
        location = interim[0].split(b"\r\n")[1].split(b": ")[1].decode()
        monitor = requests.get(base + location, timeout=5).json()
        assert (monitor["state"], monitor["status"], monitor["steps"]["done"]) == \
            ("done", 201, 3)


def test_processing_with_respond_async_stops_the_102s_at_the_202() -> None:
    with front_door("server") as base:
        reply = raw(base, post("1.1", "processing, respond-async, wait=1"), until=b"}")
        heads = reply.split(b"\r\n\r\n")
        assert [h.split(b"\r\n")[0] for h in heads[:-1]] == [
            b"HTTP/1.1 102 Processing", b"HTTP/1.1 102 Processing", b"HTTP/1.1 202 Accepted"]
        assert b"Preference-Applied: respond-async, wait=1, processing" in heads[2]


def test_no_102_to_http_1_0_nor_under_the_middleware() -> None:
    with front_door("server") as base:
        reply = raw(base, post("1.0", "processing"))
        assert reply.startswith(b"HTTP/1.0 201 Created") and b" 102 " not in reply
    with front_door("werkzeug") as base:
        reply = raw(base, post("1.1", "processing"))
        assert b" 201 " in reply.split(b"\r\n")[0] and b" 102 " not in reply


def test_clients_that_did_not_ask_never_see_a_1xx_but_100(tmp_path: Path) -> None:
    with front_door("server") as base:
        answer = requests.post(base + "/knit?X-Progress-ID=" + uuid.uuid4().hex, data=WOOL,
                               timeout=15)
        assert (answer.status_code, answer.content) == (201, RESULT % 1000)
        wool = tmp_path / "wool"
        wool.write_bytes(b"w" * (2 * MiB))  # curl sends Expect: 100-continue
        curl = subprocess.run(
            ["curl", "-sS", "-v", "--data-binary", f"@{wool}", "-H", "Expect: 100-continue",
             base + "/knit"], capture_output=True, timeout=30, check=True)
        statuses = [line.split()[2] for line in curl.stderr.decode().splitlines()
                    if line.startswith("< HTTP/")]
        assert statuses == ["100", "201"], curl.stderr.decode()
        assert curl.stdout == RESULT % (2 * MiB)


def test_operations_off_leaves_prefer_alone() -> None:
    def plain(environ: Dict[str, Any], start_response: Any) -> Any:
        assert "wsgiprogress.operation" not in environ
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    with front_door("server", app=plain, operations=False) as base:
        reply = raw(base, post("1.1", "processing, respond-async, wait=0"), until=b"ok")
        assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"ok")
        assert requests.get(base + "/operations/" + "A" * 32, timeout=5).content == b"ok"


def test_monitor_long_polls_park_without_a_thread_on_our_server() -> None:
    release = threading.Event()

    def still(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        release.wait(30)  # reports nothing: its monitor does not change meanwhile
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done\n"]
    with running(still, operations=True, threads=2) as (server, port):
        base = f"http://{HOST}:{port}"
        answer, _, _ = knit(base, "respond-async")
        location = answer.headers["Location"]
        # each long-poll waits its 20 s for a change
        waiting = [socket.create_connection((HOST, port), timeout=5) for _ in range(8)]
        try:
            for sock in waiting:
                sock.sendall(f"GET {location}?wait=20 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            wait_until(lambda: len(server.progress_front.waiters) == len(waiting), 5)
            start = time.monotonic()
            for _ in range(3):  # two threads, eight waiting clients: none of them holds one
                reply = requests.get(base + location, allow_redirects=False, timeout=5)
                assert reply.status_code == 200 and reply.json()["state"] == "running"
            assert time.monotonic() - start < 2
        finally:
            release.set()
            for sock in waiting:
                sock.close()


def test_a_page_on_another_origin_may_read_and_cancel_when_allowed() -> None:
    with front_door("werkzeug", allowed_origins="https://shop.example") as base:
        answer, _, _ = knit(base, "respond-async", Origin="https://shop.example")
        location = base + answer.headers["Location"]
        origin = {"Origin": "https://shop.example"}
        preflight = requests.options(location, headers={
            **origin, "Access-Control-Request-Method": "DELETE"}, timeout=5)
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD, DELETE"
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        read = requests.get(location, headers=origin, timeout=5)
        assert read.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "Progress" in read.headers["Access-Control-Expose-Headers"]
        other = requests.get(location, headers={"Origin": "https://evil.example"}, timeout=5)
        assert "Access-Control-Allow-Origin" not in other.headers


def test_a_websocket_on_the_monitor_follows_the_steps_on_our_server() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with front_door("server", websocket=True) as base:
        answer, _, _ = knit(base, "respond-async")
        location = answer.headers["Location"]
        snapshots: List[Dict[str, Any]] = []
        with connect(base.replace("http:", "ws:") + location) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    snapshots.append(json.loads(ws.recv(timeout=10)))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        steps = [s["steps"]["done"] for s in snapshots]
        assert steps == sorted(steps) and {1, 2, 3} <= set(steps), snapshots
        assert (snapshots[-1]["state"], snapshots[-1]["status"]) == ("done", 201)
        assert requests.delete(base + location, timeout=5).status_code == 204
        with connect(base.replace("http:", "ws:") + location) as ws:  # forgotten: null, over
            assert json.loads(ws.recv(timeout=5)) is None
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
