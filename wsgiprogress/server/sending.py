"""
Send windows
============

A :class:`SendWindow` is the stretch of a connection's output that one
tracked response occupies: the channel's output is FIFO and one request is
serviced at a time, so a request owns the bytes between the output position
when its task started and the position when it ended.  The task opens and
closes it; the channel counts what the kernel accepted against it
(:class:`SentBytes`).
"""
from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any, Deque, List, Optional

from ..progress.entry import ABORTED
from .compat import SEND_WITHOUT_CLOSING

if TYPE_CHECKING:
    from ..progress.tracker import Tracker


class SendWindow:
    """The output positions one tracked response occupies on its channel."""

    __slots__ = ("tracker", "start", "end", "headed")

    def __init__(self, tracker: Tracker, start: int) -> None:
        self.tracker = tracker
        self.start = start
        self.end: Optional[int] = None
        #: True once the response's head was made: it may be going out.
        self.headed = False


#: Shared empty stand-ins, never changed: a channel makes its own on first use
#: (a parked waiter's connection needs neither).
_NO_WINDOWS: Deque[SendWindow] = collections.deque(maxlen=0)
_NO_TRACKERS: List[Tracker] = []


class SentBytes:
    """What :class:`~wsgiprogress.server.channel.ProgressChannel` adds to
    waitress's channel to count, for each tracked response, the bytes the
    kernel accepted (``send``), not those the application produced."""

    outbuf_lock: Any
    total_outbufs_len: int
    connected: bool
    last_activity: float
    websocket: Any
    #: Response bytes the kernel accepted on this connection.
    progress_bytes_sent = 0
    #: The tracked requests whose output is being sent, oldest first.
    send_windows: Deque[SendWindow] = _NO_WINDOWS
    #: Requests whose last byte was sent, finished once outbuf_lock is free
    #: (a store call under the lock would make the I/O thread spin on it).
    sent_in_full: List[Tracker] = _NO_TRACKERS
    #: True once the connection closed; no byte is sent after that.
    progress_closed = False

    def send(self, data: Any, *args: Any, **kw: Any) -> int:
        # *args/**kw: waitress 2.1.1 added do_close=True; keep every signature
        sent: int = super().send(data, *args, **kw)  # type: ignore[misc]
        if sent:
            self.progress_bytes_sent += sent
            if self.send_windows:
                self._account_sent()
        return sent

    def write_soon(self, data: Any) -> int:
        """waitress's ``write_soon``, but bytes written while nothing is
        queued go straight to the socket, one ``send``, without passing
        through the output buffer (a parked answer, a probe's, any small
        response); what the kernel does not take is queued as waitress
        queues it, and a socket error is met again there and handled as
        waitress handles it.  The check and the send hold ``outbuf_lock``,
        as waitress's own flush from a task does."""
        if SEND_WITHOUT_CLOSING and type(data) is bytes and data \
                and not self.total_outbufs_len and self.connected:
            with self.outbuf_lock:
                if not self.total_outbufs_len and self.connected:
                    try:
                        sent = self.send(data, do_close=False)
                    except OSError:
                        sent = 0
                    if sent:
                        self.last_activity = time.time()
                        if sent == len(data):
                            return sent
                        super().write_soon(data[sent:])  # type: ignore[misc]
                        return len(data)
        written: int = super().write_soon(data)  # type: ignore[misc]
        return written

    def _flush_some(self, *args: Any, **kw: Any) -> bool:
        """waitress's flush; for a WebSocket under ``outbuf_lock``: waitress
        flushes a channel with no request without it, but a session on the
        probe lane writes its frames from the lane's threads."""
        if self.websocket is None:
            return super()._flush_some(*args, **kw)  # type: ignore[misc,no-any-return]
        with self.outbuf_lock:
            flushed: bool = super()._flush_some(*args, **kw)  # type: ignore[misc]
            self.outbuf_lock.notify()  # a writer waiting below the high watermark
            return flushed

    def output_position(self) -> int:
        """Where the next byte queued now will be in the output; call with
        ``outbuf_lock`` held."""
        queued: int = self.total_outbufs_len
        return self.progress_bytes_sent + queued

    def open_send_window(self, tracker: Tracker) -> SendWindow:
        """Start attributing output to *tracker*; call with ``outbuf_lock`` held."""
        window = SendWindow(tracker, self.output_position())
        if self.send_windows is _NO_WINDOWS:
            self.send_windows = collections.deque()
        self.send_windows.append(window)
        return window

    def close_send_window(self, window: SendWindow) -> None:
        """The task ended: its output ends here; call with ``outbuf_lock`` held."""
        window.end = self.output_position()
        if not self.progress_closed:
            self._account_sent()
            return
        # the connection closed while the task ran: judge by what was sent
        self.send_windows.remove(window)
        tracker = window.tracker
        expected = tracker.declared_response_size
        if tracker.sent >= (tracker.produced if expected is None else expected):
            tracker.finish()
        else:
            tracker.fail(ABORTED)

    def _account_sent(self) -> None:
        total = self.progress_bytes_sent
        windows = self.send_windows
        while windows:
            window = windows[0]
            tracker = window.tracker
            upto = total if window.end is None else min(total, window.end)
            # the body only: not chunk framing, and a file_wrapper body is
            # queued without passing through the task's write()
            body_size = tracker.declared_response_size
            if body_size is None:
                body_size = tracker.produced
            body_sent = min(upto - window.start, body_size)
            if body_sent > tracker.sent:
                tracker.add_sent(body_sent - tracker.sent)
            if window.end is None or total < window.end:
                return
            windows.popleft()
            if self.sent_in_full is _NO_TRACKERS:
                self.sent_in_full = []
            self.sent_in_full.append(tracker)

    def finish_sent(self) -> None:
        """Finish the requests whose last byte was sent; call without
        ``outbuf_lock`` (after a flush)."""
        sent_in_full = self.sent_in_full
        while sent_in_full:
            try:
                tracker = sent_in_full.pop()
            except IndexError:  # another thread took the last one
                return
            tracker.finish()
