"""A probe that waits for nothing is answered from the parsed request, with
no waitress task and no WSGI environ (wsgiprogress.server.loop_probe): its
bytes on the wire are exactly those of the task path, and its head exactly
the one waitress builds."""
from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waitress.task import WSGITask
from waitress.utilities import build_http_date

from wsgiprogress import ProgressTable
from wsgiprogress.server.compat import waitress_version
from wsgiprogress.server.heads import response_head
from wsgiprogress.web.probe import MAX_PARSED, MAX_PARSED_QUERY, ProbeRequestError, ProgressProbe

from server_support import exchange, ok_app, running

# -- the head, beside waitress's own ------------------------------------------

NAMES = st.sampled_from(["content-type", "Content-Length", "CONTENT-LENGTH", "date",
                         "Server", "connection", "Connection", "x-b", "X-a", "Vary",
                         "cache-control", "Access-Control-Allow-Origin"])
STATUSES = st.sampled_from(["200 OK", "204 No Content", "304 Not Modified", "400 Bad Request",
                            "403 Forbidden", "405 Method Not Allowed", "101 Switching"])


class _Adj:
    def __init__(self, ident: str) -> None:
        self.ident = ident


class _Server:
    def __init__(self, ident: str) -> None:
        self.adj = _Adj(ident)


class _Channel:
    def __init__(self, ident: str) -> None:
        self.server = _Server(ident)


class _Request:
    def __init__(self, version: str, connection: Optional[str]) -> None:
        self.version = version
        self.headers = {} if connection is None else {"CONNECTION": connection}


def waitress_head(version: str, connection: Optional[str], status: str,
                  headers: List[Tuple[str, str]], ident: str,
                  when: float) -> Tuple[bytes, bool, bool]:
    """What waitress's own task writes: the head, whether it closes, whether
    it chunks the body."""
    task = WSGITask(_Channel(ident), _Request(version, connection))
    task.status = status
    task.response_headers = list(headers)
    for name, value in headers:  # as its start_response does
        if name.lower() == "content-length":
            task.content_length = int(value)
    task.start_time = when
    head = task.build_response_header()
    return head, task.close_on_finish, task.chunked_response


@settings(max_examples=400, deadline=None)
@given(version=st.sampled_from(["1.0", "1.1", "0.9", "2.0"]),
       connection=st.sampled_from([None, "", "keep-alive", "Keep-Alive", "close", "CLOSE"]),
       status=STATUSES,
       headers=st.lists(st.tuples(NAMES, st.sampled_from(["1", "12", "text/plain", "x"])),
                        max_size=6),
       ident=st.sampled_from(["waitress", "", "ours"]))
def test_the_head_is_the_one_waitress_writes(version: str, connection: Optional[str],
                                             status: str, headers: List[Tuple[str, str]],
                                             ident: str) -> None:
    # a Content-Length that waitress reads as a number
    headers = [(n, "12" if n.lower() == "content-length" else v) for n, v in headers]
    when = 1_700_000_000.0
    theirs, closes, chunked = waitress_head(version, connection, status, headers, ident, when)
    ours = response_head(version, connection or "", status, headers, ident,
                         build_http_date(when))
    has_body = not status.startswith(("1", "204", "304"))
    if has_body and not any(name.lower() == "content-length" for name, _ in headers):
        assert ours is None  # waitress chunks it or closes after it: the task's work
    else:
        assert not chunked
        assert ours == (theirs, closes)


# -- on the wire, beside the task path ------------------------------------------

TABLE = ProgressTable()
TABLE.update("known-upload-01", TABLE.begin("known-upload-01", 1000),
             {"state": "uploading", "received": 300})
TABLE.begin("known-upload-02", None)
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def both() -> Iterator[Tuple[int, int]]:
    """Our server twice on one table: probes answered at once, and (the
    second) through the task path."""
    with running(ok_app, store=TABLE, allowed_origins=ORIGIN) as (_, fast), \
            running(ok_app, store=TABLE, allowed_origins=ORIGIN) as (tasked, slow):
        tasked.progress_probe = None  # what a server with an authorize hook does
        yield fast, slow


def ask(port: int, request: bytes) -> bytes:
    """The raw answer to *request* (which ends with a ``Connection: close``),
    the Date header blanked."""
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", exchange(port, request, read_for=5))


#: waitress 2: the task path closes the connection after a HEAD.
HEAD_CLOSES = int(waitress_version().split(".")[0]) < 3
#: Ends every exchange: the server closes after it.
LAST = (b"GET /progress?X-Progress-ID=known-upload-01 HTTP/1.1\r\n"
        b"Host: t\r\nConnection: close\r\n\r\n")
