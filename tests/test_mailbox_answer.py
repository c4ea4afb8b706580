"""A mailbox request on a server where nothing can block is answered from the
parsed request, with no waitress task and no WSGI environ
(wsgiprogress.server.loop_mailbox): its bytes on the wire are exactly those
of the task path, for publishes (token right, wrong, missing; too big; not
UTF-8; fan-out), reads (at once, long-polls, Nchan's protocol), HEAD, CORS,
the stats, HTTP/1.0 and 1.1, kept alive or closed, pipelined."""
from __future__ import annotations

import contextlib
import itertools
import re
import secrets
import socket
import struct
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgiprogress.mailbox import MemoryMailboxes
from wsgiprogress.server import loop_mailbox
from wsgiprogress.server.compat import waitress_version

from server_support import HOST, exchange, ok_app, running

TOKEN = "answer-token-" + "x" * 20
ORIGIN = "https://app.example"
LIMIT = 40  # bytes a message may have
WHEN = 1_700_000_000.0


def store() -> MemoryMailboxes:
    """A store whose messages all carry the same time, so that two servers
    given the same requests give the same answers."""
    return MemoryMailboxes(clock=lambda: WHEN, max_message_bytes=LIMIT)


@pytest.fixture(scope="module")
def both() -> Iterator[Tuple[int, int]]:
    """Our server twice, each with its own store: mailboxes answered without
    a task, and (the second) through the task path."""
    common: Dict[str, Any] = dict(publish=True, publish_token=TOKEN, allowed_origins=ORIGIN,
                                  max_wait=0.2)
    with running(ok_app, mailbox=store(), **common) as (fast_server, fast), \
            running(ok_app, mailbox=store(), **common) as (tasked, slow):
        assert fast_server.progress_mailboxes is not None
        tasked.progress_mailboxes = None  # what a server with an authorize hook does
        yield fast, slow


#: Mailbox names never used before: each example starts from empty mailboxes.
_FRESH = itertools.count()
#: waitress 2: the task path closes the connection after a HEAD.
HEAD_CLOSES = int(waitress_version().split(".")[0]) < 3


def ask(port: int, request: bytes) -> bytes:
    """The raw answer to *request* (whose last request closes the
    connection), the Date header blanked."""
    # ids start at a random base in each mailbox: the same one on both servers
    with mock.patch.object(secrets, "randbelow", return_value=1000):
        answer = exchange(port, request, read_for=5)
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", answer)


BODIES = st.sampled_from([b"hello", "h\u00e9llo".encode(), b"x" * LIMIT, b"x" * (LIMIT + 1),
                          b"\xff\xfe", b""])
AUTHS = st.sampled_from([b"Authorization: Bearer " + TOKEN.encode() + b"\r\n",
                         b"Authorization: Bearer wrong-token-0123456789\r\n", b""])
ORIGINS = st.sampled_from([b"", b"Origin: " + ORIGIN.encode() + b"\r\n",
                           b"Origin: https://evil.example\r\n"])
READS = st.sampled_from([
    "", "?after=1000", "?after=1001", "?after=abc", "?wait=0.05", "?after=1000&wait=0.05",
    "?after=999&wait=0.05", "?protocol=nchan", "?protocol=nchan&wait=0.05",
    "?wait=abc", "?after=5"])
NCHAN_HEADERS = st.sampled_from([
    b"", b"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nIf-None-Match: 0\r\n",
    b"If-None-Match: 1001\r\n", b"If-None-Match: junk\r\n",
    b"If-Modified-Since: not a date\r\n"])


