"""
Event streams
=============

:class:`EventStream` is the response body of a server-sent-events stream that
waits on a :class:`~wsgiprogress.waiters.Waiters` event: a ``retry:`` hint and
a comment at once (waitress sends the headers only with the first non-empty
chunk), then whatever :meth:`EventStream.collect` finds each time the event is
set, a comment every ``keepalive`` seconds, until ``max_duration`` passes,
:meth:`collect` says the stream is over, or the client leaves.  It gives its
waiter slot back in :meth:`close`, which servers call even when they never
iterated.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Iterator, List

from . import sse

if TYPE_CHECKING:
    from .waiters import ClientWatch, Waiters


class EventStream:
    """Base of the SSE bodies; subclasses implement :meth:`collect`."""

    def __init__(self, waiters: Waiters, key: str, event: threading.Event,
                 client: ClientWatch, *, keepalive: float,
                 retry: int, max_duration: float) -> None:
        self.waiters = waiters
        self.key = key
        self.event = event
        self.client = client
        self.keepalive = keepalive
        self.deadline = time.monotonic() + max_duration
        self.pending: List[bytes] = [sse.retry(retry) + sse.comment("connected")]
        self.over = False
        self.closed = False

    def collect(self) -> List[bytes]:
        """Events to send now (may be none); set :attr:`over` to end the stream."""
        raise NotImplementedError

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
        self.pending.extend(self.collect())
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
