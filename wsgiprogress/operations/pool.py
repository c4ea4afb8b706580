"""
Operation threads
=================

:class:`OperationPool` runs applications that answered ``202 Accepted`` on
a bounded set of threads of their own.  A slot is reserved before the
request is handed over, so a full pool is known at once and the request
simply runs as usual (a ``Prefer`` header is only a hint).

.. code-block:: python

    pool = OperationPool(4)
    if pool.reserve():
        pool.start(work)        # runs work() on an operation thread
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

log = logging.getLogger("wsgiprogress")

Work = Optional[Callable[[], None]]


class OperationPool:
    """At most *size* operations at once, on reused daemon threads (an
    operation never holds up the process's exit)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._queue: "queue.SimpleQueue[Work]" = queue.SimpleQueue()
        self._threads = 0

    def reserve(self) -> bool:
        """Take a slot; False when every thread is busy."""
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        """Give back a slot :meth:`reserve` took and :meth:`start` did not use."""
        self._slots.release()

    def start(self, work: Callable[[], None]) -> None:
        """Run *work* on an operation thread, in the slot :meth:`reserve` took."""
        with self._lock:
            if self._threads < self.size:  # threads start as needed, then stay
                self._threads += 1
                threading.Thread(target=self._run, daemon=True,
                                 name=f"wsgiprogress-operation-{self._threads}").start()
        self._queue.put(work)

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except Exception:  # the runner catches the application's; this is ours
                log.exception("operation thread failed")
            finally:
                self._slots.release()

    def close(self) -> None:
        """Let running operations finish; their threads then end."""
        with self._lock:
            threads, self._threads = self._threads, 0
        for _ in range(threads):
            self._queue.put(None)
