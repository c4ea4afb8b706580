"""Settings of wsgiprogress.server: validation, tuned defaults, several listeners."""
from __future__ import annotations

import re
import resource
import socket
import sys
import threading
from typing import Any, Dict, Iterable

import pytest

from wsgiprogress import ConfigurationError, ProgressTable
from wsgiprogress.server import create_server, split_settings
from wsgiprogress.server.channel import ProgressChannel

from server_support import exchange, running, wait_for_state


def app(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def test_tuned_defaults() -> None:
    _, waitress_settings, _ = split_settings({})
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fds = 16384 if hard == resource.RLIM_INFINITY else hard - 64
    # a waiter costs a connection, not a thread: as many as descriptors and poll() allow
    assert waitress_settings == {"recv_bytes": 262144, "asyncore_use_poll": True,
                                 "channel_request_lookahead": 1,
                                 "connection_limit": max(100, min(16384, fds))}


def test_select_keeps_the_connection_limit_below_its_descriptor_ceiling() -> None:
    _, waitress_settings, _ = split_settings({"asyncore_use_poll": False})
    assert 100 <= waitress_settings["connection_limit"] <= 1000


def test_user_values_win_and_connection_limit_follows_threads() -> None:
    _, waitress_settings, _ = split_settings({"recv_bytes": "8192", "threads": 20000})
    assert waitress_settings["recv_bytes"] == "8192"
    assert waitress_settings["connection_limit"] == 40000
    _, waitress_settings, _ = split_settings({"connection_limit": 300})
    assert waitress_settings["connection_limit"] == 300


@pytest.mark.parametrize("settings, message", [
    pytest.param({"thread": 4}, "unknown setting 'thread'; did you mean 'threads'?", id="typo"),
    pytest.param({"tll": 4}, "did you mean 'ttl'?", id="typo-ours"),
    pytest.param({"threads": "many"}, "threads: invalid literal", id="bad-int"),
    pytest.param({"asyncore_use_poll": "maybe"}, "asyncore_use_poll", id="bad-bool"),
    pytest.param({"debug": "maybe"}, "debug: expected true or false", id="strict-bool"),
    pytest.param({"methods": ""}, "methods: expected HTTP methods", id="no-methods"),
    pytest.param({"threads": 10, "connection_limit": 11}, "at least threads + 2 (12)",
                 id="connection-limit"),
    pytest.param({"progress_url": "progress"}, "progress_url: expected a URL path",
                 id="relative-url"),
    pytest.param({"probe_threads": 0}, "probe_threads: expected a whole number >= 1",
                 id="probe-threads"),
])
def test_bad_settings_fail_at_construction(settings: Dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        create_server(app, host="127.0.0.1", port=0, **settings)


def test_ttl_belongs_to_a_passed_table() -> None:
    with pytest.raises(ConfigurationError, match="ttl belongs to the progress store you passed"):
        create_server(app, host="127.0.0.1", port=0, store=ProgressTable(), ttl=5)


def test_passed_table_is_used() -> None:
    table = ProgressTable(ttl=60)
    with running(app, store=table) as (server, port):
        assert server.progress_store is table
        exchange(port, b"POST /u?X-Progress-ID=given-table HTTP/1.1\r\nHost: t\r\n"
                       b"Content-Length: 2\r\n\r\nok", until=b"ok")
        wait_for_state(port, "given-table", ("done",))
    assert table.get("given-table") is not None


def test_every_listener_tracks() -> None:
    with running(app, listen="127.0.0.1:0 127.0.0.1:0") as (server, _):
        listeners = [d for d in server.map.values() if hasattr(d, "channel_class")]
        assert len(listeners) == 2
        assert all(listener.channel_class is ProgressChannel for listener in listeners)
        ports = [listener.effective_port for listener in listeners]
        for number, port in enumerate(ports):
            progress_id = f"listener-{number}"
            request = (f"POST /u?X-Progress-ID={progress_id} HTTP/1.1\r\nHost: t\r\n"
                       f"Content-Length: 3\r\n\r\nabc").encode()
            assert exchange(port, request, until=b"abc").endswith(b"abc")
            # both listeners share one table: ask the other one
            assert wait_for_state(ports[1 - number], progress_id, ("done",))["received"] == 3


def test_max_waiters_bounds_a_mailbox_passed_in() -> None:
    from wsgiprogress.mailbox import MemoryMailboxes

    mailbox = MemoryMailboxes()
    with running(lambda environ, start_response: [], mailbox=mailbox, threads=4,
                 max_waiters=1) as (server, port):
        assert mailbox.waiters is server.progress_store.waiters  # one pool, one bound
        assert mailbox.waiters.limit == 1
        name = "f" * 32
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            first.sendall(f"GET /mailbox/{name}?wait=5 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            for _ in range(100):
                if len(mailbox.waiters) == 1:
                    break
                threading.Event().wait(0.02)
            reply = exchange(port, f"GET /mailbox/{name}?wait=5 HTTP/1.1\r\nHost: t\r\n"
                             "Connection: close\r\n\r\n".encode(), read_for=3)
            assert reply.startswith(b"HTTP/1.1 503 ")
        finally:
            first.close()


def test_websocket_settings_without_websocket_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigurationError, match="^websocket_ping configures WebSockets: "
                                                 "turn websocket on too$"):
        create_server(lambda e, s: [], host="127.0.0.1", port=0, websocket_ping=5)


def test_websocket_without_wsproto_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wsproto", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=re.escape(
            "websocket needs wsproto; wsproto is not installed: "
            "pip install 'wsgiprogress[websocket]'")):
        create_server(lambda e, s: [], host="127.0.0.1", port=0, websocket=True)