@st.composite
def mailbox_request(draw: Any, names: Tuple[str, str, str]) -> bytes:
    """One request of the pipeline, for the example's mailbox *names* (two
    readable by anyone, one too short to be)."""
    readable, other, guessable = names
    kind = draw(st.sampled_from(["post", "fan-out", "read", "read", "preflight", "stats",
                                 "put"]))
    version = draw(st.sampled_from([b"1.0", b"1.1"]))
    connection = draw(st.sampled_from([b"", b"Connection: keep-alive\r\n"]))
    origin = draw(ORIGINS)
    head = b"Host: t\r\n" + connection + origin
    if kind in ("post", "fan-out"):
        body = draw(BODIES)
        target = draw(st.sampled_from([readable, guessable])) if kind == "post" else \
            f"{readable},{other},{readable}"
        return b"POST /mailbox/%s HTTP/%s\r\n%s%sContent-Type: text/plain\r\n" \
               b"Content-Length: %d\r\n\r\n%s" % (target.encode(), version, head, draw(AUTHS),
                                                   len(body), body)
    if kind == "preflight":
        return b"OPTIONS /mailbox/%s HTTP/%s\r\n%sAccess-Control-Request-Method: POST\r\n\r\n" \
               % (readable.encode(), version, head)
    if kind == "stats":
        return b"GET /mailbox/_stats HTTP/%s\r\n%s%s\r\n" % (version, head, draw(AUTHS))
    if kind == "put":
        return b"PUT /mailbox/%s HTTP/%s\r\n%sContent-Length: 0\r\n\r\n" % (
            readable.encode(), version, head)
    method = draw(st.sampled_from([b"GET", b"HEAD"]))
    name = draw(st.sampled_from([readable, readable, guessable, "bad name!"]))
    return b"%s /mailbox/%s%s HTTP/%s\r\n%s%s\r\n" % (
        method, name.encode().replace(b" ", b"%20"), draw(READS).encode(), version, head,
        draw(NCHAN_HEADERS))


@st.composite
def pipelines(draw: Any) -> Tuple[bytes, bool]:
    """Up to four requests on one connection, the last one closing it, and
    whether any is a HEAD."""
    n = next(_FRESH)
    names = (f"answer{n:026d}", f"answers{n:025d}", f"short{n:05d}")
    requests = draw(st.lists(mailbox_request(names), min_size=1, max_size=4))
    closing = draw(st.sampled_from([
        b"GET /mailbox/%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % names[0].encode(),
        b"GET /mailbox/%s HTTP/1.0\r\nHost: t\r\n\r\n" % names[1].encode()]))
    return b"".join(requests) + closing, any(r.startswith(b"HEAD") for r in requests)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pipeline=pipelines())
def test_answers_are_the_task_paths_byte_for_byte(both: Tuple[int, int],
                                                  pipeline: Tuple[bytes, bool]) -> None:
    requests, has_head = pipeline
    fast, slow = both
    answer, tasked = ask(fast, requests), ask(slow, requests)
    assert answer.startswith(b"HTTP/1.")
    if HEAD_CLOSES and has_head:
        # waitress before 3.0 closes the connection after a HEAD whose
        # Content-Length no body bytes followed: the answers agree up to there
        assert tasked and answer.startswith(tasked)
    else:
        assert answer == tasked


#: Linux's SO_TIMESTAMPNS (also its control message's type), which Python does not name.
SO_TIMESTAMPNS = 35


def received(sock: socket.socket) -> Tuple[bytes, Optional[float]]:
    """What one ``recv`` of *sock* gives, and when its first bytes arrived
    (the kernel's time: ``SO_TIMESTAMPNS``; ``None`` when it noted none)."""
    data, ancillary, _, _ = sock.recvmsg(65536, 64)
    stamps = [struct.unpack("qq", value[:16]) for level, kind, value in ancillary
              if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS]
    if not stamps:
        return data, None
    seconds, nanoseconds = stamps[0]
    return data, seconds + nanoseconds / 1e9


@contextlib.contextmanager
def kernel_timestamps() -> Iterator[None]:
    """Arrival times noted for every socket that asks, from now until the
    end: Linux turns the noting on a moment after the first socket asks (in
    the background), and off once the last one closes, so one socket asks
    for the whole time and the kernel is seen to note its bytes."""
    with socket.create_server((HOST, 0)) as listener, \
            socket.create_connection(listener.getsockname(), timeout=5) as sender:
        receiver, _ = listener.accept()
        with receiver:
            receiver.settimeout(5)
            receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            deadline = time.monotonic() + 5
            while True:
                sender.sendall(b"x")
                if received(receiver)[1] is not None:
                    break
                assert time.monotonic() < deadline, "the kernel notes no arrival times"
                time.sleep(0.01)
            yield


