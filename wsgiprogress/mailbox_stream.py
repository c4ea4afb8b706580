"""
Mailbox event stream
====================

:class:`MailboxStream` streams one mailbox as server-sent events: every
message with its ``id:``, and a ``gap`` event when messages after the
client's cursor were dropped or the cursor is unknown.  It ends after
``sse_max_duration``; the browser reconnects with ``Last-Event-ID``.
"""
from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, List, Optional

from . import sse
from .streams import EventStream

if TYPE_CHECKING:
    from .mailbox_app import MailboxApp
    from .waiters import ClientWatch


class MailboxStream(EventStream):
    """The SSE body for mailbox *name*, starting after *after*."""

    def __init__(self, app: MailboxApp, name: str, after: Optional[int],
                 event: threading.Event, client: ClientWatch) -> None:
        super().__init__(app.store.waiters, name, event, client,
                         keepalive=app.sse_keepalive, retry=app.sse_retry,
                         max_duration=app.sse_max_duration)
        self.app = app
        self.name = name
        self.cursor = after

    def collect(self) -> List[bytes]:
        result = self.app.store.read(self.name, self.cursor)
        events = []
        if result.unknown_cursor or result.dropped:
            gap = ({"unknown_cursor": True} if result.unknown_cursor
                   else {"dropped": result.dropped})
            events.append(sse.event(json.dumps(gap), name="gap"))
        events.extend(sse.event(m.data, id=m.id) for m in result.messages)
        self.app.count_delivered(len(result.messages))
        self.cursor = result.cursor
        return events
