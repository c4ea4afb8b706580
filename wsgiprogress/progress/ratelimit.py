"""
Rate-limited warnings
=====================

A warning a client can cause once per request (a progress ID already in use,
a full table, a store that fails) would let anyone fill the log, about a
hundred bytes a request.  :class:`RateLimitedWarning` logs such a warning at
most once per ``interval`` seconds and says how many it held back since.

.. code-block:: python

    duplicate = RateLimitedWarning("progress ID %r is already in use by a running "
                                   "request; this request runs untracked")
    duplicate.warn(progress_id)   # logged; the next ones within 10 s are counted

Tests pass a fake ``clock``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

log = logging.getLogger("wsgiprogress")

#: Seconds between two lines of one rate-limited warning.
WARNING_INTERVAL = 10.0


class RateLimitedWarning:
    """One warning, logged at most once per *interval* seconds.

    :param message: the %-format of the warning; :meth:`warn` takes its arguments.
    :param interval: seconds between two lines.
    :param clock: returns seconds; tests pass a fake one.
    :param logger: where the warning goes (``wsgiprogress``).
    """

    def __init__(self, message: str, interval: float = WARNING_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.message = message
        self.interval = interval
        self.clock = clock
        self.logger = logger
        self._lock = threading.Lock()
        self._last: Optional[float] = None
        self._held = 0

    def warn(self, *args: Any, exc_info: bool = False) -> bool:
        """Log the warning with *args*, unless it was logged less than
        ``interval`` seconds ago: then count it.  True when logged; the line
        ends with the count of those held back since the last one."""
        now = self.clock()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                self._held += 1
                return False
            held, self._held, self._last = self._held, 0, now
        # logged outside the lock: a slow handler must not hold up the others
        if held:
            self.logger.warning(self.message + "; %d more since the last warning", *args,
                                held, exc_info=exc_info)
        else:
            self.logger.warning(self.message, *args, exc_info=exc_info)
        return True
