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
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Union

from ..settings import STORE_SETTINGS, resolve
from ..waiters import Waiters
from .entry import RUNNING_STATES, STARTING, UPLOADING, ProgressEntry
from .ratelimit import RateLimitedWarning
from .store import ProgressStore
from .tracker import Tracker

_SETTINGS = tuple(s for s in STORE_SETTINGS if s.name in ("ttl", "capacity"))


class _Record(ProgressEntry):
    # the stored entry and who may change it: one object an entry, not two
    __slots__ = ("token", "owner")
    token: int
    owner: Optional[str]


#: What the table keeps an ID: a plain request's own tracker (live, then
#: final), or a record (a resumable upload's: handed from request to request).
Record = Union[_Record, Tracker]


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
        self._records: Dict[str, Record] = {}
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
        # made before the lock is taken: its holders only look, insert and change fields
        now = self.clock()
        fresh = _Record(progress_id, UPLOADING if received else STARTING, received, size,
                        started=now)
        fresh.owner = owner
        return self._claim(progress_id, fresh, owner, now)

    def begin_tracking(self, tracker: Tracker, owner: Optional[str],
                       offset: int) -> Optional[Hashable]:
        # a plain request's tracker is its record: no copy made, none kept in step
        # (a table heard as a remote store is, ``shared``, gets copies as one would)
        if owner is not None or offset or self.shared:
            return super().begin_tracking(tracker, owner, offset)
        return self._claim(tracker.id, tracker, None, tracker.started)

    def _claim(self, progress_id: str, fresh: Record, owner: Optional[str],
               now: float) -> Optional[int]:
        token = fresh.token = next(self._tokens)
        full = False
        with self._lock:
            if now >= self._due:
                self._expire(now)
            record = self._records.get(progress_id)
            # one process: its running trackers are in ``live`` (track refuses
            # those), so a running entry of the same owner was handed over
            duplicate = record is not None and record.state in RUNNING_STATES and (
                owner is None or isinstance(record, Tracker) or record.owner != owner)
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
            written = self._assign(progress_id, token, fields)
        if written:
            self.waiters.wake(progress_id)

    def finish(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        with self._lock:  # entries are changed and copied only under it
            written = self._assign(progress_id, token, fields)
            if written:
                self._expires(progress_id)
        if written:
            self.waiters.wake(progress_id)

    def _assign(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> bool:
        # *fields* into the running record *token* owns (under the lock); a
        # tracker kept as its entry is written by nobody but its counting
        record = self._records.get(progress_id)
        if record is None or isinstance(record, Tracker) or record.token != token \
                or not record.running:
            return False
        for name, value in fields.items():
            setattr(record, name, value)
        return True

    def end_tracking(self, tracker: Tracker) -> None:
        with self._lock:
            mine = self._records.get(tracker.id) is tracker
            if mine:
                self._expires(tracker.id)
        if mine:
            self.waiters.wake(tracker.id)
        else:  # its record is a copy (a resumable upload's)
            super().end_tracking(tracker)

    def _expires(self, progress_id: str) -> None:
        # the entry just ended: it expires ttl seconds from now (under the lock)
        now = self.clock()
        expiry = self._expiries[progress_id] = now + self.ttl
        if expiry < self._due:
            self._due = expiry
        if now >= self._due:
            self._expire(now)

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

    def _current(self, record: Record) -> ProgressEntry:
        if isinstance(record, Tracker):  # live counters, or the final ones
            return record.entry()
        # a running upload's record holds its last state; its counters are live
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

