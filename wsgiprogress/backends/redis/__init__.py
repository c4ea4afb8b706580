"""
Redis backend
=============

Progress entries (:mod:`~wsgiprogress.backends.redis.progress`),
mailboxes (:mod:`~wsgiprogress.backends.redis.mailbox`), operations
(:mod:`~wsgiprogress.backends.redis.operations`) and the records and locks
of resumable uploads (:mod:`~wsgiprogress.backends.redis.uploads`) shared by every
process and host that uses one Redis, written in the background
(:mod:`~wsgiprogress.backends.redis.writer`) and announced to every process
by one subscriber each (:mod:`~wsgiprogress.backends.redis.wakeups`).
Importing this package imports redis-py; :func:`wsgiprogress.backends.backend_from_url`
does so only for a Redis URL.  Every Redis call has a timeout; a probe's read
a short one (:data:`PROBE_READ_TIMEOUT`), so a frozen Redis answers
``unknown`` at once instead of holding the probe threads.
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
#: Seconds a probe's read (or its wait for a connection, or opening one) may
#: take: a frozen Redis must not hold the probe threads for REDIS_TIMEOUT.
PROBE_READ_TIMEOUT = 0.5
#: Connections for probe reads, apart from the others.
PROBE_CONNECTIONS = 8


def redis_backend(url: str, waiters: Waiters, store: Mapping[str, Any],
                  limits: Dict[str, Any], bounds: Mapping[str, Any]) -> Backend:
    """The backend at Redis *url*: *store* holds the resolved store settings,
    *limits* the mailbox bounds given, *bounds* the resolved operations bounds.

    :raises ConfigurationError: without the ``redis`` package.
    """
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            f"backend {url!r} needs redis-py: pip install \"wsgiprogress[redis]\"") from None
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from .. import Backend
    from .mailbox import RedisMailbox
    from .operations import RedisOperations
    from .outage import Outage
    from .progress import RedisProgressStore
    from .uploads import RedisUploads
    from .wakeups import RedisWakeups, waker

    # a bounded pool that makes a thread wait for a free connection (up to
    # the timeout) instead of failing: a burst of 1000 long-polls needs no
    # 1000 connections
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_TIMEOUT, decode_responses=True,
        socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=30)
    client = redis.Redis(connection_pool=pool)
    # probes read through a pool of their own with a short deadline and no
    # retries; RedisProgressStore.get stops asking for a while after a failure
    probe_pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=PROBE_CONNECTIONS, timeout=PROBE_READ_TIMEOUT,
        decode_responses=True, socket_timeout=PROBE_READ_TIMEOUT,
        socket_connect_timeout=PROBE_READ_TIMEOUT, retry=Retry(NoBackoff(), 0),
        health_check_interval=30)
    reader = redis.Redis(connection_pool=probe_pool)
    # one breaker per pool for the readers of the probe lane: a stalled Redis
    # costs each pool its timeout once a second, not once a request; a slow
    # one that only the probe's short deadline misses leaves the other pool be
    outage = Outage("mailboxes, the dashboard and resumable uploads answer 503, "
                    "operations run as plain requests")
    reader_outage = Outage("probes answer unknown, monitors 503")
    progress = RedisProgressStore(client, reader=reader, waiters=waiters, outage=outage,
                                  reader_outage=reader_outage,
                                  key_prefix=store["key_prefix"], ttl=store["ttl"],
                                  capacity=store["capacity"])
    mailbox = RedisMailbox(client, key_prefix=store["key_prefix"], waiters=waiters,
                           outage=outage, **limits)
    wakeups = RedisWakeups(client, {progress.channel: waker(lambda: progress.waiters),
                                    progress.cancel_channel: progress.cancelled_elsewhere,
                                    mailbox.channel: mailbox.posted})
    operations = RedisOperations(client, key_prefix=store["key_prefix"], waiters=waiters,
                                 reader=reader, outage=outage,
                                 reader_outage=reader_outage, **bounds)

    def uploads(directory: str, lock_ttl: float, upload_bounds: Dict[str, Any]) -> RedisUploads:
        return RedisUploads(client, directory, key_prefix=store["key_prefix"],
                            lock_ttl=lock_ttl, outage=outage, **upload_bounds)
    return Backend(progress, lambda: mailbox, [progress.close, wakeups.close, client.close,
                                               probe_pool.disconnect],
                   make_operations=lambda: operations, make_uploads=uploads)
