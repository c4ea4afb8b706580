"""Specification tests of ProgressMiddleware and its counting input, through
WebTest with lint on: what gets tracked, how requests end, and that tracking
never breaks a request."""
from __future__ import annotations

import gc
import io
import logging
import weakref
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Hashable,
    Iterable,
    Iterator,
    List,
    Mapping,
    Sized,
    Tuple,
)

import pytest
import webtest

from wsgiprogress import ConfigurationError, ProgressEntry, ProgressMiddleware, ProgressTable

PID = "upload-0001"
BODY = b"".join(b"line %04d of the uploaded body\n" % i for i in range(200))
App = Callable[[Dict[str, Any], Any], Iterable[bytes]]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reply(start_response: Any, body: bytes, status: str = "200 OK") -> List[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def read_all(environ: Dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    pieces: List[bytes] = []
    while True:
        piece = stream.read(1000)
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)


def echo_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Answers the number of body bytes it read."""
    return reply(start_response, str(len(read_all(environ))).encode())


def make(app: App = echo_app, **options: Any) -> Tuple[webtest.TestApp, ProgressTable, FakeClock]:
    clock = FakeClock()
    table = ProgressTable(clock=clock, ttl=30)
    middleware = ProgressMiddleware(app, store=table, **options)
    return webtest.TestApp(middleware, lint=True), table, clock


def entry(table: ProgressTable, pid: str = PID) -> ProgressEntry:
    found = table.get(pid)
    assert found is not None, f"no entry for {pid}"
    return found


def upload(client: webtest.TestApp, body: bytes = BODY, pid: str = PID,
           **kwargs: Any) -> webtest.TestResponse:
    response: webtest.TestResponse = client.post(f"/upload?X-Progress-ID={pid}", body,
                                                 content_type="text/plain", **kwargs)
    return response


def test_tracked_post_ends_done_with_every_count() -> None:
    seen: List[str] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        read_all(environ)
        seen.append(entry(table).state)
        return reply(start_response, b"stored!")

    client, table, _ = make(app)
    assert upload(client).body == b"stored!"
    final = entry(table)
    assert seen == ["processing"]
    assert (final.state, final.received, final.size) == ("done", len(BODY), len(BODY))
    assert (final.status, final.sent, final.response_size) == (200, 7, 7)
    assert final.reason is None and final.finished is not None


def test_header_id_is_tracked_too() -> None:
    client, table, _ = make()
    client.post("/upload", BODY, headers={"X-Progress-ID": PID}, content_type="text/plain")
    assert entry(table).state == "done"


def test_streamed_response_without_length_counts_produced_and_written_bytes() -> None:
    def app(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
        read_all(environ)
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"abc")
        yield b"de"
        yield b"fgh"

    client, table, _ = make(app)
    assert upload(client).body == b"abcdefgh"
    final = entry(table)
    assert (final.state, final.sent, final.response_size) == ("done", 8, 8)


@pytest.mark.parametrize("url, method", [
    ("/upload", "POST"), ("/upload?X-Progress-ID=bad", "POST"),
    ("/upload?X-Progress-ID=" + "x" * 129, "POST"), (f"/upload?X-Progress-ID={PID}", "PUT"),
    (f"/upload?X-Progress-ID={PID}", "GET")])
def test_untracked_requests_pass_through_and_create_no_entry(url: str, method: str) -> None:
    saw_tracker: List[bool] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        saw_tracker.append("wsgiprogress.tracker" in environ)
        return echo_app(environ, start_response)

    client, table, _ = make(app)
    body = b"" if method == "GET" else BODY
    response = client.request(url, method=method, body=body)
    assert response.body == str(len(body)).encode()
    assert saw_tracker == [False] and len(table) == 0


def test_configured_methods_are_tracked_and_others_are_not() -> None:
    client, table, _ = make(methods="PUT GET")
    client.put(f"/upload?X-Progress-ID={PID}", BODY)
    assert entry(table).received == len(BODY)
    upload(client, pid="posted-0001")
    assert table.get("posted-0001") is None
    client.get("/download?X-Progress-ID=download-01")
    assert (entry(table, "download-01").state, entry(table, "download-01").sent) == ("done", 1)


def test_empty_body_is_processing_while_the_app_runs() -> None:
    seen: List[str] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(entry(table).state)  # the app never reads the (empty) body
        return reply(start_response, b"made")

    client, table, _ = make(app)
    upload(client, b"")
    assert seen == ["processing"] and entry(table).state == "done"


def test_duplicate_live_id_runs_untracked_and_leaves_the_first_entry_alone() -> None:
    inner: Dict[str, Any] = {}

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/outer":
            read_all(environ)
            before = entry(table)
            answer = client.post(f"/inner?X-Progress-ID={PID}", b"xyz")
            inner.update(before=before, after=entry(table), body=answer.body)
            return reply(start_response, b"outer")
        inner["tracked"] = "wsgiprogress.tracker" in environ
        return echo_app(environ, start_response)

    client, table, _ = make(app)
    client.post(f"/outer?X-Progress-ID={PID}", BODY)
    assert inner["body"] == b"3" and inner["tracked"] is False
    assert inner["after"] == inner["before"] and inner["before"].state == "processing"
    final = entry(table)
    assert (final.state, final.received, final.size, final.sent) == (
        "done", len(BODY), len(BODY), 5)


def test_finished_id_is_reused_and_starts_fresh() -> None:
    first_seen: List[ProgressEntry] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        first_seen.append(entry(table))
        return echo_app(environ, start_response)

    client, table, clock = make(app)
    upload(client)
    clock.now += 5
    upload(client, b"abc")
    fresh = first_seen[1]
    assert (fresh.state, fresh.received, fresh.size, fresh.started) == (
        "starting", 0, 3, clock.now)
    assert (fresh.status, fresh.finished, fresh.sent) == (None, None, 0)
    final = entry(table)
    assert (final.state, final.received, final.size, final.sent) == ("done", 3, 3, 1)


def test_oversized_request_is_413_without_running_the_app() -> None:
    called: List[bool] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        called.append(True)
        return echo_app(environ, start_response)

    client, table, _ = make(app, max_request_size=len(BODY) - 1)
    upload(client, status=413)
    assert called == []
    final = entry(table)
    assert (final.state, final.reason, final.status) == ("error", "too_large", 413)
    upload(client, BODY[:-1], pid="exactly-limit")
    assert called == [True] and entry(table, "exactly-limit").state == "done"


def test_app_raising_is_app_error_and_propagates() -> None:
    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        read_all(environ)
        raise RuntimeError("boom")

    client, table, _ = make(app)
    with pytest.raises(RuntimeError, match="boom"):
        upload(client)
    final = entry(table)
    assert (final.state, final.reason, final.status) == ("error", "app_error", 500)


def test_app_iterator_raising_is_app_error_and_propagates() -> None:
    def app(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
        read_all(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise RuntimeError("mid-stream")

    client, table, _ = make(app)
    with pytest.raises(RuntimeError, match="mid-stream"):
        upload(client)
    assert (entry(table).state, entry(table).reason) == ("error", "app_error")


def test_a_server_that_stops_iterating_ends_the_request_as_sent_so_far() -> None:
    # a client gone mid-response: the server closes the response unfinished
    closed: List[bool] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
        read_all(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"first "
            yield b"second"
        finally:
            closed.append(True)

    table = ProgressTable()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "SERVER_NAME": "x",
               "SERVER_PORT": "80", "QUERY_STRING": f"X-Progress-ID={PID}",
               "CONTENT_LENGTH": str(len(BODY)), "wsgi.input": io.BytesIO(BODY)}
    response = ProgressMiddleware(app, store=table)(
        environ, lambda status, headers, exc_info=None: None)
    chunks = iter(response)
    assert next(chunks) == b"first "
    del chunks  # what a server does when the client has gone
    response.close()  # type: ignore[attr-defined]
    final = entry(table)
    assert closed == [True]
    assert (final.state, final.reason, final.status, final.sent) == ("done", None, 200, 6)


@pytest.mark.parametrize("status, state, reason", [
    ("200 OK", "done", None), ("201 Created", "done", None), ("302 Found", "done", None),
    ("400 Bad Request", "error", "http_error"), ("404 Not Found", "error", "http_error"),
    ("503 Service Unavailable", "error", "http_error")])
def test_response_status_decides_done_or_http_error(status: str, state: str,
                                                    reason: str) -> None:
    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        read_all(environ)
        return reply(start_response, b"answer", status)

    client, table, _ = make(app)
    upload(client, status=int(status[:3]))
    final = entry(table)
    assert (final.state, final.reason, final.status) == (state, reason, int(status[:3]))


def test_short_body_is_aborted() -> None:
    client, table, _ = make()
    response = upload(client, b"only ten b", headers={"Content-Length": "100"})
    assert response.body == b"10"
    final = entry(table)
    assert (final.state, final.reason, final.received, final.size) == (
        "error", "aborted", 10, 100)


def test_chunked_body_gets_its_size_when_it_ends() -> None:
    during: List[Any] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        head = environ["wsgi.input"].read(100)
        during.append((entry(table).state, entry(table).size))
        rest = read_all(environ)
        return reply(start_response, str(len(head + rest)).encode())

    client, table, _ = make(app)
    request = webtest.TestRequest.blank(f"/upload?X-Progress-ID={PID}", method="POST",
                                        body=BODY, headers={"Transfer-Encoding": "chunked"})
    del request.environ["CONTENT_LENGTH"]
    assert client.do_request(request, status=200).body == str(len(BODY)).encode()
    assert during == [("uploading", None)]
    final = entry(table)
    assert (final.state, final.received, final.size) == ("done", len(BODY), len(BODY))


def _readinto(stream: Any) -> bytes:
    out, buffer = b"", bytearray(777)
    while True:
        n = stream.readinto(buffer)
        if not n:
            return out
        out += bytes(buffer[:n])


READERS: Dict[str, Callable[[Any], bytes]] = {
    "read": lambda stream: bytes(stream.read()),
    "read(n)": lambda stream: b"".join(iter(lambda: stream.read(333), b"")),
    "readline": lambda stream: b"".join(iter(stream.readline, b"")),
    "readlines": lambda stream: b"".join(stream.readlines()),
    "iteration": lambda stream: b"".join(line for line in stream),
    "readinto": _readinto,
}


@pytest.mark.parametrize("reader", list(READERS))
def test_every_read_method_counts_and_the_input_is_never_closed(reader: str) -> None:
    got: List[bytes] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        got.append(READERS[reader](environ["wsgi.input"]))
        return reply(start_response, b"ok")

    client, table, _ = make(app)
    spies: List[SpyInput] = []
    webtest.TestApp(with_spy_input(client.app, spies), lint=True).post(
        f"/upload?X-Progress-ID={PID}", BODY)
    assert got == [BODY]
    final = entry(table)
    assert (final.state, final.received, final.size) == ("done", len(BODY), len(BODY))
    assert spies[0].close_calls == 0


class SpyInput:
    """A server's input that records whether anyone closed it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.close_calls = 0

    def read(self, *args: Any) -> bytes:
        return self.stream.read(*args)

    def readline(self, *args: Any) -> bytes:
        return self.stream.readline(*args)

    def readlines(self, *args: Any) -> List[bytes]:
        return self.stream.readlines(*args)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.stream)

    def close(self) -> None:
        self.close_calls += 1


