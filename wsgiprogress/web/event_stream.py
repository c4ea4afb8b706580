"""
Event streams
=============

:class:`EventStream` is the response body of a server-sent-events stream that
waits on a :class:`~wsgiprogress.waiters.Waiters` event: a ``retry:`` hint and
a comment at once (waitress sends the headers only with the first non-empty
chunk), then whatever its *collect* function finds each time the event is
set, a comment every ``keepalive`` seconds, until ``max_duration`` passes,
*collect* says the stream is over, or the client leaves.  It gives its
waiter slot back in :meth:`EventStream.close`, which servers call even when
they never iterated.

.. code-block:: python

    def collect():
        return [sse.event(json.dumps(...))], finished

    return EventStream(waiters, key, event, ClientWatch(environ), collect, timing)
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Mapping, NamedTuple, Tuple

from . import sse

if TYPE_CHECKING:
    from ..waiters import ClientWatch, Waiters

#: Returns the events to send now (may be none) and whether the stream is over.
Collect = Callable[[], Tuple[List[bytes], bool]]


class StreamTiming(NamedTuple):
    """The waiting settings an event stream follows."""

    keepalive: float
    retry: int
    max_duration: float

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> StreamTiming:
        """From resolved ``sse_keepalive``, ``sse_retry``, ``sse_max_duration``."""
        return cls(options["sse_keepalive"], options["sse_retry"],
                   options["sse_max_duration"])


class EventStream:
    """The body of an event stream that sends what *collect* finds whenever
    *event* (registered in *waiters* under *key*) is set."""

    def __init__(self, waiters: Waiters, key: str, event: threading.Event,
                 client: ClientWatch, collect: Collect, timing: StreamTiming) -> None:
        self.waiters = waiters
        self.key = key
        self.event = event
        self.client = client
        self.collect = collect
        self.keepalive = timing.keepalive
        self.deadline = time.monotonic() + timing.max_duration
        self.pending: List[bytes] = [sse.retry(timing.retry) + sse.comment("connected")]
        self.over = False
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while not self.pending:
            if self.over or self.closed or time.monotonic() >= self.deadline \
                    or self.client.gone():
                raise StopIteration
            self._fill()
        return self.pending.pop(0)

    def _fill(self) -> None:
        self.event.clear()  # before collecting, so a change during it is not missed
        events, self.over = self.collect()
        self.pending.extend(events)
        if self.pending or self.over:
            return
        until = min(time.monotonic() + self.keepalive, self.deadline)
        if self.client.wait(self.event, until - time.monotonic()) or self.client.gone() \
                or time.monotonic() >= self.deadline:
            return
        self.pending.append(sse.comment("keepalive"))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.waiters.unregister(self.key, self.event)
