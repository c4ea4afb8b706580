"""The behaviour every backend owes, run against memory:// and a real
redis-server: progress states, duplicates, reuse, TTL, capacity, listings;
mailbox order, fan-out, retention, gaps, expiry, bounds and stats."""
from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Iterator, List

import pytest

from wsgiprogress.backends import Backend, backend_from_url
from wsgiprogress.mailbox import MessageTooLarge, TooManyMailboxes
from wsgiprogress.progress.entry import ProgressEntry
from wsgiprogress.progress.tracker import Tracker

ID = "contract-0001"
_prefixes = itertools.count()


@pytest.fixture(params=["memory", "redis"])
def make(request: Any) -> Iterator[Callable[..., Backend]]:
    """Makes backends of the parameter's kind; each with keys of its own."""
    made: List[Backend] = []

    def factory(**options: Any) -> Backend:
        url = "memory://"
        if request.param == "redis":
            url = request.getfixturevalue("redis").url
            options.setdefault("key_prefix", f"contract{next(_prefixes)}:")
        backend = backend_from_url(url, **options)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def track(backend: Backend, progress_id: str = ID, size: Any = 100) -> Tracker:
    tracker = backend.progress.track(progress_id, size)
    assert tracker is not None
    return tracker


def entry(backend: Backend, progress_id: str = ID) -> ProgressEntry:
    assert backend.progress.flush()
    found = backend.progress.get(progress_id)
    assert found is not None
    return found


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- progress ---------------------------------------------------------------------


def test_a_request_goes_through_every_state(make: Callable[..., Backend]) -> None:
    backend = make()
    tracker = track(backend)
    assert (entry(backend).state, entry(backend).size) == ("starting", 100)
    tracker.add_received(40)
    assert (entry(backend).state, entry(backend).received) == ("uploading", 40)
    tracker.add_received(60)
    tracker.body_complete()
    assert (entry(backend).state, entry(backend).received) == ("processing", 100)
    tracker.start_response(201, 7)
    tracker.add_sent(7)
    tracker.finish()
    got = entry(backend)
    assert (got.state, got.status, got.sent, got.response_size) == ("done", 201, 7, 7)
    assert got.finished is not None and got.started is not None
    assert got.finished >= got.started


def test_errors_keep_their_reason_and_status(make: Callable[..., Backend]) -> None:
    backend = make()
    track(backend, "error-too-large").fail("too_large", 413)
    track(backend, "error-aborted1").fail("aborted")
    assert (entry(backend, "error-too-large").reason, entry(backend, "error-too-large").status) \
        == ("too_large", 413)
    assert entry(backend, "error-aborted1").state == "error"


def test_unknown_ids_have_no_entry(make: Callable[..., Backend]) -> None:
    backend = make()
    assert backend.progress.flush()
    assert backend.progress.get("never-seen-here") is None


def test_a_duplicate_of_a_running_id_changes_nothing(make: Callable[..., Backend]) -> None:
    backend = make()
    first = track(backend)
    first.add_received(10)
    assert entry(backend).received == 10
    second = backend.progress.track(ID, 5)
    if second is not None:  # a remote store refuses when it writes, not at once
        second.add_received(5)
        second.body_complete()
        second.finish()
    got = entry(backend)
    assert (got.state, got.received, got.size) == ("uploading", 10, 100)
    first.add_received(90)
    first.body_complete()
    assert (entry(backend).state, entry(backend).received) == ("processing", 100)  # still its own


