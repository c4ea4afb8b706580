"""
Progress event stream
=====================

:class:`ProgressStream` pushes an upload's progress as server-sent events —
one event with the probe's answer each time the entry changes — until the
request is ``done`` or ``error``.

.. code-block:: javascript

    const events = new EventSource("/progress?X-Progress-ID=" + id + "&transport=sse");
    events.onmessage = (e) => show(JSON.parse(e.data));
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, List, Optional

from . import sse
from .entry import DONE, ERROR
from .streams import EventStream

if TYPE_CHECKING:
    from .probe import ProbeQuery, ProgressProbe
    from .waiters import ClientWatch


class ProgressStream(EventStream):
    """The SSE body of a progress subscription."""

    def __init__(self, probe: ProgressProbe, query: ProbeQuery, event: threading.Event,
                 client: ClientWatch) -> None:
        super().__init__(probe.store.waiters, query.progress_id, event, client,
                         keepalive=probe.sse_keepalive, retry=probe.sse_retry,
                         max_duration=probe.sse_max_duration)
        self.probe = probe
        self.query = query._replace(format="json", callback=None)
        self.last: Optional[bytes] = None

    def collect(self) -> List[bytes]:
        entry = self.probe.lookup(self.query.progress_id)
        body = self.probe.render(self.query, entry)
        if body == self.last:
            return []
        self.last = body
        self.over = entry is not None and entry.state in (DONE, ERROR)
        return [sse.event(body.decode("utf-8").strip())]
