"""The Redis backend when things go wrong: a process killed in the middle
of an upload, Redis stalled, flushed or refusing writes.  Real redis-server,
real server processes; what the client, the probe and the log see."""
from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from wsgiprogress.backends import backend_from_url
from wsgiprogress.backends.redis import operations as redis_operations
from wsgiprogress.backends.redis import progress as redis_progress
from wsgiprogress.mailbox import MailboxError
from wsgiprogress.progress.store import BackendUnavailable

from redis_support import RedisServer, StallingProxy, timed_get
from server_support import (
    HOST,
    SlowUpload,
    probe,
    start_process,
    stop_process,
    wait_for_state,
    wait_until,
)

MiB = 1024 * 1024
_prefixes = itertools.count()
#: Short enough for a test, in every process: a beat and the silence that
#: makes a running entry abandoned.
BEAT, STALE_AFTER = 0.2, 1.5


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (redis_progress, redis_operations):
        monkeypatch.setattr(module, "BEAT", BEAT, raising=False)
        monkeypatch.setattr(module, "STALE_AFTER", STALE_AFTER, raising=False)


def serve(redis: RedisServer, prefix: str) -> "Tuple[subprocess.Popen[str], int]":
    """Our server in a process of its own, with :data:`BEAT` and :data:`STALE_AFTER`."""
    code = ("import sys; from wsgiprogress.backends.redis import progress as p; "
            f"p.BEAT, p.STALE_AFTER = {BEAT}, {STALE_AFTER}; "
            "from wsgiprogress.cli import main; main(sys.argv)")
    return start_process([sys.executable, "-c", code, "--listen", f"{HOST}:0", "--backend",
                          redis.url, "--key-prefix", prefix, "server_apps:app"])


def ended(port: int, progress_id: str) -> Optional[Dict[str, Any]]:
    """The probe's answer once it shows the request ended, else ``None``."""
    answer = probe(port, progress_id)
    return answer if answer["state"] in ("done", "error") else None


@pytest.fixture
def two(redis: RedisServer) -> Iterator["Tuple[subprocess.Popen[str], int, int]"]:
    """Two servers on one Redis: the first (to be killed), the second's port."""
    prefix = f"faults{next(_prefixes)}:"
    first, first_port = serve(redis, prefix)
    second, second_port = serve(redis, prefix)
    try:
        yield first, first_port, second_port
    finally:
        for process in (first, second):
            if process.poll() is None:
                stop_process(process)


def test_an_upload_of_a_killed_process_ends_and_its_id_is_free_again(
        two: "Tuple[subprocess.Popen[str], int, int]") -> None:
    first, port, other = two
    client = SlowUpload(port, "/upload?X-Progress-ID=killed-01", 64 * MiB, piece=64 * 1024,
                        delay=0.05)
    client.start()
    wait_until(lambda: probe(other, "killed-01")["received"] >= 128 * 1024, timeout=10)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed = time.monotonic()
    shown = wait_until(lambda: ended(other, "killed-01"), timeout=10,
                       message=lambda: str(probe(other, "killed-01")))
    assert time.monotonic() - killed < STALE_AFTER + 1.0
    assert (shown["reason"], shown["finished"] is not None) == ("aborted", True)
    client.join(10)
    # the client tries again, at the other process: tracked as a new upload
    again = SlowUpload(other, "/upload?X-Progress-ID=killed-01", 2 * MiB, piece=256 * 1024,
                       delay=0.05)
    again.start()
    assert wait_until(lambda: probe(other, "killed-01")["size"] == 2 * MiB, timeout=10)
    again.join(30)
    assert again.reply.startswith(b"HTTP/1.1 200 ")
    final = wait_for_state(other, "killed-01", ("done",))
    assert final["received"] == 2 * MiB


def test_a_live_request_that_does_not_move_is_not_taken_for_abandoned(
        redis: RedisServer, quick: None) -> None:
    here, there = (backend_from_url(redis.url, key_prefix="idle:") for _ in range(2))
    try:
        tracker = here.progress.track("idle-01", 100)
        assert tracker is not None
        tracker.add_received(10)
        assert here.progress.flush()
        deadline = time.monotonic() + 3 * STALE_AFTER
        while time.monotonic() < deadline:  # the client pauses; its process lives
            shown = there.progress.get("idle-01")
            assert shown is not None and (shown.state, shown.received) == ("uploading", 10)
            time.sleep(0.1)
        assert there.progress.counts()["running"] == 1
        duplicate = there.progress.track("idle-01", 100)
        assert duplicate is not None and not there.progress.claim_stands(duplicate)
    finally:
        here.close()
        there.close()


def test_a_stalled_redis_holds_no_probe_behind_mailbox_long_polls(redis: RedisServer) -> None:
    with StallingProxy(redis.port) as proxy:
        server, port = start_process([
            sys.executable, "-m", "wsgiprogress", "--listen", f"{HOST}:0", "--backend",
            f"redis://{HOST}:{proxy.port}/0", "--key-prefix", f"stall{next(_prefixes)}:",
            "--mailbox", "server_apps:app"])
        try:
            assert timed_get(port, "/mailbox/" + "a" * 32)[0] == 200
            proxy.stall()
            answers: List[Tuple[int, float]] = []
            stop = threading.Event()

            def poll(name: str) -> None:  # a chat client: long-polls again at once
                while not stop.is_set():
                    answers.append(timed_get(port, f"/mailbox/{name}?wait=5"))

            pollers = [threading.Thread(target=poll, args=(c * 32,)) for c in "bcde"]
            for poller in pollers:
                poller.start()
            try:
                # the first calls wait for their timeout; then Redis is known away
                wait_until(lambda: answers, timeout=15)
                assert answers[0][0] == 503
                probes = [timed_get(port, "/progress?X-Progress-ID=stalled-01")
                          for _ in range(10)]
            finally:
                stop.set()
                for poller in pollers:
                    poller.join(30)
            assert {status for status, _ in probes} == {200}
            assert max(seconds for _, seconds in probes) < 1.0, probes
            # a clear answer each, at once but for the one call a second that tries
            assert {status for status, _ in answers} == {503}
            assert sum(seconds < 1.0 for _, seconds in answers) > len(answers) / 2, answers
        finally:
            stop_process(server)


