"""
Outage breaker
==============

A stalled Redis (it accepts, it never answers) makes every call wait for its
socket timeout.  The probe lane has a few threads, shared by the probe, the
mailboxes and the monitors: a handful of mailbox long-polls each holding a
thread for ``REDIS_TIMEOUT`` would keep every probe waiting behind them.
One :class:`Outage` per backend, shared by those readers, remembers that
Redis failed: for ``retry_after`` seconds calls fail at once instead of
asking; then one call tries (the others keep failing at once while it does),
and the first that succeeds ends the outage.  A warning says so, rate-limited.

.. code-block:: python

    outage = Outage("probes answer unknown")
    try:
        raw = outage.call(lambda: client.get(key))
    except Unreachable as exc:    # the call failed, or was not tried
        ...
"""
from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...progress.ratelimit import RateLimitedWarning

T = TypeVar("T")

#: Seconds calls fail at once after one failed, before one tries again.
RETRY_AFTER = 1.0
#: What says Redis cannot be reached (a refused or lost connection, a
#: timeout, a wrong password), unlike an answer it gave (OOM, READONLY).
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class Unreachable(Exception):
    """A call failed because Redis could not be reached, or was not tried
    because it could not be a moment ago; the message says which."""


class Outage:
    """The reachability of one Redis, as the calls made through it found it.

    :param degraded: what fails meanwhile, for the warning.
    :param retry_after: seconds calls fail at once after one failed.
    :param clock: ``time.monotonic``; tests pass a fake one.
    """

    def __init__(self, degraded: str = "its callers answer 503",
                 retry_after: float = RETRY_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_after = retry_after
        self.clock = clock
        self._lock = threading.Lock()
        self._failing = False
        self._trying = False  # the one call that tries while failing is under way
        self._retry_at = 0.0
        self._warning = RateLimitedWarning(f"Redis unreachable (%s); {degraded}")

    def call(self, operation: Callable[[], T]) -> T:
        """*operation*'s result; :exc:`Unreachable` when it could not reach
        Redis, or at once, without calling it, while Redis is failing."""
        trial = self._may_call()
        try:
            result = operation()
        except UNREACHABLE as exc:
            with self._lock:
                self._failing = True
                self._retry_at = self.clock() + self.retry_after
                if trial:
                    self._trying = False
            self._warning.warn(exc)
            raise Unreachable(exc.__class__.__name__) from exc
        except BaseException:
            if trial:
                with self._lock:
                    self._trying = False
            raise
        if trial or self._failing:
            with self._lock:
                self._failing = self._trying = False
        return result

    def _may_call(self) -> bool:
        """Whether this call is the one that tries while Redis is failing;
        raises :exc:`Unreachable` for the others."""
        if not self._failing:
            return False
        with self._lock:
            if not self._failing:
                return False
            if self._trying or self.clock() < self._retry_at:
                raise Unreachable("Redis unreachable a moment ago; retrying shortly")
            self._trying = True
            return True
