"""
Per-request progress tracker
============================

A :class:`Tracker` counts the bytes of one tracked request.  Its counters
*are* the live progress: a probe in this process reads them through
:meth:`~wsgiprogress.progress.store.ProgressStore.read` with no lag, so
counting costs an addition and a comparison (the comparison catches the
first byte, the last byte of a declared size, and a client waiting for the
next change).  The store hears of state changes; a store that other
processes read (Redis) pulls the counters on its own clock.  Whoever owns the
request (the middleware, or the server hook on waitress's I/O thread) drives
it:

.. code-block:: python

    tracker = store.track(progress_id, size=content_length)
    tracker.add_received(len(chunk))     # while the body arrives
    tracker.body_complete()              # -> processing (a chunked body's end)
    tracker.start_response("200 OK", None)
    tracker.add_sent(len(data))
    tracker.finish()                     # -> done (or error for status >= 400)
"""
from __future__ import annotations

import math
import threading
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Hashable,
    List,
    Mapping,
    Optional,
    Protocol,
    Union,
)

from ..waiters import Waiters
from .entry import (
    ABORTED,
    APP_ERROR,
    CANCELLED,
    DONE,
    ERROR,
    HTTP_ERROR,
    PROCESSING,
    STARTING,
    UPLOADING,
    ProgressEntry,
)
from .ratelimit import RateLimitedWarning

if TYPE_CHECKING:
    from .files import FileProgress

#: Time constant of the exponentially smoothed speed, in seconds.
SPEED_TAU = 2.0
#: Speed stays unknown (0) until body bytes have arrived for this long.
MIN_SPEED_WINDOW = 0.1
#: The speed is measured again at most this often, however often it is read.
MEASURE_INTERVAL = 0.1
#: Readers measure speeds one at a time (rare, and never the counting thread).
_MEASURING = threading.Lock()
_CANCEL_FAILED = RateLimitedWarning("could not stop cancelled request %r")


