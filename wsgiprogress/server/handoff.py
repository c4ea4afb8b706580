"""
WebSocket hand-off
==================

Applications that speak WebSocket themselves — Flask-Sock, simple-websocket,
Flask-SocketIO and python-socketio in threading mode — take the connection's
raw socket from the environ, as they do under werkzeug and gunicorn's gthread
worker.  With the ``websocket`` setting on, a ``GET`` with ``Upgrade:
websocket`` and ``Connection: upgrade`` that goes to the application (not to
the probe or a mailbox) is handed off:

* the I/O loop reads nothing after the request head
  (:func:`upgrades_to_websocket` decides in the parser, which keeps any bytes
  of that read after the head; :func:`stop_reading` when it is dispatched);
* when its task starts, the channel leaves the I/O loop (no reads, no
  writes, no idle sweep by waitress or :mod:`~wsgiprogress.server.shedding`),
  and the environ gets the socket, in blocking mode, as
  ``environ["werkzeug.socket"]`` and ``environ["gunicorn.socket"]``, every
  ``HTTP_*`` key of the handshake as is (:class:`Handoff`);
* once the application used the socket (:class:`HandedSocket` notes it), the
  connection is the application's: whatever it returns or raises afterwards
  (simple-websocket's empty 200 in werkzeug mode, ``StopIteration`` in
  gunicorn mode, engine.io's ``ConnectionError``), nothing more is written,
  and the library closes the socket;
* if it answers without touching the socket (a 400 because the route speaks
  no WebSocket), the channel goes back to the loop first and the answer is
  written as any other.

The application's thread serves the whole session, so each live WebSocket
holds one of ``threads`` (simple-websocket adds a reader thread of its own),
and a handed-off socket no longer counts against ``connection_limit``.

.. code-block:: python

    from flask import Flask
    from flask_sock import Sock
    from wsgiprogress.server import serve

    app = Flask(__name__)
    sock = Sock(app)

    @sock.route("/echo")
    def echo(ws):
        while True:
            ws.send(ws.receive())

    serve(app, listen="127.0.0.1:8080", websocket=True, threads=16)
"""
from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NoReturn

from waitress.channel import ClientDisconnected

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("wsgiprogress")

#: Where werkzeug and gunicorn put the connection's socket; simple-websocket
#: looks for either.
SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


def _tokens(value: str) -> Iterator[str]:
    return (token.strip().lower() for token in value.split(","))


def upgrades_to_websocket(request: Any) -> bool:
    """True when waitress's parsed *request* asks to become a WebSocket
    (RFC 6455 §4.1: an HTTP/1.1 ``GET`` without a body, ``Upgrade:
    websocket``, ``Connection: upgrade``)."""
    headers = request.headers
    return (request.command == "GET" and request.version == "1.1"
            and request.body_rcv is None
            and "websocket" in _tokens(headers.get("UPGRADE", ""))
            and "upgrade" in _tokens(headers.get("CONNECTION", "")))


def _never() -> bool:
    return False


def stop_reading(channel: Any) -> None:
    """Read nothing more on *channel*, whose next request hands the socket
    off: called when that request is dispatched, before its task can run
    (so :meth:`Handoff.restore` always comes after); the parser already kept
    what followed the head in the read that completed it."""
    channel.readable = _never


class HandedOff(Exception):
    """The application took the connection: its task writes nothing more."""


class HandedSocket(socket.socket):
    """The connection's socket as the application gets it.

    ``touched`` turns true when anything sends, receives, shuts down or
    closes through it; ``recv`` and ``recv_into`` first return ``unread``,
    bytes that followed the request head in the server's last read (a
    client should wait for the 101, RFC 6455 §4.1, but nothing is lost if
    it does not).
    """

    touched = False
    unread = b""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.touched = True
        unread = self.unread
        if unread and not flags:
            self.unread = unread[bufsize:]
            return unread[:bufsize]
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.touched = True
        unread = self.unread
        if unread and not flags:
            view = memoryview(buffer).cast("B")
            size = min(len(unread), nbytes or len(view))
            view[:size] = unread[:size]
            self.unread = unread[size:]
            return size
        return super().recv_into(buffer, nbytes, flags)


def _touching(name: str) -> Callable[..., Any]:
    plain = getattr(socket.socket, name)

    def method(self: HandedSocket, *args: Any, **kw: Any) -> Any:
        self.touched = True
        return plain(self, *args, **kw)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = plain.__doc__
    return method


for _name in ("send", "sendall", "sendmsg", "sendto", "sendfile", "recvfrom",
              "recvfrom_into", "recvmsg", "recvmsg_into", "makefile", "dup",
              "detach", "shutdown", "close"):
    if hasattr(socket.socket, _name):
        setattr(HandedSocket, _name, _touching(_name))


