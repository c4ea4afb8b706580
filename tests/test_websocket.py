"""WebSocket on wsgiprogress.server (``websocket=True``): mailboxes and
progress over real sockets with the ``websockets`` client library, parked on
the I/O loop; the handshake's refusals; bad frames closed with the codes RFC
6455 names (frames built with wsproto, the unmasked one by hand)."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sys
import time
import zlib
from http.client import HTTPConnection
from typing import Any, Dict, List, Sequence, Tuple

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Ping, Request
from wsproto.extensions import PerMessageDeflate

from wsgiprogress.backends import backend_from_url

from server_support import HOST, SlowUpload, ok_app, running, wait_until

NAME = "0123456789abcdef0123456789abcdef"
TOKEN = "websocket-token-0123456789"
PROGRESS_ID = "feedbeeffeedbeeffeedbeeffeedbeef"




def serve(**settings: Any) -> Any:
    settings = {"mailbox": True, "websocket": True, "threads": 2, "publish": True,
                "publish_token": TOKEN, **settings}
    return running(ok_app, **settings)


def url(port: int, path: str = f"/mailbox/{NAME}") -> str:
    return f"ws://{HOST}:{port}{path}"


def data_of(text: Any) -> Any:
    return json.loads(text)


# -- mailboxes ------------------------------------------------------------------


def test_a_mailbox_socket_gets_new_messages_parked_without_a_thread() -> None:
    with serve() as (server, port):
        server.mailbox.post(NAME, "before")  # not sent: no after=, only what comes next
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(connect(url(port))) for _ in range(20)]
            wait_until(lambda: len(server.mailbox.waiters) == 20)
            wait_until(lambda: server.task_dispatcher.active_count == 0)
            server.mailbox.post(NAME, "one")
            server.mailbox.post(NAME, "two")
            for ws in sockets:
                got = [data_of(ws.recv(timeout=5)) for _ in range(2)]
                assert [m["data"] for m in got] == ["one", "two"]
                assert set(got[0]) == {"id", "data", "time"}  # the long-poll's message object
        wait_until(lambda: len(server.mailbox.waiters) == 0)


def test_after_replays_and_a_gap_comes_first_in_its_own_message() -> None:
    with serve(max_messages=3) as (server, port):
        first = server.mailbox.post(NAME, "m0")[NAME]
        for n in range(1, 6):
            server.mailbox.post(NAME, f"m{n}")
        with connect(url(port, f"/mailbox/{NAME}?after={first}")) as ws:
            gap = data_of(ws.recv(timeout=5))
            assert gap == {"gap": {"dropped": 2}}
            assert [data_of(ws.recv(timeout=5))["data"] for _ in range(3)] == ["m3", "m4", "m5"]


def test_publishing_needs_the_token_and_a_data_string() -> None:
    with serve() as (server, port):
        with connect(url(port), additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            ws.send(json.dumps({"data": "from the socket"}))
            assert data_of(ws.recv(timeout=5))["data"] == "from the socket"
            ws.send("not json")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        with connect(url(port), additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            ws.send("[" * 100_000)  # nested deeper than the parser goes: still not our JSON
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        with connect(url(port)) as ws:
            ws.send(json.dumps({"data": "sneaky"}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert [m.data for m in server.mailbox.read(NAME, None).messages] == ["from the socket"]


def test_a_message_over_the_limit_closes_1009_and_binary_1003() -> None:
    with serve(websocket_max_message=1000) as (_, port):
        with connect(url(port), additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            ws.send(json.dumps({"data": "x" * 5000}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        with connect(url(port)) as ws:
            ws.send(b"\x00\x01")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_the_message_limit_counts_utf8_bytes_not_characters() -> None:
    with serve(websocket_max_message=1000) as (server, port):
        with connect(url(port), additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            text = json.dumps({"data": "\u20ac" * 400}, ensure_ascii=False)  # 1212 bytes
            assert len(text) < 1000 < len(text.encode())
            ws.send(text)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert server.mailbox.read(NAME, None).messages == []


def test_a_reader_too_slow_is_closed_1008_and_resumes_with_after_losing_nothing() -> None:
    count = 3000  # 12 MB: more than the kernel's socket buffers hold for a reader this slow
    with serve(websocket_max_queued=16 * 1024, max_messages=count + 1,
               max_bytes=50 * 2**20) as (server, port):
        raw = RawClient(port, f"/mailbox/{NAME}", receive_buffer=4096)
        try:
            payload = "p" * 4000
            posted = [server.mailbox.post(NAME, payload + str(n))[NAME] for n in range(count)]
            channel = next(c for c in list(server._map.values())
                           if getattr(c, "websocket", None) is not None)
            # the reader stalled (the kernel's buffers are full: the server's
            # queue stops moving): the server holds its bound and no more
            seen: List[int] = []

            def stalled() -> bool:
                seen.append(channel.total_outbufs_len)
                return len(seen) > 20 and seen[-1] > 16 * 1024 and len(set(seen[-20:])) == 1
            wait_until(stalled, timeout=20)
            assert channel.total_outbufs_len < 16 * 1024 + 16 * 4100
            posted.append(server.mailbox.post(NAME, "news for a reader this far behind")[NAME])
            wait_until(lambda: len(server.mailbox.waiters) == 0)  # closed: slot freed
        finally:
            raw.sock.close()
        # a reader that keeps up gets the whole backlog, in batches as it reads
        with connect(url(port, f"/mailbox/{NAME}?after={posted[0] - 1}")) as ws:
            ids = [data_of(ws.recv(timeout=5))["id"] for _ in range(count + 1)]
        assert ids == posted


# -- progress -------------------------------------------------------------------


def test_a_progress_socket_pushes_each_change_until_the_upload_ends() -> None:
    with serve() as (_, port):
        with connect(url(port, f"/progress?X-Progress-ID={PROGRESS_ID}")) as ws:
            assert data_of(ws.recv(timeout=5))["state"] == "unknown"  # not started yet
            upload = SlowUpload(port, f"/upload?X-Progress-ID={PROGRESS_ID}", 2 * 2**20,
                                piece=128 * 1024, delay=0.05)
            upload.start()
            snapshots: List[Dict[str, Any]] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    snapshots.append(data_of(ws.recv(timeout=10)))
            upload.join(30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        received = [s["received"] for s in snapshots if s["state"] == "uploading"]
        assert len(received) >= 3 and received == sorted(received)  # seen during the upload
        assert snapshots[-1]["state"] == "done"


# -- the handshake ----------------------------------------------------------------


def handshake(port: int, path: str, **headers: str) -> Tuple[int, Dict[str, str]]:
    conn = HTTPConnection(HOST, port, timeout=5)
    base = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    conn.request("GET", path, headers={**base, **{k.replace("_", "-"): v
                                                  for k, v in headers.items()}})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}


@pytest.mark.parametrize("headers, status", [
    ({"Sec_WebSocket_Key": "short"}, 400),
    ({"Sec_WebSocket_Key": ""}, 400),
    ({"Sec_WebSocket_Version": "8"}, 426),
    ({"Origin": "http://evil.example"}, 403),
], ids=["bad-key", "empty-key", "version-8", "cross-site"])
def test_a_bad_handshake_is_refused_with_the_status_the_rfc_names(
        headers: Dict[str, str], status: int) -> None:
    with serve() as (server, port):
        got, answer = handshake(port, f"/mailbox/{NAME}", **headers)
        assert got == status
        if status == 426:
            assert answer["sec-websocket-version"] == "13"
        assert len(server.mailbox.waiters) == 0


def test_origins_same_site_or_listed() -> None:
    with serve() as (_, port):
        assert handshake(port, f"/mailbox/{NAME}", Origin=f"http://{HOST}:{port}")[0] == 101
    with serve(allowed_origins="https://app.example") as (_, port):
        assert handshake(port, f"/mailbox/{NAME}", Origin="https://app.example")[0] == 101
        assert handshake(port, f"/mailbox/{NAME}", Origin=f"http://{HOST}:{port}")[0] == 403


def test_off_by_default_an_upgrade_is_an_ordinary_request() -> None:
    with running(ok_app, mailbox=True) as (_, port):
        status, headers = handshake(port, f"/mailbox/{NAME}")
        assert status == 200 and headers["content-type"].startswith("application/json")


def test_beyond_the_waiter_cap_503() -> None:
    with serve(max_waiters=2) as (_, port):
        with connect(url(port)), connect(url(port)):
            assert handshake(port, f"/mailbox/{NAME}")[0] == 503


# -- bad frames, raw -----------------------------------------------------------------


class RawClient:
    """A wsproto client over a plain socket, to send what browsers never do."""

    def __init__(self, port: int, path: str, receive_buffer: int = 0,
                 extensions: Sequence[Any] = ()) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:  # before connecting: the window stays that small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(5)
        self.sock.connect((HOST, int(port)))  # waitress may report it as text
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{HOST}:{port}", target=path,
                                               extensions=list(extensions))))
        self.events: List[Any] = []
        while not any(type(e).__name__ == "AcceptConnection" for e in self.events):
            self._read()

    def _read(self) -> None:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        self.events.extend(self.ws.events())
        if not data:
            raise EOFError

    def close_code(self, deadline: float = 5.0) -> int:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for event in self.events:
                if isinstance(event, CloseConnection):
                    return int(event.code)
            self._read()
        raise AssertionError("no close frame")


def test_unmasked_frames_invalid_utf8_and_a_bare_close_get_their_close_codes() -> None:
    with serve() as (_, port):
        raw = RawClient(port, f"/mailbox/{NAME}")
        raw.sock.sendall(b"\x81\x02hi")  # a text frame a client failed to mask
        assert raw.close_code() == 1002
        raw.sock.close()
        raw = RawClient(port, f"/mailbox/{NAME}")
        mask = b"\x00\x00\x00\x00"
        raw.sock.sendall(b"\x81\x82" + mask + b"\xc3\x28")  # masked, invalid UTF-8
        assert raw.close_code() == 1007
        raw.sock.close()
        raw = RawClient(port, f"/mailbox/{NAME}")
        raw.sock.sendall(b"\x88\x80" + mask)  # a close without a code
        assert raw.close_code() == 1005  # answered with no code, as RFC 6455 §5.5.1 allows
        raw.sock.close()


def peak_rss_since_reset() -> int:
    """Bytes this process's peak resident size grew since the last call."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak starts again from what is resident now
    return (int(fields["VmHWM"].split()[0]) - int(fields["VmRSS"].split()[0])) * 1024


