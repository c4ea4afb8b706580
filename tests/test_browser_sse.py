"""Headless Chromium's own EventSource against a mailbox on our server: at
the waiter cap it is told to come back, and it does (a 503 would close it
for good: WHATWG HTML 9.2, only a 200 text/event-stream is reconnected).
Needs Debian's chromium and chromium-driver (the tests fail without them,
never skip)."""
from __future__ import annotations

import socket
import time
from pathlib import Path

from test_browser import chrome, html_app, wait_for

from server_support import HOST, running

NAME = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"
PAGE = """<!doctype html><meta charset="utf-8"><title>sse</title>
<script>
var got = [], errors = 0, source = new EventSource("/mailbox/%s?transport=sse");
source.onmessage = function (event) { got.push(event.data); };
source.onerror = function () { errors += 1; };
</script>""" % NAME


page = html_app(PAGE)


def test_an_event_source_refused_at_the_waiter_cap_comes_back(tmp_path: Path) -> None:
    with running(page, mailbox=True, max_waiters=1, sse_retry=200) as (server, port), \
            chrome(tmp_path / "p") as driver:
        cursor = server.mailbox.read(NAME, None).cursor
        holder = socket.create_connection((HOST, port), timeout=10)  # the only slot
        holder.sendall(f"GET /mailbox/{NAME}?after={cursor}&wait=30 HTTP/1.1\r\n"
                       "Host: t\r\n\r\n".encode())
        deadline = time.monotonic() + 10
        while len(server.mailbox.waiters) != 1:
            assert time.monotonic() < deadline, "the holder did not wait"
            time.sleep(0.02)
        driver.get(f"http://{HOST}:{port}/")
        wait_for(driver, "return errors > 0")  # refused
        assert driver.execute_script("return source.readyState") != 2  # not CLOSED
        holder.close()  # the slot frees; the page's next try gets it
        deadline = time.monotonic() + 10
        while driver.execute_script("return source.readyState") != 1:  # OPEN
            assert time.monotonic() < deadline, "the page did not come back"
            time.sleep(0.05)
        server.mailbox.post(NAME, "welcome back")
        wait_for(driver, "return got.length === 1")
        assert driver.execute_script("return got") == ["welcome back"]
