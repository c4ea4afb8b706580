"""Operations at their edges, over real sockets at both front doors (our
server, and the middleware under werkzeug), with a real redis-server where
it matters: Redis gone while an operation runs (the operation and its
``202 Accepted`` go on: tracking never breaks the request, and a finish
Redis missed is written when it is back), an answer written past what can
be held, ``HEAD``, long-polls of monitors that can no longer change."""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List

import pytest
import requests
from test_operations_probe import front_door as probe_front_door

from wsgiprogress.backends.redis import operations as redis_operations

from redis_support import RedisServer, redis_server
from server_support import (
    HOST,
    exchange,
    start_process,
    status_of,
    wait_until,
)


@contextlib.contextmanager
def front_door(kind: str, app: Any, **settings: Any) -> Iterator[str]:
    """*app* with operations on behind *kind*; yields the base URL."""
    with probe_front_door(kind, app, **settings) as (port, _):
        yield f"http://{HOST}:{port}"


@pytest.fixture(params=["server", "werkzeug"])
def door(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test, which it may stop."""
    with redis_server() as server:
        yield server


def test_redis_gone_before_the_202_still_answers_202_and_the_work_ends(
        door: str, own_redis: RedisServer) -> None:
    """Redis stops after the monitor was made and before the request is
    answered: the client still gets its 202 with the monitor's location, and
    the application runs to its end."""
    ended = threading.Event()
    release = threading.Event()

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        operation = environ["wsgiprogress.operation"]
        own_redis.stop()
        operation.report(1, 2, "Redis is gone")
        release.wait(10)
        assert not operation.cancelled
        start_response("200 OK", [("Content-Type", "text/plain")])
        ended.set()
        return [b"done anyway\n"]

    with front_door(door, app, backend=own_redis.url, key_prefix="gone:") as base:
        answer = requests.post(base + "/work", data=b"x",
                               headers={"Prefer": "respond-async, wait=1"}, timeout=10)
        release.set()
        assert answer.status_code == 202, answer.text
        location = answer.headers["Location"]
        assert location.startswith("/operations/")
        assert answer.headers["Content-Location"] == location
        assert answer.headers["Preference-Applied"] == "respond-async, wait=1"
        body = answer.json()
        assert (body["id"], body["state"]) == (location.rsplit("/", 1)[1], "running")
        assert ended.wait(10)
        # the monitor says the store is away, briefly, instead of a wrong state
        monitor = requests.get(base + location, timeout=10)
        assert monitor.status_code == 503
        assert monitor.headers["Retry-After"]



def _writes(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Writes ``X-Write`` bytes through ``write()``, then returns 1000 more."""
    size = int(environ["HTTP_X_WRITE"])
    write = start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(size + 1000))])
    write(b"a" * size)
    return [b"b" * 1000]


def test_a_write_past_max_kept_response_before_returning_answers_202_not_a_cut_body(
        door: str) -> None:
    """The application writes more than ``max_kept_response`` through the
    ``write()`` callable before it returns: that answer cannot be held for
    the client, so the client gets its 202 at once (never the answer with
    its first bytes lost), and the monitor says the answer was not kept."""
    prefer = {"Prefer": "respond-async, wait=5"}
    with front_door(door, _writes, max_kept_response=1000) as base:
        # within the bound the application's answer is the response, whole
        answer = requests.post(base + "/x", data=b"x", headers={**prefer, "X-Write": "900"},
                               timeout=10)
        assert (answer.status_code, answer.content) == (200, b"a" * 900 + b"b" * 1000)
        start = time.monotonic()
        answer = requests.post(base + "/x", data=b"x", headers={**prefer, "X-Write": "2000"},
                               timeout=10)
        assert answer.status_code == 202, answer.text
        assert time.monotonic() - start < 2.0
        location = base + answer.headers["Location"]
        status = wait_until(lambda: requests.get(location, timeout=5).json().get("status"))
        assert status == 200
        assert requests.get(location + "/response", timeout=5).status_code == 410


