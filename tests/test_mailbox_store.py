"""The in-memory mailbox store and the waiter pool, with a fake clock."""
from __future__ import annotations

import threading
import time
from typing import Callable, List

import pytest

from wsgiprogress.keys import DEPARTURE
from wsgiprogress.mailbox import MemoryMailboxes, MessageTooLarge, TooManyMailboxes
from wsgiprogress.query import parse_wait
from wsgiprogress.settings import waiter_limit
from wsgiprogress.waiters import ClientWatch, Waiters


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fresh_cursor(mailbox: MemoryMailboxes, name: str) -> int:
    return mailbox.read(name, None).cursor


def test_messages_come_in_order_with_dense_ids(clock: Clock) -> None:
    mailbox = MemoryMailboxes(clock=clock)
    start = fresh_cursor(mailbox, "inbox-001")
    ids = [mailbox.post("inbox-001", f"m{n}")["inbox-001"] for n in range(5)]
    assert ids == list(range(start + 1, start + 6))
    result = mailbox.read("inbox-001", start)
    assert [m.data for m in result.messages] == ["m0", "m1", "m2", "m3", "m4"]
    assert (result.cursor, result.dropped, result.unknown_cursor) == (ids[-1], 0, False)
    assert mailbox.read("inbox-001", ids[1]).messages == result.messages[2:]
    assert mailbox.read("inbox-001", ids[-1]).messages == []


def test_fan_out_posts_once_per_mailbox(clock: Clock) -> None:
    mailbox = MemoryMailboxes(clock=clock)
    cursors = {name: fresh_cursor(mailbox, name) for name in ("alpha-01", "beta-002")}
    ids = mailbox.post(["alpha-01", "beta-002", "alpha-01"], "hello")
    assert set(ids) == {"alpha-01", "beta-002"}
    for name, cursor in cursors.items():
        assert [m.data for m in mailbox.read(name, cursor).messages] == ["hello"]
        assert ids[name] == cursor + 1
    assert mailbox.stats()["posted"] == 2


@pytest.mark.parametrize("bound, posts, kept", [
    pytest.param({"max_messages": 3}, ["a", "b", "c", "d", "e"], ["c", "d", "e"], id="count"),
    pytest.param({"max_bytes": 10, "max_message_bytes": 4}, ["aaaa", "bbbb", "cccc"],
                 ["bbbb", "cccc"], id="bytes"),
])
def test_retention_bounds_report_a_gap(clock: Clock, bound: dict, posts: List[str],
                                       kept: List[str]) -> None:
    mailbox = MemoryMailboxes(clock=clock, **bound)
    start = fresh_cursor(mailbox, "bounded1")
    for data in posts:
        mailbox.post("bounded1", data)
    result = mailbox.read("bounded1", start)
    assert [m.data for m in result.messages] == kept
    assert result.dropped == len(posts) - len(kept)
    assert mailbox.stats()["dropped"] == len(posts) - len(kept)


def test_messages_expire_by_age(clock: Clock) -> None:
    mailbox = MemoryMailboxes(clock=clock, max_age=60)
    start = fresh_cursor(mailbox, "aging-01")
    mailbox.post("aging-01", "old")
    clock.now += 30
    mailbox.post("aging-01", "new")
    clock.now += 31
    result = mailbox.read("aging-01", start)
    assert [m.data for m in result.messages] == ["new"] and result.dropped == 1


def test_unread_mailboxes_expire_and_old_cursors_are_unknown(clock: Clock) -> None:
    mailbox = MemoryMailboxes(clock=clock, mailbox_ttl=300)
    start = fresh_cursor(mailbox, "visited1")
    last = mailbox.post("visited1", "before")["visited1"]
    clock.now += 299
    assert mailbox.read("visited1", last).messages == []  # a read restarts the TTL
    clock.now += 299
    assert mailbox.stats()["mailboxes"] == 1
    clock.now += 2
    assert mailbox.stats()["mailboxes"] == 0
    result = mailbox.read("visited1", last)
    assert result.unknown_cursor and result.messages == []
    assert mailbox.read("visited1", start).unknown_cursor


