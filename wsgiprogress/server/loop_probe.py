"""
Probes answered without a task
==============================

A probe that waits for nothing (no ``wait=``, no event stream, no
WebSocket) is answered from the parsed request: :func:`probe_task` gives
waitress's channel a :class:`ProbeAnswer` in place of a waitress task, which
asks :meth:`~wsgiprogress.web.front.Front`'s probe
(:meth:`~wsgiprogress.web.probe.ProgressProbe.decide`) with the few environ
keys a probe reads (:func:`request_environ`), and writes the whole response,
head and body, in one piece.  No WSGI environ is built, no application chain
is called, and the head is the one waitress would have written, byte for
byte (:mod:`wsgiprogress.server.heads`).

The channel services it as any task: on the I/O loop for the memory store,
on the probe lane for Redis.  A probe that waits, an ``authorize`` hook (the
application's code, which may read anything in the environ) and waitress 1.4
(which services a connection's whole queue in one task) take the usual path.

.. code-block:: python

    task = probe_task(channel, request, front.probe)   # None: the usual ProgressTask
    if task is not None:
        task.service()
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Tuple

from ..web.probe import ProbeWait
from ..web.responses import Recorded
from .heads import HEADS, NO_BODY, Headers

if TYPE_CHECKING:
    from ..web.probe import ProgressProbe


#: Headers waitress puts in the environ under their own names, not ``HTTP_*``.
UNPREFIXED = ("CONTENT_LENGTH", "CONTENT_TYPE")


def request_environ(request: Any) -> Dict[str, Any]:
    """The environ keys an endpoint answered on the loop reads, from
    waitress's parsed *request*, as waitress names them: the method, the
    query string and the request headers (``HTTP_*``, ``CONTENT_LENGTH``,
    ``CONTENT_TYPE``)."""
    environ: Dict[str, Any] = {name if name in UNPREFIXED else "HTTP_" + name: value
                               for name, value in request.headers.items()}
    environ["REQUEST_METHOD"] = request.command
    environ["QUERY_STRING"] = request.query
    return environ


def whole_answer(channel: Any, request: Any, status: str, headers: Headers,
                 body: Iterable[bytes]) -> Optional[Tuple[bytes, bool]]:
    """The bytes waitress writes for the response *status*, *headers*,
    *body* to *request* on *channel* (head and body in one piece), and
    whether the connection closes after it; ``None`` for a body of unknown
    length (no ``Content-Length``), which only a task writes."""
    head = HEADS.head(request.version, request.headers.get("CONNECTION", ""),
                      status, headers, channel.server.adj.ident)
    if head is None:
        return None
    data, close = head
    if not status.startswith(NO_BODY):
        data += b"".join(body)
    return data, close


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


def probe_task(channel: Any, request: Any, probe: ProgressProbe) -> Optional[ProbeAnswer]:
    """The answer to *request*, a GET or HEAD of *probe*'s URL, as a task for
    *channel*; ``None`` when it waits (the usual task parks it)."""
    decision = probe.decide(request_environ(request))
    if isinstance(decision, ProbeWait):
        return None
    response = Recorded()
    body: Iterable[bytes] = decision(response.start_response)
    made = whole_answer(channel, request, response.status, response.headers, body)
    if made is None:
        return None
    return ProbeAnswer(channel, request, *made)
