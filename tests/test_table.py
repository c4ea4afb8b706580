"""The progress table and its trackers, with a fake clock: states, TTL,
capacity, duplicate IDs, speed, ETA, throttling and store failures."""
from __future__ import annotations

import logging
from typing import Any, Dict, Hashable, List, Mapping, Optional

import pytest

from wsgiprogress import ProgressTable
from wsgiprogress.progress.entry import ProgressEntry
from wsgiprogress.progress.tracker import Tracker

ID = "0123456789abcdef"
KiB = 1024


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(clock: FakeClock) -> ProgressTable:
    return ProgressTable(ttl=30, capacity=4, clock=clock)


def track(table: ProgressTable, progress_id: str = ID, size: Optional[int] = 1000) -> Tracker:
    tracker = table.track(progress_id, size)
    assert tracker is not None
    return tracker


def entry(table: ProgressTable, progress_id: str = ID) -> ProgressEntry:
    found = table.get(progress_id)
    assert found is not None
    return found


# -- states ----------------------------------------------------------------


def test_a_new_entry_is_starting_with_its_size_and_start_time(
        table: ProgressTable, clock: FakeClock) -> None:
    track(table, size=1000)
    got = entry(table)
    assert (got.state, got.received, got.size, got.sent) == ("starting", 0, 1000, 0)
    assert (got.started, got.finished, got.status, got.reason) == (clock.now, None, None, None)
    assert got.response_size is None and got.eta is None


def test_unknown_ids_have_no_entry(table: ProgressTable) -> None:
    assert table.get("never-seen-id") is None


def test_the_full_life_of_a_successful_request(table: ProgressTable, clock: FakeClock) -> None:
    tracker = track(table, size=1000)
    tracker.add_received(400)
    assert entry(table).state == "uploading"
    clock.advance(1)
    tracker.add_received(600)
    tracker.body_complete()
    got = entry(table)
    assert (got.state, got.received, got.eta) == ("processing", 1000, 0.0)
    tracker.start_response(200, 5)
    got = entry(table)
    assert (got.status, got.response_size) == (200, 5)
    tracker.add_sent(5)
    clock.advance(1)
    tracker.finish()
    got = entry(table)
    assert (got.state, got.sent, got.reason, got.finished) == ("done", 5, None, clock.now)


def test_a_chunked_body_learns_its_size_when_complete(table: ProgressTable) -> None:
    tracker = track(table, size=None)
    tracker.add_received(300)
    assert entry(table).size is None and entry(table).eta is None
    tracker.add_received(200)
    tracker.body_complete()
    assert (entry(table).size, entry(table).state) == (500, "processing")


@pytest.mark.parametrize("status, state, reason", [
    (200, "done", None), (302, "done", None), (404, "error", "http_error"),
    (500, "error", "http_error"),
])
def test_the_final_state_follows_the_status(
        table: ProgressTable, status: int, state: str, reason: Optional[str]) -> None:
    tracker = track(table, size=0)
    tracker.body_complete()
    tracker.start_response(status, None)
    tracker.finish()
    got = entry(table)
    assert (got.state, got.reason, got.status) == (state, reason, status)


def test_a_response_that_never_started_ends_aborted(table: ProgressTable) -> None:
    tracker = track(table)
    tracker.add_received(10)
    tracker.finish()
    assert (entry(table).state, entry(table).reason) == ("error", "aborted")


def test_a_failure_is_sticky(table: ProgressTable) -> None:
    tracker = track(table)
    tracker.fail("too_large", 413)
    tracker.start_response(200, None)
    tracker.finish()
    tracker.fail("aborted")
    got = entry(table)
    assert (got.state, got.reason, got.status) == ("error", "too_large", 413)


def test_an_ended_entry_keeps_its_final_counts(table: ProgressTable) -> None:
    tracker = track(table, size=10)
    tracker.add_received(4)
    tracker.fail("aborted")
    final = entry(table)
    # what the owner still does after the end: the application answers an aborted upload
    tracker.add_received(6)
    tracker.body_complete()
    tracker.start_response(200, 5)
    tracker.add_produced(5)
    tracker.add_sent(5)
    tracker.finish()
    got = entry(table)
    assert (got.state, got.reason, got.received, got.sent, got.status, got.response_size) == \
        ("error", "aborted", 4, 0, None, None)
    assert got.finished == final.finished is not None


