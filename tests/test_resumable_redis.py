"""Resumable uploads with the Redis backend: the records and the append locks
live in Redis, the bytes in one directory several hosts share.

Without HTTP (two backends on one Redis are two hosts): a lock is one
host's at a time, extended while held, lost when its host stops extending
it, and a host that lost it can neither write nor move the offset; records
expire with ``Upload-Expires`` and the sweep removes bodies whose record is
gone; the count and disk bounds hold across hosts.

Over HTTP (tests/resumable_server.py in two processes sharing one
``resumable_dir`` and one real redis-server): an upload made on host A,
appended on B and completed on A; a creation announced in a 104 on A, cut
mid-body and resumed on B; two hosts appending at once; a host
killed with SIGKILL mid-append; randomized cuts resumed on random hosts;
Redis stopped (503 with a reason, plain tracked requests untouched) and
started again (the upload goes on)."""
from __future__ import annotations

import contextlib
import hashlib
import random
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from wsgiprogress.backends import backend_from_url
from wsgiprogress.backends.redis import progress as redis_progress
from wsgiprogress.backends.redis.uploads import RedisUploads
from wsgiprogress.progress.tracker import Tracker
from wsgiprogress.resumable.appender import Appender
from wsgiprogress.resumable.storage import StorageFull, TooManyUploads, UploadBusy, UploadStorage
from wsgiprogress.resumable.upload import Target, Upload

from redis_support import HoldingProxy, RedisServer, StallingProxy, redis_server
from resumable_support import (
    IETF,
    OCTETS,
    PARTIAL,
    TUS,
    Reply,
    ServerProcess,
    counter,
    cut,
    read_head,
    request,
)
from resumable_trial import run_trial
from server_support import HOST, probe, read_to_close, wait_until

MiB = 1024 * 1024
PREFIX = "wsgiprogress:"


# -- the storage, two hosts in one process -----------------------------------------------

@contextlib.contextmanager
def hosts(redis: RedisServer, directory: Path, count: int = 2, lock_ttl: float = 30.0,
          **bounds: Any) -> Iterator[List[RedisUploads]]:
    """*count* upload storages on *redis* over *directory*, as separate hosts have."""
    backends = [backend_from_url(redis.url) for _ in range(count)]
    limits = {"ttl": 60.0, "max_size": 10 * MiB, "max_uploads": 100, "max_disk": None,
              **bounds}
    storages = [b.uploads(str(directory), lock_ttl=lock_ttl, **limits) for b in backends]
    assert all(isinstance(storage, RedisUploads) for storage in storages)  # chosen by the URL
    try:
        yield storages  # type: ignore[misc]
    finally:
        for storage, backend in zip(storages, backends):
            storage.close()
            backend.close()


def new_upload(storage: UploadStorage, length: int = 100) -> Upload:
    upload = Upload.new(Target("POST", "", "/up", "", {}), "tus", length,
                        storage.clock(), storage.ttl)
    storage.create(upload)
    return upload


def test_a_lock_is_one_hosts_and_outlives_its_ttl_while_held(redis: RedisServer,
                                                            tmp_path: Path) -> None:
    with hosts(redis, tmp_path, lock_ttl=1.0) as (a, b):
        upload = new_upload(a)
        with a.locked(upload.id) as mine:
            assert mine == upload
            end = time.monotonic() + 2.5  # two and a half TTLs: extended all along
            while time.monotonic() < end:
                with pytest.raises(UploadBusy):
                    with b.locked(upload.id):
                        pass
                time.sleep(0.05)
            with Appender(a, mine) as out:
                out.write(b"a" * 10)
        with b.locked(upload.id) as theirs:
            assert theirs is not None and theirs.offset == 10
        assert redis.client().exists(f"{PREFIX}upload:{upload.id}:lock") == 0


