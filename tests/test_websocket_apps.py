"""Applications that speak WebSocket themselves (Flask-Sock, simple-websocket,
Flask-SocketIO in threading mode) under our server with ``websocket`` on:
the connection's socket is handed to them, as werkzeug and gunicorn do."""
from __future__ import annotations

import gc
import logging
import os
import socket
import struct
import sys
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional

import pytest
import socketio
import websocket
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Request,
    TextMessage,
)

from wsgiprogress.server.channel import ProgressChannel

from server_support import (
    HOST,
    exchange,
    probe,
    read_response,
    running,
    sockets_on,
    start_process,
    status_of,
    stop_process,
    wait_until,
)
from websocket_apps import (
    Sessions,
    create_app,
    create_bare_socketio_app,
    create_socketio_app,
    simple_echo,
)

pytestmark = pytest.mark.timeout(60)

HANDSHAKE = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n")


class RawClient:
    """A WebSocket client on a raw socket, framed by wsproto, that sees every
    byte the server sends: anything that is not a frame fails the test."""

    def __init__(self, port: int, path: str = "/echo", early: bytes = b"",
                 subprotocols: Iterable[str] = ()) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: List[Event] = []
        self.sock.sendall(self.ws.send(Request(host=HOST, target=path,
                                               subprotocols=list(subprotocols))) + early)
        accepted = self.next_event()
        assert isinstance(accepted, AcceptConnection), accepted
        self.subprotocol = accepted.subprotocol

    def next_event(self) -> Event:
        while not self.pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    def send(self, message: Any) -> None:
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        self.sock.sendall(self.ws.send(event))

    def closes(self) -> CloseConnection:
        """Close from our side; the server's close comes back, then EOF and
        nothing else."""
        self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        event = self.next_event()
        assert isinstance(event, CloseConnection), event
        assert self.sock.recv(65536) == b""
        self.sock.close()
        return event


def masked_text_frame(text: str) -> bytes:
    """One masked client text frame (RFC 6455 §5.2), under 126 bytes."""
    payload = text.encode()
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        byte ^ mask[i % 4] for i, byte in enumerate(payload))


def handed_off_cleanly(port: int, sessions: Sessions, server: Any, threads: int) -> None:
    """Every session over, and the server back to the sockets, threads and
    channels it had."""
    wait_until(lambda: sessions.live() == 0, message=lambda: f"{sessions.live()} live")
    wait_until(lambda: sockets_on(port) == 1,  # the listener, no connection
               message=lambda: f"{sockets_on(port)} sockets on the server's port")
    wait_until(lambda: threading.active_count() <= threads,
               message=lambda: f"threads {threading.active_count()} > {threads}")
    assert len(server._map) == 2  # the listener and the trigger, nothing else


def channels(server: Any) -> int:
    """How many of *server*'s channels are still alive."""
    gc.collect()
    return sum(isinstance(o, ProgressChannel) and o.server is server for o in gc.get_objects())


@pytest.fixture()
def flask_sock() -> Iterator[Any]:
    sessions = Sessions()
    with running(create_app(sessions), websocket=True) as (server, port):
        yield server, port, sessions


# -- the libraries, as their users run them -----------------------------------

def test_flask_sock_echo_with_a_third_party_client(flask_sock: Any) -> None:
    server, port, sessions = flask_sock
    client = websocket.create_connection(f"ws://{HOST}:{port}/echo", timeout=5)
    try:
        for n in range(20):
            client.send(f"text {n}")
            assert client.recv() == f"text {n}"
        client.send_binary(b"\x00\xff" * 5000)
        assert client.recv() == b"\x00\xff" * 5000
    finally:
        client.close()
    wait_until(lambda: sessions.live() == 0)
    environ = sessions.environs[0]
    assert environ["werkzeug.socket"] is environ["gunicorn.socket"]
    assert environ["HTTP_UPGRADE"] == "websocket" and "HTTP_SEC_WEBSOCKET_KEY" in environ