def test_an_upload_hands_its_entry_over_to_its_next_request(make: Callable[..., Backend]) -> None:
    backend = make()
    store = backend.progress
    first = store.track(ID, 100, owner="upload-one", offset=0)
    assert first is not None
    first.add_received(30)
    first.hand_over()
    first.add_received(5)  # late: changes nothing
    first.finish()
    got = entry(backend)
    assert (got.state, got.received, got.size) == ("uploading", 30, 100)  # running, unowned
    # another request with the ID, or another upload's, is still refused (a
    # remote store when it writes)
    for other in (store.track(ID, 5), store.track(ID, 100, owner="upload-two", offset=30)):
        if other is not None:
            other.add_received(5)
            other.finish()
    assert (entry(backend).state, entry(backend).received) == ("uploading", 30)
    second = store.track(ID, 100, owner="upload-one", offset=30)  # the upload's next request
    assert second is not None and (second.state, second.received) == ("uploading", 30)
    assert (entry(backend).state, entry(backend).received) == ("uploading", 30)
    second.add_received(70)
    second.start_response(204, 0)
    second.finish()
    got = entry(backend)
    assert (got.state, got.received, got.status) == ("done", 100, 204)


def test_a_finished_id_starts_fresh(make: Callable[..., Backend]) -> None:
    backend = make()
    old = track(backend)
    old.add_received(100)
    old.finish()
    assert entry(backend).state == "error"  # no response: aborted
    track(backend, size=7)
    got = entry(backend)
    assert (got.state, got.received, got.size) == ("starting", 0, 7)


def test_a_finished_entry_expires_after_its_ttl(make: Callable[..., Backend]) -> None:
    backend = make(ttl=0.3)
    tracker = track(backend, size=0)
    tracker.start_response(200, 0)
    tracker.finish()
    assert entry(backend).state == "done"
    assert eventually(lambda: backend.progress.get(ID) is None)


def test_running_entries_beyond_capacity_are_not_tracked(make: Callable[..., Backend]) -> None:
    backend = make(capacity=3)
    for n in range(3):
        track(backend, f"capacity-{n:03d}")
    extra = backend.progress.track("capacity-extra", 10)
    if extra is not None:
        extra.add_received(10)
    assert backend.progress.flush()
    assert backend.progress.get("capacity-extra") is None
    assert backend.progress.counts()["running"] == 3


def test_recent_lists_newest_first_and_counts_add_up(make: Callable[..., Backend]) -> None:
    backend = make()
    for n in range(3):
        tracker = track(backend, f"recent-{n:04d}")
        if n == 1:
            tracker.finish()
        time.sleep(0.01)  # distinct start times
    assert backend.progress.flush()
    assert [e.id for e in backend.progress.recent()] == ["recent-0002", "recent-0001",
                                                         "recent-0000"]
    assert [e.id for e in backend.progress.recent(limit=1)] == ["recent-0002"]
    assert backend.progress.counts() == {"running": 2, "finished": 1}


# -- mailboxes --------------------------------------------------------------------


def test_messages_come_in_order_with_dense_ids(make: Callable[..., Backend]) -> None:
    mailbox = make().mailbox
    cursor = mailbox.read("inbox-order", None).cursor
    ids = [mailbox.post("inbox-order", f"m{n}")["inbox-order"] for n in range(5)]
    assert ids == list(range(ids[0], ids[0] + 5))
    result = mailbox.read("inbox-order", cursor)
    assert [m.data for m in result.messages] == [f"m{n}" for n in range(5)]
    assert (result.cursor, result.dropped, result.unknown_cursor) == (ids[-1], 0, False)
    assert mailbox.read("inbox-order", ids[2]).messages[0].data == "m3"


def test_fan_out_reaches_every_mailbox_once(make: Callable[..., Backend]) -> None:
    mailbox = make().mailbox
    names = ["fan-out-a", "fan-out-b", "fan-out-a", "fan-out-c"]
    ids = mailbox.post(names, "hello ü")
    assert sorted(ids) == ["fan-out-a", "fan-out-b", "fan-out-c"]
    for name in ids:
        assert [m.data for m in mailbox.read(name, None).messages] == ["hello ü"]


