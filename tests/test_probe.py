"""Specification tests of the progress probe: every dialect, format and state
as exact bytes, ID lookup, JSONP callback validation, methods, anti-cache
headers and CORS, through WebTest with lint on."""
from __future__ import annotations

import json
import re
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pytest
import webtest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgiprogress import ProgressMiddleware, ProgressProbe, ProgressTable
from wsgiprogress.web.probe import MAX_RENDERED

PID = "upload-0001"
T0 = 1000.0
T_END = 1002.5
SIZE = 1000
STATES = ["unknown", "starting", "uploading", "processing", "done",
          "too_large", "aborted", "app_error", "http_error"]
CALLBACK_PARAM = {"native": "callback", "lighttpd": "X-Progress-Callback", "nginx": "callback"}
SPEC_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*\Z")


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tiny_app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def make(**options: Any) -> Tuple[webtest.TestApp, ProgressTable, FakeClock]:
    clock = FakeClock()
    table = ProgressTable(clock=clock, ttl=30)
    app = ProgressMiddleware(tiny_app, store=table, **options)
    return webtest.TestApp(app, lint=True), table, clock


def build(table: ProgressTable, clock: FakeClock, state: str, pid: str = PID) -> None:
    """Drive the table's public API into *state* (``unknown`` leaves it empty)."""
    if state == "unknown":
        return
    tracker = table.track(pid, SIZE)
    assert tracker is not None
    if state == "starting":
        return
    if state == "too_large":
        clock.now = T_END
        tracker.fail("too_large", 413)
        return
    tracker.add_received(400)
    if state in ("uploading", "aborted"):
        if state == "aborted":
            clock.now = T_END
            tracker.fail("aborted")
        return
    tracker.add_received(SIZE - 400)
    tracker.body_complete()
    if state == "processing":
        return
    clock.now = T_END
    if state == "app_error":
        tracker.fail("app_error", 500)
        return
    status, length = (200, 5) if state == "done" else (404, 9)
    tracker.start_response(status, length)
    tracker.add_produced(length)
    tracker.add_sent(length)
    tracker.finish()


def native(state: str, received: int = 0, size: Optional[int] = SIZE, sent: int = 0,
           response_size: Optional[int] = None, status: Optional[int] = None,
           reason: Optional[str] = None, started: Optional[float] = T0,
           finished: Optional[float] = None, eta: Optional[float] = None) -> str:
    """The native answer, field order as in the README."""
    return json.dumps({
        "id": PID, "state": state, "received": received, "size": size, "sent": sent,
        "response_size": response_size, "status": status, "reason": reason,
        "started": started, "finished": finished, "speed": 0.0, "eta": eta})


def _native_error(reason: str, received: int, status: Optional[int],
                  sent: int = 0, response_size: Optional[int] = None) -> str:
    return native("error", received, sent=sent, response_size=response_size, status=status,
                  reason=reason, finished=T_END)


NATIVE = {
    "unknown": native("unknown", size=None, started=None),
    "starting": native("starting"),
    "uploading": native("uploading", 400),
    "processing": native("processing", SIZE, eta=0.0),
    "done": native("done", SIZE, sent=5, response_size=5, status=200, finished=T_END, eta=0.0),
    # an error status means an (error) response: nothing of it came from the app
    "too_large": _native_error("too_large", 0, 413, response_size=0),
    "aborted": _native_error("aborted", 400, None),
    "app_error": _native_error("app_error", SIZE, 500, response_size=0),
    "http_error": _native_error("http_error", SIZE, 404, sent=9, response_size=9),
}


def _running(received: int) -> str:
    return ('{"state": "running", "received": %d, "sent": 0, "request_size": 1000, '
            '"response_size": 0}' % received)


LIGHTTPD = {
    "unknown": '{"state": "unknown"}',
    "starting": _running(0),
    "uploading": _running(400),
    "processing": _running(SIZE),
    "done": ('{"state": "done", "received": 1000, "sent": 5, "request_size": 1000, '
             '"response_size": 5}'),
    "too_large": '{"state": "error", "status": 413}',
    "aborted": '{"state": "error", "status": 0}',
    "app_error": '{"state": "error", "status": 500}',
    "http_error": '{"state": "error", "status": 404}',
}
NGINX = {
    "unknown": '{ "state" : "starting" }',
    "starting": '{ "state" : "starting" }',
    "uploading": '{ "state" : "uploading", "received" : 400, "size" : 1000 }',
    "processing": '{ "state" : "uploading", "received" : 1000, "size" : 1000 }',
    "done": '{ "state" : "done" }',
    "too_large": '{ "state" : "error", "status" : 413 }',
    "aborted": '{ "state" : "error", "status" : 0 }',
    "app_error": '{ "state" : "error", "status" : 500 }',
    "http_error": '{ "state" : "error", "status" : 404 }',
}


