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

from typing import IO, Any, Iterator, List, Optional

from .entry import ABORTED
from .tracker import Tracker


class CountingInput:
    """A ``wsgi.input`` that counts what is read from *stream* into *tracker*."""

    __slots__ = ("stream", "tracker")

    def __init__(self, stream: IO[bytes], tracker: Tracker) -> None:
        self.stream = stream
        self.tracker = tracker

    def read(self, size: Optional[int] = -1) -> bytes:
        try:
            data = self.stream.read() if size is None or size < 0 else self.stream.read(size)
        except Exception:
            self.tracker.fail(ABORTED)
            raise
        self._count(len(data), size != 0)
        return data

    def readline(self, size: Optional[int] = -1) -> bytes:
        try:
            data = (self.stream.readline() if size is None or size < 0
                    else self.stream.readline(size))
        except Exception:
            self.tracker.fail(ABORTED)
            raise
        self._count(len(data), size != 0)
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

    def _count(self, n: int, wanted: bool) -> None:
        tracker = self.tracker
        if n:
            tracker.add_received(n)
            if tracker.size is not None and tracker.received >= tracker.size:
                tracker.body_complete()
        elif wanted:
            # end of stream: complete, unless bytes the client declared are missing
            if tracker.size is not None and tracker.received < tracker.size:
                tracker.fail(ABORTED)
            else:
                tracker.body_complete()
