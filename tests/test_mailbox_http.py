"""The mailbox endpoints through WebTest: long-poll, gaps, Nchan's protocol,
publishing, stats, authorization and bad input."""
from __future__ import annotations

import io
import socket
import threading
import time
from email.utils import formatdate
from typing import Any, Dict, List, Tuple

import pytest
import webtest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgiprogress import ProgressMiddleware
from wsgiprogress.mailbox import MemoryMailboxes
from wsgiprogress.web.mailbox import MailboxApp

from server_support import HOST, read_response, running_werkzeug, status_of

NAME = "0123456789abcdef0123456789abcdef"
TOKEN = "s3cret-token-of-24-chars"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def inner(environ: Dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"inner"]


def make(**settings: Any) -> "tuple[webtest.TestApp, MemoryMailboxes]":
    mailbox = MemoryMailboxes(max_messages=5)
    settings.setdefault("max_wait", 2.0)
    settings.setdefault("max_waiters", 2)  # the middleware's waiters serve the mailbox
    app = ProgressMiddleware(inner, mailbox=mailbox, **settings)
    return webtest.TestApp(app, lint=True), mailbox


def test_long_poll_returns_at_once_then_waits_for_the_next_post() -> None:
    client, mailbox = make()
    first = client.get(f"/mailbox/{NAME}").json
    assert first["messages"] == [] and first["gap"] is None
    mailbox.post(NAME, "one")
    answer = client.get(f"/mailbox/{NAME}?after={first['cursor']}").json
    assert [m["data"] for m in answer["messages"]] == ["one"]
    threading.Timer(0.2, lambda: mailbox.post(NAME, "two")).start()
    started = time.monotonic()
    waited = client.get(f"/mailbox/{NAME}?after={answer['cursor']}&wait=5")
    assert 0.1 < time.monotonic() - started < 1.9
    assert [m["data"] for m in waited.json["messages"]] == ["two"]
    assert waited.headers["Content-Length"] == str(len(waited.body))


def test_answers_given_again_follow_the_mailbox_and_the_reader() -> None:
    client, mailbox = make()
    cursor = client.get(f"/mailbox/{NAME}").json["cursor"]
    mailbox.post(NAME, "one")
    first = client.get(f"/mailbox/{NAME}?after={cursor}")
    assert client.get(f"/mailbox/{NAME}?after={cursor}").body == first.body
    assert client.head(f"/mailbox/{NAME}?after={cursor}").body == b""
    mailbox.post(NAME, "two")
    again = client.get(f"/mailbox/{NAME}?after={cursor}").json
    assert [m["data"] for m in again["messages"]] == ["one", "two"]
    later = client.get(f"/mailbox/{NAME}?after={first.json['cursor']}").json
    assert [m["data"] for m in later["messages"]] == ["two"]
    other = "f" * 32
    mailbox.post(other, "one")
    assert client.get(f"/mailbox/{other}").json["mailbox"] == other
    nchan = client.get(f"/mailbox/{NAME}?protocol=nchan",
                       headers={"If-None-Match": str(cursor)})
    assert nchan.body == b"one" and nchan.headers["Etag"] == str(cursor + 1)
    assert client.get(f"/mailbox/{NAME}?after={cursor}").json == again


def test_timeout_answers_an_empty_list() -> None:
    client, _ = make(max_wait=0.3)
    cursor = client.get(f"/mailbox/{NAME}").json["cursor"]
    started = time.monotonic()
    answer = client.get(f"/mailbox/{NAME}?after={cursor}&wait=60")
    assert 0.25 < time.monotonic() - started < 1.5  # capped by max_wait
    assert answer.status_int == 200 and answer.json["messages"] == []
    assert answer.json["cursor"] == cursor


