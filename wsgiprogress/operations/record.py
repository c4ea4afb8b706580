"""
Operation records
=================

An :class:`OperationRecord` is what a status monitor shows of one
long-running operation: its state, the :class:`Steps` the application
reported, when it started and last changed, and once finished the final
status.  Stores hand out copies.

.. code-block:: python

    record.to_dict()
    # {"id": "…", "state": "running", "steps": {"done": 1, "total": 3,
    #  "label": "Knitting sweaters"}, "started": 1700000000.0, "updated": …}
    progress_header(record.steps)      # '1/3 "Knitting sweaters"'
"""
from __future__ import annotations

import re
from typing import Any, Dict, NamedTuple, Optional
from urllib.parse import quote

#: The application is still running.
RUNNING = "running"
#: The application answered; its final response may be kept.
DONE = "done"
#: A client cancelled it (``DELETE`` on the monitor); stays so until it expires.
CANCELLED = "cancelled"
#: The application raised, or ended without a response.
ERROR = "error"
STATES = (RUNNING, DONE, CANCELLED, ERROR)

#: The longest label kept, in characters.
MAX_LABEL = 200
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_SAFE = re.compile(r"[ !#-\[\]-~]*\Z")  # qdtext of a quoted-string, ASCII only


class Steps(NamedTuple):
    """How far the application got: *done* of *total* (``None``: unknown), *label*."""

    done: int = 0
    total: Optional[int] = None
    label: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"done": self.done, "total": self.total, "label": self.label}

    @classmethod
    def checked(cls, done: int, total: Optional[int] = None, label: Optional[str] = None,
                before: Optional[Steps] = None) -> Steps:
        """Steps from an application's report, made to follow the ``Progress``
        rules: the count never decreases (below *before*'s), the total is
        never below the count, the label is printable and at most
        :data:`MAX_LABEL` characters.

        :raises TypeError: for a count or total that is no whole number.
        :raises ValueError: for a negative one.
        """
        for name, value in (("done", done), ("total", total)):
            if value is None and name == "total":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"report(): {name} must be a whole number, not {value!r}")
            if value < 0:
                raise ValueError(f"report(): {name} must be >= 0, not {value}")
        if before is not None:
            done = max(done, before.done)
        if total is not None:
            total = max(total, done)
        if label is not None:
            label = _UNPRINTABLE.sub(" ", str(label))[:MAX_LABEL]
        return cls(done, total, label)


#: Nothing reported yet.
NO_STEPS = Steps()


def progress_header(steps: Steps) -> str:
    """The ``Progress`` header of *steps* (draft-wright-http-progress):
    ``1/3 "Knitting sweaters"``; an unknown total leaves the denominator
    out (``1/``); a label that is not plain ASCII is an RFC 8187 ext-value."""
    value = f"{steps.done}/{'' if steps.total is None else steps.total}"
    label = steps.label
    if label:
        if _TOKEN_SAFE.match(label):
            value += f' "{label}"'
        else:
            value += " UTF-8''" + quote(label, safe="!#$&+-.^_`|~")
    return value


class OperationRecord:
    """One operation as its monitor shows it.

    :param id: the monitor's id (at least 128 random bits).
    :param state: ``running``, ``done``, ``cancelled`` or ``error``.
    :param steps: what the application reported last.
    :param started: when the operation began (epoch seconds).
    :param updated: when it last changed.
    :param finished: when the application ended, else ``None``.
    :param status: the final response's status code, once finished.
    :param kept: True when the final response is kept for its location.
    :param dropped: True when the final response was too large to keep.
    """

    __slots__ = ("id", "state", "steps", "started", "updated", "finished", "status",
                 "kept", "dropped")

    def __init__(self, id: str, state: str = RUNNING, steps: Steps = NO_STEPS,
                 started: float = 0.0, updated: float = 0.0,
                 finished: Optional[float] = None, status: Optional[int] = None,
                 kept: bool = False, dropped: bool = False) -> None:
        self.id = id
        self.state = state
        self.steps = steps
        self.started = started
        self.updated = updated
        self.finished = finished
        self.status = status
        self.kept = kept
        self.dropped = dropped

    @property
    def running(self) -> bool:
        """True until the application has ended (cancelled ones too)."""
        return self.finished is None

    def copy(self) -> OperationRecord:
        return OperationRecord(*(getattr(self, name) for name in self.__slots__))

    def to_dict(self) -> Dict[str, Any]:
        """The monitor's JSON: ``id``, ``state``, ``steps``, ``started``,
        ``updated`` and, once finished, ``status``."""
        data: Dict[str, Any] = {"id": self.id, "state": self.state,
                                "steps": self.steps.to_dict(), "started": self.started,
                                "updated": self.updated}
        if self.finished is not None:
            data["status"] = self.status
        return data

    def to_json_fields(self) -> Dict[str, Any]:
        """Every field, for a store that serializes records."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["steps"] = list(self.steps)
        return data

    @classmethod
    def from_json_fields(cls, data: Dict[str, Any]) -> OperationRecord:
        fields: Dict[str, Any] = {name: data[name] for name in cls.__slots__ if name in data}
        fields["steps"] = Steps(*(data.get("steps") or ()))
        return cls(**fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OperationRecord):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return f"<OperationRecord {self.id[:8]}… {self.state} {self.steps}>"