def test_posting_without_reads_expires_too(clock: Clock) -> None:
    mailbox = MemoryMailboxes(clock=clock, mailbox_ttl=10)
    mailbox.post("nobody-reads", "x")
    clock.now += 11
    assert mailbox.stats() == {"mailboxes": 0, "messages": 0, "posted": 1, "dropped": 0}


def test_bounds_on_mailboxes_and_message_size(clock: Clock) -> None:
    mailbox = MemoryMailboxes(clock=clock, max_mailboxes=2, max_message_bytes=8, max_bytes=64)
    mailbox.post(["first-01", "second-1"], "x")
    with pytest.raises(TooManyMailboxes):
        mailbox.post(["first-01", "third-01"], "y")
    assert mailbox.read("first-01", None).messages[-1].data == "x"  # nothing half-posted
    with pytest.raises(TooManyMailboxes):
        mailbox.read("third-01", None)
    with pytest.raises(MessageTooLarge):
        mailbox.post("first-01", "é" * 5)  # 10 bytes in UTF-8


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"max_messages": 0}, "max_messages", id="messages"),
    pytest.param({"mailbox_ttl": 0}, "mailbox_ttl", id="ttl"),
    pytest.param({"max_bytes": 10, "max_message_bytes": 20}, "could never be kept", id="sizes"),
])
def test_bad_bounds_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemoryMailboxes(**kwargs)


def test_a_post_wakes_the_waiters_of_that_mailbox_only() -> None:
    waiters = Waiters(10)
    mailbox = MemoryMailboxes(waiters=waiters)
    mine, other = waiters.register("wake-me1"), waiters.register("not-me01")
    assert mine is not None and other is not None
    mailbox.post("wake-me1", "x")
    assert mine.is_set() and not other.is_set()
    waiters.unregister("wake-me1", mine)
    waiters.unregister("not-me01", other)
    assert len(waiters) == 0


def test_waiters_are_capped() -> None:
    waiters = Waiters(2)
    events = [waiters.register("k"), waiters.register("k")]
    assert None not in events
    assert waiters.register("k") is None and waiters.refused == 1
    waiters.unregister("k", events[0])  # type: ignore[arg-type]
    assert waiters.register("k") is not None


def test_a_sliced_wait_notices_a_client_that_left() -> None:
    event = threading.Event()
    started = time.monotonic()
    client = ClientWatch({"waitress.client_disconnected": lambda: True})
    assert client.wait(event, 10) is False
    assert time.monotonic() - started < 2


def test_a_wait_without_any_disconnect_signal_waits_for_the_event() -> None:
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert ClientWatch({}).wait(event, 10) is True
    assert ClientWatch({}).wait(threading.Event(), 0.01) is False


def test_a_server_departure_notice_ends_the_wait_and_is_withdrawn() -> None:
    watched: List[threading.Event] = []
    left = threading.Event()

    def watch(event: threading.Event) -> Callable[[], None]:
        watched.append(event)
        return lambda: watched.remove(event)

    client = ClientWatch({DEPARTURE: watch,
                          "waitress.client_disconnected": left.is_set})
    event = threading.Event()

    def depart() -> None:
        left.set()
        for waiting in list(watched):
            waiting.set()

    threading.Timer(0.05, depart).start()
    assert client.wait(event, 30) is False  # woken by the departure, not by news
    assert watched == []
    left.clear()
    news = threading.Event()
    news.set()
    assert client.wait(news, 30) is True and watched == []


@pytest.mark.parametrize("threads, limit", [(1, 1), (4, 3), (8, 6), (100, 75)])
def test_default_waiter_limit_leaves_threads(threads: int, limit: int) -> None:
    assert waiter_limit(None, threads) == limit


@pytest.mark.parametrize("value, expected", [
    (None, 0.0), ("", 0.0), ("2.5", 2.5), ("999", 30.0), ("0", 0.0)])
def test_parse_wait(value: str, expected: float) -> None:
    assert parse_wait(value, 30.0) == expected


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon", "1e999"])
def test_parse_wait_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="invalid wait"):
        parse_wait(value, 30.0)