def test_gaps_are_explicit() -> None:
    client, mailbox = make()
    cursor = client.get(f"/mailbox/{NAME}").json["cursor"]
    for n in range(8):
        mailbox.post(NAME, str(n))
    answer = client.get(f"/mailbox/{NAME}?after={cursor}").json
    assert answer["gap"] == {"dropped": 3}
    assert [m["data"] for m in answer["messages"]] == ["3", "4", "5", "6", "7"]
    unknown = client.get(f"/mailbox/{NAME}?after={answer['cursor'] + 100}").json
    assert unknown["gap"] == {"unknown_cursor": True} and len(unknown["messages"]) == 5


def test_nchan_long_poll_protocol() -> None:
    client, mailbox = make(max_wait=0.3)
    mailbox.post(NAME, "first")
    mailbox.post(NAME, "second")
    one = client.get(f"/mailbox/{NAME}?protocol=nchan")
    assert one.body == b"first" and one.headers["Vary"] == "If-None-Match, If-Modified-Since"
    follow = {"If-None-Match": one.headers["Etag"],
              "If-Modified-Since": one.headers["Last-Modified"]}
    two = client.get(f"/mailbox/{NAME}?protocol=nchan", headers=follow)
    assert two.body == b"second" and int(two.headers["Etag"]) == int(one.headers["Etag"]) + 1
    follow["If-None-Match"] = two.headers["Etag"]
    client.get(f"/mailbox/{NAME}?protocol=nchan&wait=1", headers=follow, status=408)
    epoch = {"If-Modified-Since": formatdate(0, usegmt=True), "If-None-Match": "0"}
    assert client.get(f"/mailbox/{NAME}?protocol=nchan", headers=epoch).body == b"first"


def test_nchan_holds_a_subscriber_that_has_caught_up() -> None:
    # NchanSubscriber sends no wait=: like Nchan, the answer waits for a post
    client, mailbox = make(max_wait=5.0)
    mailbox.post(NAME, "seen")
    first = client.get(f"/mailbox/{NAME}?protocol=nchan")
    follow = {"If-None-Match": first.headers["Etag"],
              "If-Modified-Since": first.headers["Last-Modified"]}
    poster = threading.Timer(0.3, mailbox.post, (NAME, "next"))
    started = time.monotonic()
    poster.start()
    try:
        held = client.get(f"/mailbox/{NAME}?protocol=nchan", headers=follow)
    finally:
        poster.join()
    assert held.body == b"next" and 0.25 <= time.monotonic() - started < 4.0


def test_nchan_answers_408_after_max_wait() -> None:
    client, mailbox = make(max_wait=0.3)
    mailbox.post(NAME, "seen")
    first = client.get(f"/mailbox/{NAME}?protocol=nchan")
    started = time.monotonic()
    client.get(f"/mailbox/{NAME}?protocol=nchan", status=408,
               headers={"If-None-Match": first.headers["Etag"],
                        "If-Modified-Since": first.headers["Last-Modified"]})
    assert time.monotonic() - started >= 0.25


ORIGIN = "https://app.example"


