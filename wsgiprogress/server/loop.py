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
The server runs it in place of waitress's loop (``server.asyncore``).  When
Ctrl-C or SIGTERM stops it, the connections with a last word (WebSocket
sessions: close 1001) get up to :data:`GOODBYE_TIME` to send it
(:meth:`Loop.say_goodbye`) before waitress's ``run()`` shuts down as before.

With ``asyncore_use_poll`` on Linux it polls with one lasting ``epoll``
instead of waitress's ``poll2``, which builds a new poll set from every
socket on every turn: a turn costs what the *active* connections cost, as
connections marked quiet (:meth:`Loop.quiet`: parked waiters, idle
WebSockets, and any connection that says it ``may_rest()``, such as an idle
keep-alive one) are not asked ``readable()``/``writable()`` again until
something happens on them, and a listener accepts every waiting connection
in one turn (up to :data:`ACCEPT_BURST`), not one.  A turn with no call handed
over and no timer due does nothing besides: an upload's turn is its read.

.. code-block:: python

    loop = Loop(server.trigger)
    server.asyncore = loop              # server.run() now runs loop.loop()
    loop.call_soon(channel.resume)      # from any thread
    timer = loop.call_at(time.monotonic() + 30, channel.time_up)   # loop thread
    loop.cancel(timer)
