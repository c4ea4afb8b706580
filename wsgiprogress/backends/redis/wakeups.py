"""
Wake-ups across processes
=========================

Waiting clients (long-polls, event streams, probes with ``wait=``) wait on
per-process :class:`~wsgiprogress.waiters.Waiters`.  With Redis, the change
they wait for may happen in another process, so each process runs **one**
:class:`RedisWakeups`: one subscriber connection, whatever the number of
waiters, that hands the names in each published message to its channel's
handler (which wakes the local waiters of those names).  After a lost
connection it subscribes again with backoff and calls every handler with
``None`` (wake everyone), since it may have missed news meanwhile.

.. code-block:: python

    wakeups = RedisWakeups(client, {"wsgiprogress:changed": waker(lambda: store.waiters)})
    ...
    wakeups.close()
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

from .writer import MAX_BACKOFF

if TYPE_CHECKING:
    import redis

    from ...waiters import Waiters

log = logging.getLogger("wsgiprogress")

#: Seconds Redis has to confirm the subscriptions before the connection is
#: given up and made again (with backoff).
SUBSCRIBE_WAIT = 10.0

#: Called with the names in a message, or ``None`` for "maybe anything".
Handler = Callable[[Optional[List[str]]], None]


def waker(get_waiters: Callable[[], Waiters]) -> Handler:
    """A handler that wakes the waiters of the names (all of them for ``None``)
    in the :class:`Waiters` *get_waiters* returns at that moment."""
    def wake(names: Optional[List[str]]) -> None:
        waiters = get_waiters()
        if names is None:
            waiters.wake_all()
        else:
            for name in names:
                waiters.wake(name)
    return wake


class RedisWakeups:
    """Hands the names published on each channel to its handler, from one thread."""

    def __init__(self, client: redis.Redis, handlers: Mapping[str, Handler]) -> None:
        self.client = client
        self.handlers: Dict[str, Handler] = dict(handlers)
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
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(*self.handlers)
                self._confirm(pubsub)
                self.connected.set()
                if failing:
                    log.warning("wake-up channel to Redis restored")
                    failing = False
                for handler in self.handlers.values():
                    handler(None)  # whatever happened while we were away
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

    def _confirm(self, pubsub: Any) -> None:
        """Read until Redis confirms every channel: ``SUBSCRIBE`` is only sent
        when ``subscribe`` returns, and news published before Redis runs it
        never reaches us, while the "wake everyone" after it would already
        have passed.  Messages that come first are handed on."""
        unconfirmed = set(self.handlers)
        deadline = time.monotonic() + SUBSCRIBE_WAIT
        while unconfirmed and not self._closed.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis confirmed no subscription in {SUBSCRIBE_WAIT:g} s")
            message = pubsub.get_message(timeout=0.5)
            if message is None:
                continue
            if message.get("type") == "subscribe":
                unconfirmed.discard(_text(message.get("channel")))
            else:
                self._wake(message)

    def _wake(self, message: Any) -> None:
        if message.get("type") != "message":
            return
        channel, data = _text(message.get("channel")), _text(message.get("data"))
        handler = self.handlers.get(channel)
        if handler is not None and isinstance(data, str):
            handler(data.split())


def _text(value: Any) -> Any:
    # channel names and payloads are bytes unless the client decodes them
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