def test_a_host_that_stops_extending_loses_the_lock_and_can_change_nothing(
        redis: RedisServer, tmp_path: Path) -> None:
    with hosts(redis, tmp_path, lock_ttl=0.5) as (a, b):
        upload = new_upload(a)
        with a.locked(upload.id) as stale:
            out = Appender(a, stale)
            out.write(b"a" * 20)
            out.commit()
            a.keeper.close()  # the host froze
            # another host takes the lock once it expired, and appends
            held, fresh = wait_until(lambda: _try_lock(b, upload.id), timeout=5)
            with held:
                assert fresh.offset == 20
                with Appender(b, fresh) as theirs:
                    theirs.write(b"b" * 30)
            # the frozen host wakes: nothing it does reaches the upload
            with pytest.raises(UploadBusy):
                out.write(b"x" * 5)
            stale.offset = 99  # a commit it had fsynced before it froze
            with pytest.raises(UploadBusy):
                a.save(stale)
            out.discard()
            out._file.close()
        assert b.get(upload.id).offset == 50
        assert (tmp_path / f"{upload.id}.bin").read_bytes() == b"a" * 20 + b"b" * 30


def _try_lock(storage: UploadStorage, upload_id: str
              ) -> Optional[Tuple[contextlib.ExitStack, Upload]]:
    """The lock on *upload_id* taken (the stack releases it) and the record,
    or None while another holds it."""
    stack = contextlib.ExitStack()
    try:
        upload = stack.enter_context(storage.locked(upload_id))
    except UploadBusy:
        return None
    assert upload is not None
    return stack, upload


def test_records_expire_at_upload_expires_and_orphan_bodies_are_swept(
        redis: RedisServer, tmp_path: Path) -> None:
    with hosts(redis, tmp_path, ttl=1.0) as (a, b):
        upload = new_upload(a)
        key = f"{PREFIX}upload:{upload.id}"
        remaining = redis.client().pttl(key) / 1000
        assert abs((upload.expires - time.time()) - remaining) < 0.5
        assert (tmp_path / f"{upload.id}.bin").exists()
        wait_until(lambda: not redis.client().exists(key), timeout=5)
        assert b.get(upload.id) is None
        new_upload(b)  # creating sweeps: the expired upload's body goes
        assert not (tmp_path / f"{upload.id}.bin").exists()


def test_bounds_hold_across_hosts(redis: RedisServer, tmp_path: Path) -> None:
    redis.client().flushdb()
    with hosts(redis, tmp_path, max_uploads=2, max_disk=250) as (a, b):
        first = new_upload(a)
        new_upload(b)
        with pytest.raises(TooManyUploads):
            new_upload(a)
        a.delete(first.id)
        with pytest.raises(StorageFull):
            new_upload(b, length=151)  # 100 reserved + 151 > 250
        new_upload(b, length=150)
        assert len(list(tmp_path.glob("*.bin"))) == 2


# -- two server processes ------------------------------------------------------------------

class Hosts:
    """Host A and host B: tests/resumable_server.py processes sharing one
    directory and one Redis."""

    def __init__(self, tmp_path: Path, url: str, doors: Tuple[str, str]) -> None:
        (tmp_path / "calls").mkdir()
        self.uploads = tmp_path / "uploads"
        self.calls = tmp_path / "calls"
        self.a, self.b = (
            ServerProcess(door, self.uploads, self.calls,
                          ["--backend", url, "--name", name])
            for door, name in zip(doors, "AB"))

    def calls_of(self, upload_id: str) -> List[Tuple[str, str]]:
        """(host, body SHA-256) of each application call for *upload_id*."""
        return [(path.name.rsplit(".", 1)[1], path.read_text())
                for path in sorted(self.calls.glob(upload_id + ".*"))]

    def stop(self) -> None:
        self.a.stop(signal.SIGKILL)
        self.b.stop(signal.SIGKILL)


@pytest.fixture
def two_hosts(redis: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
              ) -> Iterator[Hosts]:
    pair = Hosts(tmp_path, redis.url, getattr(request, "param", ("werkzeug", "server")))
    try:
        yield pair
    finally:
        pair.stop()


def create(port: int, size: int) -> Tuple[str, str]:
    reply = request(port, "POST", "/files/", {**TUS, "Upload-Length": str(size)})
    assert reply.status == 201, reply
    return reply.headers["location"], reply.headers["location"].rsplit("/", 1)[1]


def offset_of(port: int, url: str) -> int:
    reply = request(port, "HEAD", url, TUS)
    assert reply.status == 200, reply
    return int(reply.headers["upload-offset"])