def _close(response: Any) -> None:
    """PEP 3333: the server calls the response's ``close``, whatever came of it."""
    close = getattr(response, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing the response of a handed-off WebSocket failed")


class Handoff:
    """One request's offer of its connection to the application; made by
    :meth:`ProgressTask.get_environment <wsgiprogress.server.task.ProgressTask.get_environment>`
    on the worker thread, run by
    :class:`~wsgiprogress.server.dispatch.RoutedApp` around the application.

    Making it takes the channel off the I/O loop, sends what is left of an
    earlier pipelined response, and puts the socket in *environ*.

    :raises ClientDisconnected: when the client left before that.
    """

    #: True once the channel is back on the I/O loop.
    restored = False

    def __init__(self, channel: Any, request: Any, environ: WSGIEnvironment) -> None:
        self.channel = channel
        self.path: str = request.path
        self.fd: int = channel._fileno
        channel.del_channel()  # out of the loop's map and waitress's active channels
        with channel.outbuf_lock:  # the socket is closed only after connected turns false
            if channel.connected:
                plain = channel.socket
                plain.setblocking(True)
                while channel.connected and channel.total_outbufs_len:
                    channel._flush_some()  # blocking: an earlier response's tail goes first
            if not channel.connected:
                raise ClientDisconnected
            # the channel keeps the emptied socket object: a late close of
            # the channel cannot close the application's
            sock = self.sock = HandedSocket(plain.family, plain.type, plain.proto,
                                            fileno=plain.detach())
            sock.unread = request.unread
        for key in SOCKET_KEYS:
            environ[key] = sock

    def run(self, app: WSGIApplication, environ: WSGIEnvironment,
            start_response: StartResponse) -> Iterable[bytes]:
        """Call *app*: its response, or :class:`HandedOff` once it took the socket."""
        try:
            response = app(environ, start_response)
        except Exception as exc:
            self.ended(exc)
            raise
        if self.sock.touched:
            _close(response)
            self.took()
        if isinstance(response, (list, tuple)):  # nothing of the app's runs any more
            self.restore()
            return response
        return WatchedResponse(self, response)

    def ended(self, exc: Exception) -> None:
        """The application raised *exc*; returns when the server is to
        answer it as usual (a 500), with the channel back on the loop."""
        if self.sock.touched:
            if not isinstance(exc, (StopIteration, OSError)):
                log.error("the application failed on the WebSocket %s", self.path,
                          exc_info=exc)
            self.took()
        if isinstance(exc, StopIteration):
            # gunicorn's way to say "this connection is done with": close it
            self.channel.handle_close()
            self.sock.close()
            raise HandedOff from None
        self.restore()

    def took(self) -> NoReturn:
        """The application has the socket: the channel forgets it, writes
        nothing more and is dropped when its task ends."""
        channel = self.channel
        with channel.outbuf_lock:
            channel.connected = False
            channel.socket = None  # emptied; the application closes its own
            channel.outbuf_lock.notify_all()
        raise HandedOff from None

    def restore(self) -> None:
        """Give the connection back to the I/O loop, before the server
        writes the application's answer; the bytes after the head are
        parsed as the next request."""
        if self.restored:
            return
        self.restored = True
        channel = self.channel
        sock = self.sock
        unread, sock.unread = sock.unread, b""
        with channel.outbuf_lock:  # handle_close, on any thread, takes it first
            if not channel.connected:
                return
            sock.setblocking(False)
            vars(channel).pop("readable", None)  # the class's again
            channel.socket = sock
            channel._fileno = self.fd
            channel.add_channel()
        if unread:
            channel.received(unread)


class WatchedResponse:
    """A response iterated by the server while the application may still
    take the socket (a generator that speaks WebSocket when iterated): the
    channel goes back to the loop before the first byte is written."""

    def __init__(self, handoff: Handoff, response: Iterable[bytes]) -> None:
        self.handoff = handoff
        self.response = response
        self.chunks = iter(response)

    def __iter__(self) -> WatchedResponse:
        return self

    def __next__(self) -> bytes:
        handoff = self.handoff
        if handoff.restored:
            return next(self.chunks)
        try:
            chunk = next(self.chunks)
        except StopIteration:
            self._settle()
            raise
        except Exception as exc:
            handoff.ended(exc)
            raise
        if chunk:  # waitress writes nothing before the first non-empty chunk
            self._settle()
        return chunk

    def _settle(self) -> None:
        handoff = self.handoff
        if handoff.sock.touched:
            handoff.took()
        handoff.restore()

    def close(self) -> None:
        _close(self.response)