def test_a_publish_reaches_a_parked_waiter_first_without_a_task_or_environ() -> None:
    served: List[str] = []
    original = loop_mailbox.MailboxAnswer.service

    def recording(self: Any) -> None:
        served.append(self.request.command)
        original(self)

    name = "parked" + "0" * 26
    with mock.patch.object(loop_mailbox.MailboxAnswer, "service", recording), \
            kernel_timestamps(), \
            running(ok_app, mailbox=store(), publish=True, publish_token=TOKEN) as (server, port):
        with socket.create_connection((HOST, port), timeout=5) as waiter:
            waiter.sendall(b"GET /mailbox/%s HTTP/1.1\r\nHost: t\r\n\r\n" % name.encode())
            first = waiter.recv(65536)
            cursor = re.search(rb'"cursor": (\d+)', first).group(1)  # type: ignore[union-attr]
            waiter.sendall(b"GET /mailbox/%s?after=%s&wait=5 HTTP/1.1\r\nHost: t\r\n\r\n"
                           % (name.encode(), cursor))
            deadline = time.monotonic() + 5
            while len(server.mailbox.waiters) < 1:
                assert time.monotonic() < deadline, "the long-poll did not park"
                time.sleep(0.01)
            with socket.create_connection((HOST, port), timeout=5) as publisher:
                for sock in (waiter, publisher):  # the kernel notes when bytes arrive
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                publisher.sendall(b"POST /mailbox/%s HTTP/1.1\r\nHost: t\r\n"
                                  b"Authorization: Bearer %s\r\nContent-Length: 5\r\n\r\n"
                                  b"hello" % (name.encode(), TOKEN.encode()))
                published, published_at = received(publisher)
                delivered, delivered_at = received(waiter)
        # the waiter's answer went out before the publisher's reply
        assert delivered_at is not None and published_at is not None
        assert delivered_at < published_at
        assert published.startswith(b"HTTP/1.1 201 Created")
        assert b'"data": "hello"' in delivered
        assert not server.mailbox.waiters  # the slot went back
    # the first read, the long-poll twice (parked, then woken), the publish
    assert served == ["GET", "GET", "POST", "GET"]


def test_an_authorize_hook_keeps_the_task_path() -> None:
    seen: List[Dict[str, Any]] = []

    def authorize(environ: Dict[str, Any], name: Any, action: str) -> bool:
        seen.append(environ)
        return True

    with running(ok_app, mailbox=store(), authorize=authorize) as (server, port):
        assert server.progress_mailboxes is None
        answer = exchange(port, b"GET /mailbox/anyone-reads HTTP/1.1\r\nHost: t\r\n"
                                b"Connection: close\r\n\r\n", read_for=5)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert seen and "wsgi.input" in seen[0]  # the application's hook gets the whole environ


def test_under_a_url_prefix_too() -> None:
    common: Dict[str, Any] = dict(publish=True, publish_token=TOKEN, url_prefix="/app")
    name = b"prefixed" + b"0" * 24
    requests = (b"POST /app/mailbox/%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                b"Content-Length: 2\r\n\r\nhi" % (name, TOKEN.encode())
                + b"GET /app/mailbox/%s?after=999 HTTP/1.1\r\nHost: t\r\n\r\n" % name
                + b"GET /app/mailbox/_stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with running(ok_app, mailbox=store(), **common) as (fast_server, fast), \
            running(ok_app, mailbox=store(), **common) as (tasked, slow):
        assert fast_server.progress_mailboxes is not None
        tasked.progress_mailboxes = None
        answer, expected = ask(fast, requests), ask(slow, requests)
    assert answer.count(b"HTTP/1.1 201 Created") == 1 and b'"data": "hi"' in answer
    assert answer == expected
