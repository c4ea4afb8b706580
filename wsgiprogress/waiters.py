"""
Waiters
=======

Threads that wait for something to change — a long-poll on a mailbox, a
progress probe with ``wait=`` — each hold a worker thread, so waiting must be
cheap, bounded and aware of disconnects.  :class:`Waiters` gives every waiter
its own :class:`threading.Event` (a shared ``Condition.notify_all`` convoys:
measured 0.4–56 s to wake 900 waiters, one Event each 0.3–1.0 s) and refuses
waiters beyond ``limit``.

.. code-block:: python

    waiters = Waiters(limit=50)
    event = waiters.register("inbox-1")
    if event is None:
        ...                         # answer 503 with Retry-After
    try:
        ...check, then ClientWatch(environ).wait(event, timeout)...
    finally:
        waiters.unregister("inbox-1", event)

    waiters.wake("inbox-1")         # from the thread that posts
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Set

#: Longest single wait before asking waitress whether the client left.
WAIT_SLICE = 0.5


class Waiters:
    """Waiting threads by key, at most *limit* at once.

    :param limit: the most concurrent waiters; leave threads for ordinary
        requests (see :func:`default_waiter_limit`).
    """

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number >= 1, not {limit!r}")
        self.limit = limit
        self._lock = threading.Lock()
        self._events: Dict[str, Set[threading.Event]] = {}
        self._count = 0
        self.refused = 0

    def register(self, key: str) -> Optional[threading.Event]:
        """A new event that :meth:`wake` sets for *key*; ``None`` when at the limit."""
        event = threading.Event()
        with self._lock:
            if self._count >= self.limit:
                self.refused += 1
                return None
            self._count += 1
            self._events.setdefault(key, set()).add(event)
        return event

    def unregister(self, key: str, event: threading.Event) -> None:
        """Forget *event*; call once for every successful :meth:`register`."""
        with self._lock:
            events = self._events.get(key)
            if events is not None and event in events:
                events.discard(event)
                self._count -= 1
                if not events:
                    del self._events[key]

    def wake(self, key: str) -> int:
        """Wake every waiter of *key*; returns how many."""
        if key not in self._events:
            # no lock on this hot path (every progress publish): a waiter
            # registers first and reads the state after, so it misses nothing
            return 0
        with self._lock:
            events = list(self._events.get(key, ()))
        for event in events:
            event.set()
        return len(events)

    def wake_all(self) -> int:
        """Wake every waiter (after news may have been missed); returns how many."""
        with self._lock:
            events = [event for events in self._events.values() for event in events]
        for event in events:
            event.set()
        return len(events)

    def __len__(self) -> int:
        with self._lock:
            return self._count


#: Set by a server that says when a client leaves: ``environ[DEPARTURE_KEY](event)``
#: sets *event* when the connection closes and returns a function that stops
#: watching.  :mod:`wsgiprogress.server` provides it.
DEPARTURE_KEY = "wsgiprogress.departure"


class ClientWatch:
    """Whether the client of a waiting request is still connected.

    Under :mod:`wsgiprogress.server` the connection's close wakes the waiter
    at once, so one wait suffices.  Under plain waitress (with
    ``channel_request_lookahead``) it waits in slices of :data:`WAIT_SLICE`
    and asks ``waitress.client_disconnected`` between them: slower to notice,
    and a thousand sliced waiters wake two thousand times a second.  Elsewhere
    nothing tells, and it simply waits.

    .. code-block:: python

        client = ClientWatch(environ)
        if not client.wait(event, 10.0):
            ...                     # timed out, or the client left
    """

    __slots__ = ("_gone", "_watch")

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._gone: Optional[Callable[[], bool]] = environ.get("waitress.client_disconnected")
        self._watch: Optional[Callable[[threading.Event], Callable[[], None]]] = \
            environ.get(DEPARTURE_KEY)

    def gone(self) -> bool:
        """True once the client is known to have left."""
        return self._gone is not None and self._gone()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until *event* is set (True), *timeout* passes or the client left (False)."""
        if self._watch is not None:
            stop = self._watch(event)
            try:
                event.wait(timeout)
            finally:
                stop()
            return event.is_set() and not self.gone()
        if self._gone is None:
            return event.wait(timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return event.is_set()
            if event.wait(min(left, WAIT_SLICE)):
                return True
            if self._gone():
                return False


def parse_wait(value: Optional[str], cap: float) -> float:
    """A ``wait=`` parameter in seconds, at most *cap*; absent means 0.

    :raises ValueError: for anything but a number >= 0.
    """
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise ValueError("invalid wait: expected seconds >= 0")
    return min(seconds, cap)


def default_waiter_limit(threads: int) -> int:
    """Waiters allowed on a server with *threads* worker threads: all but a
    quarter (at least one), so ordinary requests and publishers still run."""
    return max(1, threads - max(1, threads // 4))
