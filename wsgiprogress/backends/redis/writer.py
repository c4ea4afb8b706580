"""
Coalescing writer
=================

A :class:`~wsgiprogress.backends.redis.progress.RedisProgressStore` never writes to
Redis on the thread that counts bytes (waitress's I/O thread must not wait on
the network).  Trackers hand their changes to a :class:`CoalescingWriter`:
O(1) under a lock, merged into the newest snapshot of that request.
One thread per store writes the dirty snapshots in one pipeline every
``interval`` seconds (at most ``1 / interval`` writes per second per upload),
at once after a state change.  While Redis is away the writer keeps only the
newest snapshot of each upload, retries with backoff and logs once per
outage, so nothing grows without bound and progress recovers by itself.

.. code-block:: python

    writer = CoalescingWriter(flush=write_batch, interval=0.2, limit=10_000)
    writer.put(token, {"received": 4096}, urgent=False)    # from any thread
    writer.close()                                          # flushes what is left
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

log = logging.getLogger("wsgiprogress")

Snapshot = Dict[str, Any]
#: What a write did: the request goes on, ended for good, or was refused
#: (its ID belongs to another running request, or the store is full).
WRITTEN, SETTLED, REFUSED = "written", "settled", "refused"
#: Writes a batch of ``(key, snapshot)``; returns what became of each key.
Flush = Callable[[List[Tuple[str, Snapshot]]], Dict[str, str]]

#: Longest pause between retries while the backend is unreachable.
MAX_BACKOFF = 5.0


class CoalescingWriter:
    """Writes the newest snapshot per key (one key per request) from a thread
    of its own.  A refused key's later changes are dropped, until it ends.

    :param flush: writes a batch; raises when the backend is unreachable.
    :param interval: seconds between two writes of the same key, at most.
    :param limit: the most keys held; :meth:`put` of a new key beyond it is
        refused (the caller leaves that request untracked).
    :param poll: called on the writer's thread before each round, to
        :meth:`put` what changed since (the live counters of running requests).
    """

    def __init__(self, flush: Flush, *, limit: int, interval: float = 0.2,
                 name: str = "wsgiprogress-writer",
                 poll: Callable[[], None] = lambda: None) -> None:
        self._flush = flush
        self._poll = poll
        self.interval = interval
        self.limit = limit
        mutex = threading.Lock()
        self._lock = threading.Condition(mutex)  # wakes the writer's thread
        self._answered = threading.Condition(mutex)  # wakes those asking :meth:`claimed`
        self._dirty: Dict[str, Snapshot] = {}
        self._known: Dict[str, Snapshot] = {}  # every key not yet settled
        self._written: Dict[str, None] = {}  # known keys whose last write was taken
        self._refused: Dict[str, None] = {}  # refused keys whose request still runs
        self._urgent = False
        self._closed = False
        self._closing = threading.Event()  # cuts a pause between retries short
        self._failing = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, key: str, fields: Snapshot, urgent: bool = False, last: bool = False) -> bool:
        """Merge *fields* into the newest snapshot of *key*; *last* says the
        request ended.  False when *key* is new and the writer is full."""
        with self._lock:
            if key in self._refused:
                if last:
                    del self._refused[key]
                return True
            old = self._known.get(key)
            if old is None and "id" not in fields:
                return True  # a late change to a request already written for good
            if old is None and len(self._known) >= self.limit:
                return False
            self._known[key] = self._dirty[key] = fields if old is None else {**old, **fields}
            self._idle.clear()
            if urgent and not self._urgent:
                self._urgent = True
                self._lock.notify()
        return True

    def pending(self, key: str) -> bool:
        """True while *key* has a snapshot that is not settled yet."""
        with self._lock:
            return key in self._known

    def claimed(self, key: str, timeout: float) -> Optional[bool]:
        """Whether *key*'s claim stands: False once a write of it was refused
        (another request holds the entry), True once one was taken or when
        *key* is not pending; ``None`` when no write of it came back within
        *timeout* seconds (at once while the backend is unreachable)."""
        deadline = time.monotonic() + timeout
        with self._answered:
            while True:
                if key in self._refused:
                    return False
                if key in self._written or key not in self._known:
                    return True
                left = deadline - time.monotonic()
                if self._failing or left <= 0:
                    return None
                self._answered.wait(left)

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything queued now; True when it was written in time."""
        with self._lock:
            self._urgent = True
            self._lock.notify()
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is left and stop the thread, within *timeout* seconds;
        what the backend has not taken by then is dropped (and logged)."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._closing.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self.interval
        while True:
            with self._lock:
                if not self._urgent and not self._closed:
                    self._lock.wait(self.interval)
            try:
                self._poll()
            except Exception:
                log.warning("progress writer: polling the counters failed", exc_info=True)
            with self._lock:
                closing = self._closed  # this round is the last
                batch = list(self._dirty.items())
                self._dirty.clear()
                self._urgent = False
                if not batch:
                    self._idle.set()  # under the lock: a put cannot slip in between
                    if closing:
                        return
                    continue
            try:
                settled = self._flush(batch)
            except Exception as exc:
                if closing:
                    log.warning("progress backend unreachable (%s) at close; %d upload(s) "
                                "unwritten", exc, len(batch))
                    return
                self._requeue(batch)
                if not self._failing:
                    log.warning("progress backend unreachable (%s); keeping the newest "
                                "state of %d upload(s) and retrying", exc, len(batch))
                    self._failing = True
                self._closing.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if self._failing:
                log.warning("progress backend reachable again")
                self._failing = False
            backoff = self.interval
            self._settle(settled)
            if closing:
                return

    def _requeue(self, batch: List[Tuple[str, Snapshot]]) -> None:
        with self._lock:
            for key, snapshot in batch:
                self._dirty.setdefault(key, snapshot)  # a newer one wins

    def _settle(self, outcomes: Dict[str, str]) -> None:
        with self._lock:
            for key, outcome in outcomes.items():
                if outcome == REFUSED:
                    self._dirty.pop(key, None)
                    self._written.pop(key, None)
                    snapshot = self._known.pop(key, None)
                    ended = snapshot is not None and snapshot.get("finished") is not None
                    if not ended and len(self._refused) < self.limit:
                        self._refused[key] = None
                elif outcome == SETTLED and key not in self._dirty:
                    self._known.pop(key, None)
                    self._written.pop(key, None)
                elif key in self._known:
                    self._written[key] = None
            if not self._dirty:
                self._idle.set()
            self._answered.notify_all()