def expected(dialect: str, state: str, callback: Optional[str]) -> bytes:
    """The exact answer, from the README and the wire-format reference."""
    if dialect == "native":
        body = NATIVE[state]
        return (body if callback is None else f"{callback}({body});").encode()
    if dialect == "lighttpd":
        body = LIGHTTPD[state]
        return (body if callback is None else f"{callback}({body})").encode()
    body = NGINX[state]
    return (body + "\r\n" if callback is None else f"{callback}({body});\r\n").encode()


def probe(client: webtest.TestApp, params: Optional[List[Tuple[str, str]]] = None,
          status: int = 200, headers: Optional[Dict[str, str]] = None,
          method: str = "GET") -> webtest.TestResponse:
    params = [("X-Progress-ID", PID)] if params is None else params
    request = {"GET": client.get, "HEAD": client.head}[method]
    response: webtest.TestResponse = request(
        "/progress", params=params, headers=headers or {}, status=status)
    assert_uncacheable(response)
    return response


def assert_uncacheable(response: webtest.TestResponse) -> None:
    assert "no-cache" in response.headers.get("Cache-Control", ""), response.headers
    expires = parsedate_to_datetime(response.headers["Expires"])
    assert expires.year < 2000, response.headers


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("fmt", ["json", "jsonp"])
@pytest.mark.parametrize("dialect", ["native", "lighttpd", "nginx"])
def test_exact_body_per_dialect_format_and_state(dialect: str, fmt: str, state: str) -> None:
    client, table, clock = make()
    build(table, clock, state)
    params = [("X-Progress-ID", PID), ("dialect", dialect)]
    callback = "jQuery_17.cb$1" if fmt == "jsonp" else None
    if callback is not None:
        params.append((CALLBACK_PARAM[dialect], callback))
    response = probe(client, params)
    assert response.body == expected(dialect, state, callback)
    kind = "application/json" if fmt == "json" else "application/javascript"
    assert response.content_type == kind
    assert response.headers["Content-Length"] == str(len(response.body))


@pytest.mark.parametrize("dialect", ["native", "lighttpd", "nginx"])
def test_configured_dialect_is_the_default_and_a_parameter_overrides_it(dialect: str) -> None:
    client, table, clock = make(dialect=dialect)
    build(table, clock, "uploading")
    assert probe(client).body == expected(dialect, "uploading", None)
    other = "nginx" if dialect != "nginx" else "lighttpd"
    params = [("X-Progress-ID", PID), ("dialect", other)]
    assert probe(client, params).body == expected(other, "uploading", None)


@pytest.mark.parametrize("query, status", [
    ("dialect=apache", 400), ("dialect=native&format=legacy", 400),
    ("dialect=native&format=jsonp", 400), ("dialect=nginx&format=xml", 400)])
def test_unknown_dialect_or_format_is_400(query: str, status: int) -> None:
    client, _, _ = make()
    response = client.get(f"/progress?X-Progress-ID={PID}&{query}", status=status)
    assert_uncacheable(response)


@pytest.mark.parametrize("dialect, body", [
    ("nginx", b'new Object({ \'state\' : \'uploading\', \'received\' : 400, '
              b'\'size\' : 1000 })\r\n'),
    ("lighttpd", b'new Object(' + LIGHTTPD["uploading"].encode() + b')'),
])
def test_legacy_new_object_format(dialect: str, body: bytes) -> None:
    client, table, clock = make()
    build(table, clock, "uploading")
    response = probe(client, [("X-Progress-ID", PID), ("dialect", dialect),
                              ("format", "legacy")])
    assert response.body == body and "javascript" in response.content_type


@pytest.mark.parametrize("dialect, body", [
    ("nginx", b'({ "state" : "starting" });\r\n'),
    ("lighttpd", b'progress({"state": "unknown"})'),
])
def test_jsonp_without_callback_uses_the_module_default(dialect: str, body: bytes) -> None:
    client, _, _ = make()
    params = [("X-Progress-ID", PID), ("dialect", dialect), ("format", "jsonp")]
    assert probe(client, params).body == body


