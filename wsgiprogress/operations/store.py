"""
The operations storage interface
================================

Every part that creates, updates or reads long-running operations — the
runner of both front doors, the application's reports, the status monitor —
meets at :class:`OperationStore`, so a store shared by several processes
(Redis) replaces the in-memory one (:class:`~wsgiprogress.operations.memory.MemoryOperations`)
without touching them.  Every change wakes the waiters of
``operation_key(id)``, so monitors long-poll and stream through the same
:class:`~wsgiprogress.waiters.Waiters` as probes and mailboxes.

.. code-block:: python

    op_id = store.create()                    # None when full
    store.report(op_id, Steps(1, 3, "Knitting sweaters"))
    store.finish(op_id, 200, KeptResponse("200 OK", headers, body))
    store.get(op_id).to_dict()["state"]       # "done"
"""
from __future__ import annotations

import abc
import secrets
from typing import Callable, Optional

from ..errors import ProgressError
from ..waiters import Waiters
from .kept import KeptResponse
from .record import OperationRecord, Steps

#: Random bytes in an operation id: 192 bits, far above the 128 a capability needs.
ID_BYTES = 24


def new_operation_id() -> str:
    """A fresh monitor id: 32 URL-safe characters, 192 random bits."""
    return secrets.token_urlsafe(ID_BYTES)


def operation_key(op_id: str) -> str:
    """The :class:`~wsgiprogress.waiters.Waiters` key woken when *op_id* changes
    (apart from progress IDs and mailbox names)."""
    return "operation:" + op_id


class OperationsUnavailable(ProgressError):
    """The store cannot answer now (its backend is down): the monitor answers 503."""


class OperationStore(abc.ABC):
    """Where operations live.  Implementations must be thread-safe.

    :param waiters: woken with :func:`operation_key` on every change.
    :param clock: epoch seconds; tests pass a fake one.
    """

    #: True for a store other processes read (Redis).
    shared = False

    def __init__(self, waiters: Optional[Waiters], clock: Callable[[], float]) -> None:
        self.waiters = waiters if waiters is not None else Waiters()
        self.clock = clock

    @abc.abstractmethod
    def create(self) -> Optional[str]:
        """A new ``running`` operation's id; ``None`` when the store is full."""

    @abc.abstractmethod
    def report(self, op_id: str, steps: Steps) -> None:
        """The application got this far; ignored for an unknown or finished id."""

    @abc.abstractmethod
    def finish(self, op_id: str, status: Optional[int],
               response: Optional[KeptResponse]) -> None:
        """The application ended with *status* (``None``: it failed, state
        ``error``); *response* is kept for the monitor when given and within
        the bounds.  The operation expires ``operations_ttl`` seconds later."""

    @abc.abstractmethod
    def cancel(self, op_id: str) -> Optional[OperationRecord]:
        """Set the cancellation flag of a running operation (state
        ``cancelled`` from then on); returns the record after, ``None`` when unknown."""

    @abc.abstractmethod
    def is_cancelled(self, op_id: str) -> bool:
        """True once :meth:`cancel` ran for *op_id*."""

    @abc.abstractmethod
    def get(self, op_id: str) -> Optional[OperationRecord]:
        """A copy of the record, or ``None`` when unknown or expired."""

    @abc.abstractmethod
    def response(self, op_id: str) -> Optional[KeptResponse]:
        """The kept final response, or ``None``."""

    @abc.abstractmethod
    def forget(self, op_id: str) -> bool:
        """Drop the operation and its kept response; False when unknown."""

    def close(self) -> None:  # noqa: B027 (a default, not a stub)
        """Release what the store holds; the default holds nothing."""

    def _wake(self, op_id: str) -> None:
        self.waiters.wake(operation_key(op_id))
