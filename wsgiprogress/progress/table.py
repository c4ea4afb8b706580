"""
In-memory progress table
========================

:class:`ProgressTable` is the default :class:`~wsgiprogress.progress.store.ProgressStore`:
one dictionary behind one lock, shared by every thread of a process.  Finished
entries expire lazily ``ttl`` seconds after they end; the number of entries is
bounded by ``capacity``.  A running entry is read from its tracker's live
counters.

.. code-block:: python

    from wsgiprogress import ProgressMiddleware, ProgressTable

    table = ProgressTable(ttl=60, capacity=5000)
    app = ProgressMiddleware(app, table=table)

Tests pass a fake ``clock`` to control expiry.
"""
from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional

from ..settings import STORE_SETTINGS, resolve
from ..waiters import Waiters
from .entry import STARTING, UPLOADING, ProgressEntry
from .ratelimit import RateLimitedWarning
from .store import ProgressStore

_SETTINGS = tuple(s for s in STORE_SETTINGS if s.name in ("ttl", "capacity"))


class _Record(ProgressEntry):
    # the stored entry and who may change it: one object an entry, not two
    __slots__ = ("token", "owner")
    token: int
    owner: Optional[str]


class ProgressTable(ProgressStore):
    """Progress entries of one process, in memory.

    :param settings: ``ttl``, seconds a finished entry stays visible (``0``
        hides it at once), and ``capacity``, the most entries held.  When
        full, the oldest finished entry makes room; when every entry is still
        running, new requests are not tracked (they still run) and a warning
        is logged.  Defaults and checks: :mod:`wsgiprogress.settings`.
    :param clock: returns epoch seconds; tests pass a fake one.
    :param waiters: the process's waiters, woken when an entry changes (for
        probes with ``wait=`` and progress streams).
    :raises ConfigurationError: for a bad ``ttl`` or ``capacity``.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 waiters: Optional[Waiters] = None, **settings: Any) -> None:
        options = resolve(_SETTINGS, settings)
        self.ttl: float = options["ttl"]
        self.capacity: int = options["capacity"]
        super().__init__(clock, waiters)
        self._lock = threading.Lock()
        self._records: Dict[str, _Record] = {}
        # finished IDs in the order they expire (ttl is the same for all)
        self._expiries: "collections.OrderedDict[str, float]" = collections.OrderedDict()
        # no entry expires before this: begin and finish look at expiries only then
        self._due = math.inf
        self._tokens = itertools.count(1)
        self._full_warning = RateLimitedWarning(
            "progress table full (%d running requests); request untracked; raise capacity",
            clock=clock)

    def begin(self, progress_id: str, size: Optional[int], *, owner: Optional[str] = None,
              received: int = 0) -> Optional[int]:
        now = self.clock()
        # made before the lock is taken: its holders only look, insert and change fields
        token = next(self._tokens)
        fresh = _Record(progress_id, UPLOADING if received else STARTING, received, size,
                        started=now)
        fresh.token, fresh.owner = token, owner
        full = False
        with self._lock:
            if now >= self._due:
                self._expire(now)
            record = self._records.get(progress_id)
            # one process: its running trackers are in ``live`` (track refuses
            # those), so a running entry of the same owner was handed over
            duplicate = record is not None and record.running and (
                owner is None or record.owner != owner)
            if not duplicate:
                if record is not None:  # ended or taken over: fresh, as the newest
                    self._expiries.pop(progress_id, None)
                    del self._records[progress_id]
                elif len(self._records) >= self.capacity and not self._expiries:
                    full = True
                elif len(self._records) >= self.capacity:
                    oldest, _ = self._expiries.popitem(last=False)
                    del self._records[oldest]
                if not full:
                    self._records[progress_id] = fresh
        # warned outside the lock, and rate-limited: any client can cause these
        if duplicate:
            self.duplicate_warning.warn(progress_id)
            return None
        if full:
            self._full_warning.warn(self.capacity)
            return None
        self.waiters.wake(progress_id)
        return token

    def update(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        with self._lock:
            record = self._records.get(progress_id)
            if record is None or record.token != token or not record.running:
                return
            _assign(record, fields)
        self.waiters.wake(progress_id)

    def finish(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        now = self.clock()
        with self._lock:  # entries are changed and copied only under it
            record = self._records.get(progress_id)
            if record is None or record.token != token or not record.running:
                return
            _assign(record, fields)
            expiry = self._expiries[progress_id] = now + self.ttl
            if expiry < self._due:
                self._due = expiry
            if now >= self._due:
                self._expire(now)
        self.waiters.wake(progress_id)

    def get(self, progress_id: str) -> Optional[ProgressEntry]:
        now = self.clock()
        with self._lock:
            self._expire(now)
            record = self._records.get(progress_id)
            return None if record is None else self._current(record)

    def counts(self) -> Dict[str, int]:
        now = self.clock()
        with self._lock:
            self._expire(now)
            finished = len(self._expiries)
            return {"running": len(self._records) - finished, "finished": finished}

    def recent(self, limit: int = 100) -> List[ProgressEntry]:
        now = self.clock()
        with self._lock:  # O(limit): records are kept in the order they began
            self._expire(now)
            newest = itertools.islice(reversed(self._records.values()), max(0, limit))
            return [self._current(record) for record in newest]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def _current(self, record: _Record) -> ProgressEntry:
        # a running request's entry holds its last state; its counters are live
        if record.running:
            tracker = self.live.get(record.id)
            if tracker is not None and tracker.token == record.token and not tracker.finished:
                return tracker.entry(record.started)
        return record.copy()

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries:
            progress_id, when = next(iter(expiries.items()))
            if when > now:
                self._due = when
                return
            del expiries[progress_id]
            del self._records[progress_id]
        self._due = math.inf


def _assign(entry: ProgressEntry, fields: Mapping[str, Any]) -> None:
    for name, value in fields.items():
        setattr(entry, name, value)
