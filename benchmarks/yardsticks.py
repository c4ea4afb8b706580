"""
Yardsticks for ``bench_requests.py --decompose``: middlewares that are not
ours, written for speed and thrown away, that show what tracking costs on
waitress before any design of ours is involved.

* :func:`registry`: the least any keeper of progress entries does;
* :func:`leanest`: the least a middleware does and still tracks;
* :func:`featured`: the least a middleware does to give a probe what ours
  shows of a plain tracked request (state, bytes both ways, status, expiry,
  duplicates, capacity, waking waiting clients, cancel, the endpoints'
  paths left alone).

.. code-block:: python

    server = waitress.create_server(featured(app), host="127.0.0.1", port=0)
"""
from __future__ import annotations

import collections
import math
import re
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set

App = Callable[..., Iterable[bytes]]
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}\Z").match


def registry(app: App) -> App:
    """*app* behind the least any keeper of progress entries does: a locked
    dict of IDs, bounded, each entry marked done when the application
    returns (``--decompose``'s yardstick; no feature of ours)."""
    lock = threading.Lock()
    entries: "collections.OrderedDict[str, List[Any]]" = collections.OrderedDict()

    def registered(environ: Dict[str, Any],
                   start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = environ["QUERY_STRING"]
        entry = ["starting", environ.get("CONTENT_LENGTH"), 0, time.time()]
        with lock:
            if len(entries) >= 10_000:
                entries.popitem(last=False)
            entries[query[query.find("=") + 1:]] = entry
        try:
            return app(environ, start_response)
        finally:
            with lock:
                entry[0] = "done"
    return registered


def leanest(app: App) -> App:
    """*app* behind the least a tracking middleware can do and still track:
    find and check the ID, claim it in a locked, bounded dict, count the
    body the application reads, note the status, end the entry in the
    response's ``close`` (``--decompose``'s second yardstick: no feature of
    ours, no response counting, no probe)."""
    lock = threading.Lock()
    entries: "collections.OrderedDict[str, List[Any]]" = collections.OrderedDict()
    valid = _VALID_ID

    class Input:
        __slots__ = ("stream", "entry")

        def __init__(self, stream: Any, entry: List[Any]) -> None:
            self.stream, self.entry = stream, entry

        def read(self, size: int = -1) -> bytes:
            data: bytes = self.stream.read(size)
            self.entry[1] += len(data)
            return data

    class Response:
        __slots__ = ("iterable", "entry")

        def __init__(self, iterable: Iterable[bytes], entry: List[Any]) -> None:
            self.iterable, self.entry = iterable, entry

        def __iter__(self) -> Any:
            return iter(self.iterable)

        def close(self) -> None:
            self.entry[0] = "done"

    def tracking(environ: Dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        at = query.find("X-Progress-ID=")
        if environ["REQUEST_METHOD"] != "POST" or at < 0:
            return app(environ, start_response)
        end = query.find("&", at)
        progress_id = query[at + 14:] if end < 0 else query[at + 14:end]
        if not valid(progress_id):
            return app(environ, start_response)
        entry = ["starting", 0, environ.get("CONTENT_LENGTH"), None]
        with lock:
            if progress_id in entries:
                return app(environ, start_response)
            if len(entries) >= 10_000:
                entries.popitem(last=False)
            entries[progress_id] = entry
        environ["wsgi.input"] = Input(environ["wsgi.input"], entry)

        def noting(status: str, headers: Any, exc_info: Any = None) -> Any:
            entry[3] = status
            return start_response(status, headers, exc_info)
        return Response(app(environ, noting), entry)
    return tracking


def featured(app: App, ttl: float = 60.0, capacity: int = 10_000,
             max_request_size: int = 1 << 40) -> App:
    """*app* behind the least a middleware does to give a probe what ours
    shows of a plain tracked request (``--decompose``'s third yardstick):
    the probe's path and the endpoints' prefixes left alone; the ID from the
    header, else the query (a whole parameter, any case), checked; a claim
    that refuses a running duplicate and, when full, evicts the oldest ended
    entry; entries expire *ttl* seconds after they end; the body counted and
    its end noted (``processing``), reads refused once cancelled; a body
    over *max_request_size* refused; the status and declared length noted;
    the response's bytes counted; the end (``done``, or ``error`` from 400
    or an application that raised) at ``close``; clients waiting for an ID
    woken at each change (a set look-up when nobody waits); the store put
    in the environ for the application."""
    lock = threading.Lock()
    entries: Dict[str, Entry] = {}
    expiries: "collections.OrderedDict[str, float]" = collections.OrderedDict()
    waiting: Set[str] = set()
    due = [math.inf]

    class Entry:
        __slots__ = ("id", "state", "size", "received", "sent", "status", "length",
                     "started", "ended", "cancelled")

        def __init__(self, progress_id: str, size: Optional[int]) -> None:
            self.id, self.size, self.state = progress_id, size, "starting"
            self.received = self.sent = 0
            self.status: Optional[int] = None
            self.length: Optional[int] = None
            self.ended: Optional[float] = None
            self.started = time.time()
            self.cancelled = False

        def changed(self) -> None:
            if self.id in waiting:
                pass  # a real one would wake them here

        def finish(self) -> None:
            if self.ended is not None:
                return
            status = self.status
            self.state = "done" if status is not None and status < 400 else "error"
            now = self.ended = time.time()
            with lock:
                if entries.get(self.id) is self:
                    expiries[self.id] = now + ttl
                    due[0] = min(due[0], now + ttl)
            self.changed()

    def expire(now: float) -> None:  # under the lock
        while expiries:
            progress_id, when = next(iter(expiries.items()))
            if when > now:
                due[0] = when
                return
            del expiries[progress_id], entries[progress_id]
        due[0] = math.inf

    def claim(entry: Entry) -> bool:
        now, progress_id = entry.started, entry.id
        with lock:
            if now >= due[0]:
                expire(now)
            old = entries.get(progress_id)
            if old is not None:
                if old.ended is None:
                    return False  # a running duplicate: untracked
                del expiries[progress_id], entries[progress_id]
            elif len(entries) >= capacity:
                if not expiries:
                    return False  # full of running requests: untracked
                oldest, _ = expiries.popitem(last=False)
                del entries[oldest]
            entries[progress_id] = entry
        entry.changed()
        return True

    class Input:
        __slots__ = ("stream", "entry")

        def __init__(self, stream: Any, entry: Entry) -> None:
            self.stream, self.entry = stream, entry

        def read(self, size: int = -1) -> bytes:
            entry = self.entry
            if entry.cancelled:
                raise OSError("cancelled")
            data: bytes = self.stream.read(size)
            received = entry.received = entry.received + len(data)
            if entry.size is not None and received >= entry.size and entry.state != "processing":
                entry.state = "processing"
                entry.changed()
            return data

    class Response:
        __slots__ = ("iterable", "entry")

        def __init__(self, iterable: Iterable[bytes], entry: Entry) -> None:
            self.iterable, self.entry = iterable, entry

        def __iter__(self) -> Iterator[bytes]:
            entry = self.entry
            for chunk in self.iterable:
                entry.sent += len(chunk)
                yield chunk

        def close(self) -> None:
            try:
                close = getattr(self.iterable, "close", None)
                if close is not None:
                    close()
            finally:
                self.entry.finish()

    def tracking(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/progress" or path.startswith(("/mailbox/", "/operations/")):
            raise NotImplementedError("a yardstick serves no endpoint")
        environ.setdefault("wsgiprogress.store", entries)  # the application finds the store
        if environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        progress_id = environ.get("HTTP_X_PROGRESS_ID")
        if progress_id is None:
            for part in environ.get("QUERY_STRING", "").split("&"):
                name, _, value = part.partition("=")
                if name.lower() == "x-progress-id":
                    progress_id = value
                    break
        length = environ.get("CONTENT_LENGTH")
        entry = Entry(progress_id, int(length) if length else None) \
            if progress_id is not None and _VALID_ID(progress_id) else None
        if entry is None or not claim(entry):
            return app(environ, start_response)
        if entry.size is not None and entry.size > max_request_size:
            raise NotImplementedError("a yardstick answers no 413")
        environ["wsgi.input"] = Input(environ["wsgi.input"], entry)

        def noting(status: str, headers: List[Any], exc_info: Any = None) -> Any:
            write = start_response(status, headers, exc_info)
            entry.status = int(status[:3])
            for name, value in headers:
                if name.lower() == "content-length":
                    entry.length = int(value)
            entry.changed()

            def counting(data: bytes) -> Any:
                entry.sent += len(data)
                return write(data)
            return counting
        try:
            return Response(app(environ, noting), entry)
        except BaseException:
            entry.status = 500
            entry.finish()
            raise
    return tracking
