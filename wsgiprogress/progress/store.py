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
        store.read("3f2a9c0d1e7b4a55").received    # 512, live
        tracker.finish()

While a request runs in this process, :meth:`ProgressStore.read` answers from
its tracker's live counters; a store hears of state changes only (and a store
that other processes read pulls the counters on its own clock).
"""
from __future__ import annotations

import abc
import logging
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional

from ..errors import ProgressError
from ..waiters import Waiters
from .entry import ProgressEntry
from .ratelimit import RateLimitedWarning
from .tracker import Tracker

log = logging.getLogger("wsgiprogress")


class BackendUnavailable(ProgressError):
    """The store cannot answer now (its backend is down or too slow): the
    probe answers ``unknown`` and says so in a header."""


class ProgressStore(abc.ABC):
    """Where progress entries live.  Implementations must be thread-safe."""

    #: Returns the current time in epoch seconds; injectable for tests.
    clock: Callable[[], float]
    #: Woken with the progress ID whenever an entry changes.
    waiters: Waiters
    #: True for a store other processes read (Redis): it hears of every state
    #: change.  A store of this process only hears of the start and the end;
    #: reads in between come from the live tracker.
    shared = False

    def __init__(self, clock: Callable[[], float], waiters: Optional[Waiters]) -> None:
        self.clock = clock
        self.waiters = waiters if waiters is not None else Waiters()
        #: The trackers of the requests running in this process, by ID.
        self.live: Dict[str, Tracker] = {}
        # warnings any client can cause once a request: rate-limited
        self.duplicate_warning = RateLimitedWarning(
            "progress ID %r is already in use by a running request; this request runs "
            "untracked", clock=clock)
        self.begin_warning = RateLimitedWarning(
            "progress store failed to begin %r; request untracked", clock=clock)
        self.failure_warning = RateLimitedWarning(
            "progress store failed to %s %r; its progress degrades", clock=clock)

    @abc.abstractmethod
    def begin(self, progress_id: str, size: Optional[int], *, owner: Optional[str] = None,
              received: int = 0) -> Optional[Hashable]:
        """Claim *progress_id* for a new request in state ``starting``.

        :param owner: who the claim belongs to beyond this request: the
            requests of one resumable upload (in any process) take a running
            entry of theirs over from each other, once the last one handed it
            over (:meth:`hand_over`) or went silent; ``None``: this request only.
        :param received: the bytes earlier requests brought (``uploading`` when any).
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
        """A copy of the entry, or ``None`` when unknown or expired.

        :raises BackendUnavailable: when a store in another process cannot
            answer within its short deadline.
        """

    @abc.abstractmethod
    def counts(self) -> Dict[str, int]:
        """``{"running": n, "finished": m}`` for operators."""

    @abc.abstractmethod
    def recent(self, limit: int = 100) -> List[ProgressEntry]:
        """Copies of the newest entries, running and not yet expired, newest
        first, at most *limit*: what an operator's dashboard shows."""

    def read(self, progress_id: str) -> Optional[ProgressEntry]:
        """The progress of *progress_id* as it stands: the live counters of
        a request running in this process, else :meth:`get`."""
        tracker = self.running_here(progress_id)
        return self.get(progress_id) if tracker is None else tracker.entry()

    def cancel(self, progress_id: str) -> bool:
        """Cancel the running request of *progress_id*: it ends
        ``error``/``cancelled``; our server closes its connection at once,
        under the middleware the application's next read raises.  True when
        a running request was found here and ended, or (a store shared by
        several processes) the process that runs it was told, which does
        not wait for it to stop (:meth:`running_here` tells the two apart);
        False when unknown or ended."""
        tracker = self.running_here(progress_id)
        return tracker is not None and tracker.cancel()

    def watch(self, progress_id: str) -> None:
        """A client waits for the next change of *progress_id* (register its
        waiter first): counting in this process will wake it."""
        tracker = self.running_here(progress_id)
        if tracker is not None:
            tracker.watch()

    def running_here(self, progress_id: str) -> Optional[Tracker]:
        """The tracker of *progress_id*'s request when it runs in this process
        and its claim stands (:meth:`claim_stands`): its live counters are the entry."""
        tracker = self.live.get(progress_id)
        if tracker is None or tracker.finished or not self.claim_stands(tracker):
            return None
        return tracker

    def claim_stands(self, tracker: Tracker) -> bool:
        """True when *tracker*'s claim on its ID stands.  Always here: a store
        of this process answers a claim at once; a store that other processes
        share may refuse one after :meth:`begin` returned (another process's
        request holds the ID), and says so here."""
        return True

    def release(self, tracker: Tracker) -> None:
        """*tracker*'s request ended: its entry holds the final counters."""
        if self.live.get(tracker.id) is tracker:
            del self.live[tracker.id]

    def hand_over(self, tracker: Tracker) -> None:
        """*tracker*'s request ended, its upload goes on (:meth:`Tracker.hand_over`):
        the entry keeps its counters and stays running, for the next request
        with the same owner to take over (:meth:`begin`); reads come from the store."""
        try:
            self.update(tracker.id, tracker.token, tracker.fields())
        except Exception:
            self.failure_warning.warn("hand over", tracker.id, exc_info=True)
        self.release(tracker)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every change made so far is readable by :meth:`get`
        (stores that write in the background); True when it is."""
        return True

    def close(self) -> None:  # noqa: B027 (a default, not a stub)
        """Write what is pending and release resources; the default has none."""

    def track(self, progress_id: str, size: Optional[int], owner: Optional[str] = None,
              offset: int = 0) -> Optional[Tracker]:
        """Begin tracking and return the request's :class:`Tracker`, its
        counts from *offset* on (*owner* and *offset*: :meth:`begin`).

        Never raises: a store failure leaves the request untracked, with a log
        line, because tracking must never break the request.  So does an ID
        that a request running in this process holds (a store shared with
        other processes refuses it only when its write comes back).
        """
        running = self.live.get(progress_id)
        if running is not None and not running.finished:
            self.duplicate_warning.warn(progress_id)
            return None
        tracker = Tracker(self, progress_id, None, size)
        try:
            token = self.begin_tracking(tracker, owner, offset)
        except Exception:
            self.begin_warning.warn(progress_id, exc_info=True)
            return None
        if token is None:
            return None
        tracker.token = token
        if offset:
            tracker.resume_at(offset)
        self.live[progress_id] = tracker
        if progress_id in self.waiters:  # a client waits for it to start
            tracker.watch()
        return tracker

    def begin_tracking(self, tracker: Tracker, owner: Optional[str],
                       offset: int) -> Optional[Hashable]:
        """Claim *tracker*'s ID for its request (:meth:`begin`, which a
        store may do more cheaply for a tracker of this process); the token,
        or ``None`` when refused."""
        if owner is None and not offset:  # the call every store has always taken
            return self.begin(tracker.id, tracker.size)
        return self.begin(tracker.id, tracker.size, owner=owner, received=offset)

    def end_tracking(self, tracker: Tracker) -> None:
        """*tracker*'s request ended (:meth:`Tracker.finish`, ``fail``): its
        final fields go to the store (:meth:`finish`); then :meth:`release`."""
        fields = tracker.fields()
        fields["finished"] = tracker.ended
        self.finish(tracker.id, tracker.token, fields)
