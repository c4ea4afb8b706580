"""
Cursors and gaps
================

How a mailbox reader's position travels on the wire, for every way of
reading a mailbox (long-poll, event stream, Nchan): a cursor is the id of the
last message the client has, and a gap says what it missed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from ..mailbox.store import ReadResult


class BadRequest(ValueError):
    """Answered 400 with the message as the reason."""


def cursor(value: Optional[str], what: str) -> Optional[int]:
    """A message id given as *what*; ``None`` when absent.

    :raises BadRequest: for anything but a whole number.
    """
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest(f"invalid {what}: expected a message id (a whole number)")
    return int(value)


def gap(result: ReadResult) -> Optional[Dict[str, Any]]:
    """What a client missed: ``None``, ``{"dropped": n}`` or ``{"unknown_cursor": true}``."""
    if result.unknown_cursor:
        return {"unknown_cursor": True}
    if result.dropped:
        return {"dropped": result.dropped}
    return None
