"""The operations model: the Prefer parser, steps and the Progress header,
and one behavioural suite for every operations store (memory and a real
redis-server): states, cancellation, kept responses, bounds and expiry."""
from __future__ import annotations

import io
import itertools
import threading
from typing import Any, Dict, Iterator, List, Optional
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgiprogress import ProgressMiddleware
from wsgiprogress.backends import backend_from_url
from wsgiprogress.errors import ConfigurationError
from wsgiprogress.operations import (
    KeptBody,
    KeptResponse,
    MemoryOperations,
    OperationPool,
    OperationStore,
    Preferences,
    Steps,
    operation_key,
    parse_prefer,
    progress_header,
)
from wsgiprogress.web.front import Front

from redis_support import RedisServer
from server_support import wait_until


@pytest.mark.parametrize(("header", "expected"), [
    pytest.param("respond-async, wait=10", Preferences(True, 10, True, False), id="both"),
    pytest.param("wait=3,respond-async", Preferences(True, 3, True, False), id="any-order"),
    pytest.param("Respond-Async; x=1, WAIT=0", Preferences(True, 0, True, False), id="case"),
    pytest.param("respond-async", Preferences(True, None, True, False), id="no-wait"),
    pytest.param('wait="5", respond-async', Preferences(True, 5, True, False), id="quoted"),
    pytest.param("respond-async, wait=1.5", Preferences(True, None, False, False),
                 id="fraction-malformed"),
    pytest.param("respond-async, wait=-1", Preferences(True, None, False, False),
                 id="negative-malformed"),
    pytest.param("respond-async, wait=", Preferences(True, None, False, False),
                 id="empty-malformed"),
    pytest.param("respond-async, wait=9999999999", Preferences(True, 2 ** 31, True, False),
                 id="huge-is-2**31"),
    pytest.param("respond-async, wait=" + "9" * 500, Preferences(True, 2 ** 31, True, False),
                 id="very-huge-is-2**31"),
    pytest.param("respond-async, wait=2147483647", Preferences(True, 2 ** 31 - 1, True, False),
                 id="just-below-2**31"),
    pytest.param("respond-async, wait=" + "0" * 12 + "7", Preferences(True, 7, True, False),
                 id="leading-zeros-are-the-number"),
    pytest.param("wait=2, wait=x, respond-async", Preferences(True, 2, True, False),
                 id="first-wins"),
    pytest.param('return=minimal; foo="a,b", processing', Preferences(False, None, True, True),
                 id="quoted-comma"),
    pytest.param("respond-async-ish", Preferences(), id="not-a-prefix"),
    pytest.param("", Preferences(), id="empty"),
    pytest.param("respond-async, " + "x" * 2000, Preferences(), id="too-long"),
])
def test_prefer(header: str, expected: Preferences) -> None:
    assert parse_prefer(header) == expected


@pytest.mark.parametrize(("steps", "header"), [
    pytest.param(Steps(1, 3, "Knitting sweaters"), '1/3 "Knitting sweaters"', id="label"),
    pytest.param(Steps(2, None, None), "2/", id="no-total"),
    pytest.param(Steps(0, 5, ""), "0/5", id="empty-label"),
    pytest.param(Steps(1, 2, 'say "hi"'), "1/2 UTF-8''say%20%22hi%22", id="quote-ext-value"),
    pytest.param(Steps(1, 2, "Stricke Pullöver"), "1/2 UTF-8''Stricke%20Pull%C3%B6ver",
                 id="non-ascii-ext-value"),
])
def test_progress_header(steps: Steps, header: str) -> None:
    assert progress_header(steps) == header


