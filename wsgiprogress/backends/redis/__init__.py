"""
Redis backend
=============

Progress entries (:mod:`~wsgiprogress.backends.redis.progress`) and
mailboxes (:mod:`~wsgiprogress.backends.redis.mailbox`) shared by every
process and host that uses one Redis, written in the background
(:mod:`~wsgiprogress.backends.redis.writer`) and announced to every process
by one subscriber each (:mod:`~wsgiprogress.backends.redis.wakeups`).
Importing this package imports redis-py; :func:`wsgiprogress.backends.backend_from_url`
does so only for a Redis URL.  Every Redis call has a timeout.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from ...waiters import Waiters
    from .. import Backend

#: Seconds any Redis call, or the wait for a pooled connection, may take
#: before it counts as a failure: a burst of a thousand long-polls queues for
#: the pool's connections.
REDIS_TIMEOUT = 5.0
#: Seconds to open a connection.
REDIS_CONNECT_TIMEOUT = 2.0
#: Connections to Redis per process, at most (one more for the wake-ups).
REDIS_CONNECTIONS = 32


def redis_backend(url: str, waiters: Waiters, store: Mapping[str, Any],
                  limits: Dict[str, Any]) -> Backend:
    """The backend at Redis *url*: *store* holds the resolved store settings,
    *limits* the mailbox bounds given.

    :raises ConfigurationError: without the ``redis`` package.
    """
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            f"backend {url!r} needs redis-py: pip install \"wsgiprogress[redis]\"") from None
    from .. import Backend
    from .mailbox import RedisMailbox
    from .progress import RedisProgressStore
    from .wakeups import RedisWakeups, waker

    # a bounded pool that makes a thread wait for a free connection (up to
    # the timeout) instead of failing: a burst of 1000 long-polls needs no
    # 1000 connections
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_TIMEOUT, decode_responses=True,
        socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=30)
    client = redis.Redis(connection_pool=pool)
    progress = RedisProgressStore(client, waiters=waiters, key_prefix=store["key_prefix"],
                                  ttl=store["ttl"], capacity=store["capacity"])
    mailbox = RedisMailbox(client, key_prefix=store["key_prefix"], waiters=waiters, **limits)
    wakeups = RedisWakeups(client, {progress.channel: waker(lambda: progress.waiters),
                                    mailbox.channel: mailbox.posted})
    return Backend(progress, lambda: mailbox, [progress.close, wakeups.close, client.close])
