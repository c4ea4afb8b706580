"""One publish to many mailboxes with the list in a JSON body
(``POST <mailbox_url>/``), beside the names in the path (test_mailbox_http.py):
the same answer, bounds, authorization and all-or-nothing, at both front doors."""
from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
import requests
import webtest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgiprogress import ProgressMiddleware
from wsgiprogress.mailbox import MemoryMailboxes
from wsgiprogress.web.mailbox import MailboxApp

from server_support import HOST, ok_app, running, running_werkzeug

TOKEN = "fan-out-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOMS = ["room-one-0001", "room-two-0002", "room-three-03"]


def client(**options: Any) -> webtest.TestApp:
    options.setdefault("authorize", lambda environ, name, action: action == "read")
    return webtest.TestApp(MailboxApp(MemoryMailboxes(max_message_bytes=1024), publish=True,
                                      publish_token=TOKEN, **options))


def post_json(app: webtest.TestApp, document: Any, status: int,
              headers: Dict[str, str] = AUTH) -> webtest.TestResponse:
    return app.post("/mailbox/", json.dumps(document).encode(), status=status,
                    headers=dict(headers, **{"Content-Type": "application/json"}))


def messages(app: webtest.TestApp, name: str) -> List[Any]:
    return [(m["id"], m["data"]) for m in app.get(f"/mailbox/{name}").json["messages"]]


def test_the_list_in_the_body_posts_to_each_mailbox_once_with_its_own_id() -> None:
    app = client()
    first = app.post(f"/mailbox/{ROOMS[0]}", b"earlier", headers=AUTH, status=201).json
    answer = post_json(app, {"mailboxes": ROOMS[:2] + ROOMS[:1], "message": "hello all"},
                       201).json
    assert list(answer) == ["mailboxes"] and list(answer["mailboxes"]) == ROOMS[:2]
    assert answer["mailboxes"][ROOMS[0]] > first["id"]
    for name, message_id in answer["mailboxes"].items():
        assert messages(app, name)[-1] == (message_id, "hello all")
    # the path's form gives the same answer
    same = app.post(f"/mailbox/{','.join(ROOMS[:2])}", b"again", headers=AUTH, status=201).json
    assert list(same["mailboxes"]) == ROOMS[:2]


@pytest.mark.parametrize("body, content_type, reason", [
    pytest.param(b'{"mailboxes": ["room-one-0001"], "message": "x"}', "text/plain",
                 "name the mailbox in the path, or send application/json", id="not-json-type"),
    pytest.param(b"{not json", "application/json", "the body is not JSON", id="not-json"),
    pytest.param(b'["room-one-0001"]', "application/json", "a fan-out's body is", id="a-list"),
    pytest.param(b"[" * 20_000, "application/json", "the body is not JSON",
                 id="nested-deeper-than-the-parser-goes"),
    pytest.param(b'{"mailboxes": [], "message": "x"}', "application/json",
                 "a fan-out's body is", id="no-names"),
    pytest.param(b'{"mailboxes": "room-one-0001", "message": "x"}', "application/json",
                 "a fan-out's body is", id="names-not-a-list"),
    pytest.param(b'{"mailboxes": ["room-one-0001", 7], "message": "x"}', "application/json",
                 "a fan-out's body is", id="a-name-not-text"),
    pytest.param(b'{"mailboxes": ["room-one-0001"], "message": {"a": 1}}',
                 "application/json", "a fan-out's body is", id="message-not-text"),
    pytest.param(b'{"mailboxes": ["room-one-0001"]}', "application/json",
                 "a fan-out's body is", id="no-message"),
    pytest.param(b'{"mailboxes": ["room-one-0001", "bad name"], "message": "x"}',
                 "application/json", "invalid mailbox name", id="bad-name"),
    pytest.param(json.dumps({"mailboxes": [f"many-mailbox-{n:04d}" for n in range(256)],
                             "message": "x"}).encode(), "application/json", "at most 255",
                 id="over-255"),
    pytest.param(b'{"mailboxes": ["room-one-0001"], "message": "\\ud800"}',
                 "application/json", "UTF-8", id="lone-surrogate"),
    pytest.param(b'{"mailboxes": ["room-one-0001"], "message": "x"}\xff', "application/json",
                 "UTF-8", id="not-utf-8"),
])
def test_a_bad_body_is_refused_whole(body: bytes, content_type: str, reason: str) -> None:
    app = client()
    answer = app.post("/mailbox/", body, status=400,
                      headers=dict(AUTH, **{"Content-Type": content_type}))
    assert reason in answer.text
    assert messages(app, ROOMS[0]) == []