def test_steps_follow_the_progress_rules() -> None:
    before = Steps(3, 10, "a")
    assert Steps.checked(2, 10, "b", before) == Steps(3, 10, "b")  # never decreases
    assert Steps.checked(5, 4, None) == Steps(5, 5, None)  # total never below done
    assert Steps.checked(1, None, "x\r\nInjected: 1" + "y" * 500).label == \
        "x  Injected: 1" + "y" * 186
    with pytest.raises(TypeError):
        Steps.checked("1", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Steps.checked(True, 3)
    with pytest.raises(ValueError):
        Steps.checked(-1, 3)


def test_kept_body_spills_to_disk_and_drops_past_its_limit() -> None:
    body = KeptBody(limit=1024 * 1024)
    data = bytes(range(256)) * 2048  # 512 KiB: past the in-memory part
    assert body.write(data[:1000]) and body.write(data[1000:])
    assert body._file._rolled  # type: ignore[attr-defined]
    assert b"".join(body.chunks()) == data == body.read()  # read again, from the start
    assert not body.write(data + data) and body.dropped
    assert list(body.chunks()) == []


def test_a_kept_response_forgotten_while_read_is_read_to_its_end(make_store: Any) -> None:
    store = make_store()
    op_id = store.create()
    data = bytes(range(256)) * 2048  # 512 KiB: on disk, read in pieces
    store.finish(op_id, 200, kept(data))
    reading = store.response(op_id).body.chunks()
    first = next(reading)
    assert store.forget(op_id)  # a DELETE, an expiry or newer ones making room
    assert first + b"".join(reading) == data
    assert store.response(op_id) is None


def test_a_kept_response_forgotten_before_its_first_piece_is_read_whole(
        make_store: Any) -> None:
    # the monitor hands the server the body's pieces with its Content-Length
    # made: a body closed before the server reads them must not come up short
    store = make_store()
    op_id = store.create()
    data = bytes(range(256)) * 2048
    store.finish(op_id, 200, kept(data))
    reading = store.response(op_id).body.chunks()
    assert store.forget(op_id)
    assert b"".join(reading) == data


def test_pool_refuses_beyond_its_size() -> None:
    pool = OperationPool(2)
    assert pool.reserve() and pool.reserve()
    assert not pool.reserve()
    pool.release()
    assert pool.reserve()
    pool.close()


def test_operations_settings_are_checked_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="operations_url configures operations: "
                                                 "turn operations on too"):
        Front({"operations_url": "/jobs"})
    with pytest.raises(ConfigurationError, match="max_kept_response must not exceed "
                                                 "max_kept_bytes"):
        Front({"operations": True, "max_kept_response": "2M", "max_kept_bytes": "1M"})
    with pytest.raises(ConfigurationError, match="operations_threads"):
        Front({"operations": True, "operations_threads": "many"})


# -- one suite, every store ---------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


