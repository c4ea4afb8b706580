"""
I/O loop
========

waitress's I/O loop (``wasyncore.loop``) only polls sockets.  :class:`Loop`
is the same loop with two things a parked request needs
(:mod:`wsgiprogress.server.parking`): calls handed to it from any thread
(:meth:`Loop.call_soon`, which pulls waitress's trigger so the poll wakes),
and one heap of timers for every deadline and heartbeat
(:meth:`Loop.call_at`), which shortens the poll's timeout to the next one.
It also runs periodic work (:meth:`Loop.every`), such as shedding slow clients.
The server runs it in place of waitress's loop (``server.asyncore``).

.. code-block:: python

    loop = Loop(server.trigger)
    server.asyncore = loop              # server.run() now runs loop.loop()
    loop.call_soon(channel.resume)      # from any thread
    timer = loop.call_at(time.monotonic() + 30, channel.time_up)   # loop thread
    loop.cancel(timer)
"""
from __future__ import annotations

import collections
import functools
import heapq
import itertools
import logging
import select
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional

from waitress import wasyncore

log = logging.getLogger("wsgiprogress")

#: A timer: ``[when, sequence, callback]``; a cancelled one has no callback.
Timer = List[Any]


class Loop:
    """waitress's I/O loop with calls from other threads and timers.

    :param trigger: waitress's trigger, pulled to wake the poll.
    """

    def __init__(self, trigger: Any) -> None:
        self.trigger = trigger
        self.thread: Optional[int] = None
        self._ready: Deque[Callable[[], None]] = collections.deque()
        self._signalled = False
        self._timers: List[Timer] = []
        self._sequence = itertools.count()
        self._periodic: List[List[Any]] = []  # [next time, interval, work]

    def on_loop(self) -> bool:
        """True on the thread that runs the loop."""
        return threading.get_ident() == self.thread

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run *callback* on the loop's thread soon; callable from any thread."""
        self._ready.append(callback)
        if not self._signalled and not self.on_loop():
            self._signalled = True
            self.trigger.pull_trigger()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run *callback* on the loop at *when* (``time.monotonic``); call on
        the loop's thread."""
        timer = [when, next(self._sequence), callback]
        heapq.heappush(self._timers, timer)
        return timer

    @staticmethod
    def cancel(timer: Optional[Timer]) -> None:
        """Forget *timer* (it stays in the heap until its time, inert)."""
        if timer is not None:
            timer[2] = None

    def every(self, interval: float, work: Callable[[float], None]) -> None:
        """Run ``work(now)`` on the loop every *interval* seconds."""
        self._periodic.append([time.monotonic() + interval, interval, work])

    def loop(self, timeout: float = 30.0, use_poll: bool = False,
             map: Optional[Dict[int, Any]] = None, count: Optional[int] = None) -> None:
        """What ``server.run()`` calls, with waitress's arguments."""
        poll = wasyncore.poll2 if use_poll and hasattr(select, "poll") else wasyncore.poll
        self.thread = threading.get_ident()
        if map is None:  # pragma: no cover - waitress always passes its map
            map = wasyncore.socket_map
        while map:
            poll(self._timeout(timeout), map)
            self._run_ready()
            self._run_timers()

    def _timeout(self, longest: float) -> float:
        if self._ready:
            return 0.0
        timers = self._timers
        while timers and timers[0][2] is None:
            heapq.heappop(timers)
        times = [periodic[0] for periodic in self._periodic]
        if timers:
            times.append(timers[0][0])
        if not times:
            return longest
        until = min(times)
        return min(longest, max(0.0, float(until) - time.monotonic()))

    def _run_ready(self) -> None:
        self._signalled = False
        ready = self._ready
        while ready:
            self._run(ready.popleft())

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            callback = heapq.heappop(timers)[2]
            if callback is not None:
                self._run(callback)
        for periodic in self._periodic:
            if now >= periodic[0]:
                periodic[0] = now + periodic[1]
                self._run(functools.partial(periodic[2], now))

    @staticmethod
    def _run(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # the loop serves every connection: never let one stop it
            log.exception("error on the I/O loop in %r", callback)