def test_unknown_size_is_null_for_nginx_and_minus_one_for_lighttpd() -> None:
    client, table, _ = make()
    tracker = table.track(PID, None)
    assert tracker is not None
    tracker.add_received(7)
    nginx = probe(client, [("X-Progress-ID", PID), ("dialect", "nginx")])
    assert nginx.body == b'{ "state" : "uploading", "received" : 7, "size" : null }\r\n'
    lighttpd = probe(client, [("X-Progress-ID", PID), ("dialect", "lighttpd")])
    assert json.loads(lighttpd.body)["request_size"] == -1


@pytest.mark.parametrize("dialect, state", [("native", "done"), ("lighttpd", "done"),
                                            ("nginx", "done")])
def test_redirect_is_done_in_every_dialect(dialect: str, state: str) -> None:
    client, table, _ = make()
    tracker = table.track(PID, 0)
    assert tracker is not None
    tracker.body_complete()
    tracker.start_response(303, 0)
    tracker.finish()
    answer = probe(client, [("X-Progress-ID", PID), ("dialect", dialect)]).body
    assert json.loads(answer.decode())["state"] == state


def test_speed_and_eta_agree_while_uploading() -> None:
    client, table, clock = make()
    tracker = table.track(PID, SIZE)
    assert tracker is not None
    tracker.add_received(100)
    clock.now += 1.0
    tracker.add_received(300)
    answer = probe(client).json
    assert answer["speed"] > 0
    assert answer["eta"] == pytest.approx((SIZE - 400) / answer["speed"], abs=0.01)


@pytest.mark.parametrize("dialect", ["native", "lighttpd", "nginx"])
def test_the_same_probe_follows_every_change_of_its_entry(dialect: str) -> None:
    client, table, clock = make()
    params = [("X-Progress-ID", PID), ("dialect", dialect)]
    unknown = probe(client, params).body
    assert probe(client, params).body == unknown
    tracker = table.track(PID, SIZE)
    assert tracker is not None
    answers = [probe(client, params).body]
    for _ in range(3):
        assert probe(client, params).body == answers[-1]  # asked again: the same
        tracker.add_received(100)
        clock.now += 0.5
        answers.append(probe(client, params).body)
    assert len(set(answers)) == len(answers) and unknown not in answers[1:]
    assert b"300" in answers[-1]


def test_answers_kept_rendered_are_bounded() -> None:
    store = ProgressTable()
    probe_app = ProgressProbe(store)
    client = webtest.TestApp(probe_app)
    for n in range(MAX_RENDERED + 5):
        assert client.get(f"/progress?X-Progress-ID=unknown-{n:06d}").json["state"] == "unknown"
    assert 0 < len(probe_app._rendered) <= MAX_RENDERED


def test_expired_entry_is_unknown_again() -> None:
    client, table, clock = make()
    build(table, clock, "done")
    assert probe(client).json["state"] == "done"
    clock.now += 31
    assert probe(client).body == expected("native", "unknown", None)


@pytest.mark.parametrize("query", ["", "dialect=nginx", "X-Progress-ID=", "X-Progress-ID=short7",
                                   "X-Progress-ID=" + "a" * 129, "X-Progress-ID=abc%2Fdefgh",
                                   "fooX-Progress-ID=" + PID, "X-Progress-IDs=" + PID])
def test_missing_or_invalid_id_is_400(query: str) -> None:
    client, table, clock = make()
    build(table, clock, "uploading")
    response = client.get("/progress?" + query, status=400)
    assert_uncacheable(response)
    assert response.content_type == "text/plain"


@pytest.mark.parametrize("pid", ["a" * 8, "Z" * 128, "A.b_c:d-9"])
def test_id_length_and_alphabet_boundaries_are_accepted(pid: str) -> None:
    client, _, _ = make()
    assert probe(client, [("X-Progress-ID", pid)]).json["id"] == pid


def test_header_id_wins_over_query() -> None:
    client, table, clock = make()
    build(table, clock, "uploading", pid="header-id-1")
    build(table, clock, "starting", pid="query-id-01")
    answer = probe(client, [("X-Progress-ID", "query-id-01")],
                   headers={"X-Progress-ID": "header-id-1"}).json
    assert (answer["id"], answer["state"]) == ("header-id-1", "uploading")
    probe(client, [("X-Progress-ID", "query-id-01")], headers={"X-Progress-ID": "bad"},
          status=400)