_prefixes = itertools.count()


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Makes stores of one kind with the given bounds and a shared fake clock."""
    clock = FakeClock()
    made: List[Any] = []

    def make(**bounds: Any) -> OperationStore:
        if request.param == "memory":
            store: OperationStore = MemoryOperations(clock=clock, **bounds)
        else:
            server: RedisServer = request.getfixturevalue("redis")
            backend = backend_from_url(server.url, key_prefix=f"ops{next(_prefixes)}:",
                                       **bounds)
            made.append(backend)
            store = backend.operations
            store.clock = clock
            # Redis expires keys by its own clock: the fake one only stamps
        return store
    make.clock = clock  # type: ignore[attr-defined]
    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for backend in made:
        backend.close()


def kept(body: bytes, status: str = "201 Created") -> KeptResponse:
    stored = KeptBody(1 << 20)
    stored.write(body)
    return KeptResponse(status, [("Content-Type", "text/plain"), ("X-A", "1")], stored)


def test_an_operation_from_start_to_its_kept_response(make_store: Any) -> None:
    store = make_store()
    op_id = store.create()
    assert op_id is not None and len(op_id) >= 22  # 128 bits and more, URL-safe
    record = store.get(op_id)
    assert (record.state, record.steps, record.running) == ("running", Steps(), True)
    make_store.clock.now += 1
    store.report(op_id, Steps(1, 3, "Knitting sweaters"))
    record = store.get(op_id)
    assert record.steps == Steps(1, 3, "Knitting sweaters")
    assert record.updated == record.started + 1
    assert "status" not in record.to_dict()
    store.finish(op_id, 201, kept(b"three sweaters\n"))
    record = store.get(op_id)
    assert (record.state, record.status, record.kept, record.running) == \
        ("done", 201, True, False)
    response = store.response(op_id)
    assert (response.status, response.headers, response.body.read()) == \
        ("201 Created", [("Content-Type", "text/plain"), ("X-A", "1")], b"three sweaters\n")
    store.report(op_id, Steps(3, 3, "late"))  # after the end: ignored
    assert store.get(op_id).steps == Steps(1, 3, "Knitting sweaters")
    assert store.forget(op_id)
    assert store.get(op_id) is None and store.response(op_id) is None
    assert not store.forget(op_id)


def test_cancel_sets_the_flag_and_the_state_stays(make_store: Any) -> None:
    store = make_store()
    op_id = store.create()
    assert not store.is_cancelled(op_id)
    assert store.cancel(op_id).state == "cancelled"
    assert store.is_cancelled(op_id)
    store.report(op_id, Steps(2, 3, None))
    store.finish(op_id, 409, kept(b"stopped"))
    record = store.get(op_id)
    assert (record.state, record.status, record.running, record.kept, record.dropped) == \
        ("cancelled", 409, False, False, False)  # not kept for being cancelled, not too large
    assert store.cancel("x" * 32) is None


def test_a_failed_application_is_an_error(make_store: Any) -> None:
    store = make_store()
    op_id = store.create()
    store.finish(op_id, None, None)
    assert store.get(op_id).to_dict()["state"] == "error"


def test_a_dropped_response_is_known_as_dropped(make_store: Any) -> None:
    store = make_store()
    op_id = store.create()
    body = KeptBody(limit=4)
    body.write(b"too long")
    store.finish(op_id, 200, KeptResponse("200 OK", [], body))
    record = store.get(op_id)
    assert (record.state, record.kept, record.dropped) == ("done", False, True)
    assert store.response(op_id) is None


def test_changes_wake_the_monitors_waiters(make_store: Any) -> None:
    store = make_store()
    op_id = store.create()
    event = store.waiters.register(operation_key(op_id))
    try:
        store.report(op_id, Steps(1, 2, None))
        assert event.wait(5)  # Redis: through the subscriber of another connection
    finally:
        store.waiters.unregister(operation_key(op_id), event)


def test_finished_monitors_are_bounded_as_the_table_is(make_store: Any) -> None:
    capacity = 10_000 if make_store.kind == "memory" else 50
    store = make_store(max_operations=capacity)
    ids = []
    for _ in range(capacity):
        op_id = store.create()
        make_store.clock.now += 0.01  # finished one after the other
        store.finish(op_id, 200, None)
        ids.append(op_id)
    newest: Optional[str] = None
    for _ in range(capacity // 2):  # the oldest finished make room
        newest = store.create()
        assert newest is not None
    assert store.get(ids[0]) is None and store.get(ids[-1]) is not None
    assert store.get(newest) is not None


def test_when_every_operation_runs_the_store_is_full(make_store: Any) -> None:
    store = make_store(max_operations=3)
    assert all(store.create() for _ in range(3))
    assert store.create() is None


def test_memory_store_expires_finished_operations_and_their_responses() -> None:
    clock = FakeClock()
    store = MemoryOperations(clock=clock, operations_ttl=60)
    op_id = store.create()
    store.finish(op_id, 200, kept(b"x" * 1000))
    assert store.kept_bytes == 1000
    clock.now += 59
    assert store.response(op_id) is not None
    clock.now += 2
    assert store.get(op_id) is None and store.response(op_id) is None
    assert store.kept_bytes == 0 and len(store) == 0


def test_kept_bytes_are_bounded_oldest_first(make_store: Any) -> None:
    store = make_store(max_kept_bytes=2500)
    first, second, third = (store.create() for _ in range(3))
    for op_id in (first, second, third):
        store.finish(op_id, 200, kept(b"x" * 1000))
    assert store.kept_bytes == 2000
    assert (store.get(first).kept, store.get(first).dropped) == (False, True)
    assert store.response(first) is None
    assert store.response(second).body.read() == store.response(third).body.read() \
        == b"x" * 1000
    alone = store.create()  # over the bound by itself: dropped, nothing else is
    store.finish(alone, 200, kept(b"y" * 2501))
    assert (store.get(alone).kept, store.get(alone).dropped) == (False, True)
    assert store.kept_bytes == 2000 and store.response(second) is not None
    assert store.forget(second)
    assert store.kept_bytes == 1000
    cancelled = store.create()  # a cancelled one keeps nothing and counts nothing
    store.cancel(cancelled)
    store.finish(cancelled, 409, kept(b"z" * 10))
    assert store.kept_bytes == 1000 and not store.get(cancelled).dropped  # not too large


def test_redis_counts_the_kept_bytes_of_every_process(redis: RedisServer) -> None:
    """Four processes' stores on one prefix finish at once: together they
    never keep more than ``max_kept_bytes``, and the count is exact."""
    backends = [backend_from_url(redis.url, key_prefix="kept-shared:",
                                 max_kept_bytes=10_000) for _ in range(4)]
    try:
        stores = [backend.operations for backend in backends]
        finished: List[str] = []

        def work(store: OperationStore) -> None:
            for n in range(25):
                op_id = store.create()
                assert op_id is not None
                store.finish(op_id, 200, kept(b"k" * (300 + 37 * n)))
                finished.append(op_id)
        threads = [threading.Thread(target=work, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        client = stores[0].client  # type: ignore[attr-defined]
        sizes = [len(store_response.body.read()) for store_response in
                 (stores[0].response(op_id) for op_id in finished) if store_response]
        assert sum(sizes) == stores[1].kept_bytes <= 10_000
        assert sum(sizes) > 10_000 - 300 - 37 * 24  # the oldest made just enough room
        assert int(client.hlen("kept-shared:kept_sizes")) == len(sizes)
    finally:
        for backend in backends:
            backend.close()


def test_redis_uncounts_the_responses_it_expired(redis: RedisServer) -> None:
    backend = backend_from_url(redis.url, key_prefix="kept-expiry:", operations_ttl=0.3,
                               max_kept_bytes=5000)
    try:
        store = backend.operations
        for _ in range(4):
            store.finish(store.create(), 200, kept(b"e" * 1000))
        assert store.kept_bytes == 4000
        client = store.client  # type: ignore[attr-defined]
        wait_until(lambda: not client.keys("kept-expiry:op:*"), 5)  # Redis expired them
        fresh = store.create()
        store.finish(fresh, 200, kept(b"f" * 4500))  # room without dropping anything live
        assert store.kept_bytes == 4500 and store.get(fresh).kept
    finally:
        backend.close()


def test_redis_store_expires_by_redis_clock(redis: RedisServer) -> None:
    backend = backend_from_url(redis.url, key_prefix="expiry:", operations_ttl=0.3)
    try:
        store = backend.operations
        op_id = store.create()
        store.finish(op_id, 200, kept(b"kept"))
        assert store.response(op_id) is not None
        wait_until(lambda: store.get(op_id) is None, 5)
        assert store.response(op_id) is None
    finally:
        backend.close()


# -- any Prefer header is a hint: never an error ------------------------------------------

def _fast(environ: Any, start_response: Any) -> List[bytes]:
    environ["wsgiprogress.operation"].report(1, 1, "done")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


_FRONT = ProgressMiddleware(_fast, operations=True)
_PREFER = st.lists(st.sampled_from(
    ["respond-async", "wait=0", "wait=1", "wait=x", "wait=", "wait=-2", "processing",
     "return=minimal", ";", ",", "=", '"', '"a,b"', " ", "\t", "wait=99999999999"]),
    max_size=8).map("".join) | st.text(max_size=60)


@settings(max_examples=150, deadline=None)
@given(prefer=_PREFER)
def test_any_prefer_header_answers_200_or_202(prefer: str) -> None:
    parsed = parse_prefer(prefer)
    assert parsed.wait is None or 0 <= parsed.wait <= 2 ** 31
    environ: Dict[str, Any] = {"HTTP_PREFER": prefer, "REQUEST_METHOD": "POST",
                               "PATH_INFO": "/x", "CONTENT_LENGTH": "2",
                               "wsgi.input": io.BytesIO(b"hi")}
    setup_testing_defaults(environ)
    statuses: List[str] = []
    body = _FRONT(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    applied = parsed.respond_async and parsed.wait_ok
    assert statuses[0][:3] in (("202", "200") if applied else ("200",)), (prefer, statuses)