def test_allowed_origins_may_read_mailboxes_and_their_cursor_headers() -> None:
    client, mailbox = make(allowed_origins=ORIGIN)
    mailbox.post(NAME, "hi")
    answer = client.get(f"/mailbox/{NAME}?protocol=nchan", headers={"Origin": ORIGIN})
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    # the cursor, and the gap a page must be able to see
    assert answer.headers["Access-Control-Expose-Headers"] == \
        "Last-Modified, Etag, X-Mailbox-Gap"
    assert "Origin" in answer.headers["Vary"]
    preflight = client.options(f"/mailbox/{NAME}", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match, if-modified-since"}, status=204)
    allowed = preflight.headers["Access-Control-Allow-Headers"]
    assert "If-None-Match" in allowed and "If-Modified-Since" in allowed
    stranger = client.get(f"/mailbox/{NAME}", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_without_allowed_origins_mailboxes_send_no_cors_headers() -> None:
    client, _ = make()
    answer = client.get(f"/mailbox/{NAME}", headers={"Origin": ORIGIN})
    assert not any(name.startswith("Access-Control") for name in answer.headers)
    client.options(f"/mailbox/{NAME}", headers={"Origin": ORIGIN}, status=405)


@pytest.mark.parametrize("names", [NAME, f"{NAME},room-two-0002"], ids=["one", "fan-out"])
def test_publishing_is_off_by_default(names: str) -> None:
    client, _ = make()
    answer = client.post(f"/mailbox/{names}", "x", headers=AUTH, status=405)
    assert answer.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("headers, status", [
    pytest.param(AUTH, 201, id="token"),
    pytest.param({}, 403, id="no-token"),
    pytest.param({"Authorization": "Bearer wrong-token-of-24-chars"}, 403, id="bad-token"),
    pytest.param({"Authorization": TOKEN}, 403, id="not-bearer"),
])
def test_publishing_needs_the_token(headers: Dict[str, str], status: int) -> None:
    client, mailbox = make(publish=True, publish_token=TOKEN)
    cursor = client.get(f"/mailbox/{NAME}").json["cursor"]
    answer = client.post(f"/mailbox/{NAME}", "héllo".encode(), headers=headers, status=status)
    delivered = mailbox.read(NAME, cursor).messages
    if status == 201:
        assert answer.json == {"mailbox": NAME, "id": cursor + 1}
        assert [m.data for m in delivered] == ["héllo"]
    else:
        assert delivered == []


def test_publish_bounds() -> None:
    client, _ = make(publish=True, publish_token=TOKEN)
    client.post(f"/mailbox/{NAME}", b"x" * (64 * 1024 + 1), headers=AUTH, status=413)
    client.post(f"/mailbox/{NAME}", b"\xff\xfe", headers=AUTH, status=400)


def test_authorize_hook_decides() -> None:
    calls = []

    def authorize(environ: Dict[str, Any], name: Any, action: str) -> bool:
        calls.append((name, action))
        return environ.get("REMOTE_USER") == "alice"

    mailbox = MemoryMailboxes()
    app = ProgressMiddleware(inner, mailbox=mailbox, authorize=authorize, publish=True)
    client = webtest.TestApp(app, lint=True)
    client.get("/mailbox/short-name", status=403)
    client.get("/mailbox/short-name", extra_environ={"REMOTE_USER": "alice"}, status=200)
    client.post("/mailbox/short-name", "hi", extra_environ={"REMOTE_USER": "alice"}, status=201)
    client.get("/mailbox/_stats", status=403)
    assert client.get("/mailbox/_stats", extra_environ={"REMOTE_USER": "alice"}).json["posted"] == 1
    assert ("short-name", "publish") in calls and (None, "stats") in calls


def test_default_policy_reads_only_unguessable_names() -> None:
    client, _ = make()
    client.get("/mailbox/guessable-name", status=403)
    client.get(f"/mailbox/{NAME}", status=200)
    client.get("/mailbox/_stats", status=403)


def test_stats_with_the_token() -> None:
    client, mailbox = make(publish=True, publish_token=TOKEN)
    cursor = client.get(f"/mailbox/{NAME}").json["cursor"]
    mailbox.post(NAME, "x")
    client.get(f"/mailbox/{NAME}?after={cursor}")
    stats = client.get("/mailbox/_stats", headers=AUTH).json
    assert stats == {"mailboxes": 1, "messages": 1, "posted": 1, "dropped": 0,
                     "waiters": 0, "waiters_refused": 0, "delivered": 1, "uploads": 0}
    client.app.store.track("running-upload", 100)
    assert client.get("/mailbox/_stats", headers=AUTH).json["uploads"] == 1


def test_waiter_cap_answers_503() -> None:
    client, mailbox = make(max_wait=3)
    held = [mailbox.waiters.register("x"), mailbox.waiters.register("y")]
    try:
        answer = client.get(f"/mailbox/{NAME}?wait=2", status=503)
        assert answer.headers["Retry-After"] == "2"
        client.get(f"/mailbox/{NAME}", status=200)  # no wait, no waiter needed
        client.get("/elsewhere", status=200)
    finally:
        mailbox.waiters.unregister("x", held[0])  # type: ignore[arg-type]
        mailbox.waiters.unregister("y", held[1])  # type: ignore[arg-type]


def test_mailbox_paths_do_not_reach_the_app_and_others_do() -> None:
    client, _ = make()
    assert client.get("/mailboxes").body == b"inner"
    client.put(f"/mailbox/{NAME}", "x", status=405)


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=200), after=st.text(max_size=30), wait=st.text(max_size=12))
def test_generated_requests_never_crash(name: str, after: str, wait: str) -> None:
    client, _ = make(max_wait=0.05)
    from urllib.parse import quote
    url = f"/mailbox/{quote(name, safe='')}?after={quote(after)}&wait={quote(wait)}"
    answer = client.get(url, expect_errors=True)
    assert answer.status_int in (200, 400, 403, 404)
    if answer.status_int == 400:
        # a fixed reason: nothing the client sent is reflected
        assert answer.content_type == "text/plain"
        assert answer.text.split(":")[0] in {
            "invalid mailbox name", "invalid after", "invalid wait",
            "too many query parameters (at most 16)\n"}