def test_a_finish_redis_missed_is_written_when_it_is_back(
        door: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis is away (restarted, its data kept) at the moment the application
    answers: the finish is written once Redis is back, and the monitor leads
    to the answer, never showing the operation failed."""
    monkeypatch.setattr(redis_operations, "BEAT", 0.2)
    monkeypatch.setattr(redis_operations, "STALE_AFTER", 5.0)
    answered = threading.Event()
    release = threading.Event()

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        release.wait(10)
        start_response("201 Created", [("Content-Type", "text/plain")])
        answered.set()
        return [b"made while Redis was away\n"]

    with redis_server(persist=True) as redis, \
            front_door(door, app, backend=redis.url, key_prefix="back:") as base:
        answer = requests.post(base + "/work", data=b"x",
                               headers={"Prefer": "respond-async, wait=0"}, timeout=10)
        assert answer.status_code == 202, answer.text
        location = base + answer.headers["Location"]
        redis.stop()
        release.set()
        assert answered.wait(10)
        time.sleep(0.3)  # the finish is tried, and fails
        redis.start()
        seen: List[str] = []

        def ended() -> bool:
            monitor = requests.get(location, allow_redirects=False, timeout=5)
            if monitor.status_code == 503:
                return False
            state = monitor.json()["state"]
            if not seen or seen[-1] != state:
                seen.append(state)
            return monitor.status_code == 303
        wait_until(ended, timeout=10, interval=0.1, message=lambda: f"states seen: {seen}")
        assert set(seen) <= {"running", "done"}, seen
        result = requests.get(location, timeout=5)
        assert (result.status_code, result.text) == (201, "made while Redis was away\n")



def _hello(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    threading.Event().wait(0.5)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def test_the_202_to_a_head_has_no_body(door: str) -> None:
    """``HEAD`` with ``Prefer: respond-async`` answered 202: headers only
    (RFC 9110 §9.3.2), so the next answer on the connection is read right."""
    with front_door(door, _hello) as base:
        reply = exchange(int(base.rsplit(":", 1)[1]),
                         b"HEAD /x HTTP/1.1\r\nHost: a\r\nPrefer: respond-async, wait=0\r\n\r\n"
                         b"GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                         read_for=5)
        head, _, rest = reply.partition(b"\r\n\r\n")
        assert status_of(head) == 202 and b"\r\nLocation: /operations/" in head, reply
        assert rest == b"" or rest.startswith(b"HTTP/1.1 200 OK\r\n"), reply



def test_a_long_poll_of_a_monitor_that_cannot_change_answers_at_once(door: str) -> None:
    """``wait=`` answers on the next change; an ended operation's monitor
    (or an unknown one: ids are the server's) has none coming, so it
    answers at once instead of after the whole wait."""
    with front_door(door, _hello) as base:
        answer = requests.post(base + "/x", data=b"x",
                               headers={"Prefer": "respond-async, wait=0"}, timeout=10)
        location = base + answer.headers["Location"]
        wait_until(lambda: requests.get(location, allow_redirects=False,
                                        timeout=5).status_code == 303, timeout=10)
        for url, status in ((location, 303), (base + "/operations/" + "u" * 32, 404)):
            start = time.monotonic()
            polled = requests.get(url + "?wait=5", allow_redirects=False, timeout=10)
            assert polled.status_code == status
            assert time.monotonic() - start < 1.0, url



def _follow(url: str, events: List[Dict[str, Any]]) -> None:
    """Reads the event stream at *url* into *events* until the server ends it."""
    with requests.get(url, headers={"Accept": "text/event-stream"}, stream=True,
                      timeout=10) as stream:
        for line in stream.iter_lines():
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))


def _follow_socket(url: str, events: List[Any]) -> None:
    """Reads the WebSocket at *url* into *events* until the server closes it;
    its close code last."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url.replace("http:", "ws:")) as ws:
        try:
            while True:
                events.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed as closed:
            events.append(closed.rcvd.code if closed.rcvd is not None else None)
        except TimeoutError:
            events.append("no message for 10 s")


def test_the_operation_of_a_killed_server_process_ends_failed_at_every_monitor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Our server's process is killed while its operation runs: the monitor,
    read through another server on the same Redis, shows it ``error`` after
    ``STALE_AFTER`` (not ``running`` for ever), and its event stream and its
    WebSocket end."""
    beat, stale = 0.2, 1.5
    monkeypatch.setattr(redis_operations, "BEAT", beat)
    monkeypatch.setattr(redis_operations, "STALE_AFTER", stale)
    code = ("import sys; from wsgiprogress.backends.redis import operations as o; "
            f"o.BEAT, o.STALE_AFTER = {beat}, {stale}; "
            "from wsgiprogress.cli import main; main(sys.argv)")
    with redis_server() as redis:
        process, port = start_process(
            [sys.executable, "-c", code, "--listen", f"{HOST}:0", "--backend", redis.url,
             "--key-prefix", "killed:", "--operations", "operations_apps:lingering"])
        try:
            answer = requests.post(f"http://{HOST}:{port}/work", data=b"x",
                                   headers={"Prefer": "respond-async, wait=0"}, timeout=10)
            assert answer.status_code == 202, answer.text
            location = answer.headers["Location"]
            with front_door("server", _hello, backend=redis.url, key_prefix="killed:",
                            sse_keepalive=0.5, websocket=True, websocket_ping=0.5) as other:
                assert requests.get(other + location, timeout=5).json()["steps"]["done"] == 1
                events: List[Dict[str, Any]] = []
                stream = threading.Thread(target=_follow, args=(other + location, events),
                                          daemon=True)
                stream.start()
                socket_events: List[Any] = []
                socket = threading.Thread(target=_follow_socket,
                                          args=(other + location, socket_events), daemon=True)
                socket.start()
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                killed = time.monotonic()
                state = wait_until(lambda: requests.get(other + location, timeout=5).json()
                                   ["state"] != "running" and "ended", timeout=10)
                assert state and time.monotonic() - killed < stale + 1.5
                monitor = requests.get(other + location, timeout=5)
                assert (monitor.status_code, monitor.json()["state"]) == (200, "error")
                assert "Retry-After" not in monitor.headers
                stream.join(10)
                assert not stream.is_alive() and events[-1]["state"] == "error", events
                # a WebSocket too: re-read when pinged, nothing announces the end
                socket.join(10)
                assert not socket.is_alive(), socket_events
                ended, closed = socket_events[-2:]  # then closed: the feed is over
                assert (ended["state"], closed) == ("error", 1000), socket_events
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.mark.parametrize("prefer", [
    pytest.param(b"Prefer: WAIT=0\r\nPrefer: Respond-Async\r\n", id="two-fields-any-case"),
    pytest.param(b'Prefer: return=minimal, foo="a,b;c", respond-async; x=1, wait="0"\r\n',
                 id="unknown-quoted-parameters"),
])
def test_prefer_as_clients_send_it(door: str, prefer: bytes) -> None:
    """RFC 7240 on the wire: several Prefer fields, tokens in any case,
    quoted values, parameters and unknown preferences; only what was
    honoured is in Preference-Applied."""
    with front_door(door, _hello) as base:
        reply = exchange(int(base.rsplit(":", 1)[1]),
                         b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n" + prefer +
                         b"Connection: close\r\n\r\n", read_for=5)
        head = reply.partition(b"\r\n\r\n")[0]
        assert status_of(head) == 202, reply
        assert b"\r\nPreference-Applied: respond-async, wait=0\r\n" in head, reply
        assert b"\r\nVary: Prefer\r\n" in head, reply
