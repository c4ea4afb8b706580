"""
Which requests are tracked
==========================

:class:`TrackingRules` is the one place that decides whether a request is
tracked: its method is one of ``methods``, it is not the probe, it carries a
valid progress ID (header first, then query) of at least ``min_id_length``
characters and the store accepts it.  The
middleware asks with values from the environ, the server's parser hook with
values from the request head, on waitress's I/O thread.

.. code-block:: python

    rules = TrackingRules(store, methods=frozenset({"POST"}), probe_path="/progress")
    # or with every tracking setting a front door resolved:
    rules = TrackingRules.from_options(front.store, front.options, front.progress_url)
    tracker = rules.track("POST", "/upload", header_id, query, size)
    if tracker is None:
        ...                     # untracked: the request still runs
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, FrozenSet, Mapping, Optional

from ..settings import default
from .files import FileProgress, preload_decoder
from .ids import IdFinder, is_valid_id
from .ratelimit import RateLimitedWarning

if TYPE_CHECKING:
    from .store import ProgressStore
    from .tracker import Tracker

log = logging.getLogger("wsgiprogress")
_NO_FILES = RateLimitedWarning("cannot list the files of %r; its progress shows the whole body")


class TrackingRules:
    """The store and the rules that pick the tracked requests.

    :param store: where progress goes.
    :param methods: HTTP methods whose requests are tracked.
    :param probe_path: the probe's path as the caller sees it; requests for it
        are never tracked.
    :param id_name: the header and query parameter carrying the ID.
    :param debug: log every tracked request and every refused ID.
    :param min_id_length: the shortest ID tracked; shorter ones run untracked.
    :param per_file: list the files of a ``multipart/form-data`` body
        (:mod:`wsgiprogress.progress.files`; needs ``wsgiprogress[multipart]``).
    """

    def __init__(self, store: ProgressStore, methods: FrozenSet[str], probe_path: str,
                 id_name: str = default("id_name"), debug: bool = False, *,
                 min_id_length: int = default("min_id_length"),
                 per_file: bool = default("per_file")) -> None:
        self.store = store
        self.methods = methods
        self.probe_path = probe_path
        self.finder = IdFinder(id_name)
        self.debug = debug
        self.min_id_length = min_id_length
        self.per_file = per_file
        if per_file:
            preload_decoder()

    @classmethod
    def from_options(cls, store: ProgressStore, options: Mapping[str, Any],
                     probe_path: str) -> TrackingRules:
        """The rules the resolved settings *options* give (``methods``,
        ``id_name``, ``debug``, ``min_id_length``, ``per_file``), for the
        probe at *probe_path* as the caller sees it."""
        return cls(store, frozenset(options["methods"]), probe_path, options["id_name"],
                   options["debug"], min_id_length=options["min_id_length"],
                   per_file=options["per_file"])

    def wants(self, method: str) -> bool:
        """True when requests with *method* may be tracked: the check that
        turns most requests away, before anything else is looked at."""
        return method in self.methods

    def track(self, method: str, path: str, header_id: Optional[str], query: Optional[str],
              size: Optional[int], content_type: Optional[str] = None) -> Optional[Tracker]:
        """A tracker for a request whose head just arrived, or ``None``.

        :param header_id: the ID header's value, ``None`` when absent.
        :param size: the declared body size, ``None`` when unknown (chunked).
        :param content_type: the request's Content-Type, for ``per_file``.

        O(1) apart from the store call: on our server this runs on the I/O thread.
        """
        if method not in self.methods or path == self.probe_path:
            return None
        progress_id = self.finder.find_in(header_id, query)
        if progress_id is None:
            return None
        if not is_valid_id(progress_id, self.min_id_length):
            if self.debug:
                log.info("invalid or short progress ID %r; request untracked",
                         progress_id[:200])
            return None
        tracker = self.store.track(progress_id, size)
        if tracker is not None and self.per_file:
            try:
                tracker.files = FileProgress.for_content_type(content_type)
            except Exception:  # tracking never breaks the request: listed as a whole
                _NO_FILES.warn(progress_id, exc_info=True)
        if tracker is not None and self.debug:
            log.info("tracking %s: %s %s, %s bytes", progress_id, method, path, size)
        return tracker