def test_one_entry_redis_cannot_write_stops_no_other(redis: RedisServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"poison{next(_prefixes)}:"
    redis.client().hset(f"{prefix}p:poisoned-01", "not", "an entry")  # another app's key, say
    backend = backend_from_url(redis.url, key_prefix=prefix)
    try:
        poisoned, other = (backend.progress.track(name, 100)
                           for name in ("poisoned-01", "healthy-01"))
        assert poisoned is not None and other is not None
        for tracker in (poisoned, other):
            tracker.add_received(100)
            tracker.start_response("200 OK", None)
            tracker.finish()
        assert backend.progress.flush()
        found = backend.progress.get("healthy-01")
        assert found is not None and (found.state, found.received) == ("done", 100)
        later = backend.progress.track("healthy-02", 10)
        assert later is not None
        later.add_received(5)
        assert backend.progress.flush()
        found = backend.progress.get("healthy-02")
        assert found is not None and found.received == 5
        assert "progress writer: Redis refused the entry" in caplog.text
    finally:
        backend.close()


def test_once_redis_is_known_stalled_every_reader_answers_at_once(redis: RedisServer) -> None:
    with StallingProxy(redis.port) as proxy:
        backend = backend_from_url(f"redis://{HOST}:{proxy.port}/0",
                                   key_prefix=f"readers{next(_prefixes)}:")
        try:
            assert backend.progress.get("reader-01") is None
            proxy.stall()
            with pytest.raises(MailboxError):
                backend.mailbox.read("b" * 32, None)  # one pool: its 5 s
            with pytest.raises(BackendUnavailable):
                backend.progress.get("reader-01")  # the probe's pool: its short deadline
            reads: List[Callable[[], Any]] = [
                lambda: backend.progress.get("reader-01"), backend.progress.counts,
                backend.progress.recent, lambda: backend.mailbox.read("b" * 32, None),
                lambda: backend.mailbox.post("b" * 32, "hello"), backend.mailbox.stats,
                lambda: backend.operations.get("c" * 32)]
            for read in reads:
                started = time.monotonic()
                with pytest.raises(Exception, match="unavailable"):
                    read()
                assert time.monotonic() - started < 0.2, read
        finally:
            proxy.resume()
            backend.close()


#: Process A of the operations tests: makes an operation, says its id, waits to be killed.
RUNS_AN_OPERATION = """
import sys, time
from wsgiprogress.backends import backend_from_url
from wsgiprogress.backends.redis import operations
operations.BEAT, operations.STALE_AFTER = float(sys.argv[3]), float(sys.argv[4])
backend = backend_from_url(sys.argv[1], key_prefix=sys.argv[2])
print(backend.operations.create(), flush=True)
time.sleep(60)
"""


def test_an_operation_of_a_killed_process_ends_and_a_live_one_runs_on(
        redis: RedisServer, quick: None) -> None:
    prefix = f"ops{next(_prefixes)}:"
    here = backend_from_url(redis.url, key_prefix=prefix)
    process = subprocess.Popen([sys.executable, "-c", RUNS_AN_OPERATION, redis.url, prefix,
                                str(BEAT), str(STALE_AFTER)], stdout=subprocess.PIPE, text=True)
    try:
        killed_id = process.stdout.readline().strip()  # type: ignore[union-attr]
        live_id = here.operations.create()
        assert killed_id and live_id
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        killed = time.monotonic()

        def state(op_id: str) -> str:
            record = here.operations.get(op_id)
            assert record is not None
            return record.state

        wait_until(lambda: state(killed_id) == "error", timeout=10)
        assert time.monotonic() - killed < STALE_AFTER + 1.0
        assert here.operations.get(killed_id).finished is not None  # type: ignore[union-attr]
        assert state(live_id) == "running"  # it reported nothing all along: its beats count
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        here.close()


def test_an_operation_of_a_killed_process_makes_room_as_a_finished_one(
        redis: RedisServer, quick: None) -> None:
    """At ``max_operations``, the oldest operation is one whose process was
    killed: once it shows ended, it makes room for a new one, as a finished
    one would (it no longer holds the store full until it expires)."""
    prefix = f"ops{next(_prefixes)}:"
    here = backend_from_url(redis.url, key_prefix=prefix, max_operations=2)
    process = subprocess.Popen([sys.executable, "-c", RUNS_AN_OPERATION, redis.url, prefix,
                                str(BEAT), str(STALE_AFTER)], stdout=subprocess.PIPE, text=True)
    try:
        killed_id = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert killed_id
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        wait_until(lambda: here.operations.get(killed_id).state == "error",  # type: ignore
                   timeout=10)
        finished_id = here.operations.create()
        assert finished_id is not None
        here.operations.finish(finished_id, 200, None)
        newest = here.operations.create()
        assert newest is not None
        assert here.operations.get(killed_id) is None
        assert here.operations.get(finished_id) is not None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        here.close()
