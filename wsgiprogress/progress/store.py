"""
The progress storage interface
==============================

Every part of wsgiprogress that reads or writes progress — the counting
middleware, the waitress server hook, the probe — meets at this small
interface, so a store shared by several processes (Redis) can replace the
in-memory :class:`~wsgiprogress.progress.table.ProgressTable` without touching them.

A store keeps one entry per progress ID.  :meth:`ProgressStore.begin` claims an
ID for one request and returns a *token*; only calls carrying that token may
change the entry, so a duplicate or late request can never corrupt it.

.. code-block:: python

    tracker = store.track("3f2a9c0d1e7b4a55", size=1024)
    if tracker is not None:          # None: untracked, the request still runs
        tracker.add_received(512)
        tracker.finish()
"""
from __future__ import annotations

import abc
import logging
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional

from ..waiters import Waiters
from .entry import ProgressEntry
from .tracker import Tracker

log = logging.getLogger("wsgiprogress")


class ProgressStore(abc.ABC):
    """Where progress entries live.  Implementations must be thread-safe."""

    #: Returns the current time in epoch seconds; injectable for tests.
    clock: Callable[[], float]
    #: Woken with the progress ID whenever an entry changes.
    waiters: Waiters

    @abc.abstractmethod
    def begin(self, progress_id: str, size: Optional[int]) -> Optional[Hashable]:
        """Claim *progress_id* for a new request in state ``starting``.

        :returns: a token for :meth:`update` and :meth:`finish`, or ``None`` when
            the ID belongs to a running request or the store is full.  An ID whose
            request has finished is reused and starts fresh.
        """

    @abc.abstractmethod
    def update(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        """Set *fields* of a running entry; ignored unless *token* owns it."""

    @abc.abstractmethod
    def finish(self, progress_id: str, token: Hashable, fields: Mapping[str, Any]) -> None:
        """Set *fields* and end the entry; it expires ``ttl`` seconds later."""

    @abc.abstractmethod
    def get(self, progress_id: str) -> Optional[ProgressEntry]:
        """A copy of the entry, or ``None`` when unknown or expired."""

    @abc.abstractmethod
    def counts(self) -> Dict[str, int]:
        """``{"running": n, "finished": m}`` for operators."""

    @abc.abstractmethod
    def recent(self, limit: int = 100) -> List[ProgressEntry]:
        """Copies of the newest entries, running and not yet expired, newest
        first, at most *limit*: what an operator's dashboard shows."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every change made so far is readable by :meth:`get`
        (stores that write in the background); True when it is."""
        return True

    def close(self) -> None:  # noqa: B027 (a default, not a stub)
        """Write what is pending and release resources; the default has none."""

    def track(self, progress_id: str, size: Optional[int]) -> Optional[Tracker]:
        """Begin tracking and return the request's :class:`Tracker`.

        Never raises: a store failure leaves the request untracked, with a log
        line, because tracking must never break the request.
        """
        try:
            token = self.begin(progress_id, size)
        except Exception:
            log.warning("progress store failed to begin %r; request untracked",
                        progress_id, exc_info=True)
            return None
        if token is None:
            return None
        return Tracker(self, progress_id, token, size)