def test_progress_probe_wait_answers_on_change() -> None:
    client, mailbox = make()
    table = client.app.store
    threading.Timer(0.2, lambda: table.track("waited-upload", 10)).start()
    started = time.monotonic()
    answer = client.get("/progress?X-Progress-ID=waited-upload&wait=5").json
    assert answer["state"] == "starting" and time.monotonic() - started < 1.9
    unchanged = client.get("/progress?X-Progress-ID=waited-upload&wait=0.2").json
    assert unchanged["state"] == "starting"
    client.get("/progress?X-Progress-ID=waited-upload&wait=-1", status=400)


# -- one publish to many mailboxes, as Nchan's multi-channel publish ------------------

FAN_TOKEN = "fan-out-token-0123456789"


def fan_out_client(**options: Any) -> webtest.TestApp:
    options.setdefault("authorize", lambda environ, name, action: action == "read")
    return webtest.TestApp(MailboxApp(MemoryMailboxes(), publish=True, publish_token=FAN_TOKEN,
                                      **options))


def test_one_post_publishes_to_every_named_mailbox_with_its_own_id() -> None:
    client = fan_out_client()
    auth = {"Authorization": f"Bearer {FAN_TOKEN}"}
    first = client.post("/mailbox/room-one-0001", b"earlier", headers=auth, status=201).json
    answer = client.post("/mailbox/room-one-0001,room-two-0002,room-one-0001", b"hello all",
                         headers=auth, status=201).json
    assert list(answer) == ["mailboxes"]
    assert list(answer["mailboxes"]) == ["room-one-0001", "room-two-0002"]  # each once
    assert answer["mailboxes"]["room-one-0001"] > first["id"]
    for name, message_id in answer["mailboxes"].items():
        messages = client.get(f"/mailbox/{name}").json["messages"]
        assert (messages[-1]["id"], messages[-1]["data"]) == (message_id, "hello all")


@pytest.mark.parametrize("names, reason", [
    pytest.param(",".join(f"many-mailbox-{n:04d}" for n in range(256)), "at most 255",
                 id="over-255"),
    pytest.param("good-name-0001,bad name", "invalid mailbox name", id="bad-name"),
    pytest.param("good-name-0001,", "invalid mailbox name", id="empty-name"),
])
def test_a_bad_fan_out_is_refused_whole(names: str, reason: str) -> None:
    client = fan_out_client()
    answer = client.post(f"/mailbox/{names}", b"x", status=400,
                         headers={"Authorization": f"Bearer {FAN_TOKEN}"})
    assert reason in answer.text
    assert client.get("/mailbox/good-name-0001").json["messages"] == []


def test_a_fan_out_needs_the_token_or_every_name_allowed() -> None:
    allowed = {"mine-mailbox-0001", "mine-mailbox-0002"}
    client = fan_out_client(
        authorize=lambda environ, name, action: action == "read" or name in allowed)
    client.post("/mailbox/mine-mailbox-0001,other-mailbox-01", b"x", status=403)
    assert client.get("/mailbox/mine-mailbox-0001").json["messages"] == []
    client.post("/mailbox/mine-mailbox-0001,mine-mailbox-0002", b"x", status=201)
    client.get("/mailbox/a,b", status=400)  # reading is one mailbox at a time