def test_the_message_bound_holds_and_names_have_room_of_their_own() -> None:
    app = client()
    names = [f"long-mailbox-name-{n:03d}-" + "x" * 100 for n in range(255)]
    fits = post_json(app, {"mailboxes": names, "message": "m" * 1024}, 201).json
    assert len(fits["mailboxes"]) == 255  # 33 KiB of names beside a 1 KiB message
    answer = post_json(app, {"mailboxes": ROOMS, "message": "é" * 513}, 413)  # 1026 bytes
    assert answer.text == "a message may have at most 1024 bytes\n"
    assert all(messages(app, name) == [] for name in ROOMS)
    huge = b'{"mailboxes": ["room-one-0001"], "message": "' + b"m" * 200_000 + b'"}'
    app.post("/mailbox/", huge, status=413,
             headers=dict(AUTH, **{"Content-Type": "application/json"}))


def test_every_listed_name_must_be_allowed_or_the_token_sent() -> None:
    allowed = {ROOMS[0], ROOMS[1]}
    app = client(authorize=lambda environ, name, action: action == "read" or name in allowed)
    refused = post_json(app, {"mailboxes": [ROOMS[0], ROOMS[2]], "message": "x"}, 403, {})
    assert refused.text == f"not allowed to publish to {ROOMS[2]}; nothing was posted\n"
    assert messages(app, ROOMS[0]) == []
    post_json(app, {"mailboxes": ROOMS[:2], "message": "x"}, 201, {})
    post_json(app, {"mailboxes": ROOMS, "message": "y"}, 201)  # the token: every name


def test_publishing_off_answers_405() -> None:
    app = webtest.TestApp(MailboxApp(MemoryMailboxes()))
    answer = post_json(app, {"mailboxes": ROOMS, "message": "x"}, 405)
    assert answer.headers["Allow"] == "GET, HEAD"


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(["mailboxes", "message", "x"]), inner,
                                      max_size=3), max_leaves=12))
def test_any_json_is_posted_whole_or_refused_with_a_reason(document: Any) -> None:
    app = client()
    answer = app.post("/mailbox/", json.dumps(document).encode(), expect_errors=True,
                      headers=dict(AUTH, **{"Content-Type": "application/json"}))
    assert answer.status_int in (201, 400), answer.text
    assert answer.status_int == 400 or set(answer.json["mailboxes"]) == set(document["mailboxes"])


@pytest.mark.parametrize("door", ["our server", "werkzeug"])
def test_a_json_fan_out_at_both_front_doors(door: str) -> None:
    settings = {"mailbox": True, "publish": True, "publish_token": TOKEN}
    rooms = [f"{n}123456789abcdef0123456789abcdef" for n in range(3)]  # unguessable: readable
    document = {"mailboxes": rooms, "message": "to every room"}
    if door == "our server":  # memory store, no hook: answered on the I/O loop
        with running(ok_app, **settings) as (_, port):
            answer = requests.post(f"http://{HOST}:{port}/mailbox/", json=document,
                                   headers=AUTH, timeout=5)
            read = [requests.get(f"http://{HOST}:{port}/mailbox/{name}", timeout=5).json()
                    for name in rooms]
    else:
        with running_werkzeug(ProgressMiddleware(ok_app, **settings)) as port:
            answer = requests.post(f"http://{HOST}:{port}/mailbox/", json=document,
                                   headers=AUTH, timeout=5)
            read = [requests.get(f"http://{HOST}:{port}/mailbox/{name}", timeout=5).json()
                    for name in rooms]
    assert answer.status_code == 201 and list(answer.json()["mailboxes"]) == rooms
    assert [r["messages"][-1]["data"] for r in read] == ["to every room"] * 3
