"""Held-out attack findings (issue 13, item 7): floods of a warning any client
can cause stay a couple of log lines; a frozen Redis never holds a probe for
more than a short deadline; waitress's error path never meets a half-made
parser; reading progress can be restricted (``authorize`` with action
``progress``, ``min_id_length``)."""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import struct
import threading
import time
from http.client import HTTPConnection
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import pytest
import webtest
from waitress.adjustments import Adjustments
from waitress.task import ErrorTask

from wsgiprogress import ProgressMiddleware, ProgressTable
from wsgiprogress.backends import backend_from_url
from wsgiprogress.progress.entry import ProgressEntry
from wsgiprogress.progress.ratelimit import RateLimitedWarning
from wsgiprogress.progress.tracking import TrackingRules
from wsgiprogress.server.channel import ProgressChannel
from wsgiprogress.server.parser import ProgressParser
from wsgiprogress.settings import MIDDLEWARE_SETTINGS, resolve

from redis_support import RedisServer
from server_support import HOST, SlowUpload, exchange, running, wait_for_state, wait_until

ID = "attack-0123456789"
LONG_ID = "0123456789abcdef0123456789abcdef"
_prefixes = itertools.count()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def echo(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def wsgiprogress_lines(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wsgiprogress"]


# -- rate-limited warnings -----------------------------------------------------


def test_a_rate_limited_warning_logs_once_per_interval_with_the_count_held_back(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    warning = RateLimitedWarning("ID %r refused", interval=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="wsgiprogress"):
        assert warning.warn("a") is True
        assert [warning.warn("b") for _ in range(5)] == [False] * 5
        clock.now += 9.9
        assert warning.warn("c") is False
        clock.now += 0.1
        assert warning.warn("d") is True
        clock.now += 10
        assert warning.warn("e") is True
    assert wsgiprogress_lines(caplog) == [
        "ID 'a' refused", "ID 'd' refused; 6 more since the last warning", "ID 'e' refused"]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A progress store of each backend; Redis only when asked for (it needs
    a redis-server)."""
    if request.param == "memory":
        yield ProgressTable()
        return
    server: RedisServer = request.getfixturevalue("redis")
    backend = backend_from_url(server.url, key_prefix=f"attack{next(_prefixes)}:")
    try:
        yield backend.progress
    finally:
        backend.close()


def test_a_thousand_duplicate_ids_log_a_couple_of_lines_and_still_run(
        store: Any, caplog: pytest.LogCaptureFixture) -> None:
    owner = store.track(ID, 100)
    assert owner is not None
    owner.add_received(40)
    client = webtest.TestApp(ProgressMiddleware(echo, store=store))
    with caplog.at_level(logging.WARNING, logger="wsgiprogress"):
        for n in range(1000):
            reply = client.post(f"/upload?X-Progress-ID={ID}", b"x" * (n % 7 + 1))
            assert reply.body == b"x" * (n % 7 + 1)  # runs, untracked
    lines = wsgiprogress_lines(caplog)
    assert 1 <= len(lines) <= 2, lines
    assert lines[0] == (f"progress ID {ID!r} is already in use by a running request; "
                        "this request runs untracked")
    entry = store.read(ID)
    assert (entry.state, entry.received, entry.size) == ("uploading", 40, 100)  # the owner's
    owner.finish()


class FailingStore(ProgressTable):
    """A store whose reads and writes fail, as a remote store's do (``shared``:
    claims go through ``begin``)."""

    shared = True

    def get(self, progress_id: str) -> Optional[ProgressEntry]:
        raise ConnectionError("store down")

    def begin(self, progress_id: str, size: Optional[int]) -> Optional[Hashable]:
        raise ConnectionError("store down")


def test_a_failing_store_logs_a_line_not_one_per_request(
        caplog: pytest.LogCaptureFixture) -> None:
    client = webtest.TestApp(ProgressMiddleware(echo, store=FailingStore()))
    with caplog.at_level(logging.WARNING, logger="wsgiprogress"):
        for n in range(300):
            assert client.post(f"/upload?X-Progress-ID=fail-{n:08d}", b"abc").body == b"abc"
            answer = client.get(f"/progress?X-Progress-ID=fail-{n:08d}")
            assert answer.json["state"] == "unknown"
            assert answer.headers["X-Progress-Backend"] == "unavailable"
    lines = wsgiprogress_lines(caplog)
    assert sorted(line.split(" 'fail-")[0] for line in lines) == [
        "progress store failed to begin", "progress store failed to read"], lines


# -- a frozen Redis --------------------------------------------------------------

#: One probe per dialect and format, and what its answer must say.
DIALECT_QUERIES = ["", "&dialect=native&callback=cb", "&dialect=lighttpd",
                   "&dialect=lighttpd&format=legacy", "&dialect=nginx",
                   "&dialect=nginx&format=legacy", "&dialect=nginx&callback=cb"]


def get(port: int, progress_id: str, query: str = "",
        timeout: float = 10) -> Tuple[int, Dict[str, str], bytes, float]:
    """Status, headers, body and seconds taken of one probe."""
    conn = HTTPConnection(HOST, port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request("GET", f"/progress?X-Progress-ID={progress_id}{query}")
        response = conn.getresponse()
        body = response.read()
        return (response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                time.monotonic() - started)
    finally:
        conn.close()


@contextlib.contextmanager
def frozen(redis: RedisServer) -> Iterator[None]:
    """Redis stopped with SIGSTOP: connections open, nothing answers."""
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)


def test_probes_answer_unknown_at_once_while_redis_is_frozen_and_recover(
        redis: RedisServer) -> None:
    with running(echo, backend=redis.url, key_prefix=f"frozen{next(_prefixes)}:") as (_, port):
        unknown = {query: get(port, "never-began-01", query)
                   for query in DIALECT_QUERIES}
        assert all(status == 200 and "x-progress-backend" not in headers
                   for status, headers, _, _ in unknown.values())
        size = 8 * 1024 * 1024
        upload = SlowUpload(port, "/upload?X-Progress-ID=live-while-frozen", size,
                            piece=64 * 1024, delay=0.05)
        upload.start()
        wait_for_state(port, "live-while-frozen", ("uploading",))
        with frozen(redis):
            # a request running in this process is read from its tracker
            status, headers, body, took = get(port, "live-while-frozen")
            assert status == 200 and "x-progress-backend" not in headers, headers
            assert b'"state": "uploading"' in body and took < 0.5
            timings = []
            for n in range(20):
                query = DIALECT_QUERIES[n % len(DIALECT_QUERIES)]
                status, headers, body, took = get(port, "never-began-01", query)
                timings.append(took)
                assert status == 200
                assert headers["x-progress-backend"] == "unavailable"
                assert body == unknown[query][2]  # byte-identical to an unknown answer
            assert max(timings) < 1.0, timings
        upload.join(30)
        assert upload.reply.startswith(b"HTTP/1.1 200 ")
        done = wait_for_state(port, "live-while-frozen", ("done",), deadline=15)
        assert done["received"] == size  # served from Redis again
        status, headers, _, _ = get(port, "never-began-01")
        assert status == 200 and "x-progress-backend" not in headers


def test_a_dead_redis_answers_probes_at_once_too(redis: RedisServer) -> None:
    with running(echo, backend=redis.url, key_prefix=f"dead{next(_prefixes)}:") as (_, port):
        assert get(port, "never-began-02")[0] == 200
        redis.stop()
        try:
            answers = [get(port, "never-began-02") for _ in range(10)]
        finally:
            redis.start()
        assert all(headers.get("x-progress-backend") == "unavailable" and took < 1.0
                   for _, headers, _, took in answers), answers
        wait_until(lambda: "x-progress-backend" not in get(port, "never-began-02")[1],
                   timeout=10)


# -- waitress's error path and a half-made parser ---------------------------------

MALFORMED = [b"\x00\r\n\r\n", b"GET\r\n\r\n", b"\r\nHTTP/1.1\r\n\r\n", b"G E T / X\r\n\r\n",
             b"GET / HTTP/1.1\r\nbad header\r\n\r\n", b"GET / HTTP/1.1\rX\r\n\r\n"]


def test_a_parser_that_failed_on_its_request_line_has_every_attribute() -> None:
    rules = TrackingRules(ProgressTable(), frozenset({"POST"}), "/progress")
    refused = 0
    for line in MALFORMED:
        parser = ProgressParser(Adjustments(), rules)
        parser.received(line)
        refused += parser.error is not None  # which ones depends on waitress's version
        for name in ("path", "command", "query", "request_uri", "url_scheme", "version",
                     "headers", "fragment", "tracker", "is_endpoint", "serviced"):
            getattr(parser, name)
        parser.close()
    assert refused >= 2, "waitress refused too few of the malformed requests to tell"


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class LateErrorTask(ErrorTask):  # type: ignore[misc]
    """waitress's error answer, written once the client has gone: the race
    that raised AttributeError once, made certain."""

    def service(self) -> None:
        end = time.monotonic() + 2
        while self.channel.connected and time.monotonic() < end:
            time.sleep(0.005)
        super().service()


@pytest.mark.parametrize("late", [pytest.param(False, id="race"),
                                  pytest.param(True, id="client-always-gone")])
def test_clients_that_leave_during_the_error_answer_never_break_the_server(
        late: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    if late:
        monkeypatch.setattr(ProgressChannel, "error_task_class", LateErrorTask)
    rounds = 40 if late else 200
    with caplog.at_level(logging.INFO), running(echo, threads=4) as (server, port):
        for n in range(rounds):
            sock = socket.create_connection((HOST, port), timeout=5)
            sock.sendall(MALFORMED[n % len(MALFORMED)])
            if n % 2:
                time.sleep(0.001)
            reset(sock)
        if late:
            wait_until(lambda: caplog.text.count("Client disconnected while serving") >= 1)
        reply = exchange(port, b"POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok",
                         read_for=5, until=b"\r\n\r\nok")
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"ok")
        # every error answer done before the server closes: a task still running
        # then meets waitress's closed trigger (EBADF), a shutdown race not ours
        tasks = server.task_dispatcher
        wait_until(lambda: tasks.active_count == 0 and not tasks.queue)
    output = caplog.text + "".join(capfd.readouterr())
    assert "AttributeError" not in output
    assert "Traceback" not in output
    assert not [r for r in caplog.records if r.exc_info], caplog.text


# -- restricting who reads progress -------------------------------------------------


def test_the_probe_asks_authorize_with_action_progress() -> None:
    asked: List[Tuple[Optional[str], str]] = []

    def authorize(environ: Dict[str, Any], name: Optional[str], action: str) -> bool:
        asked.append((name, action))
        return environ.get("HTTP_AUTHORIZATION") == "Bearer reader"

    client = webtest.TestApp(ProgressMiddleware(echo, authorize=authorize))
    refused = client.get(f"/progress?X-Progress-ID={ID}", status=403)
    assert refused.text == "not allowed to read this progress\n"
    assert refused.headers["Cache-Control"].startswith("no-cache")
    allowed = client.get(f"/progress?X-Progress-ID={ID}",
                         headers={"Authorization": "Bearer reader"})
    assert allowed.json["state"] == "unknown"
    assert client.head(f"/progress?X-Progress-ID={ID}", status=403).body == b""
    assert asked == [(ID, "progress")] * 3
    client.get("/progress", status=400)  # no ID: refused before the hook is asked
    assert len(asked) == 3


def test_without_a_hook_probes_stay_open() -> None:
    client = webtest.TestApp(ProgressMiddleware(echo))
    assert client.get(f"/progress?X-Progress-ID={ID}").json["state"] == "unknown"


@pytest.mark.parametrize("progress_id, status", [
    pytest.param("short-id", 400, id="8-characters"),
    pytest.param(LONG_ID[:31], 400, id="31-characters"),
    pytest.param(LONG_ID, 200, id="32-characters"),
])
def test_min_id_length_refuses_shorter_ids_at_the_probe(progress_id: str, status: int) -> None:
    client = webtest.TestApp(ProgressMiddleware(echo, min_id_length=32))
    answer = client.get(f"/progress?X-Progress-ID={progress_id}", status=status)
    if status == 400:
        assert answer.text == "progress ID too short: at least 32 characters\n"


def test_min_id_length_leaves_shorter_uploads_untracked() -> None:
    store = ProgressTable()
    options = resolve(MIDDLEWARE_SETTINGS, {"min_id_length": "32"})
    rules = TrackingRules.from_options(store, options, "/progress")
    assert rules.track("POST", "/upload", "a" * 31, None, 10) is None
    assert rules.track("POST", "/upload", None, f"X-Progress-ID={'b' * 31}", 10) is None
    tracker = rules.track("POST", "/upload", LONG_ID, None, 10)
    assert tracker is not None and store.read(LONG_ID) is not None
    default = TrackingRules.from_options(store, resolve(MIDDLEWARE_SETTINGS, {}), "/progress")
    assert default.track("POST", "/upload", "eight-ch", None, 10) is not None


def test_min_id_length_is_one_setting_of_every_front_door() -> None:
    with pytest.raises(ValueError, match="min_id_length: expected a whole number from 8 "
                                         "to 128, not '7'"):
        ProgressMiddleware(echo, min_id_length="7")
    assert ProgressMiddleware(echo).front.probe.min_id_length == 8


def test_many_probe_threads_never_see_a_half_open_breaker() -> None:
    """The breaker lets one read try at a time once retry_after passed."""
    from wsgiprogress.backends.redis.outage import Outage
    from wsgiprogress.backends.redis.progress import RedisProgressStore

    class Frozen:
        calls = 0

        def pipeline(self, transaction: bool) -> "Frozen":
            return self

        def get(self, key: str) -> None:
            return None

        def pttl(self, key: str) -> None:
            return None

        def execute(self) -> List[Any]:
            Frozen.calls += 1
            time.sleep(0.2)
            raise TimeoutError("frozen")

        def register_script(self, script: str) -> Any:
            return None

    store = RedisProgressStore(Frozen(), reader=Frozen(),  # type: ignore[arg-type]
                               reader_outage=Outage(retry_after=0.5))
    try:
        errors: List[BaseException] = []

        def read() -> None:
            try:
                store.get(ID)
            except Exception as exc:
                errors.append(exc)

        first = threading.Thread(target=read)
        first.start()
        first.join()
        threads = [threading.Thread(target=read) for _ in range(20)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started < 0.15  # nobody waited on the frozen read
        assert Frozen.calls == 1
        time.sleep(0.5)
        threads = [threading.Thread(target=read) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert Frozen.calls == 2  # one trial, the others skipped Redis meanwhile
        assert len(errors) == 41
    finally:
        store.close()


def test_min_id_length_leaves_shorter_uploads_untracked_at_both_doors() -> None:
    short, long_ = "s" * 31, "0123456789abcdef0123456789abcdef"
    app = ProgressMiddleware(echo, min_id_length=32)
    client = webtest.TestApp(app)
    assert client.post(f"/upload?X-Progress-ID={short}", b"abc").body == b"abc"
    assert client.post(f"/upload?X-Progress-ID={long_}", b"abc").body == b"abc"
    assert app.store.get(short) is None and app.store.get(long_) is not None
    with running(echo, min_id_length=32) as (server, port):
        for progress_id in (short, long_):
            reply = exchange(port, f"POST /u?X-Progress-ID={progress_id} HTTP/1.1\r\n"
                             "Host: t\r\nContent-Length: 3\r\n\r\nabc".encode(),
                             read_for=5, until=b"\r\n\r\nabc")
            assert reply.startswith(b"HTTP/1.1 200 ")
        assert server.progress_store.get(short) is None
        assert wait_for_state(port, long_, ("done",))["received"] == 3