@pytest.mark.parametrize("token, names, reason", [
    pytest.param(FAN_TOKEN, "other-mailbox-01,other-mailbox-02",
                 "publishing needs the bearer token", id="none-allowed"),
    pytest.param(FAN_TOKEN, "mine-mailbox-0001,other-mailbox-02",
                 "not allowed to publish to other-mailbox-02; nothing was posted",
                 id="one-refused"),
    pytest.param(None, "other-mailbox-01", "not allowed to publish to other-mailbox-01; "
                 "nothing was posted", id="hook-only"),
])
def test_a_refused_publish_says_which_mailbox(token: Any, names: str, reason: str) -> None:
    # a partly allowed fan-out names the mailbox the hook refused; without a
    # publish_token, no answer asks for one
    client = webtest.TestApp(MailboxApp(
        MemoryMailboxes(), publish=True, publish_token=token,
        authorize=lambda environ, name, action: action == "read" or name.startswith("mine")))
    assert client.post(f"/mailbox/{names}", b"x", status=403).text == reason + "\n"
    assert client.get("/mailbox/mine-mailbox-0001").json["messages"] == []


# -- the body of a publish, whatever the server gives ------------------------------------


def chunked_publish(port: int, path: str, pieces: List[bytes]) -> Tuple[int, bytes]:
    """POST *pieces* as a chunked body (no Content-Length), over a real socket."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {FAN_TOKEN}"
                     f"\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + body)
        reply = read_response(sock)
    return status_of(reply), reply.partition(b"\r\n\r\n")[2]


def test_a_chunked_publish_under_werkzeug_posts_its_body() -> None:
    mailboxes = MemoryMailboxes()
    app = ProgressMiddleware(inner, mailbox=mailboxes, publish=True, publish_token=FAN_TOKEN)
    with running_werkzeug(app) as port:
        status, _ = chunked_publish(port, "/mailbox/room-one-0001,room-two-0002",
                                    [b"hello ", b"all"])
        assert status == 201
        for name in ("room-one-0001", "room-two-0002"):
            assert [m.data for m in mailboxes.read(name, None).messages] == ["hello all"]
        status, body = chunked_publish(port, "/mailbox/room-one-0001",
                                       [b"x" * 40000, b"y" * 40000])
        assert (status, b"at most 65536 bytes" in body) == (413, True)
        assert len(mailboxes.read("room-one-0001", None).messages) == 1


@pytest.mark.parametrize("environ, status, reason, read", [
    pytest.param({"CONTENT_LENGTH": "-1"}, 400, "invalid Content-Length", 0, id="negative"),
    pytest.param({"CONTENT_LENGTH": "1_0"}, 400, "invalid Content-Length", 0, id="underscore"),
    pytest.param({"HTTP_TRANSFER_ENCODING": "chunked"}, 400, "send a Content-Length", 0,
                 id="chunked-not-ended"),
    pytest.param({"wsgi.input_terminated": True}, 413, "at most 65536", 65537,
                 id="ended-too-long"),
])
def test_a_publish_body_is_read_within_its_bound(environ: Dict[str, Any], status: int,
                                                 reason: str, read: int) -> None:
    mailboxes = MemoryMailboxes()
    app = MailboxApp(mailboxes, publish=True, publish_token=FAN_TOKEN)
    stream = io.BytesIO(b"z" * 200000)
    answered = []
    body = b"".join(app({"REQUEST_METHOD": "POST", "PATH_INFO": "/mailbox/room-one-0001",
                         "HTTP_AUTHORIZATION": f"Bearer {FAN_TOKEN}", "wsgi.input": stream,
                         **environ}, lambda s, h, e=None: answered.append(s)))
    assert (int(answered[0][:3]), reason in body.decode()) == (status, True)
    assert stream.tell() == read  # never the whole stream
    assert mailboxes.read("room-one-0001", None).messages == []