def test_a_compressed_message_is_inflated_no_further_than_the_limit() -> None:
    # permessage-deflate packs ~1000 bytes into one: this 128 KiB frame holds
    # a 128 MiB message, which used to be inflated whole (and decoded) before
    # its size was looked at
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"x" * (1 << 20)
    payload = b"".join(squeeze.compress(chunk) for _ in range(128))
    payload = (payload + squeeze.flush(zlib.Z_SYNC_FLUSH))[:-4]  # RFC 7692 7.2.1
    mask = os.urandom(4)
    keys = (mask * (len(payload) // 4 + 1))[:len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(
        len(payload), "big")
    # FIN, RSV1 (compressed), text; masked, 64-bit length
    frame = b"\xc1\xff" + len(payload).to_bytes(8, "big") + mask + masked
    with serve(websocket_deflate=True, websocket_max_message=1 << 20,
               max_message_bytes=1 << 20) as (_, port):
        raw = RawClient(port, f"/mailbox/{NAME}", extensions=[PerMessageDeflate()])
        peak_rss_since_reset()
        raw.sock.sendall(frame)
        assert raw.close_code() == 1009
        assert peak_rss_since_reset() < 32 << 20
        raw.sock.close()
        # compressed messages under the limit, in three fragments, still arrive
        text = json.dumps({"data": "squeezed " * 100_000})  # 900 KB each
        with connect(url(port), additional_headers={"Authorization": f"Bearer {TOKEN}"},
                     max_size=None) as ws:
            for _ in range(2):
                ws.send(iter([text[:1000], text[1000:500_000], text[500_000:]]))
                assert data_of(ws.recv(timeout=5))["data"] == "squeezed " * 100_000


def test_a_ping_flood_from_a_reader_that_stops_reading_is_throttled_then_closed() -> None:
    with serve(websocket_max_queued=16 * 1024, websocket_idle_timeout=1) as (server, port):
        raw = RawClient(port, f"/mailbox/{NAME}", receive_buffer=4096)
        flood = b"".join(raw.ws.send(Ping(payload=b"x" * 100)) for _ in range(200))
        raw.sock.settimeout(0.5)
        sent = 0
        try:
            while sent < 50 * 2**20:  # TCP pushes back long before: the server stops reading
                raw.sock.sendall(flood)
                sent += len(flood)
        except OSError:
            pass
        assert sent < 50 * 2**20
        # unread pongs held at the bound, no thread: the silence then closes it
        wait_until(lambda: len(server.mailbox.waiters) == 0)
        assert server.task_dispatcher.active_count == 0
        raw.sock.close()


def test_pings_keep_a_quiet_socket_and_silence_closes_it_1001() -> None:
    with serve(websocket_ping=0.1, websocket_idle_timeout=0.6) as (server, port):
        raw = RawClient(port, f"/mailbox/{NAME}")
        wait_until(lambda: (raw._read() or True) and any(
            isinstance(e, Ping) for e in raw.events), timeout=3)
        # this client never answers a ping: after 0.6 s it is closed as gone
        assert raw.close_code() == 1001
        raw.sock.close()
        wait_until(lambda: len(server.mailbox.waiters) == 0)


def test_a_hundred_sessions_leak_no_connection_and_no_slot() -> None:
    with serve() as (server, port):
        for n in range(100):
            with connect(url(port)) as ws:
                if n % 10 == 0:
                    server.mailbox.post(NAME, f"n{n}")
                    assert data_of(ws.recv(timeout=5))["data"] == f"n{n}"
        wait_until(lambda: len(server.mailbox.waiters) == 0)
        # every session's connection closed: only the listener and the trigger
        # are left (the test process's own descriptors come and go with other
        # tests' client threads, so they are no measure of the server)
        wait_until(lambda: len(server._map) == 2, timeout=15)
        loop = server.asyncore  # and the loop keeps nothing of them
        wait_until(lambda: set(loop._interest) <= set(server._map) and not loop._quiet)


def test_mailbox_sockets_on_redis_get_posts_from_another_process(redis: Any) -> None:
    with serve(backend=redis.url) as (server, port):
        with connect(url(port)) as ws:
            wait_until(lambda: len(server.mailbox.waiters) == 1)
            backend = backend_from_url(redis.url)  # another process's stores, in effect
            try:
                backend.mailbox.post(NAME, "from elsewhere")
                assert data_of(ws.recv(timeout=5))["data"] == "from elsewhere"
            finally:
                backend.close()


def test_frames_the_lane_writes_while_the_loop_flushes_arrive_whole_and_in_order(
        redis: Any) -> None:
    # on Redis the lane's threads write the frames; the loop flushes what the
    # kernel did not take (a reader with a small window) at the same time
    count, bounds = 1500, {"max_messages": 1500, "max_bytes": 50 * 2**20}
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns between any two bytecodes, nearly
    with contextlib.ExitStack() as stack:
        stack.callback(sys.setswitchinterval, switching)
        server, port = stack.enter_context(serve(backend=redis.url, **bounds))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, int(port)))
        with connect(url(port), sock=sock, max_size=None) as ws:
            wait_until(lambda: len(server.mailbox.waiters) == 1)
            backend = backend_from_url(redis.url, **bounds)  # the poster's bounds trim
            try:
                posted = [backend.mailbox.post(NAME, f"{n:05d}" * 800)[NAME]
                          for n in range(count)]
                got = [data_of(ws.recv(timeout=10)) for _ in range(count)]
            finally:
                backend.close()
    assert [m["id"] for m in got] == posted
    assert [m["data"] for m in got] == [f"{n:05d}" * 800 for n in range(count)]


