"""
What the server's hooks share
=============================

One :class:`ServerTracking` per server holds the store and the rules that
decide which requests are tracked and which are probes; the parser, channel
and task hooks all read it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, FrozenSet, Optional

from ..ids import IdFinder, is_valid_id, query_param

if TYPE_CHECKING:
    from ..store import ProgressStore
    from ..tracker import Tracker

log = logging.getLogger("wsgiprogress")


class ServerTracking:
    """The store and tracking rules of one server.

    :param store: where progress goes.
    :param methods: HTTP methods whose requests are tracked.
    :param probe_path: the probe's path as the parser sees it (``url_prefix``
        included); requests for it are never tracked.
    :param id_name: the header and query parameter carrying the ID.
    :param debug: log every tracked request.
    """

    def __init__(self, store: ProgressStore, methods: FrozenSet[str], probe_path: str,
                 id_name: str, debug: bool) -> None:
        self.store = store
        self.methods = methods
        self.probe_path = probe_path
        self.finder = IdFinder(id_name)
        self.header_key = self.finder.environ_key[len("HTTP_"):]
        self.debug = debug

    def is_probe(self, command: str, path: str, query: str, headers: Dict[str, str]) -> bool:
        """True for a GET or HEAD of the probe that answers at once; probes
        that wait (``wait=``, event streams) run on the application's threads."""
        return (path == self.probe_path and command in ("GET", "HEAD")
                and not (query and (query_param(query, "wait") or
                                    query_param(query, "transport")))
                and "event-stream" not in headers.get("ACCEPT", "").lower())

    def track(self, command: str, path: str, headers: Dict[str, str], query: str,
              size: Optional[int]) -> Optional[Tracker]:
        """A tracker for a request whose headers just arrived, or ``None``.

        O(1) apart from the store call: this runs on waitress's I/O thread.
        """
        if command not in self.methods or path == self.probe_path:
            return None
        progress_id = headers.get(self.header_key)
        if progress_id is None:
            progress_id = query_param(query, self.finder.name_lower) if query else None
            if progress_id is None:
                return None
        progress_id = progress_id.strip()
        if not is_valid_id(progress_id):
            if self.debug:
                log.info("invalid progress ID %r; request untracked", progress_id[:200])
            return None
        tracker = self.store.track(progress_id, size)
        if tracker is not None and self.debug:
            log.info("tracking %s: %s %s, %s bytes", progress_id, command, path, size)
        return tracker
