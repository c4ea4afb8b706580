"""
Probes answered without a task
==============================

A probe that waits for nothing (no ``wait=``, no event stream, no
WebSocket) is answered from the parsed request: :func:`probe_task` gives
waitress's channel a :class:`ProbeAnswer` in place of a waitress task, which
asks :meth:`~wsgiprogress.web.front.Front`'s probe
(:meth:`~wsgiprogress.web.probe.ProgressProbe.decide`) with the few environ
keys a probe reads (:func:`probe_environ`), and writes the whole response,
head and body, in one piece.  No WSGI environ is built, no application chain
is called, and the head is the one waitress would have written, byte for
byte (:func:`response_head`; tests/test_probe_loop.py compares the two).

The channel services it as any task: on the I/O loop for the memory store,
on the probe lane for Redis.  A probe that waits, an ``authorize`` hook (the
application's code, which may read anything in the environ) and waitress 1.4
(which services a connection's whole queue in one task) take the usual path.

.. code-block:: python

    task = probe_task(channel, request)   # None: the usual ProgressTask
    if task is not None:
        task.service()
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, cast

from waitress.utilities import build_http_date

from ..web.probe import ProbeWait

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

    from ..web.probe import ProgressProbe

Headers = List[Tuple[str, str]]
_NO_BODY = ("1", "204", "304")


def probe_environ(request: Any) -> Dict[str, Any]:
    """The environ keys a probe reads, from waitress's parsed *request*:
    the method, the query string and the request headers (``HTTP_*``)."""
    environ: Dict[str, Any] = {"HTTP_" + name: value
                               for name, value in request.headers.items()}
    environ["REQUEST_METHOD"] = request.command
    environ["QUERY_STRING"] = request.query
    return environ


class _Heads:
    """The heads made this second, by what they are made of: a probe's
    answers come in a few shapes, and waitress's ``Date`` is the same all
    second long."""

    def __init__(self) -> None:
        self.second = -1
        self.date = ""
        self.made: Dict[Tuple[Any, ...], Optional[Tuple[bytes, bool]]] = {}

    def head(self, version: str, connection: str, status: str, headers: Headers,
             ident: str) -> Optional[Tuple[bytes, bool]]:
        when = time.time()
        if int(when) != self.second:  # a new Date: the heads made before go
            self.second, self.date, self.made = int(when), build_http_date(when), {}
        date = self.date
        key = (version, connection, status, tuple(headers), ident, date)
        made = self.made
        if key in made:
            return made[key]
        if len(made) >= MAX_HEADS:
            made.clear()
        head = made[key] = response_head(version, connection, status, headers, ident, date)
        return head


#: Heads kept at most (each a few hundred bytes).
MAX_HEADS = 256
_heads = _Heads()


def response_head(version: str, connection: str, status: str,
                  headers: Sequence[Tuple[str, str]], ident: str, date: str
                  ) -> Optional[Tuple[bytes, bool]]:
    """The head waitress writes for a response of *status* and *headers*
    with its body in full, to a request of HTTP *version* with a
    ``Connection`` header *connection*, at *date* (``Date``), and whether
    the connection closes after it.  ``None`` for a body without
    ``Content-Length`` (waitress chunks it, or closes after it)."""
    if version not in ("1.0", "1.1"):
        version = "1.0"  # as waitress's Task
    has_body = not status.startswith(_NO_BODY)
    connection = connection.lower()
    lines: Headers = []
    length: Optional[str] = None
    server: Optional[str] = None
    date_given: Optional[str] = None
    given_connection: Optional[str] = None
    for name, value in headers:
        name = "-".join(part.capitalize() for part in name.split("-"))
        if name == "Content-Length":
            if not has_body:
                continue
            length = value
        elif name == "Date":
            date_given = value
        elif name == "Server":
            server = value
        elif name == "Connection":
            given_connection = value
        lines.append((name, value))
    close = (version == "1.0" and not (connection == "keep-alive" and length)) or (
        version == "1.1" and (connection == "close" or not length))
    if has_body and not length:
        return None
    if version == "1.0" and not close:
        lines.append(("Connection", "Keep-Alive"))
    if close and given_connection is None:
        lines.append(("Connection", "close"))
    if server is None:
        if ident:
            lines.append(("Server", ident))
    else:
        lines.append(("Via", ident or "waitress"))
    if date_given is None:
        lines.append(("Date", date))
    lines.sort(key=lambda line: line[0])  # stable: same-named headers keep their order
    head = "\r\n".join([f"HTTP/{version} {status}", *(f"{n}: {v}" for n, v in lines)])
    return (head + "\r\n\r\n").encode("latin-1"), close


class ProbeAnswer:
    """What waitress's ``HTTPChannel.service`` runs for a probe answered at
    once: the attributes it reads of a task, and :meth:`service`."""

    close_on_finish = False
    wrote_header = False

    def __init__(self, channel: Any, request: Any, data: bytes, close: bool) -> None:
        self.channel = channel
        self.request = request
        self.data = data
        self.close = close

    def service(self) -> None:
        self.close_on_finish = self.close
        self.channel.write_soon(self.data)  # raises ClientDisconnected once closed
        self.wrote_header = True


class _Response:
    """A ``start_response`` that keeps what it was given."""

    status = ""
    headers: Headers = []

    def __call__(self, status: str, headers: Headers, exc_info: Any = None) -> None:
        self.status, self.headers = status, headers


def probe_task(channel: Any, request: Any, probe: ProgressProbe) -> Optional[ProbeAnswer]:
    """The answer to *request*, a GET or HEAD of *probe*'s URL, as a task for
    *channel*; ``None`` when it waits (the usual task parks it)."""
    decision = probe.decide(probe_environ(request))
    if isinstance(decision, ProbeWait):
        return None
    response = _Response()
    body: Iterable[bytes] = decision(cast("StartResponse", response))
    head = _heads.head(request.version, request.headers.get("CONNECTION", ""),
                       response.status, response.headers, channel.server.adj.ident)
    if head is None:
        return None
    data, close = head
    if not response.status.startswith(_NO_BODY):
        data += b"".join(body)
    return ProbeAnswer(channel, request, data, close)
