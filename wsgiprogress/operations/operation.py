"""
The application's handle
========================

With operations on, every request the application sees has an
:class:`Operation` in ``environ["wsgiprogress.operation"]``, whether or not
the client asked for a monitor, so the application never branches on it:

.. code-block:: python

    def convert(environ, start_response):
        operation = environ["wsgiprogress.operation"]
        for done, sheet in enumerate(sheets):
            if operation.cancelled:          # DELETE on the monitor
                break
            knit(sheet)
            operation.report(done + 1, len(sheets), "Knitting sweaters")

or, without looking the key up, :func:`report` (``wsgiprogress.report``).
A report reaches the request's probe (state ``processing`` with ``steps``,
after a ``202 Accepted`` too: the probe ends when the application does), its
status monitor when it has one, and a ``102 Processing`` when the client
asked for those.  Reporting never raises for the store's sake: a store that
fails is logged, rate-limited.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional

from ..keys import OPERATION, TRACKER
from ..progress.ratelimit import RateLimitedWarning
from .record import Steps

if TYPE_CHECKING:
    from ..progress.tracker import Tracker
    from .store import OperationStore

#: Seconds a shared store's cancellation flag is trusted before it is read again.
CANCEL_CHECK_INTERVAL = 0.25

_STORE_FAILED = RateLimitedWarning("operation store failed to %s %r; its monitor degrades")

#: Called with the new steps after each report (the 102 Processing sender).
Listener = Callable[[Steps], None]


class Operation:
    """One request's long-running work, as the application sees it.

    :param store: where its monitor lives; ``None`` when it has none.
    :param op_id: the monitor's id.
    :param tracker: the request's progress tracker, if tracked.
    """

    def __init__(self, store: Optional[OperationStore] = None, op_id: Optional[str] = None,
                 tracker: Optional[Tracker] = None) -> None:
        self.store = store
        self.id = op_id
        self.tracker = tracker
        self.steps = Steps()
        self.listeners: List[Listener] = []
        self._cancelled = False
        self._checked_at = 0.0

    @property
    def cancelled(self) -> bool:
        """True once a client cancelled the operation (``DELETE`` on its monitor)."""
        if self._cancelled or self.store is None or self.id is None:
            return self._cancelled
        now = time.monotonic()
        if self.store.shared and now - self._checked_at < CANCEL_CHECK_INTERVAL:
            return False
        self._checked_at = now
        try:
            self._cancelled = self.store.is_cancelled(self.id)
        except Exception:
            _STORE_FAILED.warn("read", self.id, exc_info=True)
        return self._cancelled

    def report(self, done: int, total: Optional[int] = None,
               label: Optional[str] = None) -> None:
        """The application finished *done* of *total* steps (``None``: not
        known yet), now doing *label*.  The count never goes back (a smaller
        one is raised to the last), the total never below it.

        :raises TypeError: for a count or total that is no whole number.
        :raises ValueError: for a negative one.
        """
        steps = self.steps = Steps.checked(done, total, label, self.steps)
        if self.tracker is not None:
            self.tracker.report_steps(steps.to_dict())
        if self.store is not None and self.id is not None:
            try:
                self.store.report(self.id, steps)
            except Exception:
                _STORE_FAILED.warn("report", self.id, exc_info=True)
        for listener in self.listeners:
            listener(steps)

    def cancel(self) -> None:
        """Set the cancellation flag (the request's probe got ``DELETE``
        after its ``202 Accepted``)."""
        self._cancelled = True
        if self.store is not None and self.id is not None:
            try:
                self.store.cancel(self.id)
            except Exception:
                _STORE_FAILED.warn("cancel", self.id, exc_info=True)

    def detach(self) -> None:
        """The client was answered ``202 Accepted``: the request's probe
        follows the application from now on (state ``processing``, the
        steps) until :meth:`ended`, and a cancel there cancels this."""
        if self.tracker is not None:
            self.tracker.detach(self.cancel)

    def ended(self, status: Optional[int]) -> None:
        """The application ended with *status* (``None``: it failed): a
        detached request's probe ends with it, ``cancelled`` when it was."""
        tracker = self.tracker
        if tracker is not None and tracker.detached:
            self._checked_at = 0.0  # the flag as it is now, not a moment ago
            tracker.settle(status, self.cancelled)


def report(environ: Mapping[str, Any], done: int, total: Optional[int] = None,
           label: Optional[str] = None) -> None:
    """Report the request's progress: ``environ["wsgiprogress.operation"].report``
    when operations are on; otherwise its probe still shows the steps.

    .. code-block:: python

        wsgiprogress.report(environ, 1, 3, "Knitting sweaters")
    """
    operation = environ.get(OPERATION)
    if operation is None:
        operation = Operation(tracker=environ.get(TRACKER))
    operation.report(done, total, label)
