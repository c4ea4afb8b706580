"""
Channel hook
============

:class:`ProgressChannel` is waitress's per-connection channel that

* makes each request's parser a :class:`~wsgiprogress.server.parser.ProgressParser`;
* counts the response bytes the kernel accepted for each tracked request
  (``send``), so ``sent`` is what left the server rather than what the
  application yielded, which runs up to ~20 MiB ahead through waitress's
  buffers; a request is ``done`` when its last byte was sent;
* marks every unfinished tracked request ``error``/``aborted`` when the
  connection closes (a client that leaves mid-body never gets a task);
* keeps a waiting request parked at the head of its queue, with no thread,
  until its :class:`~wsgiprogress.server.parking.Parking` steps it again, and
  releases it when the connection closes.

Its parser fixes waitress's ``Expect: 100-continue`` handling (a request
already rejected with 413, or without a body, gets no ``100 Continue``), so
an oversize upload is refused before its body is sent and a bodiless GET does
not hang.  It works with waitress 1.4.4 and later: 1.4 services every queued
request of a connection in one task, 2.0 and later one at a time.

Response bytes are attributed by position: the channel's output is FIFO and
one request is serviced at a time, so a request owns the bytes between the
output position when its task started and the position when it ended.
"""
from __future__ import annotations

import functools
import socket
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, Optional, Set

from waitress.channel import ClientDisconnected, HTTPChannel

from ..progress.entry import ABORTED
from ..waiters import Parked
from .cancelling import answer_cancelled
from .compat import PEEK_FOR_DEPARTURE
from .loop_mailbox import mailbox_task
from .loop_probe import probe_task
from .parser import ProgressParser
from .reading import SizedReads
from .sending import SentBytes
from .task import ProgressTask


def all_endpoints(requests: Iterable[Any]) -> bool:
    """True when every queued request is for an endpoint (the probe, a
    mailbox).  waitress 1.4 services all the requests one read completed in
    one task (2.0 and later queue one at a time), so such a request may take
    its task off the application's threads only when nothing else rides along."""
    return all(getattr(request, "is_endpoint", False) for request in requests)


#: A shared empty stand-in, never changed: a channel makes its own on first use.
_NO_EVENTS: Set[threading.Event] = set()


def cancel_upload(channel: Callable[[], Optional[ProgressChannel]]) -> None:
    """A tracker's ``on_cancel``: cancel the upload on *channel*, a weak
    reference (a strong one would make every connection a reference cycle,
    left to the garbage collector)."""
    alive = channel()
    if alive is not None:
        alive.cancel_upload()


def interim_ready(channel: Callable[[], Optional[ProgressChannel]], request: Any,
                  made: bool) -> None:
    """A parser's ``on_interim``, called from the background once making
    what *request*'s interim response announces (an IETF upload) is over,
    *made* or not: the I/O loop goes on (:meth:`ProgressChannel.send_interim`).
    *channel* is a weak reference, as for ``on_cancel``."""
    alive = channel()
    if alive is not None:
        alive.server.progress_loop.call_soon(
            functools.partial(alive.send_interim, request, made))


def task_for(channel: ProgressChannel, request: Any) -> Any:
    """The task of *request*: the parked one again, a probe's answer made at
    once (:mod:`~wsgiprogress.server.loop_probe`), a mailbox's answer made
    without a task (:mod:`~wsgiprogress.server.loop_mailbox`), or a new task."""
    parking = channel.parking
    if parking is not None and parking.task.request is request:
        return parking.task
    server = channel.server
    if request.is_endpoint:
        answer: Any = None
        if request.reads_progress:
            if server.progress_probe is not None:
                answer = probe_task(channel, request, server.progress_probe)
        elif server.progress_mailboxes is not None:
            answer = mailbox_task(channel, request, server.progress_mailboxes)
        if answer is not None:
            return answer
    return ProgressTask(channel, request)


