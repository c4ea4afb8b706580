"""
Progress entries
================

A :class:`ProgressEntry` is the snapshot of one tracked request that a probe
shows.  Stores hand out copies; nothing outside a store mutates a stored entry.

.. code-block:: python

    entry = table.get("3f2a9c0d1e7b4a55")
    if entry is not None and entry.size:
        print(f"{entry.received / entry.size:.0%}, {entry.eta} s left")
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

#: Never seen, or expired after its time to live.
UNKNOWN = "unknown"
#: Headers seen, no body byte yet.
STARTING = "starting"
#: Body bytes arriving.
UPLOADING = "uploading"
#: Body complete, the application is still running.
PROCESSING = "processing"
#: The response ended with a status below 400.
DONE = "done"
#: The request failed; ``reason`` says how.
ERROR = "error"

RUNNING_STATES = frozenset((STARTING, UPLOADING, PROCESSING))

#: ``reason`` values of the :data:`ERROR` state.
TOO_LARGE = "too_large"
ABORTED = "aborted"
APP_ERROR = "app_error"
HTTP_ERROR = "http_error"
#: Cancelled while it ran (``DELETE`` on the probe, ``store.cancel``).
CANCELLED = "cancelled"


class ProgressEntry:
    """The progress of one request.

    :param id: the client's progress ID.
    :param state: one of ``starting``, ``uploading``, ``processing``, ``done``,
        ``error`` (``unknown`` is what a probe shows for a missing entry).
    :param received: request body bytes received so far.
    :param size: the declared request body size, ``None`` when unknown (chunked).
    :param sent: response bytes sent so far.
    :param response_size: the response's Content-Length, else the bytes the
        application has produced so far; ``None`` before the response starts.
    :param status: the HTTP status of the response, once known.
    :param reason: why the request failed (``too_large``, ``aborted``,
        ``app_error``, ``http_error``, ``cancelled``), else ``None``.
    :param started: when tracking began (epoch seconds).
    :param finished: when the request ended (epoch seconds), else ``None``.
    :param speed: smoothed receive speed in bytes per second.
    :param files: with the ``per_file`` setting, the files of a multipart
        form as they arrive (``field_name``, ``filename``, ``content_type``,
        ``received``, ``done``), else ``None``.
    :param steps: the steps the application reported while ``processing``
        (``{"done": 1, "total": 3, "label": "Knitting sweaters"}``), else ``None``.
    """

    __slots__ = (
        "id", "state", "received", "size", "sent", "response_size", "status",
        "reason", "started", "finished", "speed", "files", "steps",
    )

    def __init__(
        self,
        id: str,
        state: str = STARTING,
        received: int = 0,
        size: Optional[int] = None,
        sent: int = 0,
        response_size: Optional[int] = None,
        status: Optional[int] = None,
        reason: Optional[str] = None,
        started: Optional[float] = None,
        finished: Optional[float] = None,
        speed: float = 0.0,
        files: Optional[List[Dict[str, Any]]] = None,
        steps: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.id = id
        self.state = state
        self.received = received
        self.size = size
        self.sent = sent
        self.response_size = response_size
        self.status = status
        self.reason = reason
        self.started = started
        self.finished = finished
        self.speed = speed
        self.files = files
        self.steps = steps

    @property
    def running(self) -> bool:
        """True until the request has ended."""
        return self.state in RUNNING_STATES

    @property
    def eta(self) -> Optional[float]:
        """Seconds until the body is complete; ``None`` when that cannot be known."""
        if self.state in (PROCESSING, DONE):
            return 0.0
        if self.state != UPLOADING or self.size is None or self.speed <= 0:
            return None
        return max(self.size - self.received, 0) / self.speed

    def copy(self) -> ProgressEntry:
        """A detached copy of this entry."""
        clone = ProgressEntry.__new__(ProgressEntry)
        for name in ProgressEntry.__slots__:  # a store's subclass keeps more
            setattr(clone, name, getattr(self, name))
        return clone

    def to_dict(self) -> Dict[str, Any]:
        """Every field and ``eta``, as the native probe shows them; ``files``
        only when files are listed, ``steps`` only once the application
        reported some."""
        data = {name: getattr(self, name) for name in ProgressEntry.__slots__}
        for optional in ("files", "steps"):
            if data[optional] is None:
                del data[optional]
        data["speed"] = round(self.speed, 1)
        eta = self.eta
        data["eta"] = None if eta is None else round(eta, 2)
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProgressEntry):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in ProgressEntry.__slots__)

    def __repr__(self) -> str:
        return (
            f"<ProgressEntry {self.id!r} {self.state} {self.received}/{self.size}"
            f" sent={self.sent} status={self.status} reason={self.reason}>"
        )