def test_response_size_is_the_bytes_produced_without_content_length(table: ProgressTable) -> None:
    tracker = track(table, size=0)
    tracker.add_produced(100)  # before the response starts: not a size yet
    assert entry(table).response_size is None
    tracker.start_response(200, None)
    tracker.add_produced(50)
    tracker.finish()
    assert entry(table).response_size == 150


def test_entries_are_copies(table: ProgressTable) -> None:
    track(table)
    table.get(ID).state = "done"  # type: ignore[union-attr]
    assert entry(table).state == "starting"


# -- TTL -------------------------------------------------------------------


def test_a_finished_entry_expires_after_ttl(table: ProgressTable, clock: FakeClock) -> None:
    tracker = track(table, size=0)
    tracker.start_response(200, 0)
    tracker.finish()
    clock.advance(29.9)
    assert entry(table).state == "done"
    clock.advance(0.1)
    assert table.get(ID) is None
    assert len(table) == 0


def test_running_entries_never_expire(table: ProgressTable, clock: FakeClock) -> None:
    track(table)
    clock.advance(10 * 86400)
    assert entry(table).state == "starting"


def test_ttl_zero_hides_a_finished_entry_at_once(clock: FakeClock) -> None:
    table = ProgressTable(ttl=0, clock=clock)
    tracker = track(table)
    tracker.finish()
    assert table.get(ID) is None