class ProgressChannel(SizedReads, SentBytes, HTTPChannel):  # type: ignore[misc]
    """A waitress channel that reports progress; see the module docstring."""

    task_class = staticmethod(task_for)
    #: Called once the output drained below half the high watermark.
    after_drain: Optional[Callable[[], None]] = None
    #: The :class:`~wsgiprogress.server.websocket.WebSocketSession` once upgraded.
    websocket: Any = None
    #: True when the connection may be marked quiet on the loop once its
    #: output is flushed (a parked request, an idle WebSocket).
    quiet_when_flushed = False
    #: Events of waiting requests, set when the connection closes.
    departure_events: Set[threading.Event] = _NO_EVENTS
    #: The :class:`~wsgiprogress.server.parking.Parking` of the request at the
    #: head of the queue, once its response may park (kept here, not on the
    #: request, whose attribute dict one more name would make ~1.3 KiB larger).
    parking: Any = None
    #: True while a probe waits to be answered on the I/O loop.
    probe_on_loop = False
    #: True once a peek found the client's next bytes (waitress 1.4): they
    #: wait for waitress, and the peeking stops until the request ends.
    peeked_data = False

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any,
                 map: Optional[Dict[int, Any]] = None) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        me = weakref.ref(self)
        self._on_cancel = functools.partial(cancel_upload, me)
        self._on_interim = functools.partial(interim_ready, me)

    def parser_class(self, adj: Any) -> ProgressParser:  # a method: no partial a connection
        """The parser of a new request (waitress calls ``parser_class(adj)``)."""
        server = self.server
        return ProgressParser(adj, rules=server.progress_rules, endpoints=server.progress_endpoints,
                              on_cancel=self._on_cancel, handoff=server.progress_handoff,
                              uploads=server.progress_uploads, on_interim=self._on_interim)

    #: A response head the task built, sent with the first body bytes
    #: (:meth:`write_soon`): one ``send`` for a small response, not two.
    held_head = b""

    def write_soon(self, data: Any) -> int:
        head = self.held_head
        if head and data:  # not the empty write standing for the held head
            self.held_head = b""
            if isinstance(data, bytes):
                data = head + data
            else:  # a file_wrapper's buffer
                super().write_soon(head)
        written: int = super().write_soon(data)
        return written

    def send_held_head(self) -> None:
        """Send the held head alone (a response that wrote no body bytes
        after it); nothing once the client left."""
        head, self.held_head = self.held_head, b""
        try:
            super().write_soon(head)
        except ClientDisconnected:
            pass

    def send_continue(self) -> None:
        """waitress's ``100 Continue`` (2.0 and later), with the locations of
        a resumable request when it is one, after the request's interim
        response when it has one (an IETF creation's 104), once what that
        announces exists (:meth:`send_interim`)."""
        request = self.request
        fields = request.continue_headers
        if not fields and not request.interim:
            return super().send_continue()  # type: ignore[no-any-return]
        if request.interim and request.interim_ready is None:
            return  # not yet: send_interim sends it (or a later read does)
        request.expect_continue = False
        payload = request.interim if request.interim_ready else b""
        if request.sends_continue:
            payload += b"HTTP/1.1 100 Continue\r\n" + fields + b"\r\n"
        if not payload:
            return  # no upload to announce, no 100 asked for
        with self.outbuf_lock:
            self.outbufs[-1].append(payload)
            self.current_outbuf_count += len(payload)
            self.total_outbufs_len += len(payload)
            self.sent_continue = True
            self._flush_some()
        self.request.completed = False

    def send_interim(self, request: Any, made: bool) -> None:
        """Making what *request*'s interim response announces is over: send
        it (or only the 100 Continue asked for, when not *made*) now when
        waitress would have (the request is still being read and none is
        answered before it); later, waitress does, when the one before it
        ends.  Loop thread only."""
        with self.requests_lock:
            request.interim_ready = made
            if self.request is request and request.expect_continue and self.connected \
                    and not self.requests and not self.sent_continue:
                self.send_continue()
                self.stir()  # what the kernel did not take goes out without a read

    def handle_write(self) -> None:
        super().handle_write()
        if self.sent_in_full:
            self.finish_sent()
        if self.quiet_when_flushed and not self.total_outbufs_len:
            self.quiet_when_flushed = False
            self.server.progress_loop.quiet(self)
        after_drain = self.after_drain
        if after_drain is not None and \
                self.total_outbufs_len <= self.adj.outbuf_high_watermark // 2:
            self.after_drain = None
            after_drain()

    def service(self) -> None:
        try:
            super().service()
        except Parked:  # the request at the head waits, with no thread
            self.parking.parked()
            return
        # after a task, waitress may flush what is left on the worker thread
        if self.sent_in_full:
            self.finish_sent()

    def serve_on_loop(self) -> None:
        """Service the request at the head on the I/O thread, then the
        probes queued behind it (:meth:`answer_on_loop`).  A connection that
        closes after its answer, sent in full, closes now, as the loop's next
        turn would (a thousand waiters woken at once: no turn each)."""
        self.service()
        self._serve_probes()
        if self.close_when_flushed and not self.total_outbufs_len:
            self.handle_write()

    def _serve_probes(self) -> None:
        while self.probe_on_loop:  # set again when the next queued request is a probe
            self.probe_on_loop = False
            self.service()

    def go_quiet(self) -> None:
        """Nothing changes on this connection until its socket or its owner
        (a parked request, a WebSocket session) stirs it: the loop stops asking
        it each turn, once its output is flushed.  Loop thread only."""
        if self.total_outbufs_len:
            self.quiet_when_flushed = True
        else:
            self.server.progress_loop.quiet(self)

    def stir(self) -> None:
        """It may write: the loop asks it again each turn.  Loop thread only."""
        self.quiet_when_flushed = False
        self.server.progress_loop.wake_up(self)

    # -- idle connections rest on the loop -------------------------------------

    def may_rest(self) -> bool:
        """True when only the client can change what this connection waits
        for: no request queued or in service, nothing to send, not closing.
        The loop then stops asking it each turn until its socket stirs
        (:meth:`~wsgiprogress.server.loop.Loop.quiet`), so ten thousand idle
        keep-alive connections cost a turn nothing.  Whatever marks a resting
        connection to close stirs it (:meth:`stir`): waitress's idle cleanup
        (:func:`~wsgiprogress.server.shedding.stir_closing`), shedding, a 408.
        Loop thread only."""
        return not (self.requests or self.total_outbufs_len or self.will_close
                    or self.close_when_flushed or self.websocket is not None)

    def readable_while_parked(self) -> bool:
        """``readable`` while a request is parked and waitress would read
        nothing (``channel_request_lookahead`` 0): one more request may come
        in, and an EOF closes the connection at once."""
        return len(self.requests) < 2 and not (
            self.will_close or self.close_when_flushed or self.total_outbufs_len)

    def _flush_outbufs_below_high_watermark(self) -> None:
        # a worker waits here for the I/O thread to drain the output; the I/O
        # thread itself (a probe or a parked request served there) must not
        if self.total_outbufs_len > self.adj.outbuf_high_watermark \
                and not self.server.progress_loop.on_loop():
            super()._flush_outbufs_below_high_watermark()

    # -- probes answered on the I/O loop ---------------------------------------

    def answer_on_loop(self) -> bool:
        """Take the probe at the head of the queue on the I/O loop, right
        after this read (no worker thread, no hand-off back and forth); False
        when it must go to the probe lane: the store may block (Redis), this
        is not the I/O thread, or output is backed up.  Called by the
        dispatcher with ``requests_lock`` held."""
        server = self.server
        if server.progress_blocking or not server.progress_loop.on_loop() \
                or self.total_outbufs_len >= self.adj.outbuf_high_watermark // 2 \
                or not all_endpoints(self.requests):
            return False
        self.probe_on_loop = True
        return True

    def handle_read(self) -> None:
        if self.upload_cancelled:  # closed at once by the trigger's call
            return
        if PEEK_FOR_DEPARTURE and self.requests:
            self._peek()  # a request runs: only look for the client leaving
            return
        self.peeked_data = False
        super().handle_read()
        if self.probe_on_loop:  # one test a read, no call: an upload reads thousands
            self._serve_probes()

    # -- disconnects ---------------------------------------------------------

    def watch_departure(self, event: threading.Event) -> Callable[[], None]:
        """Set *event* when this connection closes; returns the function that
        stops watching.  Waiting requests use it (``wsgiprogress.departure``)
        instead of polling ``waitress.client_disconnected``."""
        if self.departure_events is _NO_EVENTS:
            self.departure_events = set()
        self.departure_events.add(event)
        if not self.connected:  # closed before the watch began
            event.set()
        return functools.partial(self.departure_events.discard, event)

    def check_client_disconnected(self) -> bool:
        """``waitress.client_disconnected`` for waitress 1.4, as 2.0+ has it."""
        return not self.connected

    if PEEK_FOR_DEPARTURE:
        # defined for waitress 1.4 only: the I/O loop asks every channel
        # whether it is readable on every turn, so newer waitress keeps its own
        def readable(self) -> bool:
            if super().readable():
                return True
            # while a request runs: readable for _peek
            return bool(self.requests) and self.connected and not (
                self.peeked_data or self.will_close or self.close_when_flushed)

    def _peek(self) -> None:
        """See whether the client left, without taking its bytes (waitress 1.4)."""
        try:
            data = self.socket.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.peeked_data = True
        else:
            self.handle_close()

    #: True once an upload on this connection was cancelled: nothing more is read.
    upload_cancelled = False

    def cancel_upload(self) -> None:
        """A request on this connection was cancelled (from any thread): the
        loop reads nothing more of it (a ``recv`` under way at most) and closes
        the connection at its next turn, answered (:mod:`.cancelling`);
        waitress's trigger hands the close over."""
        self.upload_cancelled = True
        self.server.trigger.pull_trigger(self._close_cancelled)

    def _close_cancelled(self) -> None:
        answer_cancelled(self)

    def cancel(self) -> None:
        super().cancel()  # the server shuts down
        self._announce_departure()

    def _announce_departure(self) -> None:
        for event in list(self.departure_events):
            event.set()

    def del_channel(self, map: Optional[Dict[int, Any]] = None) -> None:
        fd = self._fileno
        super().del_channel(map)
        if fd is not None:  # closed, or handed to the application
            self.server.progress_loop.forget(fd, self)

    def handle_close(self) -> None:
        super().handle_close()
        if self.websocket is not None:
            self.websocket.connection_lost()
        self._announce_departure()
        self.finish_sent()
        with self.outbuf_lock:
            self.progress_closed = True
            # a running task's window is judged when the task ends
            ended = [w for w in self.send_windows if w.end is not None]
            for window in ended:
                self.send_windows.remove(window)
            trackers = [w.tracker for w in ended]
            requests = [r for r in (self.request, *self.requests) if r is not None]
            for request in requests:
                if not getattr(request, "serviced", True):
                    trackers.append(request.tracker)
        if self.parking is not None:
            self.parking.release()
        for tracker in trackers:
            if tracker is not None:
                tracker.fail(ABORTED)
        for request in requests:  # after their progress ended: an upload's goes on
            request.broke_off()