def patch(port: int, url: str, offset: int, body: bytes) -> Reply:
    return request(port, "PATCH", url, {**OCTETS, "Upload-Offset": str(offset)}, body)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("two_hosts", [("werkzeug", "server"), ("server", "werkzeug")],
                         indirect=True, ids=["werkzeug+server", "server+werkzeug"])
def test_made_on_one_host_appended_on_another_completed_on_the_first(
        two_hosts: Hosts) -> None:
    a, b = two_hosts.a.start(), two_hosts.b.start()
    data = counter(3 * MiB + 17, 5)
    url, upload_id = create(a, len(data))
    assert offset_of(b, url) == 0
    reply = patch(b, url, 0, data[:MiB])
    assert reply.status == 204 and reply.headers["upload-offset"] == str(MiB)
    assert offset_of(a, url) == MiB
    reply = patch(a, url, MiB, data[MiB:])
    assert reply.status == 204 and reply.headers["upload-offset"] == str(len(data))
    assert two_hosts.calls_of(upload_id) == [("A", sha256(data))]
    # records and locks are in Redis: the directory holds bytes only
    assert sorted(p.name for p in two_hosts.uploads.iterdir()) == [
        f"{upload_id}.bin", f"{upload_id}.response"]
    # the kept answer is there for every host; neither calls the application again
    assert offset_of(b, url) == len(data)
    assert patch(b, url, len(data), b"").status == 409
    kept = request(b, "GET", reply.headers["response-message-location"])
    assert (kept.status, kept.body) == (200, b"ok")
    assert two_hosts.calls_of(upload_id) == [("A", sha256(data))]


@pytest.mark.parametrize("two_hosts", [("server", "werkzeug")], indirect=True,
                         ids=["server+werkzeug"])
