"""Headless Chromium opens a WebSocket to a mailbox on our server, receives
messages, loses the connection, reconnects with its cursor and misses
nothing.  Needs Debian's chromium and chromium-driver (the tests fail
without them, never skip)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List

from test_browser import chrome, html_app, wait_for

from server_support import running

NAME = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
PAGE = """<!doctype html><meta charset="utf-8"><title>mailbox</title>
<script>
var got = [], cursor = null, opens = 0;
function connect() {
  var query = cursor === null ? "" : "?after=" + cursor;
  var ws = new WebSocket("ws://" + location.host + "/mailbox/%s" + query);
  ws.onopen = function () { opens += 1; };
  ws.onmessage = function (event) {
    var message = JSON.parse(event.data);
    if (message.gap) { got.push("gap"); return; }
    cursor = message.id;
    got.push(message.data);
  };
  ws.onclose = function () { setTimeout(connect, 100); };
}
connect();
</script>""" % NAME


page = html_app(PAGE)


def test_a_page_reconnects_with_its_cursor_and_misses_nothing(tmp_path: Path) -> None:
    with running(page, mailbox=True, websocket=True) as (server, port), \
            chrome(tmp_path / "profile") as driver:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, "return opens === 1")
        deadline = time.monotonic() + 10
        while len(server.mailbox.waiters) != 1:
            assert time.monotonic() < deadline, "the page's socket did not subscribe"
            time.sleep(0.02)
        for n in range(5):
            server.mailbox.post(NAME, f"m{n}")
        wait_for(driver, "return got.length === 5")

        def drop() -> None:  # the network goes away: the server side closes
            for channel in list(server._map.values()):
                if getattr(channel, "websocket", None) is not None:
                    channel.handle_close()
        server.trigger.pull_trigger(drop)
        for n in range(5, 10):  # posted while the page is away
            server.mailbox.post(NAME, f"m{n}")
        wait_for(driver, "return opens === 2 && got.length === 10")
        got: List[str] = driver.execute_script("return got")
        assert got == [f"m{n}" for n in range(10)]