def with_spy_input(app: App, spies: List[SpyInput],
                   extra: Mapping[str, Any] = {}) -> App:  # noqa: B006
    def server(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        spies.append(SpyInput(environ["wsgi.input"]))
        environ["wsgi.input"] = spies[-1]
        environ.update(extra)
        return app(environ, start_response)
    return server


def test_server_that_counts_itself_makes_the_middleware_stand_aside() -> None:
    seen: List[Any] = []

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append((environ["wsgi.input"], "wsgiprogress.tracker" in environ))
        return echo_app(environ, start_response)

    client, table, _ = make(app)
    spies: List[SpyInput] = []
    server = with_spy_input(client.app, spies, {"wsgiprogress.server_counts": True})
    webtest.TestApp(server, lint=True).post(f"/upload?X-Progress-ID={PID}", BODY)
    assert seen == [(spies[0], False)] and len(table) == 0


def test_list_response_keeps_its_len() -> None:
    lengths: List[int] = []
    table = ProgressTable(clock=FakeClock())
    middleware = ProgressMiddleware(echo_app, store=table)

    def server(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        result = middleware(environ, start_response)
        assert isinstance(result, Sized)
        lengths.append(len(result))
        return result

    webtest.TestApp(server, lint=True).post(f"/upload?X-Progress-ID={PID}", BODY)
    assert lengths == [1] and entry(table).state == "done"


@pytest.mark.parametrize("options, message", [
    ({"ttl": -1}, r"ttl.*>= 0"), ({"ttl": "soon"}, r"ttl.*seconds"),
    ({"dialect": "apache"}, r"dialect.*native, lighttpd, nginx"),
    ({"methods": ""}, r"methods.*POST"), ({"methods": ["po st"]}, r"methods"),
    ({"max_requst_size": 10}, r"did you mean 'max_request_size'"),
    ({"dialekt": "nginx"}, r"did you mean 'dialect'"),
    ({"capacity": 0}, r"capacity.*>= 1"), ({"progress_url": "progress"}, r"progress_url.*/")])
def test_configuration_errors_raise_at_construction(options: Dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ProgressMiddleware(echo_app, **options)


def test_ttl_with_an_explicit_table_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ProgressTable"):
        ProgressMiddleware(echo_app, store=ProgressTable(), ttl=5)


def _info_lines(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "wsgiprogress" and r.levelno == logging.INFO]


def test_debug_logs_tracking_and_probe_answers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsgiprogress")
    client, _, _ = make(debug=True)
    upload(client)
    client.get(f"/progress?X-Progress-ID={PID}")
    lines = _info_lines(caplog)
    assert any(PID in line and "track" in line for line in lines), lines
    assert any(PID in line and "probe" in line and "done" in line for line in lines), lines


def test_no_debug_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsgiprogress")
    client, _, _ = make()
    upload(client)
    client.get(f"/progress?X-Progress-ID={PID}")
    assert _info_lines(caplog) == []


class BrokenTable(ProgressTable):
    """A store whose chosen operation always raises, heard as a remote store is."""

    shared = True

    def __init__(self, broken: str) -> None:
        super().__init__(clock=FakeClock())
        self.broken = broken

    def _fail(self, name: str) -> None:
        if name == self.broken:
            raise RuntimeError(f"store {name} is down")

    def begin(self, progress_id: str, size: Any) -> Any:
        self._fail("begin")
        return super().begin(progress_id, size)

    def update(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        self._fail("update")
        super().update(progress_id, token, fields)

    def finish(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        self._fail("finish")
        super().finish(progress_id, token, fields)


@pytest.mark.parametrize("broken", ["begin", "update", "finish"])
def test_a_failing_store_never_breaks_the_request(broken: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    table = BrokenTable(broken)
    client = webtest.TestApp(ProgressMiddleware(echo_app, store=table), lint=True)
    assert upload(client).body == str(len(BODY)).encode()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "store" in warnings[0].getMessage()
    assert client.get(f"/progress?X-Progress-ID={PID}").status_int == 200


def test_the_application_finds_the_stores_in_the_environ() -> None:
    from wsgiprogress import keys
    from wsgiprogress.mailbox import MemoryMailboxes

    seen: Dict[str, Any] = {}

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.update(store=environ.get(keys.PROGRESS_STORE), mailbox=environ.get(keys.MAILBOX),
                    legacy=environ.get(keys.LEGACY_TABLE))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    mailbox = MemoryMailboxes()
    middleware = ProgressMiddleware(app, mailbox=mailbox)
    webtest.TestApp(middleware, lint=True).get("/anything")
    assert seen == {"store": middleware.store, "mailbox": mailbox, "legacy": middleware.store}
    outer = ProgressTable()  # a layer outside (our server) put its own: it wins
    webtest.TestApp(middleware, lint=True,
                    extra_environ={keys.PROGRESS_STORE: outer}).get("/x")
    assert seen["store"] is outer


def test_max_waiters_bounds_the_clients_that_wait() -> None:
    middleware = ProgressMiddleware(lambda environ, start_response: [], mailbox=True,
                                    max_waiters=1)
    assert middleware.front.mailbox_app is not None
    waiters = middleware.front.mailbox_app.store.waiters
    held = waiters.register("someone-else")  # the one allowed waiter
    client = webtest.TestApp(middleware, lint=True)
    name = "f" * 32
    reply = client.get(f"/mailbox/{name}?wait=5", status=503)
    assert reply.headers["Retry-After"] and "too many waiting clients" in reply.text
    assert held is not None
    waiters.unregister("someone-else", held)
    assert client.get(f"/mailbox/{name}?wait=0.01").json["messages"] == []


def test_an_inner_middleware_stands_aside_for_an_outer_one() -> None:
    inner_table, outer_table = ProgressTable(), ProgressTable()

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % len(body)]

    stacked = ProgressMiddleware(ProgressMiddleware(app, store=inner_table), store=outer_table)
    reply = webtest.TestApp(stacked, lint=True).post("/u?X-Progress-ID=stacked-01", b"x" * 99)
    assert reply.body == b"99"
    outer = outer_table.get("stacked-01")
    assert outer is not None and (outer.state, outer.received) == ("done", 99)
    assert inner_table.get("stacked-01") is None  # counted once


class Body(io.BytesIO):
    """A server's input that can be watched with a weak reference."""


@pytest.mark.parametrize("cancelled", [False, True])
def test_the_servers_input_is_let_go_when_the_request_ends(cancelled: bool) -> None:
    # without the collector: an input (a spooled file, under gunicorn a
    # socket reader) held in a reference cycle stays open until it runs
    table = ProgressTable()
    middleware = ProgressMiddleware(echo_app if not cancelled else cancel_and_read,
                                    store=table)
    body = Body(BODY)
    watched = weakref.ref(body)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "SERVER_NAME": "x",
               "SERVER_PORT": "80", "QUERY_STRING": f"X-Progress-ID={PID}",
               "CONTENT_LENGTH": str(len(BODY)), "wsgi.input": body}
    del body
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            response = middleware(environ, lambda status, headers, exc_info=None: None)
            assert b"".join(response) == str(len(BODY)).encode()
            response.close()  # type: ignore[attr-defined]
            del response
        except Exception as exc:  # the cancelled read's error, through the application
            assert cancelled and "cancelled" in str(exc)
        del environ
        assert watched() is None
    finally:
        if collecting:
            gc.enable()
    assert entry(table).state == "error" if cancelled else entry(table).state == "done"


def cancel_and_read(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Cancels its own upload, then reads: the read raises."""
    environ["wsgiprogress.progress_store"].cancel(PID)
    return echo_app(environ, start_response)