@pytest.mark.parametrize("settings, message", [
    ({"ttl": -1}, "ttl: expected a number of seconds >= 0"),
    ({"ttl": "soon"}, "ttl: expected a number of seconds"),
    ({"ttl": True}, "ttl: expected a number of seconds"),
    ({"capacity": 0}, "capacity: expected a whole number >= 1"),
    ({"capacity": 2.5}, "capacity: expected a whole number"),
    ({"tll": 5}, "unknown setting 'tll'; did you mean 'ttl'?"),
])
def test_bad_settings_are_refused_with_a_fix(settings: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProgressTable(**settings)


# -- capacity and duplicates ------------------------------------------------


def test_a_full_table_leaves_new_requests_untracked_with_one_warning(
        table: ProgressTable, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(4):
        track(table, f"running-{n:04d}")
    with caplog.at_level(logging.WARNING, logger="wsgiprogress"):
        assert table.track("one-too-many", 10) is None
        assert table.track("two-too-many", 10) is None
        clock.advance(10)
        assert table.track("three-too-many", 10) is None
    assert table.get("one-too-many") is None
    assert [r.message for r in caplog.records if "full" in r.message] == [
        "progress table full (4 running requests); request untracked; raise capacity",
        "progress table full (4 running requests); request untracked; raise capacity; "
        "1 more since the last warning"]
    assert table.counts() == {"running": 4, "finished": 0}


def test_the_oldest_finished_entry_makes_room(table: ProgressTable, clock: FakeClock) -> None:
    for n in range(4):
        tracker = track(table, f"entry-{n:04d}")
        if n < 2:
            tracker.finish()
            clock.advance(1)
    assert table.track("newcomer", 10) is not None
    assert table.get("entry-0000") is None
    assert table.get("entry-0001") is not None
    assert table.counts() == {"running": 3, "finished": 1}


def test_a_duplicate_of_a_running_id_is_untracked_and_changes_nothing(
        table: ProgressTable, caplog: pytest.LogCaptureFixture) -> None:
    first = track(table)
    first.add_received(100)
    with caplog.at_level(logging.WARNING, logger="wsgiprogress"):
        assert table.track(ID, 5) is None
    assert "already in use" in caplog.text
    got = entry(table)
    assert (got.state, got.received, got.size) == ("uploading", 100, 1000)


def test_a_finished_id_starts_fresh_and_the_old_tracker_loses_it(
        table: ProgressTable, clock: FakeClock) -> None:
    old = track(table)
    old.add_received(1000)
    old.finish()
    clock.advance(1)
    new = track(table, size=50)
    old.add_received(7)  # late bytes of the old request must not leak in
    old.finish()
    got = entry(table)
    assert (got.state, got.received, got.size, got.started) == ("starting", 0, 50, clock.now)
    new.add_received(50)
    assert entry(table).received == 50


# -- speed, ETA and throttling -----------------------------------------------


def test_speed_and_eta_follow_the_upload(table: ProgressTable, clock: FakeClock) -> None:
    tracker = track(table, size=10 * 256 * KiB)
    tracker.add_received(256 * KiB)  # the first piece starts the clock
    assert entry(table).speed == 0.0 and entry(table).eta is None
    for _ in range(4):
        clock.advance(0.5)
        tracker.add_received(256 * KiB)
    got = entry(table)
    assert got.speed == pytest.approx(512 * KiB)
    assert got.eta == pytest.approx(5 * 256 * KiB / (512 * KiB))


def test_speed_is_smoothed_after_a_change_of_pace(
        table: ProgressTable, clock: FakeClock) -> None:
    tracker = track(table, size=None)
    tracker.add_received(1)
    for _ in range(30):  # 10 s at 1 MiB/s
        clock.advance(1 / 3)
        tracker.add_received(349_525)
    steady = entry(table).speed
    assert steady == pytest.approx(1024 * KiB, rel=0.01)
    clock.advance(1)  # one second at a quarter of the pace
    tracker.add_received(256 * KiB)
    slowed = entry(table).speed
    assert 256 * KiB < slowed < steady  # moves towards the new pace, not jumps


def test_a_resumed_uploads_final_speed_counts_only_its_own_bytes(
        table: ProgressTable, clock: FakeClock) -> None:
    # earlier connections brought 900 KiB; this one brings the last 100 KiB in 2 s
    tracker = table.track(ID, 1000 * KiB, owner="upload-owner", offset=900 * KiB)
    assert tracker is not None
    for _ in range(4):
        clock.advance(0.5)
        tracker.add_received(25 * KiB)
    final = entry(table)
    assert final.state == "processing" and final.received == 1000 * KiB
    assert final.speed == pytest.approx(50 * KiB)  # not 1000 KiB / 2 s


class CountingTable(ProgressTable):
    """Counts what the tracker tells the store."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.updates: List[Dict[str, Any]] = []

    def update(self, progress_id: str, token: Any, fields: Any) -> None:
        self.updates.append(dict(fields))
        super().update(progress_id, token, fields)


@pytest.mark.parametrize("shared, heard", [
    pytest.param(False, [], id="this-process"),  # reads come from the live tracker
    pytest.param(True, ["uploading", "processing"], id="shared"),  # as Redis
])
def test_reads_see_every_byte_and_the_store_hears_only_state_changes(
        clock: FakeClock, shared: bool, heard: List[str]) -> None:
    table = CountingTable(clock=clock)
    table.shared = shared
    tracker = track(table, size=10 * 1024 * KiB)
    for _ in range(300):
        tracker.add_received(KiB)
        assert entry(table).received == tracker.received  # no lag
        assert table.read(ID).received == tracker.received
    assert entry(table).state == "uploading"
    tracker.add_received(10 * 1024 * KiB - tracker.received)
    assert entry(table).state == "processing"
    assert [u["state"] for u in table.updates] == heard
    tracker.finish()
    assert entry(table).state == "error"  # no response started: aborted


def test_a_state_change_is_published_at_once(table: ProgressTable) -> None:
    tracker = track(table, size=100)
    tracker.add_received(1)
    tracker.add_received(98)
    assert entry(table).received == 99  # live
    tracker.add_received(1)  # the declared size arrived: the body is complete
    got = entry(table)
    assert (got.state, got.received) == ("processing", 100)


def test_a_waiting_client_is_woken_by_counting_at_most_every_wake_interval(
        table: ProgressTable, clock: FakeClock) -> None:
    tracker = track(table, size=10 * 1024 * KiB)
    tracker.add_received(1)
    event = table.waiters.register(ID)
    assert event is not None
    table.watch(ID)
    tracker.add_received(KiB)
    assert event.is_set()  # the first change wakes at once
    event.clear()
    tracker.add_received(KiB)
    assert not event.is_set()  # within wake_interval: no second wake-up
    clock.advance(Tracker.wake_interval * 1.01)
    tracker.add_received(KiB)
    assert event.is_set()
    table.waiters.unregister(ID, event)
    event.clear()
    clock.advance(Tracker.wake_interval * 1.01)
    tracker.add_received(KiB)  # nobody waits: counting stops looking
    tracker.add_received(KiB)
    assert not event.is_set() and entry(table).received == tracker.received


def test_a_client_waiting_before_the_request_starts_is_woken_by_its_bytes(
        table: ProgressTable, clock: FakeClock) -> None:
    event = table.waiters.register(ID)
    assert event is not None
    tracker = track(table, size=10 * KiB)  # no watch() call: the store sees the waiter
    tracker.add_received(1)
    event.clear()
    clock.advance(Tracker.wake_interval * 1.01)
    tracker.add_received(KiB)
    assert event.is_set()
    table.waiters.unregister(ID, event)


def test_response_bytes_wake_a_waiting_client_too(
        table: ProgressTable, clock: FakeClock) -> None:
    tracker = track(table, size=0)
    tracker.body_complete()
    tracker.start_response("200 OK", 10 * KiB)
    event = table.waiters.register(ID)
    assert event is not None
    table.watch(ID)
    tracker.add_sent(KiB)
    assert event.is_set() and entry(table).sent == KiB
    table.waiters.unregister(ID, event)


# -- a failing store ---------------------------------------------------------


class BrokenTable(ProgressTable):
    """A table whose *broken* write fails, heard as a remote store is."""

    shared = True

    def __init__(self, broken: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.broken = broken
        self.calls: List[str] = []

    def begin(self, progress_id: str, size: Optional[int]) -> Optional[int]:
        if self.broken == "begin":
            raise ConnectionError("store down")
        return super().begin(progress_id, size)

    def update(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        self.calls.append("update")
        if self.broken == "update":
            raise ConnectionError("store down")
        super().update(progress_id, token, fields)

    def finish(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        raise ConnectionError("store down")


def test_a_store_that_cannot_begin_leaves_the_request_untracked(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wsgiprogress"):
        assert BrokenTable("begin").track(ID, 10) is None
    assert "failed to begin" in caplog.text


def test_a_store_that_fails_later_is_logged_once_and_never_raises(
        caplog: pytest.LogCaptureFixture) -> None:
    store = BrokenTable("update")
    tracker = store.track(ID, 10)
    assert tracker is not None
    with caplog.at_level(logging.WARNING, logger="wsgiprogress"):
        tracker.add_received(5)
        tracker.add_received(5)
        tracker.body_complete()
        tracker.start_response(200, None)
        tracker.finish()
    assert store.calls == ["update"]  # gave up on the store after its first failure
    assert [r.message for r in caplog.records] == [
        f"progress store failed to update {ID!r}; its progress degrades"]
    assert tracker.state == "done"


def test_recent_lists_the_newest_entries_first(table: ProgressTable, clock: FakeClock) -> None:
    for n in range(3):
        tracker = track(table, f"entry-{n:04d}")
        if n == 0:
            tracker.finish()
        clock.advance(1)
    track(table, "entry-0000")  # a finished ID used again is the newest
    assert [e.id for e in table.recent()] == ["entry-0000", "entry-0002", "entry-0001"]
    assert [e.id for e in table.recent(limit=1)] == ["entry-0000"]
    table.recent()[0].state = "done"  # copies
    assert table.recent()[0].state == "starting"
    clock.advance(60)
    assert len(table.recent()) == 3  # running entries never expire


def test_reads_in_quick_succession_see_the_same_entry(
        table: ProgressTable, clock: FakeClock) -> None:
    # an event stream sends an event per change: reading must not be a change
    tracker = track(table, size=10 * 1024 * KiB)
    tracker.add_received(1)
    clock.advance(1.0)
    tracker.add_received(512 * KiB)
    first = table.read(ID)
    clock.advance(0.01)
    assert table.read(ID) == first
    clock.advance(0.5)
    assert table.read(ID).speed != first.speed  # measured again once time has passed
