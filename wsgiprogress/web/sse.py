"""
Server-sent events
==================

Formatting of ``text/event-stream`` fields (WHATWG HTML §9.2).

.. code-block:: python

    event(data='{"text": "hi"}', id=7)   # b'id: 7\\ndata: {"text": "hi"}\\n\\n'
"""
from __future__ import annotations

from typing import Optional

CONTENT_TYPE = "text/event-stream; charset=utf-8"


def event(data: str, id: Optional[int] = None, name: Optional[str] = None) -> bytes:
    """One event; multi-line *data* becomes several ``data:`` lines."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if name is not None:
        lines.append(f"event: {name}")
    lines.extend("data: " + line for line in data.replace("\r\n", "\n").replace("\r", "\n")
                 .split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str) -> bytes:
    """A comment line: keeps idle connections open and flushes headers."""
    return f": {text}\n\n".encode("utf-8")


def retry(milliseconds: int) -> bytes:
    """The reconnection delay hint."""
    return f"retry: {int(milliseconds)}\n\n".encode("ascii")
