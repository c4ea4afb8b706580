"""The coalescing writer that keeps Redis off the counting threads: writes are
throttled per request, merged, bounded while the backend is down, and resumed
when it returns."""
from __future__ import annotations

import threading
import time
from typing import Dict, List, Tuple

import pytest

from wsgiprogress.backends.redis.writer import REFUSED, SETTLED, WRITTEN, CoalescingWriter, Snapshot

from server_support import wait_until


class Backend:
    """Records batches; fails while ``down`` is set."""

    def __init__(self) -> None:
        self.batches: List[List[Tuple[str, Snapshot]]] = []
        self.down = threading.Event()
        self.refuse: set = set()

    def flush(self, batch: List[Tuple[str, Snapshot]]) -> Dict[str, str]:
        if self.down.is_set():
            raise ConnectionError("backend down")
        self.batches.append(batch)
        return {key: REFUSED if key in self.refuse else
                SETTLED if snapshot.get("finished") is not None else WRITTEN
                for key, snapshot in batch}

    def writes(self, key: str) -> List[Snapshot]:
        return [snapshot for batch in self.batches for k, snapshot in batch if k == key]


def test_counter_updates_are_merged_and_written_a_few_times_a_second() -> None:
    backend = Backend()
    writer = CoalescingWriter(backend.flush, interval=0.2, limit=100)
    writer.put("upload", {"id": "a", "state": "uploading", "received": 0}, urgent=True)
    started = time.monotonic()
    received = 0
    while time.monotonic() - started < 1.0:  # a thousand small reads a second
        received += 1024
        writer.put("upload", {"received": received})
        time.sleep(0.001)
    assert writer.flush()
    writes = backend.writes("upload")
    assert 3 <= len(writes) <= 8  # about five a second, plus the state change
    assert writes[-1] == {"id": "a", "state": "uploading", "received": received}
    writer.close()


def test_while_the_backend_is_down_only_the_newest_state_is_kept() -> None:
    backend = Backend()
    backend.down.set()
    writer = CoalescingWriter(backend.flush, interval=0.05, limit=100)
    for n in range(10_000):
        writer.put(f"upload-{n % 10}", {"id": f"u{n % 10}", "received": n})
    assert not writer.flush(timeout=0.3)
    assert len(writer._dirty) <= 10 and len(writer._known) == 10  # bounded by uploads
    backend.down.clear()
    assert writer.flush(timeout=10)
    newest = {k: s["received"] for k, s in backend.batches[-1]}
    assert newest == {f"upload-{k}": 9990 + k for k in range(10)}
    writer.close()


def test_refused_requests_are_dropped_until_they_end_and_the_limit_holds() -> None:
    backend = Backend()
    backend.refuse.add("duplicate")
    writer = CoalescingWriter(backend.flush, interval=0.05, limit=2)
    assert writer.put("duplicate", {"id": "d"}, urgent=True)
    assert writer.flush()
    writer.put("duplicate", {"received": 5})
    writer.put("duplicate", {"finished": 1.0}, last=True)
    assert writer.flush()
    assert len(backend.writes("duplicate")) == 1  # nothing after the refusal
    assert writer.put("one", {"id": "1"}) and writer.put("two", {"id": "2"})
    assert not writer.put("three", {"id": "3"})  # full: that request runs untracked
    writer.close()


def test_a_claim_is_answered_when_its_first_write_comes_back() -> None:
    backend = Backend()
    backend.refuse.add("duplicate")
    writer = CoalescingWriter(backend.flush, interval=0.05, limit=10)
    writer.put("owner", {"id": "a"}, urgent=True)
    writer.put("duplicate", {"id": "a"}, urgent=True)
    assert writer.claimed("owner", timeout=5) is True
    assert writer.claimed("duplicate", timeout=5) is False
    writer.put("duplicate", {"finished": 1.0}, last=True)
    assert writer.claimed("duplicate", timeout=5) is True  # ended: nothing pending
    backend.down.set()
    writer.put("unanswered", {"id": "b"}, urgent=True)
    assert writer.claimed("unanswered", timeout=0.1) is None  # no answer in time
    wait_until(lambda: writer._failing)
    started = time.monotonic()
    assert writer.claimed("unanswered", timeout=5) is None  # the backend is away: at once
    assert time.monotonic() - started < 1
    backend.down.clear()
    wait_until(lambda: writer.claimed("unanswered", timeout=0.1) is True, timeout=10)
    writer.close()



def test_closing_while_the_backend_is_down_takes_the_time_given_and_stops(
        caplog: pytest.LogCaptureFixture) -> None:
    backend = Backend()
    backend.down.set()
    writer = CoalescingWriter(backend.flush, interval=0.05, limit=100)
    writer.put("upload-1", {"id": "u1", "received": 1}, urgent=True)
    wait_until(lambda: writer._failing)
    time.sleep(1.0)  # the backoff has grown past the time close is given
    started = time.monotonic()
    writer.close(timeout=0.5)
    assert time.monotonic() - started < 0.8
    assert not writer._thread.is_alive()
    assert "1 upload(s) unwritten" in caplog.text
