"""
Request parser hook
===================

:class:`ProgressParser` is waitress's request parser that also reports body
bytes *as they arrive*, on waitress's I/O thread, before the application is
called.  Its work per ``recv`` is O(1); the tracker throttles what it
publishes.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from waitress.parser import HTTPRequestParser

from ..entry import ABORTED, HTTP_ERROR, TOO_LARGE

if TYPE_CHECKING:
    from ..tracker import Tracker
    from .tracking import ServerTracking


log = logging.getLogger("wsgiprogress")

class ProgressParser(HTTPRequestParser):  # type: ignore[misc]
    """Parses one request and feeds its :class:`~wsgiprogress.tracker.Tracker`.

    Made per request by :class:`~wsgiprogress.server.channel.ProgressChannel`
    as ``ProgressParser(adj, tracking)``.
    """

    tracker: Optional[Tracker] = None
    #: True once the headers were inspected (tracking decided, probe or not).
    inspected = False
    #: True for a probe request, which the server answers on its own threads.
    is_probe = False
    #: True once a task began to run the application for this request.
    serviced = False

    def __init__(self, adj: Any, tracking: ServerTracking) -> None:
        super().__init__(adj)
        self.tracking = tracking

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if not self.inspected:
            if not self.headers_finished:
                return consumed
            self._inspect()
        tracker = self.tracker
        if tracker is None or tracker.finished:
            return consumed
        body = self.body_rcv
        if body is not None:
            arrived = body.__len__() - tracker.received
            if arrived > 0:
                tracker.add_received(arrived)
        error = self.error
        if error is not None:
            code = error.code
            tracker.fail(TOO_LARGE if code == 413 else HTTP_ERROR, code)
        elif self.completed:
            tracker.body_complete()
        return consumed

    def close(self) -> None:
        super().close()
        tracker = self.tracker
        if tracker is not None and not self.serviced:
            # dropped without a task: the connection went away first
            tracker.fail(ABORTED)

    def _inspect(self) -> None:
        self.inspected = True
        if self.error is not None and self.error.code != 413:
            return  # unreadable headers: waitress answers 400/431/501 untracked
        if self.empty:
            return  # a blank line before a request: waitress skips it
        try:
            self._decide()
        except Exception:  # on the I/O thread: never let tracking drop a connection
            log.warning("could not decide how to track %r; request untracked",
                        getattr(self, "path", None), exc_info=True)
            self.tracker = None

    def _decide(self) -> None:
        command = self.command
        self.is_probe = self.error is None and self.tracking.is_probe(
            command, self.path, self.query, self.headers)
        if self.is_probe:
            return
        size = None if self.chunked else self.content_length
        self.tracker = self.tracking.track(command, self.path, self.headers,
                                           self.query, size)
