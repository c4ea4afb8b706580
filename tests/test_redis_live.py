"""Several processes sharing one real redis-server: progress of an upload
through one server polled through another, a mailbox message crossing
processes, gunicorn with four sync workers, and Redis killed and restarted
in the middle of an upload."""
from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from wsgiprogress.backends import backend_from_url

from gunicorn_support import gunicorn
from redis_support import RedisServer, timed_get
from server_support import (
    HOST,
    SlowUpload,
    probe,
    received_while,
    start_process,
    stop_process,
    wait_for_state,
    wait_until,
    watched_upload,
)

MiB = 1024 * 1024
TOKEN = "redis-live-token-0123456789"
NAME = "0123456789abcdef0123456789abcdef"
_prefixes = itertools.count()


@pytest.fixture
def servers(redis: RedisServer) -> Iterator[Tuple[int, int]]:
    """Two wsgiprogress-serve processes on one Redis, with mailboxes."""
    prefix = f"live{next(_prefixes)}:"
    args = [sys.executable, "-m", "wsgiprogress", "--listen", f"{HOST}:0", "--backend",
            redis.url, "--key-prefix", prefix, "--mailbox", "--publish", "--publish-token",
            TOKEN, "server_apps:app"]
    first, first_port = start_process(args)
    try:
        second, second_port = start_process(args)
        try:
            yield first_port, second_port
        finally:
            stop_process(second)
    finally:
        stop_process(first)


def test_progress_through_one_server_is_live_at_the_other(servers: Tuple[int, int]) -> None:
    upload_port, probe_port = servers
    client, seen = watched_upload(upload_port, "across-01", 8 * MiB, probe_port, interval=0.05,
                                  piece=256 * 1024, delay=0.05)
    assert client.reply.endswith(b"%d" % (8 * MiB))
    uploading = received_while(seen, "uploading")
    assert len(uploading) >= 3 and uploading == sorted(uploading), seen
    final = wait_for_state(probe_port, "across-01", ("done",))
    assert (final["received"], final["size"]) == (8 * MiB, 8 * MiB)


def get_json(port: int, path: str, timeout: float = 15) -> Tuple[int, dict]:
    conn = HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_message_posted_in_one_process_reaches_a_waiter_in_the_other(
        servers: Tuple[int, int]) -> None:
    publish_port, wait_port = servers
    _, first = get_json(wait_port, f"/mailbox/{NAME}")
    conn = HTTPConnection(HOST, wait_port, timeout=15)
    conn.request("GET", f"/mailbox/{NAME}?after={first['cursor']}&wait=10")
    time.sleep(0.3)  # parked in the other process
    publisher = HTTPConnection(HOST, publish_port, timeout=5)
    published = time.monotonic()
    publisher.request("POST", f"/mailbox/{NAME}", b"hello across",
                      {"Authorization": f"Bearer {TOKEN}"})
    assert publisher.getresponse().status == 201
    answer = json.loads(conn.getresponse().read())
    delay = time.monotonic() - published
    conn.close()
    assert [m["data"] for m in answer["messages"]] == ["hello across"]
    assert delay < 2.0  # woken by the other process's post, not by the 10 s timeout


def test_four_gunicorn_sync_workers_share_progress(redis: RedisServer,
                                                   tmp_path: Path) -> None:
    env = {"WSGIPROGRESS_BACKEND": redis.url, "WSGIPROGRESS_PREFIX": "gunicorn:"}
    with gunicorn(tmp_path / "gunicorn.log", "redis_apps:make_app()", "sync",
                  workers=4, env=env) as port:
        # the uploading worker is busy: every poll lands on one of the other three
        client, seen = watched_upload(port, "gunicorn-4w", 8 * MiB, interval=0.05,
                                      piece=256 * 1024, delay=0.05)
        final = wait_for_state(port, "gunicorn-4w", ("done",))
    assert client.reply.endswith(b"%d" % (8 * MiB))
    assert len(received_while(seen, "uploading")) >= 3, seen
    assert (final["state"], final["received"]) == ("done", 8 * MiB)


