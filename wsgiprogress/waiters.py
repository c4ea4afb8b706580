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
from typing import Any, Callable, Dict, Mapping, Optional, Set, TypeVar

from .keys import DEPARTURE
from .settings import waiter_limit
from .settings.converters import as_optional_count

T = TypeVar("T")

#: Longest single wait before asking waitress whether the client left.
WAIT_SLICE = 0.5


class Waiters:
    """Waiting threads by key, at most *limit* at once.

    :param limit: the most concurrent waiters; leave threads for ordinary
        requests (see :func:`wsgiprogress.settings.waiter_limit`, which
        gives the default).
    """

    def __init__(self, limit: Optional[int] = None) -> None:
        self.limit = waiter_limit(as_optional_count(limit))
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

    def __contains__(self, key: object) -> bool:
        """True while someone waits for *key* (no lock: a hint for counters)."""
        return key in self._events

    def __len__(self) -> int:
        with self._lock:
            return self._count


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
            environ.get(DEPARTURE)

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


def wait_for(check: Callable[[], Optional[T]], event: threading.Event, client: ClientWatch,
             seconds: float) -> Optional[T]:
    """Call *check* now and each time *event* is set, until it returns
    something other than ``None``, *seconds* pass or the client leaves: the
    one deadline loop of every waiting request.

    :returns: what *check* returned, or ``None`` when the time ran out or the
        client left.  Register *event* before calling, so a change during the
        first check is not missed.
    """
    deadline = time.monotonic() + seconds
    while True:
        event.clear()
        found = check()
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0 or not client.wait(event, left):
            return None
