"""Applications that speak WebSocket themselves, for tests and benchmarks
(``wsgiprogress-serve --websocket websocket_apps:app`` from this directory,
``gunicorn -k gthread websocket_apps:app``)."""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterable, List, Optional

import simple_websocket
import socketio
from flask import Flask
from flask_sock import Sock
from flask_socketio import SocketIO


class Sessions:
    """Counts WebSocket sessions that began and ended on the server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.begun = 0
        self.ended = 0
        self.environs: List[Dict[str, Any]] = []

    def begin(self, environ: Dict[str, Any]) -> None:
        with self.lock:
            self.begun += 1
            # what a WebSocket library reads: the headers and the socket
            self.environs.append({key: value for key, value in environ.items() if
                                  key.startswith("HTTP_") or key.endswith(".socket")})

    def end(self) -> None:
        with self.lock:
            self.ended += 1

    def live(self) -> int:
        with self.lock:
            return self.begun - self.ended


def create_app(sessions: Optional[Sessions] = None) -> Flask:
    """A Flask-Sock application: ``/echo`` echoes, ``/fail`` sends one
    message and raises, ``/plain`` is an ordinary route."""
    if sessions is None:
        sessions = Sessions()
    app = Flask(__name__)
    sock = Sock(app)

    @sock.route("/echo")
    def echo(ws: simple_websocket.Server) -> None:
        from flask import request
        sessions.begin(request.environ)
        try:
            while True:
                ws.send(ws.receive())
        finally:
            sessions.end()

    @sock.route("/fail")
    def fail(ws: simple_websocket.Server) -> None:
        ws.send("about to fail")
        raise ValueError("the route broke")

    @app.route("/plain")
    def plain() -> str:
        return "plain"

    return app


app = create_app()


def simple_echo(sessions: Sessions, **options: Any
                ) -> Callable[[Dict[str, Any], Any], Iterable[bytes]]:
    """A plain WSGI application on simple-websocket's server, no framework;
    ``/fail`` raises after the first message."""
    def application(environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        ws = simple_websocket.Server.accept(environ, **options)
        sessions.begin(environ)
        try:
            while True:
                message = ws.receive()
                if environ["PATH_INFO"] == "/fail":
                    raise RuntimeError("the application broke mid-session")
                ws.send(message)
        except simple_websocket.ConnectionClosed:
            return []
        finally:
            sessions.end()

    return application


def create_socketio_app(sessions: Sessions) -> Flask:
    """Flask-SocketIO in threading mode: ``echo`` answers with its argument."""
    flask_app = Flask(__name__)
    socketio = SocketIO(flask_app, async_mode="threading")

    @socketio.on("connect")
    def connect() -> None:
        from flask import request
        sessions.begin(request.environ)

    @socketio.on("disconnect")
    def disconnect(*args: Any) -> None:
        sessions.end()

    @socketio.on("echo")
    def echo(data: Any) -> Any:
        return data

    return flask_app


def create_bare_socketio_app(sessions: Sessions) -> socketio.WSGIApp:
    """python-socketio alone in threading mode, the same events."""
    server = socketio.Server(async_mode="threading")

    @server.event
    def connect(sid: str, environ: Dict[str, Any], *args: Any) -> None:
        sessions.begin(environ)

    @server.event
    def disconnect(sid: str, *args: Any) -> None:
        sessions.end()

    @server.event
    def echo(sid: str, data: Any) -> Any:
        return data

    return socketio.WSGIApp(server)