def test_a_creation_announced_in_a_104_cut_on_one_host_resumes_on_another(
        two_hosts: Hosts) -> None:
    a, b = two_hosts.a.start(), two_hosts.b.start()
    data = counter(2 * MiB, 13)
    with socket.create_connection((HOST, a), timeout=20) as sock:
        sock.sendall(f"POST /clip HTTP/1.1\r\nHost: x\r\nUpload-Draft-Interop-Version: 6\r\n"
                     f"Upload-Complete: ?1\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        status, interim = read_head(sock)
        assert status == 104, interim
        url = interim["location"]
        sock.sendall(data[:700_000])
        # B sees the upload A made (the offset stays 0 until A keeps the bytes)
        assert request(b, "HEAD", url, IETF).status == 204
        cut(sock, rst=True)
    offset = wait_until(lambda: int(request(b, "HEAD", url, IETF).headers["upload-offset"]),
                        timeout=20)
    assert 0 < offset <= 700_000
    reply = request(b, "PATCH", url, {**PARTIAL, "Upload-Offset": str(offset),
                                      "Upload-Complete": "?1"}, data[offset:], timeout=30)
    assert reply.status == 200 and reply.headers["upload-offset"] == str(len(data))
    assert two_hosts.calls_of(url.rsplit("/", 1)[1]) == [("B", sha256(data))]


def _start_append(port: int, url: str, offset: int, total: int, first: bytes) -> socket.socket:
    """A tus PATCH of *total* bytes at *offset* whose first bytes are sent; the rest waits."""
    sock = socket.create_connection((HOST, port), timeout=20)
    sock.sendall(f"PATCH {url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                 f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
                 f"Content-Length: {total}\r\n\r\n".encode() + first)
    return sock


def test_two_hosts_appending_at_once_one_proceeds_the_other_hears_the_real_offset(
        two_hosts: Hosts, redis: RedisServer) -> None:
    a, b = two_hosts.a.start(), two_hosts.b.start()  # A streams under the middleware
    data = counter(2 * MiB, 9)
    url, upload_id = create(a, len(data))
    assert patch(a, url, 0, data[:200_000]).status == 204
    sock = _start_append(a, url, 200_000, len(data) - 200_000, data[200_000:300_000])
    try:
        wait_until(lambda: redis.client().exists(f"{PREFIX}upload:{upload_id}:lock"),
                   timeout=10)
        tus = patch(b, url, 200_000, data[200_000:])
        assert tus.status == 423 and tus.headers["upload-offset"] == "200000", tus
        ietf = request(b, "PATCH", url, {**PARTIAL, "Upload-Offset": "200000",
                                         "Upload-Complete": "?1"}, data[200_000:])
        assert ietf.status == 409 and ietf.headers["upload-offset"] == "200000", ietf
        sock.sendall(data[300_000:])
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 204") or answer.startswith(b"HTTP/1.0 204"), answer
    finally:
        sock.close()
    assert offset_of(b, url) == len(data)
    assert two_hosts.calls_of(upload_id) == [("A", sha256(data))]


def test_a_host_killed_mid_append_lets_another_resume_once_its_lock_expired(
        two_hosts: Hosts) -> None:
    a = two_hosts.a.start("--sync-bytes", str(256 * 1024), "--lock-ttl", "3")
    b = two_hosts.b.start()
    data = counter(8 * MiB, 3)
    url, upload_id = create(b, len(data))
    sock = _start_append(a, url, 0, len(data), data[:5 * MiB])
    try:
        reported = wait_until(lambda: offset_of(b, url) >= 4 * MiB and offset_of(b, url),
                              timeout=20)
        two_hosts.a.stop(signal.SIGKILL)
    finally:
        sock.close()
    killed = time.monotonic()
    offset = offset_of(b, url)
    assert reported <= offset <= 5 * MiB
    stored = (two_hosts.uploads / f"{upload_id}.bin").read_bytes()
    assert stored[:offset] == data[:offset]  # every byte before the offset is intact
    # the dead host's lock (extended every second, 3 s to live) holds for
    # two seconds at least, then B appends
    busy = patch(b, url, offset, data[offset:])
    assert busy.status == 423 or time.monotonic() - killed > 2, busy
    reply = wait_until(lambda: _appended(b, url, offset, data), timeout=15)
    assert reply.headers["upload-offset"] == str(len(data))
    assert two_hosts.calls_of(upload_id) == [("B", sha256(data))]


def _appended(port: int, url: str, offset: int, data: bytes) -> object:
    reply = patch(port, url, offset, data[offset:])
    return reply if reply.status == 204 else None


def test_randomized_cuts_resumed_on_random_hosts_are_byte_exact(two_hosts: Hosts) -> None:
    a, b = two_hosts.a.start(), two_hosts.b.start()
    rng = random.Random(17)
    outcomes = [run_trial(a, rng, max_size=512 * 1024, others=[b]) for _ in range(100)]
    assert sum(len(o.cuts) for o in outcomes) >= 200  # 1-5 cuts each
    for outcome in outcomes:
        calls = two_hosts.calls_of(outcome.upload_id)
        assert [sha for _, sha in calls] == [outcome.sha256], outcome
    hosts_called = {host for o in outcomes for host, _ in two_hosts.calls_of(o.upload_id)}
    assert hosts_called == {"A", "B"}


# -- Redis stopped and started -----------------------------------------------------------

@pytest.fixture
def lasting_redis() -> Iterator[RedisServer]:
    """A redis-server that keeps its data across a restart (append-only file)."""
    with redis_server(persist=True) as server:
        yield server


@pytest.mark.parametrize("door", ["server", "werkzeug"])
def test_redis_stopped_is_503_with_a_reason_then_the_upload_goes_on(
        lasting_redis: RedisServer, tmp_path: Path, door: str) -> None:
    host = Hosts(tmp_path, lasting_redis.url, (door, door))
    try:
        port = host.a.start()
        data = counter(MiB, 1)
        url, upload_id = create(port, len(data))
        assert patch(port, url, 0, data[:400_000]).status == 204
        lasting_redis.stop()
        for method, headers, body in [
                ("HEAD", TUS, b""),
                ("PATCH", {**OCTETS, "Upload-Offset": "400000"}, data[400_000:]),
                ("POST", {**TUS, "Upload-Length": "10"}, b""),
                ("POST", {**IETF, "Upload-Complete": "?0"}, b"part")]:
            target = url if method != "POST" else "/files/"
            reply = request(port, method, target, headers, body, timeout=30)
            assert reply.status == 503, (method, reply)
            assert int(reply.headers["retry-after"]) > 0
            if method != "HEAD":
                assert b"Redis" in reply.body, reply
        # a whole IETF request works as a plain one (the draft's feature detection)
        whole = request(port, "POST", "/files/", {**IETF, "Upload-Complete": "?1"}, b"whole",
                        timeout=30)
        assert (whole.status, whole.body) == (200, b"plain 5")
        assert "location" not in whole.headers
        # a plain tracked request is not an upload: it succeeds, untracked
        plain = request(port, "POST", "/plain?X-Progress-ID=outage-0001", {}, b"x" * 1000,
                        timeout=30)
        assert (plain.status, plain.body) == (200, b"plain 1000")
        lasting_redis.start()
        offset = wait_until(lambda: _offset_if_up(port, url), timeout=20)
        assert offset == 400_000
        reply = patch(port, url, offset, data[offset:])
        assert reply.status == 204, reply
        assert host.calls_of(upload_id) == [("A", sha256(data))]
    finally:
        host.stop()


def test_a_stalled_redis_holds_no_worker_behind_upload_requests(
        redis: RedisServer, tmp_path: Path) -> None:
    with StallingProxy(redis.port) as proxy:
        host = Hosts(tmp_path, f"redis://{HOST}:{proxy.port}/0", ("server", "server"))
        try:
            port = host.a.start()  # waitress's 4 worker threads
            url, _ = create(port, 100)
            proxy.stall()  # Redis takes commands and answers none
            answers: List[Tuple[int, float]] = []
            stop = threading.Event()

            def ask() -> None:  # tus clients asking for the offset, again at once
                while not stop.is_set():
                    started = time.monotonic()
                    reply = request(port, "HEAD", url, TUS, timeout=30)
                    answers.append((reply.status, time.monotonic() - started))

            askers = [threading.Thread(target=ask) for _ in range(8)]
            for asker in askers:
                asker.start()
            plain: List[Tuple[int, float]] = []
            try:
                # the first calls wait for their timeout; then Redis is known away
                wait_until(lambda: answers, timeout=15)
                for n in range(10):
                    started = time.monotonic()
                    reply = request(port, "POST", f"/plain?X-Progress-ID=stalled-{n:04d}",
                                    {}, b"x" * 100, timeout=30)
                    plain.append((reply.status, time.monotonic() - started))
            finally:
                stop.set()
                for asker in askers:
                    asker.join(30)
            # the application's requests find a free worker at once
            assert [status for status, _ in plain] == [200] * 10
            assert max(seconds for _, seconds in plain) < 1.0, plain
            # a clear answer each, at once but for the one call a second that tries
            assert {status for status, _ in answers} == {503}
            assert sum(seconds < 1.0 for _, seconds in answers) > len(answers) / 2, answers
        finally:
            host.stop()


def _offset_if_up(port: int, url: str) -> Optional[int]:
    reply = request(port, "HEAD", url, TUS, timeout=30)
    return int(reply.headers["upload-offset"]) if reply.status == 200 else None


# -- one progress entry across hosts ----------------------------------------------------------

def test_the_next_request_of_an_upload_takes_its_entry_over_on_another_host(
        redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_progress, "SILENT_AFTER", 1.0)
    a, b = (backend_from_url(redis.url).progress for _ in range(2))
    owner, progress_id = "upload-handover-1", "handover-0001"

    def shown() -> Tuple[str, int]:
        assert a.flush() and b.flush()
        found = b.get(progress_id)
        assert found is not None
        return found.state, found.received

    try:
        on_a = a.track(progress_id, 100, owner=owner, offset=0)
        assert on_a is not None
        on_a.add_received(40)
        assert shown() == ("uploading", 40)
        # a request of the same upload on B while A's still counts: refused,
        # what A counts stays shown
        early = b.track(progress_id, 100, owner=owner, offset=0)
        assert early is not None
        early.add_received(10)
        early.hand_over()
        assert shown() == ("uploading", 40)
        on_a.add_received(10)
        on_a.hand_over()
        assert shown() == ("uploading", 50)
        on_b = b.track(progress_id, 100, owner=owner, offset=50)
        assert on_b is not None
        on_b.add_received(20)
        assert shown() == ("uploading", 70)
        # B's host dies without handing over; once silent, A's next request counts on
        assert b.writer.flush()
        b.live.clear()
        died = time.monotonic()

        def take_over() -> Optional[Tracker]:
            tracker = a.track(progress_id, 100, owner=owner, offset=60)
            assert tracker is not None
            if shown() == ("uploading", 60):  # what is stored: B's last bytes were lost
                return tracker
            assert shown() == ("uploading", 70)  # refused: B counted further
            tracker.hand_over()
            return None

        later = wait_until(take_over, timeout=5)
        assert time.monotonic() - died >= 0.9  # not before B was silent that long
        later.add_received(40)
        later.start_response(200, 0)
        later.finish()
        assert shown() == ("done", 100)
    finally:
        a.close()
        b.close()


def test_a_claim_redis_refused_is_never_read_or_cancelled_where_it_runs(
        redis: RedisServer) -> None:
    a, b = (backend_from_url(redis.url).progress for _ in range(2))
    progress_id = "refused-0001"
    try:
        upload = a.track(progress_id, 100, owner="upload-refused", offset=0)
        assert upload is not None
        upload.add_received(40)
        assert a.flush()
        # an unrelated request with the ID on B: its claim is refused when written
        duplicate = b.track(progress_id, 1000)
        assert duplicate is not None
        duplicate.add_received(1000)
        got = b.read(progress_id)  # at once: the claim's answer is waited for
        assert got is not None and (got.received, got.size) == (40, 100)
        assert b.running_here(progress_id) is None and a.running_here(progress_id) is upload
        assert b.cancel(progress_id)  # asks every process: A's upload is the one cancelled
        assert wait_until(lambda: upload.state == "error", timeout=5)
        assert not duplicate.finished
        duplicate.start_response(200, 10)
        duplicate.finish()
        assert a.flush() and b.flush()
        got = b.read(progress_id)
        assert got is not None
        assert (got.state, got.reason, got.received) == ("error", "cancelled", 40)
    finally:
        a.close()
        b.close()


def test_a_claim_still_unanswered_shows_the_running_entry_redis_holds(
        redis: RedisServer) -> None:
    a = backend_from_url(redis.url).progress
    # B's writes reach Redis 2 s late (a busy Redis or writer); its reads at once
    with HoldingProxy(redis.port, b"EVALSHA", 2.0) as proxy:
        b = backend_from_url(f"redis://{HOST}:{proxy.port}/0").progress
        try:
            upload = a.track("held-0001", 100)
            assert upload is not None
            upload.add_received(40)
            assert a.flush()
            duplicate = b.track("held-0001", 1000)  # an unrelated request with the ID
            assert duplicate is not None
            duplicate.add_received(1000)
            got = b.read("held-0001")  # its claim unanswered past the wait
            assert got is not None and (got.received, got.size) == (40, 100)
            # an ID Redis holds for nobody else: the unanswered claim stands
            alone = b.track("held-0002", 10)
            assert alone is not None
            alone.add_received(5)
            got = b.read("held-0002")
            assert got is not None and (got.received, got.size) == (5, 10)
            upload.finish()
            duplicate.finish()
            alone.finish()
        finally:
            a.close()
            b.close()


class Watch:
    """What the probes of both hosts showed of one progress ID, in order."""

    def __init__(self, progress_id: str, ports: Dict[str, int]) -> None:
        self.progress_id = progress_id
        self.ports = ports
        self.seen: Dict[str, List[Tuple[str, int, Optional[int]]]] = {h: [] for h in ports}

    def look(self, host: str) -> Dict[str, Any]:
        answer = probe(self.ports[host], self.progress_id)
        self.seen[host].append((answer["state"], answer["received"], answer.get("size")))
        return answer

    def reaches(self, host: str, received: int) -> Dict[str, Any]:
        """Polls *host*'s probe until it shows *received* bytes at least."""
        return wait_until(lambda: (lambda a: a if a["received"] >= received else None)(
            self.look(host)), timeout=10, message=lambda: f"{host}: {self.seen[host][-3:]}")

    def done(self, host: str) -> Dict[str, Any]:
        """Polls *host*'s probe until the upload is done."""
        return wait_until(lambda: (lambda a: a if a["state"] == "done" else None)(
            self.look(host)), timeout=10, message=lambda: f"{host}: {self.seen[host][-3:]}")

    def check_never_back(self) -> None:
        order = {"starting": 0, "uploading": 1, "processing": 2, "done": 3}
        for host, seen in self.seen.items():
            received = [r for _, r, _ in seen]
            assert received == sorted(received), (host, seen)
            states = [order.get(state, -1) for state, _, _ in seen]
            assert states == sorted(states), (host, seen)


def _create_tracked(protocol: str, port: int, size: int, progress_id: str) -> str:
    if protocol == "tus":
        headers = {**TUS, "Upload-Length": str(size)}
    else:
        headers = {**IETF, "Upload-Complete": "?0", "Upload-Length": str(size)}
    reply = request(port, "POST", f"/files/?X-Progress-ID={progress_id}", headers)
    assert reply.status == 201, reply
    return reply.headers["location"]


def _append_head(protocol: str, url: str, offset: int, length: int, last: bool) -> bytes:
    if protocol == "tus":
        fields = "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
    else:
        fields = ("Upload-Draft-Interop-Version: 6\r\nContent-Type: application/partial-upload"
                  f"\r\nUpload-Complete: {'?1' if last else '?0'}\r\n")
    return (f"PATCH {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{fields}"
            f"Upload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("protocol", ["tus", "ietf"])
@pytest.mark.parametrize("two_hosts", [("werkzeug", "server"), ("server", "werkzeug")],
                         indirect=True, ids=["werkzeug+server", "server+werkzeug"])
def test_one_progress_entry_across_hosts_grows_during_the_other_hosts_append(
        two_hosts: Hosts, protocol: str) -> None:
    a, b = two_hosts.a.start(), two_hosts.b.start()
    progress_id = f"hosts-{protocol}-{a}-{b}"
    size, first, piece = 3 * MiB, MiB, 128 * 1024
    data = counter(size, 11)
    url = _create_tracked(protocol, a, size, progress_id)
    watch = Watch(progress_id, {"A": a, "B": b})
    # A's claim, read from Redis on B
    assert wait_until(lambda: watch.look("B")["size"] == size, timeout=10)
    head = _append_head(protocol, url, 0, first, False)
    with socket.create_connection((HOST, a), timeout=20) as sock:
        sock.sendall(head + data[:first])
        assert read_to_close(sock).split(b" ", 2)[1] in (b"201", b"204")
    for host in "AB":
        assert watch.reaches(host, first)["state"] == "uploading"
    # B appends the rest slowly; both probes follow it while it arrives
    lags: Dict[str, List[float]] = {"A": [], "B": []}
    with socket.create_connection((HOST, b), timeout=20) as sock:
        sock.sendall(_append_head(protocol, url, first, size - first, True))
        sent = first
        while sent < size - piece:
            sock.sendall(data[sent:sent + piece])
            sent += piece
            since = time.monotonic()
            for host in "BA":
                answer = watch.reaches(host, sent)
                assert (answer["state"], answer["size"]) == ("uploading", size), answer
                lags[host].append(time.monotonic() - since)
            if sent == first + 4 * piece:
                # an unrelated request with the same ID still runs, untracked
                for port in (a, b):
                    plain = request(port, "POST", f"/plain?X-Progress-ID={progress_id}", {},
                                    b"x" * 1000)
                    assert (plain.status, plain.body) == (200, b"plain 1000")
                assert watch.look("A")["received"] >= sent
        sock.sendall(data[sent:])
        assert read_to_close(sock).split(b" ", 2)[1] in (b"200", b"204")
    for host in "AB":
        final = watch.done(host)
        assert (final["received"], final["size"]) == (size, size), final
    watch.check_never_back()
    assert two_hosts.calls_of(url.rsplit("/", 1)[1]) == [("B", sha256(data))]
    print(f"\n{protocol} A={two_hosts.a.door} B={two_hosts.b.door}: a 128 KiB piece sent to B "
          "showed, in ms (median/max): " + ", ".join(
              f"on {host} {sorted(ms)[len(ms) // 2] * 1000:.0f}/{max(ms) * 1000:.0f}"
              for host, ms in lags.items()))
