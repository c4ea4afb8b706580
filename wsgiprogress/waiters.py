"""
Waiters
=======

Clients that wait for something to change — a long-poll on a mailbox, a
progress probe with ``wait=``, an event stream — register with
:class:`Waiters`, which bounds them (``limit``) and wakes them by key.  Each
waiter brings its own *wake*: a :class:`threading.Event` for a waiter that
holds a thread (a shared ``Condition.notify_all`` convoys: measured 0.4–56 s
to wake 900 waiters, one Event each 0.3–1.0 s), or, on wsgiprogress's own
server, the server's wake for a request parked on its I/O loop
(:mod:`wsgiprogress.server.parking`), which needs only ``set()``.

.. code-block:: python

    waiters = Waiters(limit=50)
    event = waiters.register("inbox-1")     # a new threading.Event
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
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Set

from .keys import DEPARTURE
from .settings import waiter_limit
from .settings.converters import as_optional_count


class Wake(Protocol):
    """What :meth:`Waiters.wake` sets: a :class:`threading.Event`, or a
    parked request's wake."""

    def set(self) -> None: ...

#: Longest single wait before asking waitress whether the client left.
WAIT_SLICE = 0.5


class Waiters:
    """Waiting clients by key, at most *limit* at once.

    :param limit: the most concurrent waiters (see :func:`wsgiprogress.settings.waiter_limit`, which
        gives the default).
    """

    def __init__(self, limit: Optional[int] = None) -> None:
        self.limit = waiter_limit(as_optional_count(limit))
        self._lock = threading.Lock()
        self._events: Dict[str, Set[Wake]] = {}
        self._count = 0
        self.refused = 0

    def register(self, key: str, event: Optional[Wake] = None) -> Optional[Wake]:
        """*event* (by default a new :class:`threading.Event`), which
        :meth:`wake` sets for *key*; ``None`` when at the limit."""
        if event is None:
            event = threading.Event()
        with self._lock:
            if self._count >= self.limit:
                self.refused += 1
                return None
            self._count += 1
            self._events.setdefault(key, set()).add(event)
        return event

    def unregister(self, key: str, event: Wake) -> None:
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


class Parked(BaseException):
    """Raised by a waiting response's iterator on wsgiprogress's server when
    there is nothing to send yet: the server parks the request on its I/O
    loop, with no thread, until its wake is set or its time comes.  A
    :class:`BaseException`, so no application ``except Exception`` takes it.
    """

    def __init__(self, response: Any) -> None:
        super().__init__()
        self.response = response
