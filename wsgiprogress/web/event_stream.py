"""
Event streams
=============

:class:`EventStream` is the body of a server-sent-events stream, a
:class:`~wsgiprogress.web.waiting.WaitingResponse`: a ``retry:`` hint and a
comment at once (waitress sends the headers only with the first non-empty
chunk), then whatever its *collect* function finds each time it is woken, a
comment every ``keepalive`` seconds without news, until ``max_duration``
passes, *collect* says the stream is over, or the client leaves.  On
wsgiprogress's server it is parked on the I/O loop between events; elsewhere
it holds its thread.  The answer to ``HEAD`` is the headers alone (RFC 9110
§9.3.2).

.. code-block:: python

    def collect():
        return [sse.event(json.dumps(...))], finished

    wake = open_wake(waiters, key, environ)     # None: 503
    return EventStream(waiters, key, wake, environ, collect, timing)
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, NamedTuple, Tuple

from . import sse
from .waiting import Step, WaitingResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ..waiters import Waiters, Wake

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


class EventStream(WaitingResponse):
    """The body of an event stream that sends what *collect* finds whenever
    *wake* (registered in *waiters* under *key*) is set."""

    def __init__(self, waiters: Waiters, key: str, wake: Wake, environ: WSGIEnvironment,
                 collect: Collect, timing: StreamTiming) -> None:
        super().__init__(waiters, key, wake, environ)
        self.collect = collect
        self.keepalive = timing.keepalive
        now = time.monotonic()
        self.deadline = now + timing.max_duration
        self.quiet_until = now + timing.keepalive
        self.opening = sse.retry(timing.retry) + sse.comment("connected")
        self.head_only = environ.get("REQUEST_METHOD") == "HEAD"

    def step(self, now: float, give_up: bool = False) -> Step:
        if self.head_only:
            return Step(b"", True, now)
        if self.opening:
            opening, self.opening = self.opening, b""
            return Step(opening, False, now)  # at once, before the first collect
        events, over = self.collect()
        if events:
            self.quiet_until = now + self.keepalive
        elif now >= self.quiet_until:
            events = [sse.comment("keepalive")]
            self.quiet_until = now + self.keepalive
        over = over or give_up or now >= self.deadline
        return Step(b"".join(events), over, min(self.quiet_until, self.deadline))
