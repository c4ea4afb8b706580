"""
Counting request stream
=======================

:class:`CountingInput` wraps ``wsgi.input`` and reports every byte the
application reads to a :class:`~wsgiprogress.tracker.Tracker`.  It defines
``read``, ``readline``, ``readlines``, ``readinto`` and ``__iter__`` itself (a
``__getattr__`` pass-through would let a method skip the counter) and never
closes the stream it wraps.

.. code-block:: python

    environ["wsgi.input"] = CountingInput(environ["wsgi.input"], tracker)

An empty read before the declared size arrived, or an exception from the
underlying stream, marks the request ``error``/``aborted``.
"""
from __future__ import annotations

import math
from typing import IO, Any, Callable, Iterator, List, Optional

from .entry import ABORTED
from .tracker import Tracker


class CountingInput:
    """A ``wsgi.input`` that counts what is read from *stream* into *tracker*."""

    __slots__ = ("stream", "tracker", "_limit")

    def __init__(self, stream: IO[bytes], tracker: Tracker) -> None:
        self.stream = stream
        self.tracker = tracker
        self._limit = math.inf if tracker.size is None else tracker.size

    def read(self, size: Optional[int] = -1) -> bytes:
        return self._take(self.stream.read, size)

    def readline(self, size: Optional[int] = -1) -> bytes:
        return self._take(self.stream.readline, size)

    def _take(self, method: Callable[..., bytes], size: Optional[int]) -> bytes:
        try:
            data = method(size) if size is not None and size >= 0 else method()
        except Exception:
            self.tracker.fail(ABORTED)
            raise
        if data:
            tracker = self.tracker
            tracker.add_received(len(data))
            if tracker.received >= self._limit:
                tracker.body_complete()
        elif size != 0:
            self._end_of_stream()
        return data

    def readlines(self, hint: int = -1) -> List[bytes]:
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        buffer[:len(data)] = data
        return len(data)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline(65536)
            if not line:
                return
            yield line

    def _end_of_stream(self) -> None:
        # complete, unless bytes the client declared are missing
        tracker = self.tracker
        if tracker.received < self._limit < math.inf:
            tracker.fail(ABORTED)
        else:
            tracker.body_complete()
