"""
Mailboxes answered without a task
=================================

A mailbox request on a server where nothing it does can block (the memory
store, no ``authorize`` hook) is answered from the parsed request, as a
probe is (:mod:`~wsgiprogress.server.loop_probe`): :func:`mailbox_task`
gives waitress's channel a :class:`MailboxAnswer` in place of a waitress
task.  It calls the :class:`~wsgiprogress.web.mailbox.MailboxApp` with the
few environ keys it reads (:func:`mailbox_environ`: the method, the path,
the query string, the headers, the body, and the server's wake for a
long-poll) and writes the whole answer, head and body, in one piece, the
head byte for byte the one waitress would have written
(:mod:`wsgiprogress.server.heads`).  A publish, a read, the stats, a CORS
preflight: no WSGI environ, no task.

A long-poll parks as under a task (:mod:`~wsgiprogress.server.parking`):
the answer is the parked task, stepped again by its
:class:`~wsgiprogress.server.parking.Parking`, and writes its answer the same
way once there is one.

Today's task path stays for an event stream and a WebSocket upgrade (a
body of unknown length, a socket handed on), a body waitress kept in a
file (reading it is disk I/O), an ``authorize`` hook, a store that may
block (Redis), a ``trusted_proxy`` (waitress checks its headers) and
waitress 1.4.

.. code-block:: python

    task = mailbox_task(channel, request, routed)   # None: the usual ProgressTask
    if task is not None:
        task.service()
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional

from .. import keys
from ..web.responses import Recorded
from ..web.waiting import WaitingResponse
from .loop_probe import request_environ, whole_answer
from .parking import answered, park
from .parser import streams

if TYPE_CHECKING:
    from .parking import Parking


def body_in_memory(request: Any) -> bool:
    """True when *request* has no body or waitress holds it in memory (not
    in a temporary file)."""
    received = request.body_rcv
    return received is None or not received.buf.overflowed


def mailbox_environ(channel: Any, request: Any) -> Dict[str, Any]:
    """The environ keys a mailbox reads, from waitress's parsed *request*:
    :func:`~wsgiprogress.server.loop_probe.request_environ`, ``PATH_INFO``
    (the path under the server's ``url_prefix``, as waitress gives it) and
    ``wsgi.input``."""
    environ = request_environ(request)
    environ["PATH_INFO"] = request.path[len(channel.server.adj.url_prefix):]
    environ["wsgi.input"] = request.get_body_stream()
    return environ


class MailboxAnswer:
    """What waitress's ``HTTPChannel.service`` runs for a mailbox request
    answered on the loop: the attributes it reads of a task, and
    :meth:`service`, which answers or parks (see the module docstring)."""

    close_on_finish = False
    wrote_header = False
    #: The long-poll of a parked request, stepped again at each service.
    waiting: Optional[WaitingResponse] = None

    def __init__(self, channel: Any, request: Any, environ: Dict[str, Any],
                 endpoint: Any) -> None:
        self.channel = channel
        self.request = request
        self.environ: Optional[Dict[str, Any]] = environ
        self.endpoint = endpoint
        self.response = Recorded()

    def park(self) -> Parking:
        """The wake of this request's long-poll, which may now park it."""
        return park(self)

    def service(self) -> None:
        try:
            self._serve()
        finally:
            answered(self)  # no wait after all (the waiter cap's 503, a failure)

    def _serve(self) -> None:
        waiting = self.waiting
        if waiting is None:
            environ, self.environ = self.environ, None
            assert environ is not None  # serviced once before it waits
            environ[keys.PARK] = self.park  # here: an answer never serviced holds no cycle
            body = self.endpoint(environ, self.response.start_response)
            if not isinstance(body, WaitingResponse):
                return self._write(body)
            self.waiting = waiting = body
        parking = self.channel.parking
        waiting.suspended = False
        try:
            data = b"".join(waiting)  # Parked: nothing yet, the channel parks it
        finally:
            if not waiting.suspended:  # over, or the client left
                parking.finished()
        return self._write((data,))

    def _write(self, body: Iterable[bytes]) -> None:
        response = self.response
        made = whole_answer(self.channel, self.request, response.status, response.headers,
                            body)
        assert made is not None, "a mailbox answer that is no event stream has a length"
        data, self.close_on_finish = made
        channel = self.channel
        loop = channel.server.progress_loop
        if self.request.command == "POST" and loop.on_loop():
            # the waiters a publish woke are answered first: a client waiting
            # for both answers is woken once, when it has both
            loop.run_ready()
        channel.write_soon(data)  # raises ClientDisconnected once closed
        self.wrote_header = True


def mailbox_task(channel: Any, request: Any, routed: Any) -> Optional[MailboxAnswer]:
    """The answer to *request*, a request for an endpoint (the parser's
    ``is_endpoint``), as a task for *channel* when the server's router
    (*routed*, the :class:`~wsgiprogress.server.dispatch.RoutedApp`, which
    imports this module) gives it to the mailboxes and it streams nothing;
    ``None``: the usual task."""
    headers = request.headers
    if "UPGRADE" in headers or streams(request.query, headers) or not body_in_memory(request):
        return None
    environ = mailbox_environ(channel, request)
    endpoint = routed.front.mailbox_app
    if endpoint is None or routed.route(environ, routed.app) is not endpoint:
        return None
    return MailboxAnswer(channel, request, environ, endpoint)
