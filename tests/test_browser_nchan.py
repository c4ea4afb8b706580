"""Nchan's own client, ``NchanSubscriber`` (npm ``nchan``, pinned in
tests/js/nchan), in headless Chromium against a mailbox on our server: each
of its transports receives messages and resumes from the id it kept, as it
does against Nchan.  Needs Debian's chromium and chromium-driver, node and
npm (the tests fail without them, never skip)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List

from test_browser import chrome, wait_for

from npm_support import npm_ci
from server_support import HOST, running

NAME = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"
PAGE = """<!doctype html><meta charset="utf-8"><title>nchan</title>
<script src="/NchanSubscriber.js"></script>
<script>
var got = [], ids = [], errors = [];
var sub = new NchanSubscriber("/mailbox/%s?protocol=nchan", %s);
sub.on("message", function (message, meta) { got.push(message); ids.push(meta.id); });
sub.on("error", function (code) { errors.push(String(code && code.type || code)); });
sub.start();
</script>"""


def site(options: Dict[str, Any]) -> Any:
    script = (npm_ci("nchan", "nchan") / "nchan" / "NchanSubscriber.js").read_bytes()
    page = (PAGE % (NAME, json.dumps(options))).encode()

    def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        js = environ["PATH_INFO"] == "/NchanSubscriber.js"
        body = script if js else page
        kind = "text/javascript" if js else "text/html; charset=utf-8"
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]
    return app


def subscribed(server: Any, n: int = 1) -> None:
    deadline = time.monotonic() + 10
    while len(server.mailbox.waiters) != n:
        assert time.monotonic() < deadline, "NchanSubscriber did not subscribe"
        time.sleep(0.02)


def test_long_poll_resumes_after_a_reload_from_the_id_it_kept(tmp_path: Path) -> None:
    # reconnect: "session" keeps lastMessageId ("<time>:<Etag>") in
    # sessionStorage; the reloaded page sends it back as an Etag header
    app = site({"subscriber": "longpoll", "reconnect": "session"})
    with running(app, mailbox=True) as (server, port), chrome(tmp_path / "p") as driver:
        driver.get(f"http://{HOST}:{port}/")
        subscribed(server)
        for n in range(2):
            server.mailbox.post(NAME, f"m{n}")
        wait_for(driver, "return got.length === 2")
        driver.get("about:blank")  # the page goes away
        for n in range(2, 5):
            server.mailbox.post(NAME, f"m{n}")
        driver.get(f"http://{HOST}:{port}/")
        wait_for(driver, "return got.length >= 3 || errors.length > 0")
        assert driver.execute_script("return errors") == []
        got: List[str] = driver.execute_script("return got")
        assert got == ["m2", "m3", "m4"]


def test_websocket_transport_speaks_ws_meta_nchan_and_resumes(tmp_path: Path) -> None:
    # no options: NchanSubscriber's first choice, a WebSocket offering the
    # ws+meta.nchan subprotocol, whose messages start with an id: line
    app = site({})
    with running(app, mailbox=True, websocket=True) as (server, port), \
            chrome(tmp_path / "p") as driver:
        driver.get(f"http://{HOST}:{port}/")
        subscribed(server)
        ids = [server.mailbox.post(NAME, f"m{n}")[NAME] for n in range(2)]
        wait_for(driver, "return got.length === 2 || errors.length > 0")
        assert driver.execute_script("return [got, ids, errors]") == [
            ["m0", "m1"], [str(i) for i in ids], []]
        driver.execute_script("sub.stop()")
        subscribed(server, 0)
        server.mailbox.post(NAME, "m2")  # while it is away: after= last_event_id
        driver.execute_script("sub.start()")
        wait_for(driver, "return got.length === 3")
        assert driver.execute_script("return got") == ["m0", "m1", "m2"]


def test_eventsource_transport_resumes_from_its_last_event_id(tmp_path: Path) -> None:
    app = site({"subscriber": "eventsource"})
    with running(app, mailbox=True) as (server, port), chrome(tmp_path / "p") as driver:
        driver.get(f"http://{HOST}:{port}/")
        subscribed(server)
        server.mailbox.post(NAME, "m0\r\nsecond line")
        wait_for(driver, "return got.length === 1")
        driver.execute_script("sub.stop()")
        subscribed(server, 0)
        server.mailbox.post(NAME, "m1")
        driver.execute_script("sub.start()")
        wait_for(driver, "return got.length === 2")
        assert driver.execute_script("return [got, errors]") == [
            ["m0\nsecond line", "m1"], []]