class ProgressSink(Protocol):
    """What a tracker talks to: the writing half of a
    :class:`~wsgiprogress.progress.store.ProgressStore`."""

    clock: Callable[[], float]
    waiters: Waiters
    shared: bool
    #: Logs a write that failed: once per request, rate-limited across them.
    failure_warning: RateLimitedWarning

    def update(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None: ...

    def end_tracking(self, tracker: Tracker) -> None: ...

    def release(self, tracker: Tracker) -> None: ...

    def hand_over(self, tracker: Tracker) -> None: ...


def status_code(status: Union[str, int]) -> int:
    """The code of a WSGI status line (``"200 OK"``); 500 when it has none."""
    if isinstance(status, int):
        return status
    try:
        return int(status[:3])
    except ValueError:
        return 500


class Tracker:
    """Counts one request's bytes; its counters are the live progress.

    Trackers are made by :meth:`ProgressStore.track`; a tracker never raises
    into the request it tracks: store failures are logged once and ignored.
    """

    #: Clients waiting for a change are woken at most this often by counting.
    wake_interval = 0.05

    __slots__ = (
        "store", "id", "token", "size", "received", "sent", "produced", "declared_response_size",
        "state", "status", "reason", "speed", "started", "steps", "_clock", "_check_at",
        "_watched", "_wake_at", "_last_time", "_last_received", "_first_time",
        "_first_received", "_store_failed", "files", "on_cancel", "detached", "_offset",
        "finished", "ended")

    def __init__(self, store: ProgressSink, progress_id: str, token: Hashable,
                 size: Optional[int]) -> None:
        self.store = store
        self.id = progress_id
        self.token = token
        self.size = size
        self.received = self.sent = self.produced = 0
        self.declared_response_size: Optional[int] = None
        self.state = STARTING
        self.status: Optional[int] = None
        self.reason: Optional[str] = None
        self.speed = 0.0
        self._clock = store.clock
        self.started = self._last_time = self._first_time = self._clock()
        self._last_received = self._first_received = self._offset = 0
        # add_received takes its slow path at this count: the first byte now
        self._check_at: float = 1
        self._watched = self._store_failed = False
        self._wake_at = 0.0
        #: The files of a multipart form (the ``per_file`` setting); whoever
        #: counts the body feeds it the same bytes.
        self.files: Optional[FileProgress] = None
        #: Called by :meth:`cancel`, on the cancelling thread: whoever owns the
        #: request stops reading its body (our server closes the connection).
        self.on_cancel: Optional[Callable[[], None]] = None
        self.steps: Optional[Dict[str, Any]] = None
        self.detached = False  #: an operation, not the connection, ends it (:meth:`detach`)
        #: True once :meth:`finish`, :meth:`fail` or :meth:`hand_over` has run
        #: (an attribute, not a property: every count and change reads it).
        self.finished = False
        self.ended: Optional[float] = None  #: when it ended (the store's clock)

    # -- counting (hot path) -------------------------------------------------

    def add_received(self, n: int) -> None:
        """Count *n* request body bytes as they arrive (the one "bytes arrived"
        path of the middleware and the server); the declared size completes the body."""
        if self.finished:
            return  # its entry holds the final counts
        received = self.received = self.received + n
        if received >= self._check_at:
            self._news()

    def resume_at(self, offset: int) -> None:
        """The body continues at *offset*: earlier connections brought the
        bytes before it (a resumable upload), so ``received`` starts there,
        ``uploading`` once there are any (a probe never sees it go back)."""
        self.received = self._first_received = self._last_received = self._offset = offset
        self._check_at = min(self._check_at, offset + 1)
        if offset:
            self.state = UPLOADING

    def hand_over(self) -> None:
        """The next request of a resumable upload (in any process) counts on:
        the entry stays running (:meth:`ProgressStore.hand_over`); this one is over."""
        if not self.finished:
            self.finished = True
            self.store.hand_over(self)

    def add_sent(self, n: int) -> None:
        """Count *n* response bytes written to the client."""
        if not (self.finished or self.detached):
            self.sent += n
            if self._watched:
                self._wake_watchers()

    def watch(self) -> None:
        """A client waits for this request's next change: counting wakes it
        (at most every :attr:`wake_interval`) until nobody waits."""
        self._watched, self._check_at = True, 0

    def _news(self) -> None:
        size = self.size
        if size is not None and self.received >= size:
            self.body_complete()  # at once, from starting (a small body): one change
            return
        if self.state == STARTING:
            self.state = UPLOADING
            self._first_time = self._last_time = self._clock()
            self._first_received = self._last_received = self.received
            self._publish()
        self._wake_watchers()

    def _wake_watchers(self) -> None:
        waiters = self.store.waiters
        if self.id in waiters:
            now = self._clock()
            if now >= self._wake_at:
                self._wake_at = now + self.wake_interval
                waiters.wake(self.id)
            self._check_at = self.received + 1
            return
        self._watched = False
        self._check_at = math.inf if self.size is None else self.size
        if self.id in waiters:  # registered meanwhile: its watch() may have been undone
            self._watched = True
            self._check_at = self.received + 1

    def add_produced(self, n: int) -> None:
        """Count *n* response bytes produced by the application."""
        if not (self.finished or self.detached):
            self.produced += n

    # -- transitions ---------------------------------------------------------

    def body_complete(self) -> None:
        """The whole body has arrived: ``processing`` until the response ends."""
        if self.state in (STARTING, UPLOADING):
            elapsed = self._clock() - self.started
            if elapsed > 0:
                self.speed = (self.received - self._offset) / elapsed  # this request's bytes
            if self.size is None:
                self.size = self.received  # a chunked body's size is known now
            self.state = PROCESSING
            self._publish()

    def start_response(self, status: Union[str, int], content_length: Optional[int]) -> None:
        """Record the response status (a WSGI status line or its code) and the
        declared Content-Length."""
        if not (self.finished or self.detached):
            self.status, self.declared_response_size = status_code(status), content_length
            self._publish()

    def report_steps(self, steps: Dict[str, Any]) -> None:
        """The application reports how far its processing got
        (:meth:`wsgiprogress.operations.Operation.report`): the probe shows it."""
        if not self.finished:
            self.steps = steps
            self._publish()

    def fail(self, reason: str, status: Optional[int] = None) -> None:
        """End the request as ``error`` with *reason*; later calls (and calls
        while :attr:`detached`) change nothing."""
        if self.finished or self.detached:
            return
        self.state, self.reason = ERROR, reason
        if status is not None:
            self.status = status
        self._end()

    def cancel(self) -> bool:
        """End a running request as ``error``/``cancelled`` and tell its owner
        (:attr:`on_cancel`) to stop it; False when it had already ended."""
        if self.finished:
            return False
        stop, self.detached = self.on_cancel, False  # taken first: the end lets it go
        self.fail(CANCELLED)
        if stop is not None:
            try:
                stop()
            except Exception:
                _CANCEL_FAILED.warn(self.id, exc_info=True)
        return True

    def finish(self) -> None:
        """End the request: ``done``, or ``error`` for a status of 400 and above.

        A response that never started counts as ``aborted``.  Does nothing when
        the request has already ended (or is :attr:`detached`).
        """
        if self.finished or self.detached:
            return
        if self.status is None:
            self.state, self.reason = ERROR, ABORTED
        elif self.status >= 400:
            self.state, self.reason = ERROR, HTTP_ERROR
        else:
            self.state = DONE
        self._end()

    def detach(self, on_cancel: Callable[[], None]) -> None:
        """The client got ``202 Accepted``; the application runs on: the
        connection (the 202's status and bytes, its end) no longer changes the
        request, which stays ``processing`` with the reported steps until
        :meth:`settle`; a cancel calls *on_cancel*.  Not once ended."""
        if not self.finished:
            self.on_cancel = on_cancel
            self.detached = True

    def settle(self, status: Optional[int], cancelled: bool = False) -> None:
        """A :attr:`detached` request's application ended with *status*: as
        :meth:`finish`; ``error`` (``app_error``: *status* ``None``, ``cancelled``)."""
        if not self.detached:
            return
        self.detached = False
        if cancelled or status is None:
            self.fail(CANCELLED if cancelled else APP_ERROR, status)
        else:
            self.status = status
            self.finish()

    # -- reading and publishing ------------------------------------------------

    def fields(self) -> Dict[str, Any]:
        """The fields this tracker owns, as the store should hold them."""
        return {
            "state": self.state, "received": self.received, "size": self.size,
            "sent": self.sent, "response_size": self.response_size,
            "status": self.status, "reason": self.reason, "speed": self.speed,
            "files": self.file_list(), "steps": self.steps,
        }

    def counters(self) -> Dict[str, Any]:
        """What moves between changes, the speed measured now (for a ``shared`` store)."""
        self.measure()
        return {"received": self.received, "sent": self.sent, "speed": self.speed,
                "response_size": self.response_size, "files": self.file_list()}

    def entry(self, started: Optional[float] = None) -> ProgressEntry:
        """The live progress as a probe shows it, the speed measured now.

        :param started: when the store says the entry began (its clock).
        """
        self.measure()
        return ProgressEntry(self.id, self.state, self.received, self.size, self.sent,
                             self.response_size, self.status, self.reason,
                             self.started if started is None else started, self.ended, self.speed,
                             self.file_list(), self.steps)

    def file_list(self) -> Optional[List[Dict[str, Any]]]:
        """The files listed so far, or ``None`` when files are not listed."""
        files = self.files
        return None if files is None else files.snapshot()

    @property
    def response_size(self) -> Optional[int]:
        """The declared Content-Length, else the bytes produced once the
        response started, else ``None``."""
        if self.declared_response_size is not None:
            return self.declared_response_size
        return None if self.status is None else self.produced

    def measure(self) -> None:
        """Update the smoothed speed from the bytes counted since the last
        measurement; readers call it, never the counting thread."""
        if self.state != UPLOADING:
            return
        with _MEASURING:
            now = self._clock()
            # measured from the first body bytes: the first piece often
            # arrives with the headers and says nothing about the client's speed
            elapsed = now - self._first_time
            dt = now - self._last_time
            if elapsed < MIN_SPEED_WINDOW or dt < MEASURE_INTERVAL:
                return  # readers in between see the same speed: no change to report
            received = self.received
            if elapsed <= SPEED_TAU or self.speed == 0.0:
                self.speed = (received - self._first_received) / elapsed
            else:
                rate = (received - self._last_received) / dt
                self.speed += (1.0 - math.exp(-dt / SPEED_TAU)) * (rate - self.speed)
            self._last_time = now
            self._last_received = received

    def _publish(self) -> None:
        """A state changed: tell a store that other processes read, and wake
        the clients waiting here (a store of this process reads the tracker)."""
        if self.finished or self._store_failed:
            return  # ended and written: a late change (the app answering an aborted
            # upload, say) must not reach a store that has let the entry go
        store = self.store
        if not store.shared:
            store.waiters.wake(self.id)  # nothing but a lookup when nobody waits
            return
        try:
            store.update(self.id, self.token, self.fields())
        except Exception:
            self._store_failure("update")

    def _end(self) -> None:
        self.ended = self._clock()
        self.finished = True  # the state is final: the speed was measured last while uploading
        self.on_cancel = None  # its owner may hold this tracker: no cycle outlives it
        if self.files is not None:
            self.files.end()  # a store may keep this tracker as the entry: not its parser
        try:
            self.store.end_tracking(self)
        except Exception:
            self._store_failure("finish")
        self.store.release(self)

    def _store_failure(self, what: str) -> None:
        if not self._store_failed:  # rate-limited across requests: a store down fails each
            self.store.failure_warning.warn(what, self.id, exc_info=True)
        self._store_failed = True
