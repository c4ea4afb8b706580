"""Waiting clients parked on the I/O loop of wsgiprogress.server: no thread
while they wait, woken by a post, timed out by the loop's timers, released
at once when they leave; the same steps on a fake clock; the loop itself."""
from __future__ import annotations

import collections
import json
import os
import select
import socket
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

from wsgiprogress.server.loop import Loop
from wsgiprogress.waiters import Waiters
from wsgiprogress.web import sse
from wsgiprogress.web.event_stream import EventStream, StreamTiming
from wsgiprogress.web.waiting import LongPoll

from server_support import (
    HOST,
    SlowUpload,
    ok_app,
    open_fds,
    read_events,
    read_response,
    running,
    wait_until,
)

NAME = "0123456789abcdef0123456789abcdef"




def connect(port: int, path: str, extra: str = "") -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=15)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode())
    return sock


def read_reply(replies: Any) -> bytes:
    """The body of the next response on a buffered reader of the connection."""
    length = 0
    for line in iter(replies.readline, b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return replies.read(length)  # type: ignore[no-any-return]


def body_of(reply: bytes) -> Dict[str, Any]:
    return json.loads(reply.partition(b"\r\n\r\n")[2])  # type: ignore[no-any-return]


def cursor_of(port: int) -> int:
    sock = connect(port, f"/mailbox/{NAME}")
    try:
        return int(body_of(read_response(sock))["cursor"])
    finally:
        sock.close()


# -- the steps, on a fake clock -----------------------------------------------


class FakeWake:
    def __init__(self) -> None:
        self.sets = 0

    def set(self) -> None:
        self.sets += 1


def parked_environ(wake: FakeWake) -> Dict[str, Any]:
    return {"wsgiprogress.park": lambda: wake}


def test_a_long_poll_answers_news_at_once_and_times_out_at_its_deadline() -> None:
    waiters, wake = Waiters(limit=5), FakeWake()
    news: List[Optional[bytes]] = [None]
    started: List[str] = []

    def answer(body: bytes) -> Any:
        return lambda start_response: (start_response("200 OK", []), [body])[1]

    registered = waiters.register("k", wake)
    poll = LongPoll(waiters, "k", registered, parked_environ(wake),
                    lambda status, headers: started.append(status),
                    check=lambda: None if news[0] is None else answer(news[0]),
                    timeout=lambda: answer(b"timeout"), seconds=30)
    now = time.monotonic()
    step = poll.step(now)
    assert (step.data, step.over) == (b"", False)
    assert step.wake_at == pytest.approx(now + 30, abs=1)
    news[0] = b"news"
    assert poll.step(now + 1) == (b"news", True, now + 1)
    assert started == ["200 OK"]
    # a second poll that hears nothing answers its timeout at the deadline
    news[0] = None
    late = LongPoll(waiters, "k", waiters.register("k", FakeWake()) or wake,
                    parked_environ(wake), lambda *a: None, check=lambda: None,
                    timeout=lambda: answer(b"timeout"), seconds=5)
    assert late.step(late.deadline - 0.001).over is False
    assert late.step(late.deadline).data == b"timeout"


def test_an_event_stream_opens_at_once_then_keeps_alive_on_its_clock() -> None:
    waiters, wake = Waiters(limit=5), FakeWake()
    events: List[bytes] = []
    stream = EventStream(waiters, "k", waiters.register("k", wake) or wake,
                         parked_environ(wake),
                         lambda: (events[:], False), StreamTiming(10.0, 3000, 60.0))
    now = time.monotonic()
    opening = stream.step(now)
    assert opening.data == sse.retry(3000) + sse.comment("connected")
    quiet = stream.step(now + 1)
    assert (quiet.data, quiet.over) == (b"", False)
    assert quiet.wake_at == pytest.approx(stream.quiet_until)
    assert stream.step(stream.quiet_until).data == sse.comment("keepalive")
    events.append(b"data: x\n\n")
    assert stream.step(stream.quiet_until - 5).data == b"data: x\n\n"
    events.clear()
    assert stream.step(stream.deadline).over is True


def test_a_parked_response_gives_its_slot_back_once_released() -> None:
    waiters, wake = Waiters(limit=1), FakeWake()
    poll = LongPoll(waiters, "k", waiters.register("k", wake) or wake, parked_environ(wake),
                    lambda *a: None, check=lambda: None, timeout=lambda: lambda sr: [],
                    seconds=30)
    with pytest.raises(BaseException) as parked:
        next(iter(poll))
    assert type(parked.value).__name__ == "Parked"
    poll.close()  # waitress's close after the task stopped: the response lives on
    assert len(waiters) == 1
    assert waiters.wake("k") == 1 and wake.sets == 1
    poll.release()
    assert len(waiters) == 0 and waiters.register("k") is not None


# -- the loop -----------------------------------------------------------------


class CountingTrigger:
    def __init__(self) -> None:
        self.pulls = 0

    def pull_trigger(self) -> None:
        self.pulls += 1


def test_the_loop_runs_calls_from_other_threads_and_timers_in_order() -> None:
    trigger = CountingTrigger()
    loop = Loop(trigger)
    ran: List[str] = []
    thread = threading.Thread(target=lambda: [loop.call_soon(lambda: ran.append("soon"))
                                              for _ in range(3)])
    thread.start()
    thread.join()
    assert trigger.pulls == 1  # one pull wakes the poll for every call queued behind it
    loop.thread = threading.get_ident()
    now = time.monotonic()
    late = loop.call_at(now + 0.02, lambda: ran.append("late"))
    loop.call_at(now + 0.01, lambda: ran.append("early"))
    cancelled = loop.call_at(now, lambda: ran.append("cancelled"))
    loop.cancel(cancelled)
    assert loop._timeout(1.0) == 0.0  # calls are ready: do not sleep in poll
    loop.run_ready()
    assert ran == ["soon"] * 3
    assert 0 < loop._timeout(1.0) <= 0.02
    deadline = time.monotonic() + 2
    while late[2] is not None and time.monotonic() < deadline:
        loop._run_timers(time.monotonic())
    assert ran == ["soon"] * 3 + ["early", "late"]


class HandedOverDuringTheCheck(collections.deque):  # type: ignore[type-arg]
    """The loop's ready calls, where another thread hands a call over right
    after the loop found none: that thread sees the flag still set, so it
    pulls no trigger."""

    def __init__(self, call: Callable[[], None]) -> None:
        super().__init__()
        self.call: Optional[Callable[[], None]] = call

    def __len__(self) -> int:
        length = super().__len__()
        if self.call is not None:
            self.append(self.call)
            self.call = None
        return length


def test_a_call_handed_over_as_the_turn_finds_none_runs_without_another_pull() -> None:
    trigger = CountingTrigger()
    loop = Loop(trigger)
    loop.thread = threading.get_ident()
    ran: List[str] = []
    loop._ready = HandedOverDuringTheCheck(lambda: ran.append("handed over"))
    loop._signalled = True  # the last pull's, its calls already run
    loop._after_poll()
    assert ran == ["handed over"] and trigger.pulls == 0


class Connection:
    """A dispatcher as the loop sees it: its readiness, set by the test."""

    accepting = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._fileno = sock.fileno()
        self.want_write = False
        self.events: List[int] = []

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self.want_write

    def handle_read_event(self) -> None:
        self.events.append(select.POLLIN)
        self.sock.recv(100)

    def handle_write_event(self) -> None:
        self.events.append(select.POLLOUT)
        self.want_write = False


def test_a_descriptor_closed_under_the_loop_does_not_stop_it() -> None:
    loop = Loop(CountingTrigger())
    loop._epoll = select.epoll()
    left, right = socket.socketpair()
    other_left, other_right = socket.socketpair()
    try:
        doomed, alive = Connection(left), Connection(other_left)
        socket_map = {doomed._fileno: doomed, alive._fileno: alive}
        loop._poll_epoll(0.0, socket_map)  # both watched
        os.close(left.detach())  # closed by someone else, still in the map
        doomed.want_write = True  # its interest changes: epoll is told, and refuses
        other_right.sendall(b"x")
        loop._poll_epoll(0.5, socket_map)
        assert alive.events == [select.POLLIN]  # the other connection is still served
        loop._poll_epoll(0.0, socket_map)  # and again, without complaint
    finally:
        loop._epoll.close()
        for sock in (right, other_left, other_right):
            sock.close()


# -- parked on a real server ----------------------------------------------------


def test_hundreds_of_parked_long_polls_hold_no_thread_and_all_hear_one_post() -> None:
    with running(ok_app, mailbox=True, threads=2) as (server, port):
        cursor = cursor_of(port)
        waiters = server.mailbox.waiters
        socks = [connect(port, f"/mailbox/{NAME}?after={cursor}&wait=30") for _ in range(300)]
        try:
            wait_until(lambda: len(waiters) == 300)
            wait_until(lambda: server.task_dispatcher.active_count == 0)
            # the two threads are free for ordinary requests meanwhile
            ordinary = connect(port, "/ordinary")
            assert read_response(ordinary).endswith(b"ok")
            ordinary.close()
            server.mailbox.post(NAME, "hello")
            for sock in socks:
                reply = body_of(read_response(sock))
                assert [m["data"] for m in reply["messages"]] == ["hello"]
            wait_until(lambda: len(waiters) == 0)
        finally:
            for sock in socks:
                sock.close()


def test_a_parked_long_poll_times_out_on_the_loop_and_the_connection_goes_on() -> None:
    with running(ok_app, mailbox=True, threads=1) as (server, port):
        cursor = cursor_of(port)
        sock = connect(port, f"/mailbox/{NAME}?after={cursor}&wait=0.3")
        try:
            started = time.monotonic()
            reply = body_of(read_response(sock))
            assert reply["messages"] == [] and 0.25 <= time.monotonic() - started < 5
            # keep-alive: the next request on the same connection is answered
            sock.sendall(f"GET /mailbox/{NAME}?after={cursor} HTTP/1.1\r\nHost: t\r\n\r\n"
                         .encode())
            assert body_of(read_response(sock))["messages"] == []
        finally:
            sock.close()


def test_a_request_pipelined_behind_a_parked_one_is_answered_after_it_in_order() -> None:
    with running(ok_app, mailbox=True, threads=1) as (server, port):
        cursor = cursor_of(port)
        sock = socket.create_connection((HOST, port), timeout=15)
        try:
            sock.sendall(f"GET /mailbox/{NAME}?after={cursor}&wait=30 HTTP/1.1\r\nHost: t\r\n"
                         f"\r\nGET /ordinary HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            wait_until(lambda: len(server.mailbox.waiters) == 1)
            server.mailbox.post(NAME, "first")
            replies = sock.makefile("rb")  # both answers may come in one read
            first, second = read_reply(replies), read_reply(replies)
            assert [m["data"] for m in json.loads(first)["messages"]] == ["first"]
            assert second == b"ok"
        finally:
            sock.close()


def test_parked_event_streams_send_events_and_keepalives_without_a_thread() -> None:
    with running(ok_app, mailbox=True, threads=1, sse_keepalive=0.2) as (server, port):
        cursor = cursor_of(port)
        socks = [connect(port, f"/mailbox/{NAME}?after={cursor}", "Accept: text/event-stream\r\n")
                 for _ in range(20)]
        try:
            wait_until(lambda: len(server.mailbox.waiters) == 20)
            wait_until(lambda: server.task_dispatcher.active_count == 0)
            first = socks[0].recv(65536)
            while first.count(b": keepalive") < 2:  # heartbeats from the loop's timers
                first += socks[0].recv(65536)
            for n in range(3):
                server.mailbox.post(NAME, f"m{n}")
            for sock in socks:
                lines = read_events(sock, 3)
                assert [line for line in lines if line.startswith("data: ")] == \
                    ["data: m0", "data: m1", "data: m2"]
        finally:
            for sock in socks:
                sock.close()
        wait_until(lambda: len(server.mailbox.waiters) == 0)


def test_a_parked_progress_long_poll_hears_an_upload_on_one_busy_thread() -> None:
    progress_id = "c0ffee00c0ffee00c0ffee00c0ffee00"
    with running(ok_app, threads=1) as (server, port):
        sock = connect(port, f"/progress?X-Progress-ID={progress_id}&wait=20")
        try:
            wait_until(lambda: len(server.progress_store.waiters) == 1)
            upload = SlowUpload(port, f"/upload?X-Progress-ID={progress_id}", 1 << 20,
                                piece=64 * 1024, delay=0.02)
            upload.start()
            reply = body_of(read_response(sock))
            assert reply["state"] in ("starting", "uploading")
            upload.join(30)
            assert upload.reply.endswith(b"ok")
        finally:
            sock.close()


def test_a_new_connection_on_a_closed_parked_ones_descriptor_is_served() -> None:
    with running(ok_app, mailbox=True, threads=1) as (server, port):
        cursor = cursor_of(port)
        sock = connect(port, f"/mailbox/{NAME}?after={cursor}&wait=30")
        wait_until(lambda: len(server.mailbox.waiters) == 1)

        def close_parked() -> None:  # as shedding or a shutdown would: no event on it
            for channel in list(server._map.values()):
                if getattr(channel, "requests", None):
                    channel.handle_close()
        server.trigger.pull_trigger(close_parked)
        wait_until(lambda: len(server.mailbox.waiters) == 0)
        sock.close()
        for _ in range(3):  # the next connection reuses the descriptor: it is not quiet
            ordinary = socket.create_connection((HOST, port), timeout=5)
            ordinary.sendall(b"GET /ordinary HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(ordinary).endswith(b"ok")
            ordinary.close()


@pytest.mark.parametrize("lookahead", [0, 1])
def test_a_parked_client_that_leaves_frees_its_slot_whatever_the_lookahead(lookahead: int
                                                                           ) -> None:
    with running(ok_app, mailbox=True, threads=1, channel_request_lookahead=lookahead) \
            as (server, port):
        cursor = cursor_of(port)
        sock = connect(port, f"/mailbox/{NAME}?after={cursor}&wait=30")
        wait_until(lambda: len(server.mailbox.waiters) == 1)
        sock.close()
        started = time.monotonic()
        wait_until(lambda: len(server.mailbox.waiters) == 0)
        assert time.monotonic() - started < 2  # at the close, not at the deadline
        # and on a connection that stays, the answer still comes
        sock = connect(port, f"/mailbox/{NAME}?after={cursor}&wait=30")
        try:
            wait_until(lambda: len(server.mailbox.waiters) == 1)
            server.mailbox.post(NAME, "after")
            assert [m["data"] for m in body_of(read_response(sock))["messages"]] == ["after"]
        finally:
            sock.close()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_disconnect_storm_while_posting_loses_nothing_and_leaks_nothing(reset: bool) -> None:
    with running(ok_app, mailbox=True, threads=2, max_wait=30) as (server, port):
        cursor = cursor_of(port)
        waiters = server.mailbox.waiters
        fds_before = open_fds()
        stay = [connect(port, f"/mailbox/{NAME}?after={cursor}&wait=30") for _ in range(50)]
        leave = [connect(port, f"/mailbox/{NAME}?after={cursor}&wait=30") for _ in range(150)]
        wait_until(lambda: len(waiters) == 200)
        poster = threading.Thread(target=lambda: [server.mailbox.post(NAME, f"p{n}")
                                                  for n in range(5)])
        for n, sock in enumerate(leave):
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            if n == 75:
                poster.start()
        poster.join(10)
        try:
            for sock in stay:
                messages = body_of(read_response(sock))["messages"]
                data = [m["data"] for m in messages]
                # all posts so far, in order, each once
                assert data and data == [f"p{n}" for n in range(len(data))]
        finally:
            for sock in stay:
                sock.close()
        wait_until(lambda: len(waiters) == 0)
        wait_until(lambda: open_fds() <= fds_before)


def test_parked_waiters_on_redis_are_stepped_off_the_loop(
        redis: Any, caplog: pytest.LogCaptureFixture) -> None:
    with running(ok_app, mailbox=True, threads=2, backend=redis.url) as (server, port):
        cursor = cursor_of(port)
        socks = [connect(port, f"/mailbox/{NAME}?after={cursor}&wait=30") for _ in range(20)]
        try:
            wait_until(lambda: len(server.mailbox.waiters) == 20)
            wait_until(lambda: server.task_dispatcher.active_count == 0)
            server.mailbox.post(NAME, "via redis")
            for sock in socks:
                assert [m["data"] for m in body_of(read_response(sock))["messages"]] == \
                    ["via redis"]
            # twenty steps queued for two lane threads at once is no backlog to log
            assert "Task queue depth" not in caplog.text
        finally:
            for sock in socks:
                sock.close()
