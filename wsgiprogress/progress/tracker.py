"""
Per-request progress tracker
============================

A :class:`Tracker` counts the bytes of one tracked request and publishes them
to its store.  Counting is O(1); publishing is throttled to every
:attr:`Tracker.publish_bytes` bytes or :attr:`Tracker.publish_interval`
seconds, plus every state change, so the store sees a value at most that far
behind.  Whoever owns the request (the middleware, or the server hook on
waitress's I/O thread) drives it:

.. code-block:: python

    tracker = table.track(progress_id, size=content_length)
    tracker.add_received(len(chunk))     # while the body arrives
    tracker.body_complete()              # -> processing
    tracker.start_response(200, None)
    tracker.add_sent(len(data))
    tracker.finish()                     # -> done (or error for status >= 400)
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Dict, Hashable, Mapping, Optional, Protocol, Union

from .entry import (
    ABORTED,
    DONE,
    ERROR,
    HTTP_ERROR,
    PROCESSING,
    STARTING,
    UPLOADING,
)

log = logging.getLogger("wsgiprogress")

#: Time constant of the exponentially smoothed speed, in seconds.
SPEED_TAU = 2.0
#: Speed stays unknown (0) until body bytes have arrived for this long.
MIN_SPEED_WINDOW = 0.1


class ProgressSink(Protocol):
    """What a tracker publishes to: the writing half of a
    :class:`~wsgiprogress.progress.store.ProgressStore`."""

    clock: Callable[[], float]

    def update(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        ...

    def finish(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        ...


def status_code(status: Union[str, int]) -> int:
    """The code of a WSGI status line (``"200 OK"``); 500 when it has none."""
    if isinstance(status, int):
        return status
    try:
        return int(status[:3])
    except ValueError:
        return 500


class Tracker:
    """Counts one request's bytes and publishes them to a store.

    Trackers are made by :meth:`ProgressStore.track`; a tracker never raises
    into the request it tracks: store failures are logged once and ignored.
    """

    #: Publish after this many unpublished bytes ...
    publish_bytes = 256 * 1024
    #: ... or when this many seconds have passed since the last publish.
    publish_interval = 0.05

    __slots__ = (
        "store", "id", "token", "size", "received", "sent", "produced",
        "declared_response_size", "state", "status", "reason", "speed",
        "started", "_clock", "_last_time", "_last_received", "_unpublished",
        "_publish_at_bytes", "_publish_at_time",
        "_first_time", "_first_received", "_store_failed",
    )

    def __init__(self, store: ProgressSink, progress_id: str, token: Hashable,
                 size: Optional[int]) -> None:
        self.store = store
        self.id = progress_id
        self.token = token
        self.size = size
        self.received = 0
        self.sent = 0
        self.produced = 0
        self.declared_response_size: Optional[int] = None
        self.state = STARTING
        self.status: Optional[int] = None
        self.reason: Optional[str] = None
        self.speed = 0.0
        self._clock = store.clock
        self.started = self._last_time = self._clock()
        self._last_received = 0
        self._first_time = self.started
        self._first_received = 0
        self._unpublished = 0
        # the first body byte, and the last one of a declared size, take the
        # slow path of add_received
        self._publish_at_bytes = 1
        self._publish_at_time = self.started + self.publish_interval
        self._store_failed = False

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` or :meth:`fail` has run."""
        return self.state in (DONE, ERROR)

    # -- counting (hot path) -------------------------------------------------

    def add_received(self, n: int) -> None:
        """Count *n* request body bytes as they arrive; once the declared size
        has arrived the body is complete (:meth:`body_complete`).  The one
        "bytes arrived" path of the middleware and the server."""
        received = self.received = self.received + n
        # this runs for every read of every upload: two comparisons with
        # thresholds _publish() sets, one clock call
        if received >= self._publish_at_bytes or self._clock() >= self._publish_at_time:
            self._news()

    def _news(self) -> None:
        if self.state == STARTING:
            self.state = UPLOADING
            self._first_time = self._clock()
            self._first_received = self.received
            full = True
        else:
            full = False
        if self.size is not None and self.received >= self.size:
            self.body_complete()
        else:
            self._publish(full=full)

    def add_sent(self, n: int) -> None:
        """Count *n* response bytes written to the client."""
        self.sent += n
        self._throttled(n)

    def _throttled(self, n: int) -> None:
        self._unpublished += n
        if (self._unpublished >= self.publish_bytes
                or self._clock() - self._last_time >= self.publish_interval):
            self._publish(full=False)

    def add_produced(self, n: int) -> None:
        """Count *n* response bytes produced by the application."""
        self.produced += n

    # -- transitions ---------------------------------------------------------

    def body_complete(self) -> None:
        """The whole body has arrived: ``processing`` until the response ends."""
        if self.state in (STARTING, UPLOADING):
            elapsed = self._clock() - self.started
            if elapsed > 0:
                self.speed = self.received / elapsed
            if self.size is None:
                self.size = self.received  # a chunked body's size is known now
            self.state = PROCESSING
            self._publish(measure=False)

    def start_response(self, status: Union[str, int], content_length: Optional[int]) -> None:
        """Record the response status (a WSGI status line or its code) and the
        declared Content-Length."""
        self.status = status_code(status)
        self.declared_response_size = content_length
        self._publish()

    def fail(self, reason: str, status: Optional[int] = None) -> None:
        """End the request as ``error`` with *reason*; later calls change nothing."""
        if self.finished:
            return
        self.state = ERROR
        self.reason = reason
        if status is not None:
            self.status = status
        self._end()

    def finish(self) -> None:
        """End the request: ``done``, or ``error`` for a status of 400 and above.

        A response that never started counts as ``aborted``.  Does nothing when
        the request has already ended.
        """
        if self.finished:
            return
        if self.status is None:
            self.state, self.reason = ERROR, ABORTED
        elif self.status >= 400:
            self.state, self.reason = ERROR, HTTP_ERROR
        else:
            self.state = DONE
        self._end()

    # -- publishing ----------------------------------------------------------

    def fields(self) -> Dict[str, Any]:
        """The fields this tracker owns, as the store should hold them."""
        return {
            "state": self.state, "received": self.received, "size": self.size,
            "sent": self.sent, "response_size": self.response_size,
            "status": self.status, "reason": self.reason, "speed": self.speed,
        }

    @property
    def response_size(self) -> Optional[int]:
        """The declared Content-Length, else the bytes produced once the
        response started, else ``None``."""
        if self.declared_response_size is not None:
            return self.declared_response_size
        return None if self.status is None else self.produced

    def _publish(self, measure: bool = True, full: bool = True) -> None:
        if self.state in (DONE, ERROR):
            return  # ended and written: a late change (the app answering an aborted
            # upload, say) must not reach a store that has let the entry go
        now = self._clock()
        if measure and self.state == UPLOADING:
            self._measure(now)
        self._last_time = now
        self._last_received = self.received
        self._unpublished = 0
        size = self.size
        self._publish_at_bytes = self.received + self.publish_bytes
        if size is not None and self.received < size < self._publish_at_bytes:
            self._publish_at_bytes = size
        self._publish_at_time = now + self.publish_interval
        if self._store_failed:
            return
        # between state changes only the counters move: publish just those
        fields = self.fields() if full else {
            "received": self.received, "sent": self.sent, "speed": self.speed,
            "response_size": self.response_size}
        try:
            self.store.update(self.id, self.token, fields)
        except Exception:
            self._store_failure("update")

    def _measure(self, now: float) -> None:
        # measured from the first body bytes: the first piece often arrives
        # with the headers and says nothing about the client's speed
        elapsed = now - self._first_time
        dt = now - self._last_time
        if elapsed < MIN_SPEED_WINDOW or dt <= 0:
            return
        if elapsed <= SPEED_TAU or self.speed == 0.0:
            self.speed = (self.received - self._first_received) / elapsed
        else:
            rate = (self.received - self._last_received) / dt
            self.speed += (1.0 - math.exp(-dt / SPEED_TAU)) * (rate - self.speed)

    def _end(self) -> None:
        fields = self.fields()
        fields["finished"] = self._clock()
        try:
            self.store.finish(self.id, self.token, fields)
        except Exception:
            self._store_failure("finish")

    def _store_failure(self, what: str) -> None:
        if not self._store_failed:
            log.warning("progress store failed to %s %r; its progress degrades",
                        what, self.id, exc_info=True)
        self._store_failed = True
