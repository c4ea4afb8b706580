"""
Wake-ups across processes
=========================

Waiting clients (long-polls, event streams, probes with ``wait=``) wait on
per-process :class:`~wsgiprogress.waiters.Waiters`.  With Redis, the change
they wait for may happen in another process, so each process runs **one**
:class:`RedisWakeups`: one subscriber connection, whatever the number of
waiters, that wakes the local waiters named in each published message.
After a lost connection it subscribes again with backoff and wakes every
local waiter once, since it may have missed news meanwhile.

.. code-block:: python

    wakeups = RedisWakeups(client, ["wsgiprogress:changed", "wsgiprogress:mail"], waiters)
    ...
    wakeups.close()
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Iterable, List

from .redis_writer import MAX_BACKOFF

if TYPE_CHECKING:
    import redis

    from .waiters import Waiters

log = logging.getLogger("wsgiprogress")


class RedisWakeups:
    """Wakes *waiters* for the names published on *channels*, from one thread."""

    def __init__(self, client: redis.Redis, channels: Iterable[str], waiters: Waiters) -> None:
        self.client = client
        self.channels: List[str] = list(channels)
        self.waiters = waiters
        self.connected = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wsgiprogress-wakeups",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.1
        failing = False
        while not self._closed.is_set():
            pubsub = self.client.pubsub(  # type: ignore[no-untyped-call]
                ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*self.channels)
                self.connected.set()
                if failing:
                    log.warning("wake-up channel to Redis restored")
                    failing = False
                self.waiters.wake_all()  # whatever happened while we were away
                backoff = 0.1
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._wake(message)
            except Exception as exc:
                self.connected.clear()
                if not failing:
                    log.warning("wake-up channel to Redis lost (%s); waiters fall back "
                                "to their timeouts until it returns", exc)
                    failing = True
                self._closed.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                pubsub.close()

    def _wake(self, message: Any) -> None:
        data = message.get("data")
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if isinstance(data, str):
            for name in data.split():
                self.waiters.wake(name)
