"""
Operations in memory
====================

:class:`MemoryOperations` keeps the operations of one process in one
dictionary behind one lock, as :class:`~wsgiprogress.progress.table.ProgressTable`
keeps progress: at most ``max_operations`` records (the oldest finished make
room; when all run, :meth:`~MemoryOperations.create` says full), finished
ones expire lazily ``operations_ttl`` seconds after they end, and the kept
final responses together hold at most ``max_kept_bytes`` (the oldest make
room; large bodies live in temporary files, see :mod:`~wsgiprogress.operations.kept`).

.. code-block:: python

    store = MemoryOperations(max_operations=1000, operations_ttl=60)

Tests pass a fake ``clock``.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Dict, Optional

from ..settings import OPERATIONS_SETTINGS, resolve
from ..waiters import Waiters
from .kept import KeptResponse
from .record import CANCELLED, DONE, ERROR, RUNNING, OperationRecord, Steps
from .store import OperationStore, new_operation_id

_SETTINGS = tuple(s for s in OPERATIONS_SETTINGS
                  if s.name in ("max_operations", "operations_ttl", "max_kept_bytes"))


class MemoryOperations(OperationStore):
    """Operations of this process.

    :param settings: ``max_operations``, ``operations_ttl`` and
        ``max_kept_bytes`` (:mod:`wsgiprogress.settings`).
    """

    def __init__(self, *, waiters: Optional[Waiters] = None,
                 clock: Callable[[], float] = time.time, **settings: Any) -> None:
        options = resolve(_SETTINGS, settings)
        super().__init__(waiters, clock)
        self.capacity: int = options["max_operations"]
        self.ttl: float = options["operations_ttl"]
        self.max_kept_bytes: int = options["max_kept_bytes"]
        self._lock = threading.Lock()
        self._records: Dict[str, OperationRecord] = {}
        self._responses: Dict[str, KeptResponse] = {}
        self.kept_bytes = 0
        # finished ids in the order they expire (one ttl for all)
        self._expiries: "collections.OrderedDict[str, float]" = collections.OrderedDict()

    def create(self) -> Optional[str]:
        op_id = new_operation_id()
        now = self.clock()
        with self._lock:
            self._expire(now)
            if len(self._records) >= self.capacity:
                if not self._expiries:
                    return None  # every one still runs
                self._drop(next(iter(self._expiries)))
            self._records[op_id] = OperationRecord(op_id, RUNNING, Steps(), now, now)
        return op_id

    def report(self, op_id: str, steps: Steps) -> None:
        with self._lock:
            record = self._records.get(op_id)
            if record is None or not record.running or record.steps == steps:
                return
            record.steps = steps
            record.updated = self.clock()
        self._wake(op_id)

    def finish(self, op_id: str, status: Optional[int],
               response: Optional[KeptResponse]) -> None:
        now = self.clock()
        with self._lock:
            record = self._records.get(op_id)
            if record is None or not record.running:
                keep = False
            else:
                record.finished = record.updated = now
                record.status = status
                if record.state != CANCELLED:
                    record.state = DONE if status is not None else ERROR
                keep = response is not None and record.state == DONE \
                    and not response.body.dropped and self._room(response.body.size)
                if keep:
                    self._responses[op_id] = response  # type: ignore[assignment]
                    self.kept_bytes += response.body.size  # type: ignore[union-attr]
                record.kept = keep
                record.dropped = response is not None and record.state == DONE and not keep
                self._expiries[op_id] = now + self.ttl
        if not keep and response is not None:
            response.body.close()
        self._wake(op_id)

    def _room(self, size: int) -> bool:
        """Make room for *size* kept bytes, dropping the oldest kept
        responses; False when it cannot be made.  Call with the lock held."""
        if size > self.max_kept_bytes:
            return False
        for op_id in list(self._expiries):
            if self.kept_bytes + size <= self.max_kept_bytes:
                break
            response = self._responses.pop(op_id, None)
            if response is not None:
                self.kept_bytes -= response.body.size
                self._records[op_id].kept = False
                self._records[op_id].dropped = True
                response.body.close()
        return self.kept_bytes + size <= self.max_kept_bytes

    def cancel(self, op_id: str) -> Optional[OperationRecord]:
        with self._lock:
            self._expire(self.clock())
            record = self._records.get(op_id)
            if record is None:
                return None
            changed = record.running and record.state != CANCELLED
            if changed:
                record.state = CANCELLED
                record.updated = self.clock()
            copy = record.copy()
        if changed:
            self._wake(op_id)
        return copy

    def is_cancelled(self, op_id: str) -> bool:
        record = self._records.get(op_id)  # one dict lookup: applications ask often
        return record is not None and record.state == CANCELLED

    def get(self, op_id: str) -> Optional[OperationRecord]:
        with self._lock:
            self._expire(self.clock())
            record = self._records.get(op_id)
            return None if record is None else record.copy()

    def response(self, op_id: str) -> Optional[KeptResponse]:
        with self._lock:
            self._expire(self.clock())
            return self._responses.get(op_id)

    def forget(self, op_id: str) -> bool:
        with self._lock:
            known = op_id in self._records
            self._drop(op_id)
        if known:
            self._wake(op_id)
        return known

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def close(self) -> None:
        with self._lock:
            for op_id in list(self._responses):
                self._drop(op_id)

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries:
            op_id, at = next(iter(expiries.items()))
            if at > now:
                return
            self._drop(op_id)

    def _drop(self, op_id: str) -> None:
        self._records.pop(op_id, None)
        self._expiries.pop(op_id, None)
        response = self._responses.pop(op_id, None)
        if response is not None:
            self.kept_bytes -= response.body.size
            response.body.close()