def test_permessage_deflate_only_when_offered_by_the_setting() -> None:
    with serve() as (_, port):
        with connect(url(port)) as ws:  # the client offers it; off by default
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
    with serve(websocket_deflate=True) as (server, port):
        with connect(url(port)) as ws:
            assert ws.response is not None
            assert ws.response.headers["Sec-WebSocket-Extensions"].startswith(
                "permessage-deflate")
            wait_until(lambda: len(server.mailbox.waiters) == 1)
            server.mailbox.post(NAME, "squeezed " * 100)
            assert data_of(ws.recv(timeout=5))["data"] == "squeezed " * 100


@pytest.mark.parametrize("path, status", [
    ("/mailbox/guessable", 403),        # the default policy reads unguessable names only
    ("/mailbox/bad%20name!", 400),
    ("/mailbox/" + NAME + "?after=x", 400),
    ("/progress?X-Progress-ID=no!", 400),
], ids=["guessable", "bad-name", "bad-cursor", "bad-progress-id"])
def test_the_long_polls_rules_refuse_before_the_handshake(path: str, status: int) -> None:
    with serve() as (server, port):
        assert handshake(port, path)[0] == status
        assert len(server.mailbox.waiters) == 0


def test_the_authorize_hook_decides_who_reads_and_who_publishes() -> None:
    def authorize(environ: Dict[str, Any], name: Any, action: str) -> bool:
        return environ.get("HTTP_COOKIE") == "user=alice" and action in ("read", "publish")
    with serve(authorize=authorize) as (server, port):
        assert handshake(port, "/mailbox/alice-inbox")[0] == 403
        with connect(url(port, "/mailbox/alice-inbox"),
                     additional_headers={"Cookie": "user=alice"}) as ws:
            ws.send(json.dumps({"data": "by cookie"}))  # browsers: the hook, not a token
            assert data_of(ws.recv(timeout=5))["data"] == "by cookie"


def test_a_subprotocol_is_accepted_only_when_offered_and_ours() -> None:
    with serve() as (server, port):
        first = server.mailbox.post(NAME, "m0\nline")[NAME]
        with connect(url(port), subprotocols=["chat"]) as ws:
            assert ws.subprotocol is None  # never one the client did not offer
        with connect(url(port), subprotocols=["chat", "ws+meta.nchan"]) as ws:
            assert ws.subprotocol == "ws+meta.nchan"
            assert ws.recv(timeout=5) == (
                f"id: {first}\ncontent-type: text/plain; charset=utf-8\n\nm0\nline")
        second = server.mailbox.post(NAME, "m1")[NAME]
        with connect(url(port, f"/mailbox/{NAME}?last_event_id={first}"),
                     subprotocols=["ws+meta.nchan"]) as ws:
            assert ws.recv(timeout=5).startswith(f"id: {second}\n")