QUERIES = st.sampled_from([
    "X-Progress-ID=known-upload-01", "X-Progress-ID=known-upload-02",
    "X-Progress-ID=unknown-id-0001", "X-Progress-ID=known-upload-01&dialect=lighttpd",
    "X-Progress-ID=known-upload-01&dialect=nginx", "X-Progress-ID=known-upload-01&dialect=nginx"
    "&format=legacy", "X-Progress-ID=known-upload-01&callback=cb.x",
    "X-Progress-ID=known-upload-01&dialect=lighttpd&format=legacy",
    "X-Progress-ID=known-upload-01&callback=alert(1)", "X-Progress-ID=bad%20id",
    "X-Progress-ID=x", "", "dialect=klingon&X-Progress-ID=known-upload-01",
    "X-Progress-ID=known-upload-01&wait=abc", "X-Progress-ID=known-upload-01&format=xml",
])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(
    st.sampled_from(["GET", "HEAD"]), st.sampled_from(["1.0", "1.1"]),
    st.sampled_from([b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n"]),
    QUERIES,
    st.sampled_from([b"", b"Origin: " + ORIGIN.encode() + b"\r\n", b"Origin: https://evil\r\n",
                     b"X-Progress-ID: known-upload-02\r\n"])), min_size=1, max_size=3))
def test_answers_are_the_task_paths_byte_for_byte(
        both: Tuple[int, int], requests: List[Tuple[str, str, bytes, str, bytes]]) -> None:
    pipelined = b"".join(
        b"%s /progress?%s HTTP/%s\r\nHost: t\r\n%s%s\r\n" % (
            method.encode(), query.encode(), version.encode(), connection, extra)
        for method, version, connection, query, extra in requests) + LAST
    fast, slow = both
    answer, tasked = ask(fast, pipelined), ask(slow, pipelined)
    assert answer.startswith(b"HTTP/1.")
    if HEAD_CLOSES and any(method == "HEAD" for method, *_ in requests):
        # waitress before 3.0 closes the connection after a HEAD whose
        # Content-Length no body bytes followed (fixed in 3.0): the answers
        # agree up to there, and ours keep the connection, as waitress 3
        assert tasked and answer.startswith(tasked)
    else:
        assert answer == tasked


def test_the_probe_gets_no_wsgi_environ_unless_a_hook_reads_it() -> None:
    seen: List[Dict[str, Any]] = []

    def authorize(environ: Dict[str, Any], progress_id: str, action: str) -> bool:
        seen.append(environ)
        return True

    with running(ok_app, store=TABLE) as (server, port):
        decide = server.progress_front.probe.decide
        environs: List[Dict[str, Any]] = []

        def recording(environ: Dict[str, Any]) -> Any:
            environs.append(environ)
            return decide(environ)
        server.progress_front.probe.decide = recording
        answer = ask(port, b"GET /progress?X-Progress-ID=known-upload-01 HTTP/1.1\r\n"
                           b"Host: t\r\nConnection: close\r\n\r\n")
    assert b'"state": "uploading"' in answer
    assert environs and "wsgi.input" not in environs[0]  # not a WSGI environ
    assert environs[0]["QUERY_STRING"] == "X-Progress-ID=known-upload-01"
    with running(ok_app, store=TABLE, authorize=authorize) as (_, port):
        answer = ask(port, b"GET /progress?X-Progress-ID=known-upload-01 HTTP/1.1\r\n"
                           b"Host: t\r\nConnection: close\r\n\r\n")
    assert b'"state": "uploading"' in answer
    assert seen and "wsgi.input" in seen[0]  # the application's hook gets the whole environ


def test_parsed_queries_kept_are_bounded() -> None:
    probe = ProgressProbe(ProgressTable())
    for n in range(MAX_PARSED + 10):
        probe.parse({"QUERY_STRING": f"X-Progress-ID=bounded-{n:06d}"})
    assert 0 < len(probe._parsed) <= MAX_PARSED
    probe._parsed.clear()
    long_query = "X-Progress-ID=bounded-000001&pad=" + "a" * MAX_PARSED_QUERY
    assert probe.parse({"QUERY_STRING": long_query}).progress_id == "bounded-000001"
    assert not probe._parsed  # a long query is parsed each time, never kept
    # a kept query answers as a fresh parse does, and a bad one is never kept
    kept = probe.parse({"QUERY_STRING": "X-Progress-ID=bounded-000002&dialect=nginx"})
    assert kept == probe.parse({"QUERY_STRING": "X-Progress-ID=bounded-000002&dialect=nginx"})
    assert kept.dialect == "nginx"
    with pytest.raises(ProbeRequestError):
        probe.parse({"QUERY_STRING": "X-Progress-ID=bad id"})
    assert len(probe._parsed) == 1


def test_behind_a_trusted_proxy_its_headers_are_checked_as_for_any_request() -> None:
    # waitress refuses a malformed Forwarded from the trusted proxy; so must the probe
    forwarded = b"Forwarded: for=\"unterminated\r\n"
    with running(ok_app, store=TABLE, trusted_proxy="127.0.0.1",
                 trusted_proxy_headers="forwarded") as (_, port):
        for path in (b"/", b"/progress?X-Progress-ID=known-upload-01"):
            answer = ask(port, b"GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n"
                         % (path, forwarded))
            assert answer.startswith(b"HTTP/1.1 400 "), answer