def test_simple_websocket_server_directly() -> None:
    sessions = Sessions()
    with running(simple_echo(sessions, subprotocols=["chat"]), websocket=True) as (_, port):
        client = RawClient(port, subprotocols=["chat"])
        assert client.subprotocol == "chat"
        client.send("over a bare WSGI application")
        assert client.next_event() == TextMessage("over a bare WSGI application")
        assert client.closes().code == 1000
        wait_until(lambda: sessions.live() == 0)
    environ = sessions.environs[0]
    sock = environ["werkzeug.socket"]
    assert sock is environ["gunicorn.socket"] and sock.timeout is None  # blocking
    wait_until(lambda: sock.fileno() == -1)  # closed by simple-websocket's reader
    keys = {key for key in environ if key.startswith("HTTP_")}
    assert {"HTTP_HOST", "HTTP_UPGRADE", "HTTP_CONNECTION", "HTTP_SEC_WEBSOCKET_KEY",
            "HTTP_SEC_WEBSOCKET_VERSION", "HTTP_SEC_WEBSOCKET_PROTOCOL"} <= keys


@pytest.mark.parametrize("make_app", [
    pytest.param(create_socketio_app, id="flask-socketio"),
    pytest.param(create_bare_socketio_app, id="python-socketio"),
])
def test_socketio_in_threading_mode(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions()
    with running(make_app(sessions), websocket=True, threads=8) as (server, port):
        with socketio.SimpleClient() as client:  # long-polling first, then the upgrade
            client.connect(f"http://{HOST}:{port}", wait_timeout=5)
            wait_until(lambda: client.client.eio.current_transport == "websocket")
            for n in range(5):
                assert client.call("echo", {"n": n}, timeout=5) == {"n": n}
        with socketio.SimpleClient() as client:  # the WebSocket at once
            client.connect(f"http://{HOST}:{port}", transports=["websocket"], wait_timeout=5)
            assert client.call("echo", "straight", timeout=5) == "straight"
        wait_until(lambda: sessions.live() == 0 and sessions.begun == 2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_gunicorn_mode_ends_with_stop_iteration(caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions()
    flask_app = create_app(sessions)

    def gunicorn_only(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        del environ["werkzeug.socket"]  # simple-websocket then runs in gunicorn mode
        return flask_app(environ, start_response)  # type: ignore[no-any-return]

    with running(gunicorn_only, websocket=True) as (_, port):
        client = RawClient(port)
        client.send(b"binary")
        assert client.next_event() == BytesMessage(b"binary")
        client.closes()
        wait_until(lambda: sessions.live() == 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_wsgiprogress_serve_with_websocket() -> None:
    process, port = start_process([sys.executable, "-m", "wsgiprogress", "--listen",
                                   "127.0.0.1:0", "--websocket", "websocket_apps:app"])
    try:
        client = websocket.create_connection(f"ws://{HOST}:{port}/echo", timeout=5)
        client.send("from the command line")
        assert client.recv() == "from the command line"
        client.close()
    finally:
        assert stop_process(process) == 0


# -- nothing after the head, nothing after the hand-off ------------------------

def test_a_frame_sent_with_the_head_reaches_the_application(flask_sock: Any) -> None:
    _, port, _ = flask_sock
    client = RawClient(port, early=masked_text_frame("too early"))
    assert client.next_event() == TextMessage("too early")
    client.closes()


def test_the_loop_reads_nothing_while_the_upgrade_waits_for_a_thread() -> None:
    sessions = Sessions()
    flask_app = create_app(sessions)
    release = threading.Event()

    def application(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/busy":
            release.wait(10)
        return flask_app(environ, start_response)  # type: ignore[no-any-return]

    with running(application, websocket=True, threads=1) as (server, port):
        busy = socket.create_connection((HOST, port), timeout=5)
        busy.sendall(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: any(getattr(c, "requests", None) for c in server._map.values()))
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(HANDSHAKE.format(path="/echo").encode())
        wait_until(lambda: sum(bool(getattr(c, "requests", None))
                               for c in list(server._map.values())) == 2)
        # a client that does not wait for the 101: the loop must leave its
        # frame in the socket for the application
        sock.sendall(masked_text_frame("before the 101"))
        # the probe is answered on the I/O loop: once it is, the loop has
        # polled since the frame arrived
        probe(port, "loopturn")
        release.set()
        assert busy.recv(65536).startswith(b"HTTP/1.1 404")
        reply = b""
        while not reply.endswith(b"before the 101"):
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 101 ")
        sock.close()
        busy.close()


def test_an_earlier_pipelined_response_goes_out_before_the_101(flask_sock: Any) -> None:
    _, port, _ = flask_sock
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n"
                 + HANDSHAKE.format(path="/echo").encode())
    reply = b""
    while b"101 Switching Protocols" not in reply or not reply.endswith(b"\r\n\r\n"):
        reply += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.index(b"plain") < reply.index(b"101")
    sock.sendall(masked_text_frame("after both"))
    assert sock.recv(65536) == b"\x81\x0aafter both"
    sock.close()


@pytest.mark.parametrize("ending", ["close-frame", "fin", "reset"])
def test_a_session_ends_whichever_way_the_client_leaves(ending: str) -> None:
    sessions = Sessions()
    with running(create_app(sessions), websocket=True) as (server, port):
        threads = threading.active_count()
        client = RawClient(port)
        client.send("hello")
        assert client.next_event() == TextMessage("hello")
        if ending == "close-frame":
            client.closes()
        else:
            if ending == "reset":
                client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            client.sock.close()
        handed_off_cleanly(port, sessions, server, threads)


def test_a_session_run_while_the_response_is_iterated() -> None:
    sessions = Sessions()
    echo = simple_echo(sessions)

    def lazy(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
        yield from echo(environ, start_response)  # the session runs in the first next()

    with running(lazy, websocket=True) as (_, port):
        client = RawClient(port)
        client.send("lazily")
        assert client.next_event() == TextMessage("lazily")
        client.closes()
        wait_until(lambda: sessions.live() == 0)


def test_an_application_failing_mid_session_writes_nothing_more(
        flask_sock: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, port, _ = flask_sock
    client = RawClient(port, "/fail")
    assert client.next_event() == TextMessage("about to fail")
    # Flask answers the error with a 500 that it logs, and Flask-Sock leaves
    # the socket to simple-websocket's reader: the 500 is never written on
    # it, and the close handshake still works
    assert client.closes().code == 1000
    wait_until(lambda: "the route broke" in caplog.text)  # logged by Flask on its thread
    assert "Exception while serving" not in caplog.text


def test_a_bare_application_failing_mid_session_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions()
    with running(simple_echo(sessions), websocket=True) as (server, port):
        threads = threading.active_count()
        client = RawClient(port, "/fail")
        client.send("boom")
        wait_until(lambda: sessions.live() == 0)
        client.sock.close()
        handed_off_cleanly(port, sessions, server, threads)
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "the application failed on the WebSocket /fail"], caplog.text


# -- an upgrade the application does not take ------------------------------------

def test_a_refused_upgrade_is_answered_and_the_connection_kept(flask_sock: Any) -> None:
    _, port, _ = flask_sock
    # Flask answers an upgrade of an ordinary route 400; the next request,
    # pipelined behind it, is served on the same connection
    request = HANDSHAKE.format(path="/plain") + "GET /plain HTTP/1.1\r\nHost: t\r\n\r\n"
    reply = exchange(port, request.encode(), read_for=5, until=b"\r\n\r\nplain")
    assert status_of(reply) == 400
    assert reply.count(b"HTTP/1.1 ") == 2 and reply.endswith(b"\r\n\r\nplain"), reply


@pytest.mark.parametrize("answer, expected", [
    pytest.param("raise", 500, id="error-500"),
    pytest.param("stop", 0, id="stop-iteration-closes"),
    pytest.param("generator", 200, id="lazy-response"),
])
def test_an_application_that_leaves_the_socket_alone(answer: str, expected: int) -> None:
    def application(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if answer == "raise":
            raise RuntimeError("no WebSocket here")
        if answer == "stop":
            raise StopIteration
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (part for part in [b"", b"not ", b"upgraded"])

    with running(application, websocket=True) as (server, port):
        reply = exchange(port, HANDSHAKE.format(path="/").encode(), read_for=5,
                         until=b"upgraded")
        assert status_of(reply) == expected, reply
        if expected == 0:
            assert reply == b""
        wait_until(lambda: sockets_on(port) == 1)  # the listener, no connection
        assert len(server._map) == 2


def test_with_websocket_off_an_upgrade_is_an_ordinary_request() -> None:
    seen: List[Optional[Any]] = []

    def application(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(environ.get("werkzeug.socket"))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"no"]

    with running(application) as (_, port):
        reply = exchange(port, (HANDSHAKE.format(path="/") + "GET / HTTP/1.1\r\nHost: t\r\n"
                                "\r\n").encode(), read_for=5, until=b"no\r\nHTTP")
    assert status_of(reply) == 200 and seen == [None, None]


# -- bounds: idle sweeps, leaks ---------------------------------------------------

def test_a_quiet_session_outlives_the_idle_sweeps() -> None:
    sessions = Sessions()
    with running(create_app(sessions), websocket=True, channel_timeout=1,
                 cleanup_interval=1, header_timeout=1) as (_, port):
        client = RawClient(port)
        idle = socket.create_connection((HOST, port), timeout=5)
        idle.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(idle).endswith(b"plain")
        # waitress closes the idle keep-alive connection after channel_timeout
        assert idle.recv(65536) == b""
        client.send("still here")
        assert client.next_event() == TextMessage("still here")
        client.closes()


def test_no_descriptor_thread_or_channel_leaks_over_100_sessions() -> None:
    sessions = Sessions()
    with running(create_app(sessions), websocket=True, threads=4) as (server, port):
        client = websocket.create_connection(f"ws://{HOST}:{port}/echo", timeout=5)
        client.close()
        wait_until(lambda: sessions.live() == 0)
        threads = threading.active_count()
        for n in range(100):
            client = websocket.create_connection(f"ws://{HOST}:{port}/echo", timeout=5)
            client.send(str(n))
            assert client.recv() == str(n)
            client.close()
        handed_off_cleanly(port, sessions, server, threads)
        assert sessions.begun == 101
        # a waitress worker keeps the last channel it served until its next task
        assert channels(server) <= 4


TOKENS = st.sampled_from(["websocket", "WebSocket", "upgrade", "Upgrade", "keep-alive",
                          "h2c", "close", "websocket2", ""])
TOKEN_LISTS = st.lists(TOKENS, max_size=3).map(", ".join)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "GET", "HEAD", "POST"]),
       version=st.sampled_from(["1.1", "1.1", "1.0"]),
       upgrade=st.just("websocket") | TOKEN_LISTS, connection=st.just("Upgrade") | TOKEN_LISTS)
def test_generated_upgrade_heads_are_handed_off_exactly_when_they_ask(
        method: str, version: str, upgrade: str, connection: str) -> None:
    sessions = Sessions()
    echo = simple_echo(sessions)

    def application(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if "werkzeug.socket" in environ:
            return echo(environ, start_response)
        start_response("200 OK", [("Content-Length", "8")])
        return [b"ordinary"]

    def lower(value: str) -> List[str]:
        return [token.strip().lower() for token in value.split(",")]

    asks = (method == "GET" and version == "1.1" and "websocket" in lower(upgrade)
            and "upgrade" in lower(connection))
    # handed off, the library judges: wsproto takes an Upgrade of "websocket"
    # alone, and refuses the rest before it touches the socket (a 500, written)
    expected = (101 if lower(upgrade) == ["websocket"] else 500) if asks else 200
    head = (f"{method} / HTTP/{version}\r\nHost: t\r\nUpgrade: {upgrade}\r\n"
            f"Connection: {connection}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n")
    with running(application, websocket=True, threads=2) as (server, port):
        reply = exchange(port, head.encode(), read_for=5, until=(
            b"ordinary" if expected == 200 and method != "HEAD" else b"\r\n\r\n"))
        assert status_of(reply) == expected, reply
        event(f"status {expected}")
        wait_until(lambda: sessions.live() == 0)
        if expected == 101:
            assert len(server._map) == 2  # the listener and the trigger: it left the loop