@pytest.mark.parametrize("name", ["x-progress-id", "X-PROGRESS-ID", "X-Progress-Id"])
def test_query_name_is_case_insensitive(name: str) -> None:
    client, table, clock = make()
    build(table, clock, "uploading")
    assert client.get(f"/progress?{name}={PID}").json["state"] == "uploading"


def test_query_name_matches_only_a_whole_parameter() -> None:
    client, table, clock = make()
    build(table, clock, "uploading")
    answer = client.get(f"/progress?fooX-Progress-ID=other-id-1&X-Progress-ID={PID}").json
    assert answer["id"] == PID


def test_configured_id_name_replaces_x_progress_id() -> None:
    client, table, clock = make(id_name="X-Upload-Key")
    build(table, clock, "uploading")
    assert client.get(f"/progress?x-upload-key={PID}").json["state"] == "uploading"
    by_header = client.get("/progress", headers={"X-Upload-Key": PID})
    assert by_header.json["id"] == PID
    client.get(f"/progress?X-Progress-ID={PID}", status=400)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow(method: str) -> None:
    client, _, _ = make()
    response = client.request(f"/progress?X-Progress-ID={PID}", method=method, status=405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed and method not in allowed
    assert_uncacheable(response)


def test_head_answers_headers_without_body() -> None:
    client, table, clock = make()
    build(table, clock, "uploading")
    get = probe(client)
    head = probe(client, method="HEAD")
    assert head.body == b"" and head.content_type == get.content_type
    assert head.headers["Content-Length"] == str(len(get.body))


@pytest.mark.parametrize("callback", [
    "alert(1)//", "<script>", "a" * 65, "caf\u00e9", "", "1abc", "a..b", "a.", ".a",
    "cb;alert(1)", "cb\n", "a b", "a-b", "\u0430lert"])
@pytest.mark.parametrize("dialect", ["native", "lighttpd", "nginx"])
def test_invalid_callback_is_400_and_not_reflected(dialect: str, callback: str) -> None:
    client, _, _ = make()
    params = [("X-Progress-ID", PID), ("dialect", dialect), (CALLBACK_PARAM[dialect], callback)]
    response = probe(client, params, status=400)
    assert response.content_type == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    baseline = probe(client, params[:2] + [(CALLBACK_PARAM[dialect], "<x>")], status=400)
    assert response.body == baseline.body  # the answer does not depend on the input


@pytest.mark.parametrize("callback", ["a" * 64, "$", "_", "jQuery1709_42", "a.b.c", "$.x_1"])
def test_valid_callback_is_used(callback: str) -> None:
    client, _, _ = make()
    params = [("X-Progress-ID", PID), ("callback", callback)]
    assert probe(client, params).body.startswith(callback.encode() + b"({")


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(SPEC_CALLBACK, fullmatch=True)))
def test_only_spec_callbacks_are_ever_echoed(callback: str) -> None:
    client = webtest.TestApp(ProgressMiddleware(tiny_app, dialect="nginx"), lint=True)
    response = client.get("/progress", params=[("X-Progress-ID", PID), ("callback", callback)],
                          expect_errors=True)
    if len(callback) <= 64 and SPEC_CALLBACK.match(callback):
        assert response.status_int == 200
        assert response.body == f'{callback}({{ "state" : "starting" }});\r\n'.encode()
    else:
        assert response.status_int == 400 and response.content_type == "text/plain"


def test_sse_answer_is_uncacheable() -> None:
    client, table, clock = make()
    build(table, clock, "done")
    response = client.get("/progress", params=[("X-Progress-ID", PID), ("transport", "sse")])
    assert response.content_type == "text/event-stream"
    assert b'"state": "done"' in response.body
    assert_uncacheable(response)


def test_cors_is_off_by_default() -> None:
    client, _, _ = make()
    response = probe(client, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_allowed_origins_answer_only_those_origins() -> None:
    client, _, _ = make(allowed_origins=["https://app.example"])
    good = probe(client, headers={"Origin": "https://app.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://app.example"
    bad = probe(client, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers
    error = probe(client, [], status=400, headers={"Origin": "https://app.example"})
    assert error.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_wildcard_origin() -> None:
    client, _, _ = make(allowed_origins="*")
    response = probe(client, headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_options_preflight_when_cors_is_on() -> None:
    client, _, _ = make(allowed_origins=["https://app.example"])
    response = client.options("/progress", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-progress-id"})
    assert response.status_int in (200, 204) and response.body == b""
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert "x-progress-id" in response.headers["Access-Control-Allow-Headers"].lower()
    assert_uncacheable(response)
    other = client.options("/progress", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