def test_redis_killed_and_restarted_mid_upload(redis: RedisServer) -> None:
    prefix = f"fault{next(_prefixes)}:"
    process, port = start_process([sys.executable, "-m", "wsgiprogress", "--listen",
                                   f"{HOST}:0", "--backend", redis.url, "--key-prefix",
                                   prefix, "server_apps:app"])
    try:
        client = SlowUpload(port, "/upload?X-Progress-ID=survives-1", 6 * MiB,
                            piece=128 * 1024, delay=0.05)
        client.start()
        assert wait_for_state(port, "survives-1", ("uploading",))["received"] > 0
        redis.stop()
        seen: List[Tuple[str, int]] = []
        try:
            for _ in range(10):  # this process's probe reads the live counters
                answer = probe(port, "survives-1")
                seen.append((answer["state"], answer["received"]))
                time.sleep(0.05)
        finally:
            redis.start()
        client.join(30)
        assert client.error is None
        assert client.reply.startswith(b"HTTP/1.1 200 ")
        assert client.reply.endswith(b"%d" % (6 * MiB))  # the upload never noticed
        assert {state for state, _ in seen} == {"uploading"}
        assert seen[-1][1] > seen[0][1]  # still growing while Redis was away
        final = wait_for_state(port, "survives-1", ("done",), deadline=15)
        assert (final["received"], final["size"]) == (6 * MiB, 6 * MiB)  # recovered
    finally:
        stop_process(process)


def test_overlapping_reads_of_one_mailbox_share_one_round_trip(redis: RedisServer) -> None:
    backend = backend_from_url(redis.url, key_prefix=f"flight{next(_prefixes)}:")
    try:
        mailbox = backend.mailbox
        cursor = mailbox.read("shared-inbox", None).cursor
        mailbox.post("shared-inbox", "for everyone")
        before = redis.script_calls()
        redis.pause_writes(300)  # the first read waits
        results: List[str] = []
        threads = [threading.Thread(
            target=lambda: results.extend(m.data for m in mailbox.read("shared-inbox",
                                                                       cursor).messages))
            for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        after = redis.script_calls()
        assert results == ["for everyone"] * 20
        assert after - before <= 2  # one read, maybe one that started after it ended
    finally:
        backend.close()


def test_mailboxes_answer_503_while_redis_is_away_and_recover(servers: Tuple[int, int],
                                                              redis: RedisServer) -> None:
    port = servers[0]
    assert get_json(port, f"/mailbox/{NAME}")[0] == 200
    redis.stop()
    try:
        conn = HTTPConnection(HOST, port, timeout=15)
        conn.request("GET", f"/mailbox/{NAME}?wait=1")
        response = conn.getresponse()
        assert (response.status, response.getheader("Retry-After")) == (503, "5")
        assert b"mailbox store unavailable" in response.read()
        conn.request("POST", "/upload?X-Progress-ID=while-away", b"x" * 1000)
        upload = conn.getresponse()
        assert (upload.status, upload.read()) == (200, b"1000")  # the app is unaffected
        conn.close()
    finally:
        redis.start()
    # back by itself, once the outage breaker lets a call try (a second)
    wait_until(lambda: timed_get(port, f"/mailbox/{NAME}")[0] == 200, timeout=5)


def test_a_read_never_joins_one_that_started_before_a_post_it_was_told_of(
        redis: RedisServer) -> None:
    backend = backend_from_url(redis.url, key_prefix=f"flight{next(_prefixes)}:")
    try:
        mailbox = backend.mailbox
        cursor = mailbox.read("generations", None).cursor
        before = redis.script_calls()
        redis.pause_writes(300)  # the first read waits
        results: List[int] = []
        first = threading.Thread(target=lambda: results.append(
            len(mailbox.read("generations", cursor).messages)))
        first.start()
        time.sleep(0.05)
        mailbox.posted(["generations"])  # as if another process announced a post
        results.append(len(mailbox.read("generations", cursor).messages))
        first.join(10)
        after = redis.script_calls()
        assert after - before == 2  # the second read went to Redis itself
    finally:
        backend.close()
