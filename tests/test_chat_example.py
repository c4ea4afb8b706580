"""The chat example: rooms, posting, and delivery by server-sent events with
resume, under our server (with and without its own mailboxes) and werkzeug."""
from __future__ import annotations

import json
import re
import secrets
import socket
import sys
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
import webtest

from server_support import HOST, read_events, running, running_werkzeug

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.chat import MAX_TEXT, app, chat  # noqa: E402

ROOM = "c0ffee" * 5 + "ab"  # 32 characters


@pytest.fixture
def client() -> webtest.TestApp:
    return webtest.TestApp(app, lint=True)


def test_the_front_page_makes_an_unguessable_room(client: webtest.TestApp) -> None:
    first = client.get("/", status=303).headers["Location"]
    second = client.get("/", status=303).headers["Location"]
    assert re.fullmatch(r"/\?room=[0-9a-f]{32}", first) and first != second
    page = client.get(first)
    assert "new EventSource(" in page.text and "textContent" in page.text
    assert "innerHTML" not in page.text  # nothing received becomes markup


@pytest.mark.parametrize("room, form, status", [
    ("short", {"text": "hi"}, 400),
    ("<script>" * 5, {"text": "hi"}, 400),
    (ROOM, {"text": "   "}, 400),
    (ROOM, {"text": "x" * (MAX_TEXT + 1)}, 413),
])
def test_bad_posts_get_a_clear_answer(client: webtest.TestApp, room: str, form: Any,
                                      status: int) -> None:
    reply = client.post("/say?" + urlencode({"room": room}), form, status=status)
    assert reply.content_type == "text/plain" and reply.text


def test_a_post_reaches_the_room_as_json(client: webtest.TestApp) -> None:
    assert client.get(f"/mailbox/{ROOM}").json["messages"] == []
    cursor = client.get(f"/mailbox/{ROOM}").json["cursor"]
    client.post(f"/say?room={ROOM}", {"name": "ann", "text": "<b>hi</b>"}, status=201)
    client.post(f"/say?room={ROOM}", {"text": "second"}, status=201)
    answer = client.get(f"/mailbox/{ROOM}?after={cursor}").json
    assert [json.loads(m["data"]) for m in answer["messages"]] == [
        {"name": "ann", "text": "<b>hi</b>"}, {"name": "anonymous", "text": "second"}]


def say(port: int, room: str, text: str) -> int:
    conn = HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", f"/say?room={room}", urlencode({"name": "bo", "text": text}),
                     {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        assert response.status == 201
        return int(response.read())
    finally:
        conn.close()


def listen(port: int, room: str, last_event_id: str = "") -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    sock.sendall(f"GET /mailbox/{room}?transport=sse HTTP/1.1\r\nHost: t\r\n{resume}\r\n"
                 .encode())
    return sock


@pytest.fixture(params=["wsgiprogress", "wsgiprogress --mailbox", "werkzeug"])
def port(request: Any) -> Iterator[int]:
    if request.param == "werkzeug":
        with running_werkzeug(app) as port:
            yield port
    else:
        with running(app, mailbox=request.param.endswith("--mailbox")) as (_, port):
            yield port


def test_browsers_get_messages_pushed_and_resume_where_they_left(port: int) -> None:
    room = secrets.token_hex(16)  # the example's store outlives a test: a fresh room
    sock = listen(port, room)
    try:
        assert read_events(sock, 1, deadline=0.3) == []  # connected, nothing yet
        first = say(port, room, "one")
        assert read_events(sock, 1) == [f"id: {first}",
                                        'data: {"name": "bo", "text": "one"}']
    finally:
        sock.close()
    second, third = say(port, room, "two"), say(port, room, "three")  # while nobody listens
    sock = listen(port, room, last_event_id=str(first))
    try:
        assert read_events(sock, 2) == [
            f"id: {second}", 'data: {"name": "bo", "text": "two"}',
            f"id: {third}", 'data: {"name": "bo", "text": "three"}']
    finally:
        sock.close()


def test_a_negative_content_length_is_refused_before_reading() -> None:
    import io

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/say", "QUERY_STRING": f"room={ROOM}",
               "CONTENT_LENGTH": "-1", "wsgi.input": io.BytesIO(b"text=" + b"x" * 10_000)}
    answer: Any = []
    body = b"".join(chat(environ, lambda status, headers, exc_info=None: answer.append(status)))
    assert answer == ["400 Bad Request"] and body == b"invalid Content-Length"
    assert environ["wsgi.input"].tell() == 0  # nothing read
