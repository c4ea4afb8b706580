"""
Progress of resumable uploads
=============================

:class:`UploadProgress` keeps one progress entry per upload from the first
byte of the first request to ``done``, ``received`` growing across
connections: each upload's requests count into a
:class:`~wsgiprogress.progress.tracker.Tracker` claimed with the upload as
its owner (``upload-<id>``) and started at the upload's stored offset.

* **One process** (``memory://``): the tracker lives across requests; the
  server's parser finds it when an append's head arrives.
* **A store several hosts share** (Redis): the tracker is this request's
  only.  When the request ends it is handed over
  (:meth:`~wsgiprogress.progress.tracker.Tracker.hand_over`): the entry stays
  running with its counters and the upload's next request, on any host,
  takes it over; probes everywhere read the store in between.  On our
  server the parser cannot read the upload's record on its I/O thread, so
  :meth:`attach` finds the tracker in the background and offers it to the
  body as it arrives (:meth:`~wsgiprogress.resumable.parts.StoredPart.offer`).

.. code-block:: python

    progress = UploadProgress(store, max_uploads=1000)
    tracker = progress.tracker(environ, upload)   # counts this request's bytes
    ...
    progress.ended(environ)                       # handed over on a shared store
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Dict, Optional

from .. import keys

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ..progress.store import ProgressStore
    from ..progress.tracker import Tracker
    from ..resumable.parts import StoredPart
    from ..resumable.upload import Upload


class UploadProgress:
    """The trackers of resumable uploads in this process.

    :param store: where the progress goes.
    :param max_uploads: the most uploads tracked here at once.
    """

    def __init__(self, store: ProgressStore, max_uploads: int) -> None:
        self.store = store
        self.max_uploads = max_uploads
        self._trackers: Dict[str, Tracker] = {}
        self._lock = threading.Lock()

    def tracker(self, environ: WSGIEnvironment, upload: Upload) -> Optional[Tracker]:
        """The tracker of *upload*'s progress, made (and started at its
        offset) when needed; ``None`` when untracked or when an outer layer
        counts this request already.  On a shared store :meth:`ended` hands
        it over."""
        if keys.TRACKER in environ:
            return None
        tracker = self.track(upload)
        if tracker is not None and self.store.shared:
            environ[keys.UPLOAD_TRACKER] = tracker
        return tracker

    def track(self, upload: Upload) -> Optional[Tracker]:
        """The tracker of *upload*'s progress in this process, made when needed."""
        if upload.progress_id is None:
            return None
        with self._lock:
            tracker = self._trackers.get(upload.id)
            if tracker is not None and not tracker.finished:
                return tracker
            self._trackers.pop(upload.id, None)
            if len(self._trackers) >= self.max_uploads:  # those handed over go first
                self._trackers = {k: t for k, t in self._trackers.items() if not t.finished}
                if len(self._trackers) >= self.max_uploads:
                    return None
            tracker = self._claim(upload)
            if tracker is not None:
                self._trackers[upload.id] = tracker
            return tracker

    def _claim(self, upload: Upload) -> Optional[Tracker]:
        assert upload.progress_id is not None
        return self.store.track(upload.progress_id, upload.length,
                                owner=f"upload-{upload.id}", offset=upload.offset)

    def running(self, upload_id: str) -> Optional[Tracker]:
        """*upload_id*'s tracker when one counts here now (cheap: the I/O thread asks)."""
        tracker = self._trackers.get(upload_id)
        return None if tracker is None or tracker.finished else tracker

    def show(self, upload: Upload) -> None:
        """*upload*'s progress shows its stored bytes (what a broken request
        brought, kept in the background); its next request counts on."""
        tracker = self.track(upload)
        if tracker is not None and self.store.shared:
            tracker.hand_over()

    def attach(self, part: StoredPart, upload: Optional[Upload]) -> None:
        """In the background, on a shared store: offer *part* (an append's
        body arriving) the tracker of *upload* (its record, just read)."""
        if upload is not None and upload.progress_id is not None:
            part.offer(lambda: self.track(upload))

    def forget(self, upload: Upload, reason: Optional[str] = None) -> None:
        """Stop tracking *upload*; *reason* ends its progress as ``error``
        (claimed first when no request of this process counts it)."""
        with self._lock:
            tracker = self._trackers.pop(upload.id, None)
        if reason is None or upload.progress_id is None:
            return
        if tracker is None or tracker.finished:
            tracker = self._claim(upload)
        if tracker is not None:
            tracker.fail(reason)

    def ended(self, environ: WSGIEnvironment) -> None:
        """The request is over: on a shared store its upload's tracker is
        handed over, for the next request (on any host) to count on."""
        tracker = environ.pop(keys.UPLOAD_TRACKER, None)
        if tracker is not None:
            tracker.hand_over()
