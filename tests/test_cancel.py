"""Cancelling an upload in flight: ``DELETE`` on the probe URL (with the
publish token or the authorize hook's ``cancel``) or ``store.cancel(id)``.
On our server the connection closes at once and no more of the body is read;
under the middleware the application's next read raises the error a client
that leaves causes; the entry ends ``error``/``cancelled``; with Redis, a
cancel in one process stops the upload running in another."""
from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import pytest
from per_file_app import CLIENT
from test_browser import chrome
from webtest import TestApp

from wsgiprogress import ProgressMiddleware
from wsgiprogress.backends import backend_from_url
from wsgiprogress.server.cancelling import ANSWER
from wsgiprogress.server.channel import ProgressChannel

from gunicorn_support import gunicorn
from redis_support import RedisServer
from server_support import (
    HOST,
    open_fds,
    probe,
    read_to_close,
    running,
    running_werkzeug,
    wait_until,
)

TOKEN = "cancel-token-0123456789abcdef"
BIG = 512 << 20


def reading_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    stream = environ["wsgi.input"]
    while stream.read(65536):
        pass
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def delete(port: int, progress_id: str, token: Optional[str] = TOKEN) -> Tuple[int, bytes]:
    conn = HTTPConnection(HOST, port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("DELETE", f"/progress?X-Progress-ID={progress_id}", headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Uploader(threading.Thread):
    """Sends a huge declared body until the server answers or closes; records
    when, and what it answered."""

    def __init__(self, port: int, progress_id: str) -> None:
        super().__init__(daemon=True)
        self.port, self.progress_id = port, progress_id
        self.sent = 0
        self.closed_at: Optional[float] = None
        self.reply = b""
        self.started = threading.Event()

    def run(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=10) as sock:
            sock.sendall(f"POST /upload?X-Progress-ID={self.progress_id} HTTP/1.1\r\n"
                         f"Host: test\r\nContent-Length: {BIG}\r\n\r\n".encode())
            piece = b"u" * 16384
            try:
                while self.sent < BIG and not select.select([sock], [], [], 0)[0]:
                    sock.sendall(piece)
                    self.sent += len(piece)
                    if self.sent >= 256 * 1024:
                        self.started.set()
                    time.sleep(0.001)
            except OSError:
                pass  # a reset shows as an error on send
            finally:
                self.closed_at = time.monotonic()
                self.started.set()
            try:
                self.reply = read_to_close(sock)
            except OSError:
                pass  # reset without an answer


def run_upload_until(port: int, progress_id: str) -> Uploader:
    uploader = Uploader(port, progress_id)
    uploader.start()
    assert uploader.started.wait(10)
    wait_until(lambda: probe(port, progress_id)["state"] == "uploading")
    return uploader


@pytest.fixture
def server() -> Iterator[Tuple[Any, int]]:
    with running(reading_app, mailbox=True, publish_token=TOKEN, recv_bytes=65536) as served:
        yield served


def test_delete_closes_the_connection_at_once_and_reads_no_more(
        server: Tuple[Any, int]) -> None:
    srv, port = server
    uploader = run_upload_until(port, "cancel-server-1")
    (channel,) = [c for c in list(srv._map.values()) if isinstance(c, ProgressChannel)
                  and getattr(getattr(c.request, "tracker", None), "id", "") == "cancel-server-1"]
    reads_after: List[int] = []
    asked = threading.Event()
    recv = channel.recv

    def spying_recv(size: int) -> bytes:
        data: bytes = recv(size)
        if asked.is_set() and data:
            reads_after.append(len(data))
        return data
    channel.recv = spying_recv
    cancel = channel.cancel_upload

    def spying_cancel() -> None:  # from here on, no more recv but the one under way
        asked.set()
        cancel()
    channel.cancel_upload = spying_cancel
    asked_at = time.monotonic()
    status, body = delete(port, "cancel-server-1")
    assert (status, b'"reason": "cancelled"' in body) == (200, True)
    uploader.join(5)
    # at once, not when the upload would have ended (the figure: within 100 ms
    # on an idle machine; the bound here only tells the two apart under load)
    assert uploader.closed_at is not None and uploader.closed_at - asked_at < 2.0
    assert not channel.connected
    assert len(reads_after) <= 1, reads_after  # at most the recv under way
    # answered, so that a browser does not take the cut for a stale keep-alive
    # connection and send the upload again
    assert uploader.reply == ANSWER, uploader.reply
    final = probe(port, "cancel-server-1")
    assert (final["state"], final["reason"]) == ("error", "cancelled")


def test_delete_needs_permission_and_a_running_request(server: Tuple[Any, int]) -> None:
    _, port = server
    uploader = run_upload_until(port, "cancel-server-2")
    assert delete(port, "cancel-server-2", token=None)[0] == 403
    assert delete(port, "cancel-server-2", token="wrong")[0] == 403
    assert probe(port, "cancel-server-2")["state"] == "uploading"
    assert delete(port, "cancel-server-2")[0] == 200
    uploader.join(5)
    assert delete(port, "cancel-server-2")[0] == 404  # ended
    assert delete(port, "never-seen-upload")[0] == 404
    assert delete(port, "bad%20id!")[0] == 400


def test_delete_is_not_offered_without_a_token_or_hook() -> None:
    test = TestApp(ProgressMiddleware(reading_app))
    answer = test.request("/progress?X-Progress-ID=cancel-none", method="DELETE", status=405)
    assert answer.headers["Allow"] == "GET, HEAD"
    hooked = TestApp(ProgressMiddleware(
        reading_app, authorize=lambda environ, name, action: action == "cancel"))
    answer = hooked.request("/progress?X-Progress-ID=cancel-none", method="DELETE",
                            status=404)
    hooked.request("/progress?X-Progress-ID=cancel-none", method="PUT", status=405)


@pytest.mark.parametrize("settings, headers, reason", [
    pytest.param({"publish_token": TOKEN}, {}, "cancelling needs the bearer token",
                 id="token-not-sent"),
    pytest.param({"publish_token": TOKEN}, {"Authorization": "Bearer wrong"},
                 "cancelling needs the bearer token", id="wrong-token"),
    pytest.param({}, {"Authorization": f"Bearer {TOKEN}"},
                 "not allowed to cancel this upload", id="hook-only"),
])
def test_a_refused_cancel_says_why(settings: Dict[str, Any], headers: Dict[str, str],
                                   reason: str) -> None:
    # with a hook and no token, no token could help: the reason does not ask for one
    test = TestApp(ProgressMiddleware(reading_app, mailbox=True,
                                      authorize=lambda environ, name, action: False, **settings))
    answer = test.request("/progress?X-Progress-ID=cancel-refused", method="DELETE",
                          headers=headers, status=403)
    assert answer.text == reason + "\n"


def test_a_hundred_cancels_leak_no_descriptor_or_thread(server: Tuple[Any, int]) -> None:
    srv, port = server
    store = srv.progress_rules.store

    def one(n: int) -> None:
        uploader = Uploader(port, f"cancel-leak-{n:04d}")
        uploader.start()
        assert uploader.started.wait(10)
        wait_until(lambda: store.cancel(f"cancel-leak-{n:04d}"), timeout=5)
        uploader.join(5)
        assert not uploader.is_alive()

    one(0)
    fds, threads = open_fds(), threading.active_count()
    for n in range(1, 101):
        one(n)
    wait_until(lambda: open_fds() <= fds and threading.active_count() <= threads,
               message=lambda: f"fds {open_fds()} (was {fds}), threads "
                               f"{threading.active_count()} (was {threads})")
    assert len(srv._map) <= 3  # the listener, the trigger and nothing else


def page_of_another_origin(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A page that loads the JS client; it cancels through ``cancel(...)``."""
    js = environ.get("PATH_INFO") == "/progress.js"
    body = CLIENT.read_bytes() if js else \
        b'<!doctype html><script src="/progress.js"></script><p>page</p>'
    start_response("200 OK", [("Content-Type", "application/javascript" if js else "text/html"),
                              ("Content-Length", str(len(body)))])
    return [body]


@pytest.mark.parametrize("allowed", [True, False], ids=["origin-allowed", "origin-not-allowed"])
def test_a_page_of_another_origin_cancels_through_the_preflight(allowed: bool,
                                                                 tmp_path: Path) -> None:
    # Chromium preflights the DELETE (a method and an Authorization header no
    # simple request has): the probe answers it, then the DELETE, for an
    # allowed origin only
    with running(page_of_another_origin) as (_, page_port):
        origin = f"http://{HOST}:{page_port}" if allowed else "http://elsewhere.test"
        with running(reading_app, mailbox=True, publish_token=TOKEN, recv_bytes=65536,
                     allowed_origins=[origin]) as (_, port), \
                chrome(tmp_path / "profile") as browser:
            browser.get(f"http://{HOST}:{page_port}/")
            uploader = run_upload_until(port, "cancel-cross-origin")
            answer = browser.execute_async_script(
                "var done = arguments[arguments.length - 1];"
                "WSGIProgress.cancel('cancel-cross-origin',"
                " {url: arguments[0], token: arguments[1]},"
                " function (ok, status) { done([ok, status]); });",
                f"http://{HOST}:{port}/progress", TOKEN)
            if allowed:
                assert answer == [True, 200]
                uploader.join(5)
                assert uploader.reply == ANSWER
                final = probe(port, "cancel-cross-origin")
                assert (final["state"], final["reason"]) == ("error", "cancelled")
            else:  # the preflight failed: no DELETE was sent
                assert answer == [False, 0]
                assert probe(port, "cancel-cross-origin")["state"] == "uploading"
                assert delete(port, "cancel-cross-origin")[0] == 200
                uploader.join(5)


# -- under the middleware -----------------------------------------------------------------


class Recorder:
    """An app that reads slowly and records what its reads raised."""

    def __init__(self) -> None:
        self.errors: List[BaseException] = []
        self.reading = threading.Event()

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        try:
            while stream.read(16384):
                self.reading.set()
                time.sleep(0.005)
        except Exception as exc:
            self.errors.append(exc)
            raise
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"whole"]


def test_under_werkzeug_the_next_read_raises_the_disconnect_error() -> None:
    from werkzeug.exceptions import ClientDisconnected

    recorder = Recorder()
    app = ProgressMiddleware(recorder, mailbox=True, publish_token=TOKEN)
    with running_werkzeug(app) as port:
        uploader = Uploader(port, "cancel-werkzeug")
        uploader.start()
        assert recorder.reading.wait(10)
        status, _ = delete(port, "cancel-werkzeug")
        assert status == 200
        wait_until(lambda: recorder.errors)
        assert isinstance(recorder.errors[0], ClientDisconnected)
        final = probe(port, "cancel-werkzeug")
        assert (final["state"], final["reason"]) == ("error", "cancelled")
        uploader.join(5)


def cancel_app() -> ProgressMiddleware:
    """For gunicorn (``test_cancel:cancel_app()``): a slow reader that writes
    what its read raised to the log."""
    recorder = Recorder()

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            return recorder(environ, start_response)
        except Exception as exc:
            print(f"cancel-test: the app's read raised {type(exc).__name__}", flush=True)
            raise
    return ProgressMiddleware(app, mailbox=True, publish_token=TOKEN)


def test_under_gunicorn_gthread_the_next_read_raises_the_disconnect_error(
        tmp_path: Any) -> None:
    log = tmp_path / "gunicorn.log"
    with gunicorn(log, "test_cancel:cancel_app()", "gthread", "--threads", "4") as port:
        uploader = run_upload_until(port, "cancel-gunicorn")
        assert delete(port, "cancel-gunicorn")[0] == 200
        wait_until(lambda: "cancel-test: the app's read raised ClientDisconnected"
                   in log.read_text(errors="replace"),
                   message=lambda: log.read_text(errors="replace")[-2000:])
        final = probe(port, "cancel-gunicorn")
        assert (final["state"], final["reason"]) == ("error", "cancelled")
        uploader.join(5)


# -- with Redis: the cancel reaches the process running the upload -----------------------


@contextlib.contextmanager
def uploading_elsewhere(redis: RedisServer, progress_id: str
                        ) -> Iterator[Tuple[Any, Any, threading.Event]]:
    """Two processes' backends, *here* and *there*, and a request of
    *progress_id* running *there*; the event is set when it is told to stop."""
    here, there = backend_from_url(redis.url), backend_from_url(redis.url)
    try:
        channel = there.progress.cancel_channel  # "there" listens before "here" tells
        wait_until(lambda: dict(here.progress.client.pubsub_numsub(channel)).get(channel, 0) >= 2)
        tracker = there.progress.track(progress_id, 1000)
        assert tracker is not None
        stopped = threading.Event()
        tracker.on_cancel = stopped.set
        tracker.add_received(10)
        assert there.progress.flush()
        yield here, there, stopped
    finally:
        here.close()
        there.close()


def test_a_cancel_in_one_process_stops_the_upload_in_another(redis: RedisServer) -> None:
    with uploading_elsewhere(redis, "cancel-redis-1") as (here, there, stopped):
        assert here.progress.cancel("cancel-redis-1")
        assert stopped.wait(5)
        assert there.progress.flush()
        final = here.progress.get("cancel-redis-1")
        assert final is not None and (final.state, final.reason) == ("error", "cancelled")
        assert not here.progress.cancel("cancel-redis-1")
        assert not here.progress.cancel("cancel-redis-unknown")


def test_a_resumable_upload_between_its_requests_is_not_running_for_a_cancel(
        redis: RedisServer) -> None:
    # handed over, it waits for its next request: no process runs it, as the
    # memory store says too (404), so nothing is sent to anyone
    with uploading_elsewhere(redis, "cancel-redis-4") as (here, there, stopped):
        (tracker,) = [t for t in there.progress.live.values() if t.id == "cancel-redis-4"]
        tracker.hand_over()
        assert there.progress.flush()
        assert here.progress.get("cancel-redis-4").state == "uploading"
        assert not here.progress.cancel("cancel-redis-4")


def test_a_cancel_sent_to_another_process_is_answered_202_until_that_process_stops_it(
        redis: RedisServer) -> None:
    """The process answering the ``DELETE`` cannot know that the other one
    heard it (it may have died, or be reconnecting): it says it sent the
    cancel (202), not that the upload ended (200); the probe shows the end."""
    with uploading_elsewhere(redis, "cancel-redis-2") as (here, there, stopped):
        client = TestApp(ProgressMiddleware(reading_app, store=here.progress, mailbox=True,
                                            publish_token=TOKEN))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = client.delete("/progress?X-Progress-ID=cancel-redis-2", headers=auth,
                               status=202)
        assert answer.json == {"id": "cancel-redis-2",
                               "cancel": "sent to the process that runs it"}
        assert stopped.wait(5)
        assert there.progress.flush()
        wait_until(lambda: client.get("/progress?X-Progress-ID=cancel-redis-2").json["state"]
                   == "error")
        client.delete("/progress?X-Progress-ID=cancel-redis-2", headers=auth, status=404)
        # a request of this process is cancelled here: 200, it ended
        local = here.progress.track("cancel-redis-3", 1000)
        assert local is not None
        answer = client.delete("/progress?X-Progress-ID=cancel-redis-3", headers=auth,
                               status=200)
        assert answer.json == {"id": "cancel-redis-3", "state": "error", "reason": "cancelled"}
