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

from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional

from ..web.probe import ProbeWait
from ..web.responses import Recorded
from .heads import HEADS, NO_BODY

if TYPE_CHECKING:
    from ..web.probe import ProgressProbe


def probe_environ(request: Any) -> Dict[str, Any]:
    """The environ keys a probe reads, from waitress's parsed *request*:
    the method, the query string and the request headers (``HTTP_*``)."""
    environ: Dict[str, Any] = {"HTTP_" + name: value
                               for name, value in request.headers.items()}
    environ["REQUEST_METHOD"] = request.command
    environ["QUERY_STRING"] = request.query
    return environ


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
    decision = probe.decide(probe_environ(request))
    if isinstance(decision, ProbeWait):
        return None
    response = Recorded()
    body: Iterable[bytes] = decision(response.start_response)
    head = HEADS.head(request.version, request.headers.get("CONNECTION", ""),
                      response.status, response.headers, channel.server.adj.ident)
    if head is None:
        return None
    data, close = head
    if not response.status.startswith(NO_BODY):
        data += b"".join(body)
    return ProbeAnswer(channel, request, data, close)