"""
from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import itertools
import logging
import math
import select
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from waitress import wasyncore

log = logging.getLogger("wsgiprogress")

#: A timer: ``[when, sequence, callback]``; a cancelled one has no callback.
Timer = List[Any]
#: Connections a listener accepts in one turn at most.
ACCEPT_BURST = 64
#: Calls handed to the loop that it runs in one turn at most.
READY_BURST = 64
#: Seconds that the connections with a last word get, all together, to send
#: it once the loop stopped (:meth:`Loop.say_goodbye`).
GOODBYE_TIME = 1.0
_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT


def _never() -> bool:
    return False


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
        self._periodic_due = math.inf  # the earliest next time of the periodic work
        self._epoll: Optional[Any] = None
        self._interest: Dict[int, Tuple[Any, int]] = {}  # fd -> (dispatcher, events)
        self._quiet: Dict[int, Any] = {}  # fd -> the quiet dispatcher on it
        #: True once the loop stopped (:meth:`say_goodbye`).
        self.stopping = False

    def on_loop(self) -> bool:
        """True on the thread that runs the loop."""
        return threading.get_ident() == self.thread

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run *callback* on the loop's thread soon; callable from any thread."""
        self._ready.append(callback)
        if not self._signalled and not self.on_loop():
            self._signalled = True
            with contextlib.suppress(OSError):  # the server closed: nothing runs any more
                self.trigger.pull_trigger()

    def pull_trigger(self, thunk: Optional[Callable[[], None]] = None) -> None:
        """The listeners' ``pull_trigger``: wake the poll from another thread.
        On the loop's own thread a wake-up without a *thunk* is needless (the
        loop asks its connections again after this turn), and waitress pulls
        one after every request it serves, there too (a probe, a parked step)."""
        if thunk is None and self.on_loop():
            return
        self.trigger.pull_trigger(thunk)

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

    def quiet(self, dispatcher: Any) -> None:
        """Stop asking *dispatcher* ``readable()``/``writable()`` each turn
        until an event on its socket or :meth:`wake_up` (loop thread only):
        for a connection whose interest cannot change on its own."""
        if self._epoll is not None:
            self._quiet[dispatcher._fileno] = dispatcher

    def wake_up(self, dispatcher: Any) -> None:
        """Ask *dispatcher* again from the next turn on: call before giving a
        quiet connection something to write (on the loop thread; from another
        one, only for a connection the loop is not deciding to quiet now)."""
        self._quiet.pop(dispatcher._fileno, None)

    def forget(self, fd: int, dispatcher: Any) -> None:
        """*dispatcher*, which was on descriptor *fd*, left the map (closed,
        or its socket handed to the application): drop what the loop kept of
        it, so nothing of it stays alive, epoll stops watching a socket that
        stays open, and a new connection on *fd* starts afresh.  Callable
        from any thread."""
        if not self.on_loop():
            self.call_soon(functools.partial(self.forget, fd, dispatcher))
            return
        if self._quiet.get(fd) is dispatcher:
            del self._quiet[fd]
        known = self._interest.get(fd)
        if known is not None and known[0] is dispatcher:
            del self._interest[fd]
            if self._epoll is not None:
                try:
                    self._epoll.unregister(fd)
                except OSError:  # closed: epoll forgot it by itself
                    pass

    def every(self, interval: float, work: Callable[[float], None]) -> None:
        """Run ``work(now)`` on the loop every *interval* seconds."""
        due = time.monotonic() + interval
        self._periodic.append([due, interval, work])
        self._periodic_due = min(self._periodic_due, due)

    def loop(self, timeout: float = 30.0, use_poll: bool = False,
             map: Optional[Dict[int, Any]] = None, count: Optional[int] = None) -> None:
        """What ``server.run()`` calls, with waitress's arguments."""
        if use_poll and hasattr(select, "epoll"):
            self._epoll = select.epoll()
            poll: Callable[[float, Dict[int, Any]], None] = self._poll_epoll
        else:
            poll = wasyncore.poll2 if use_poll and hasattr(select, "poll") else wasyncore.poll
        self.thread = threading.get_ident()
        if map is None:  # pragma: no cover - waitress always passes its map
            map = wasyncore.socket_map
        try:
            while map:
                poll(self._timeout(timeout), map)
                self._after_poll()
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM: waitress's run() goes on
            self.say_goodbye(map)
            raise
        finally:
            if self._epoll is not None:
                self._epoll.close()

    def say_goodbye(self, map: Dict[int, Any], within: float = GOODBYE_TIME) -> None:
        """The loop stopped: each connection with a WebSocket session (its
        ``websocket``) has it queue a close 1001 (``going_away(deadline)``)
        and gets its output flushed, polled here on the loop's thread, until
        it closes or *within* seconds passed for all of them; the rest is
        left to the process's exit.  Nothing else runs: no calls handed
        over, no timers."""
        self.stopping = True  # a session that opens now closes at once
        deadline = time.monotonic() + within
        leaving = {fd: obj for fd, obj in list(map.items())
                   if getattr(obj, "websocket", None) is not None}
        for obj in leaving.values():
            obj.websocket.going_away(deadline)
        poll = wasyncore.poll2 if hasattr(select, "poll") else wasyncore.poll
        while leaving:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("shutdown: %d connection(s) took their goodbye no further "
                            "in %.1f s", len(leaving), within)
                return
            poll(left, leaving)
            leaving = {fd: obj for fd, obj in leaving.items() if map.get(fd) is obj}

    def _poll_epoll(self, timeout: float, map: Dict[int, Any]) -> None:
        """waitress's ``poll2``, with a lasting epoll and quiet connections skipped."""
        epoll = self._epoll
        assert epoll is not None
        interest, quiet = self._interest, self._quiet
        # descriptors only: a (descriptor, connection) pair each turn for every
        # parked connection would count, for the garbage collector, as that many
        # long-lived objects a turn, and bring on its full passes
        for fd in [fd for fd in map if quiet.get(fd) is not map[fd]]:
            obj = map.get(fd)
            if obj is None:  # closed by one asked before it this turn
                continue
            if fd in quiet:
                del quiet[fd]  # a new connection on a closed one's descriptor
            events = 0
            if obj.readable():
                events = _READ
                if not obj.accepting:  # a listener is asked each turn (it counts connections)
                    if obj.writable():
                        events |= _WRITE
                    elif getattr(obj, "may_rest", _never)():
                        quiet[fd] = obj  # idle: asked again once its socket stirs
            elif not obj.accepting and obj.writable():
                events = _WRITE
            known = interest.get(fd)
            if known is not None and known[0] is obj and known[1] == events:
                continue
            try:
                self._watch(fd, events, new=known is None or known[0] is not obj)
            except OSError:  # closed under the loop (a socket handed to the
                interest.pop(fd, None)  # application): its channel leaves the map
                continue
            interest[fd] = (obj, events)
        if len(interest) > 2 * len(map) + 64:  # closed sockets left epoll by themselves
            for fd in [fd for fd in interest if fd not in map]:
                del interest[fd]
                quiet.pop(fd, None)
        for fd, flags in epoll.poll(timeout):
            obj = map.get(fd)
            if obj is None:  # left the map with its socket open: stop watching it
                interest.pop(fd, None)
                quiet.pop(fd, None)
                try:
                    epoll.unregister(fd)
                except OSError:
                    pass
                continue
            quiet.pop(fd, None)  # something happened: ask it again
            if obj.accepting:
                self._accept(obj, flags, map)
            else:
                wasyncore.readwrite(obj, flags)

    def _watch(self, fd: int, events: int, new: bool) -> None:
        """Tell epoll what to report of *fd*: a *new* connection (or one on a
        reused descriptor), or one whose interest changed."""
        epoll = self._epoll
        assert epoll is not None
        if new:
            try:
                epoll.register(fd, events)
            except FileExistsError:
                epoll.modify(fd, events)
            return
        try:
            epoll.modify(fd, events)
        except FileNotFoundError:  # closed and reused since: epoll forgot it
            epoll.register(fd, events)

    @staticmethod
    def _accept(listener: Any, flags: int, map: Dict[int, Any]) -> None:
        """Accept every waiting connection, up to the burst and the limit."""
        limit = listener.adj.connection_limit
        for _ in range(ACCEPT_BURST):
            before = len(map)
            wasyncore.readwrite(listener, flags)
            if len(map) == before or len(map) >= limit:
                return

    def _timeout(self, longest: float) -> float:
        if self._ready:
            return 0.0
        timers = self._timers
        while timers and timers[0][2] is None:
            heapq.heappop(timers)
        until = self._periodic_due
        if timers and timers[0][0] < until:
            until = timers[0][0]
        if until == math.inf:
            return longest
        return min(longest, max(0.0, float(until) - time.monotonic()))

    def _after_poll(self) -> None:
        # a turn of an upload reads once: nothing more, unless something is due
        ready, timers = self._ready, self._timers
        if not ready:  # a pull that came as the last turn ran the calls: the next pulls again
            self._signalled = False
        if ready:  # also a call handed over by a thread that saw the flag still set
            self.run_ready()
        now = time.monotonic()
        if now >= self._periodic_due or (timers and timers[0][0] <= now):
            self._run_timers(now)

    def run_ready(self) -> None:
        """Run the calls handed over, up to :data:`READY_BURST` a turn: a post
        that wakes ten thousand waiters lets the sockets be polled between
        batches, so a request that comes meanwhile is read and served.  The
        loop does at each turn; a publish served on the loop does before it
        answers, so the waiters it woke hear first.  Loop thread only."""
        self._signalled = False
        ready = self._ready
        for _ in range(min(len(ready), READY_BURST)):
            self._run(ready.popleft())

    def _run_timers(self, now: float) -> None:
        """Run the timers due at *now* and the periodic work that is due."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            callback = heapq.heappop(timers)[2]
            if callback is not None:
                self._run(callback)
        if now < self._periodic_due:
            return
        for periodic in self._periodic:
            if now >= periodic[0]:
                periodic[0] = now + periodic[1]
                self._run(functools.partial(periodic[2], now))
        self._periodic_due = min(periodic[0] for periodic in self._periodic)

    @staticmethod
    def _run(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # the loop serves every connection: never let one stop it
            log.exception("error on the I/O loop in %r", callback)
