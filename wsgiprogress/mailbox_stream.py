"""
Mailbox event stream
====================

:class:`MailboxStream` is the response body of a server-sent-events
subscription to one mailbox: a ``retry:`` hint and a comment at once (waitress
sends the headers only with the first non-empty chunk), then every message as
an event with its ``id:``, a ``gap`` event when messages after the client's
cursor were dropped or the cursor is unknown, and a comment every
``sse_keepalive`` seconds.  It ends after ``sse_max_duration`` (the browser
reconnects with ``Last-Event-ID``) or when the client leaves, and gives its
waiter slot back in :meth:`close` — which the server calls even when it never
iterated.
"""
from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional

from . import sse
from .waiters import WAIT_SLICE

if TYPE_CHECKING:
    from .mailbox_app import MailboxApp


class MailboxStream:
    """The SSE body for mailbox *name*, starting after *after*."""

    def __init__(self, app: MailboxApp, name: str, after: Optional[int],
                 event: threading.Event, client_gone: Optional[Callable[[], bool]]) -> None:
        self.app = app
        self.name = name
        self.cursor = after
        self.event = event
        self.client_gone = client_gone
        self.deadline = time.monotonic() + app.sse_max_duration
        self.pending: List[bytes] = [sse.retry(app.sse_retry) + sse.comment("connected")]
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while not self.pending:
            if self.closed or time.monotonic() >= self.deadline or self._gone():
                raise StopIteration
            self._fill()
        return self.pending.pop(0)

    def _gone(self) -> bool:
        return self.client_gone is not None and self.client_gone()

    def _fill(self) -> None:
        """Queue what the mailbox holds after the cursor, else wait for it."""
        self.event.clear()
        result = self.app.store.read(self.name, self.cursor)
        if result.unknown_cursor or result.dropped:
            gap = ({"unknown_cursor": True} if result.unknown_cursor
                   else {"dropped": result.dropped})
            self.pending.append(sse.event(json.dumps(gap), name="gap"))
        for message in result.messages:
            self.pending.append(sse.event(message.data, id=message.id))
        self.app._count(len(result.messages))
        self.cursor = result.cursor
        if self.pending:
            return
        keepalive_at = time.monotonic() + self.app.sse_keepalive
        while time.monotonic() < min(keepalive_at, self.deadline):
            if self.event.wait(WAIT_SLICE) or self._gone():
                return
        self.pending.append(sse.comment("keepalive"))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.app.store.waiters.unregister(self.name, self.event)
