"""Mailboxes under wsgiprogress.server on real sockets: disconnects free
their thread, the waiter cap, a reconnect storm, SSE resume, progress push."""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.client import HTTPConnection
from typing import Any, Dict, Iterable, List

import pytest

from server_support import (
    HOST,
    SlowUpload,
    read_events,
    read_response,
    read_until,
    running,
)

NAME = "feedfacefeedfacefeedfacefeedface"


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def get_json(port: int, path: str, timeout: float = 10) -> Dict[str, Any]:
    conn = HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, (response.status, response.read())
        return json.loads(response.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def until(condition: Any, deadline: float = 5.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()  # type: ignore[no-any-return]


def start_poll(port: int, path: str) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


@pytest.mark.parametrize("query", ["wait=25", "transport=sse", "wait=25&protocol=nchan"])
def test_a_waiting_client_holds_no_thread_and_its_departure_frees_its_slot(query: str
                                                                           ) -> None:
    with running(app, mailbox=True, threads=4, sse_keepalive=25) as (server, port):
        waiters = server.mailbox.waiters
        dispatcher = server.task_dispatcher
        cursor = get_json(port, f"/mailbox/{NAME}")["cursor"]
        sock = start_poll(port, f"/mailbox/{NAME}?after={cursor}&{query}")
        assert until(lambda: len(waiters) == 1)
        # parked on the I/O loop: every worker thread is idle again
        assert until(lambda: dispatcher.active_count == 0)
        sock.close()
        started = time.monotonic()
        assert until(lambda: len(waiters) == 0, deadline=5)
        assert time.monotonic() - started < 2.0  # noticed at the close, not after 25 s


def test_a_kept_alive_connection_does_not_accumulate_departure_watches() -> None:
    with running(app, mailbox=True, threads=4, max_wait=0.05) as (server, port):
        conn = HTTPConnection(HOST, port, timeout=10)
        for _ in range(20):
            conn.request("GET", f"/mailbox/{NAME}?wait=0.05")
            assert json.loads(conn.getresponse().read())["messages"] == []
        channels = [c for c in server._map.values() if hasattr(c, "departure_events")]
        assert [len(c.departure_events) for c in channels] == [0]
        conn.close()


def test_waiters_are_bounded_by_connections_not_threads() -> None:
    with running(app, mailbox=True, threads=4, connection_limit=400) as (server, _):
        assert server.mailbox.waiters.limit == 300  # a quarter kept for other requests


def test_beyond_the_waiter_cap_503_while_ordinary_requests_run() -> None:
    with running(app, mailbox=True, threads=8, max_waiters=6) as (server, port):
        limit = server.mailbox.waiters.limit
        assert limit == 6
        cursor = get_json(port, f"/mailbox/{NAME}")["cursor"]
        holders = [start_poll(port, f"/mailbox/{NAME}?after={cursor}&wait=20")
                   for _ in range(limit)]
        try:
            assert until(lambda: len(server.mailbox.waiters) == limit)
            conn = HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", f"/mailbox/{NAME}?after={cursor}&wait=20")
            refused = conn.getresponse()
            assert (refused.status, refused.getheader("Retry-After")) == (503, "2")
            refused.read()
            for _ in range(3):
                conn.request("GET", "/ordinary")
                assert conn.getresponse().read() == b"ok"
            conn.close()
            server.mailbox.post(NAME, "wake up")
            for sock in holders:
                sock.settimeout(5)
                reply = read_response(sock)
                assert b'"data": "wake up"' in reply and reply.endswith(b'"gap": null}')
        finally:
            for sock in holders:
                sock.close()


def test_reconnect_storm_loses_and_duplicates_nothing() -> None:
    with running(app, mailbox=True, threads=24, max_wait=2) as (server, port):
        mailbox = server.mailbox
        names = [f"storm-{n:02d}-" + "c" * 24 for n in range(12)]
        first = {name: get_json(port, f"/mailbox/{name}")["cursor"] for name in names}
        total = 60
        received: Dict[str, List[str]] = {name: [] for name in names}
        gaps: List[Any] = []
        stop = time.monotonic() + 30

        def subscriber(name: str) -> None:
            rng = random.Random(name)
            cursor = first[name]
            while len(received[name]) < total and time.monotonic() < stop:
                path = f"/mailbox/{name}?after={cursor}&wait={rng.choice(['0', '0.3', '1'])}"
                if rng.random() < 0.3:
                    # leave in the middle of a wait, then resume from the cursor
                    start_poll(port, path).close()
                    continue
                answer = get_json(port, path)
                if answer["gap"] is not None:
                    gaps.append(answer["gap"])
                received[name].extend(m["data"] for m in answer["messages"])
                cursor = answer["cursor"]

        threads = [threading.Thread(target=subscriber, args=(n,)) for n in names]
        for thread in threads:
            thread.start()
        for n in range(total):
            mailbox.post(names, f"msg-{n}")
            time.sleep(0.01)
        for thread in threads:
            thread.join(35)
        assert gaps == []
        for name in names:
            assert received[name] == [f"msg-{n}" for n in range(total)], name


def test_a_cursor_outside_retention_gets_a_gap_signal() -> None:
    with running(app, mailbox=True) as (server, port):
        cursor = get_json(port, f"/mailbox/{NAME}")["cursor"]
        for n in range(150):  # the default keeps 100
            server.mailbox.post(NAME, str(n))
        answer = get_json(port, f"/mailbox/{NAME}?after={cursor}")
        assert answer["gap"] == {"dropped": 50}
        assert answer["messages"][0]["data"] == "50"


def test_nchan_holds_a_cursor_whose_messages_all_expired_then_reports_the_gap() -> None:
    # NchanSubscriber re-polls at once after a 408 with the headers it has:
    # answering at once again would make it spin.  As Nchan, an old cursor on
    # an empty mailbox waits for the next message, which carries the gap.
    with running(app, mailbox=True, max_age=0.3, max_wait=5) as (server, port):
        mailbox = server.mailbox
        for n in range(2):
            mailbox.post(NAME, f"m{n}")
        conn = HTTPConnection(HOST, port, timeout=10)
        conn.request("GET", f"/mailbox/{NAME}?protocol=nchan")
        first = conn.getresponse()
        assert first.read() == b"m0"
        follow = {"If-None-Match": first.headers["Etag"],
                  "If-Modified-Since": first.headers["Last-Modified"]}
        assert until(lambda: not mailbox.read(NAME, None).messages)  # both expired
        threading.Timer(0.5, mailbox.post, (NAME, "m2")).start()
        started = time.monotonic()
        conn.request("GET", f"/mailbox/{NAME}?protocol=nchan", headers=follow)
        held = conn.getresponse()
        assert (held.status, held.read()) == (200, b"m2")
        assert time.monotonic() - started >= 0.4
        assert json.loads(held.headers["X-Mailbox-Gap"]) == {"dropped": 1}
        conn.close()


def test_nchan_interval_poll_without_news_is_304_not_408() -> None:
    # wait=0 is Nchan's interval-poll: nothing new is 304 Not Modified (no
    # body); 408 is the long-poll's timeout
    with running(app, mailbox=True) as (server, port):
        server.mailbox.post(NAME, "m0")
        conn = HTTPConnection(HOST, port, timeout=10)
        path = f"/mailbox/{NAME}?protocol=nchan&wait=0"
        conn.request("GET", path)
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, b"m0")
        follow = {"If-None-Match": first.headers["Etag"],
                  "If-Modified-Since": first.headers["Last-Modified"]}
        conn.request("GET", path, headers=follow)
        same = conn.getresponse()
        assert (same.status, same.read()) == (304, b"")
        assert "Content-Length" not in same.headers  # only a 200's may be sent
        server.mailbox.post(NAME, "m1")
        conn.request("GET", path, headers=follow)
        news = conn.getresponse()
        assert (news.status, news.read()) == (200, b"m1")
        conn.close()


def test_sse_resumes_from_last_event_id() -> None:
    with running(app, mailbox=True) as (server, port):
        mailbox = server.mailbox
        cursor = get_json(port, f"/mailbox/{NAME}")["cursor"]
        ids = [mailbox.post(NAME, f"m{n}")[NAME] for n in range(2)]
        sock = start_poll(port, f"/mailbox/{NAME}?transport=sse&last_event_id={cursor}")
        assert read_events(sock, 2) == [f"id: {ids[0]}", "data: m0", f"id: {ids[1]}", "data: m1"]
        sock.close()
        missed = [mailbox.post(NAME, f"m{n}")[NAME] for n in range(2, 4)]
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.sendall(f"GET /mailbox/{NAME} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
                     f"Last-Event-ID: {ids[1]}\r\n\r\n".encode())
        events = read_events(sock, 2)
        sock.close()
        assert events == [f"id: {missed[0]}", "data: m2", f"id: {missed[1]}", "data: m3"]


def test_a_last_event_id_of_another_server_resumes_as_an_unknown_cursor() -> None:
    # a 400 would end the browser's EventSource for good (WHATWG HTML 9.2)
    with running(app, mailbox=True) as (server, port):
        ids = [server.mailbox.post(NAME, f"m{n}")[NAME] for n in range(2)]
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.sendall(f"GET /mailbox/{NAME} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
                     "Last-Event-ID: urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427\r\n\r\n"
                     .encode())
        events = read_events(sock, 3)
        sock.close()
        assert events == ["event: gap", 'data: {"unknown_cursor": true}',
                          f"id: {ids[0]}", "data: m0", f"id: {ids[1]}", "data: m1"]
        # a cursor the page's own code gives is still checked
        conn = HTTPConnection(HOST, port, timeout=10)
        conn.request("GET", f"/mailbox/{NAME}?transport=sse&last_event_id=urn:uuid:1")
        refused = conn.getresponse()
        assert refused.status == 400 and b"Last-Event-ID" in refused.read()
        conn.close()


@pytest.mark.parametrize("path", [f"/mailbox/{NAME}?transport=sse",
                                  "/progress?X-Progress-ID=abcdabcdabcdabcd&transport=sse"])
def test_head_of_an_event_stream_is_its_headers_without_a_stream(path: str) -> None:
    # RFC 9110 9.3.2: no content in an answer to HEAD; a client reads the
    # head and nothing after it
    with running(app, mailbox=True, sse_keepalive=0.2) as (server, port):
        server.mailbox.post(NAME, "m0")
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = read_until(sock, lambda _: False, 1.0)  # a stream: retry:, keepalives
        sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"Content-Type: text/event-stream" in head
        # no event, no keepalive; waitress ends every chunked answer to HEAD
        # with its empty last chunk, then closes
        assert body in (b"", b"0\r\n\r\n")


def test_sse_reports_a_gap() -> None:
    with running(app, mailbox=True) as (server, port):
        cursor = get_json(port, f"/mailbox/{NAME}")["cursor"]
        for n in range(103):
            server.mailbox.post(NAME, str(n))
        sock = start_poll(port, f"/mailbox/{NAME}?transport=sse&last_event_id={cursor}")
        events = read_events(sock, 2)
        sock.close()
        assert events[:3] == ["event: gap", 'data: {"dropped": 3}', f"id: {cursor + 4}"]


def test_progress_is_pushed_during_an_upload() -> None:
    with running(app) as (_, port):
        sock = start_poll(port, "/progress?X-Progress-ID=pushed-upload&transport=sse")
        time.sleep(0.2)
        upload = SlowUpload(port, "/u?X-Progress-ID=pushed-upload", 4 * 1024 * 1024,
                            piece=256 * 1024, delay=0.04)
        upload.start()
        upload.join(30)
        buffer = b""
        sock.settimeout(5)
        while b'"state": "done"' not in buffer:
            piece = sock.recv(65536)
            assert piece, buffer[-300:]
            buffer += piece
        sock.close()
    states = [json.loads(line[6:]) for line in buffer.decode().splitlines()
              if line.startswith("data: ")]
    uploading = [s["received"] for s in states if s["state"] == "uploading"]
    assert len(uploading) >= 3 and uploading == sorted(uploading)
    assert states[-1]["state"] == "done" and states[-1]["received"] == 4 * 1024 * 1024
