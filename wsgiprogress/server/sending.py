"""
Send windows
============

A :class:`SendWindow` is the stretch of a connection's output that one
tracked response occupies: the channel's output is FIFO and one request is
serviced at a time, so a request owns the bytes between the output position
when its task started and the position when it ended.  The task opens and
closes it; the channel counts what the kernel accepted against it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ..progress.tracker import Tracker


class SendWindow:
    """The output positions one tracked response occupies on its channel."""

    __slots__ = ("tracker", "start", "end")

    def __init__(self, tracker: Tracker, start: int) -> None:
        self.tracker = tracker
        self.start = start
        self.end: Optional[int] = None