def test_retention_drops_the_oldest_and_reports_the_gap(make: Callable[..., Backend]) -> None:
    mailbox = make(max_messages=3, max_bytes=100, max_message_bytes=50).mailbox
    cursor = mailbox.read("inbox-gap", None).cursor
    for n in range(5):
        mailbox.post("inbox-gap", f"m{n}")
    result = mailbox.read("inbox-gap", cursor)
    assert ([m.data for m in result.messages], result.dropped) == (["m2", "m3", "m4"], 2)
    mailbox.post("inbox-gap", "x" * 50)
    mailbox.post("inbox-gap", "y" * 50)  # 100 bytes kept at most
    assert [m.data[0] for m in mailbox.read("inbox-gap", None).messages] == ["x", "y"]
    with pytest.raises(MessageTooLarge):
        mailbox.post("inbox-gap", "z" * 51)
    assert mailbox.stats()["dropped"] == 5


def test_an_expired_mailbox_says_the_cursor_is_unknown(make: Callable[..., Backend]) -> None:
    mailbox = make(mailbox_ttl=0.3).mailbox
    mailbox.read("inbox-expiry", None)
    last = mailbox.post("inbox-expiry", "before")["inbox-expiry"]
    time.sleep(0.5)
    result = mailbox.read("inbox-expiry", last)  # a new mailbox: the cursor means nothing
    assert result.unknown_cursor and result.messages == []


def test_the_number_of_mailboxes_is_bounded(make: Callable[..., Backend]) -> None:
    mailbox = make(max_mailboxes=2).mailbox
    mailbox.post(["bounded-a", "bounded-b"], "x")
    with pytest.raises(TooManyMailboxes):
        mailbox.post("bounded-c", "x")
    with pytest.raises(TooManyMailboxes):
        mailbox.read("bounded-d", None)
    assert mailbox.stats() == {"mailboxes": 2, "messages": 2, "posted": 2, "dropped": 0}


def test_a_post_wakes_the_mailbox_waiters(make: Callable[..., Backend]) -> None:
    backend = make()
    backend.mailbox.read("inbox-wake", None)
    event = backend.mailbox.waiters.register("inbox-wake")
    assert event is not None
    backend.mailbox.post("inbox-wake", "news")
    assert event.wait(5)


def test_when_full_the_oldest_empty_mailbox_makes_room(make: Callable[..., Backend]) -> None:
    mailbox = make(max_mailboxes=3).mailbox
    kept = mailbox.read("holds-a-message", None).cursor
    mailbox.post("holds-a-message", "keep me")
    invented = mailbox.read("invented-name-1", None).cursor  # nothing in it
    mailbox.read("invented-name-2", None)
    time.sleep(0.01)
    mailbox.read("a-newcomer-box", None)  # full: the oldest empty one goes
    again = mailbox.read("invented-name-1", invented)
    assert again.unknown_cursor  # its reader is told, nothing was lost
    assert [m.data for m in mailbox.read("holds-a-message", kept).messages] == ["keep me"]
    assert mailbox.stats()["mailboxes"] == 3


def test_mailboxes_that_hold_messages_are_never_evicted(make: Callable[..., Backend]) -> None:
    mailbox = make(max_mailboxes=2).mailbox
    mailbox.post(["full-box-one", "full-box-two"], "x")
    with pytest.raises(TooManyMailboxes):
        mailbox.read("one-more-box", None)


def test_late_changes_after_the_end_change_nothing_and_break_nothing(
        make: Callable[..., Backend]) -> None:
    backend = make()
    aborted = track(backend, "late-changes")
    aborted.add_received(10)
    aborted.fail("aborted")
    aborted.start_response(400, 5)  # the application answers anyway
    aborted.add_sent(5)
    aborted.finish()
    got = entry(backend, "late-changes")
    assert (got.state, got.reason, got.received) == ("error", "aborted", 10)
    later = track(backend, "after-that")  # the store still works
    later.body_complete()
    assert entry(backend, "after-that").state == "processing"
