"""
Backends
========

A backend is where progress entries and mailboxes live: ``memory://`` (the
default: one process) or ``redis://host:port/db`` (every process and host
that uses that Redis).  Every entry point takes the URL as its ``backend``
setting (``--backend`` on the command line).

.. code-block:: python

    from wsgiprogress.backends import backend_from_url

    backend = backend_from_url("redis://127.0.0.1:6379/0", prefix="myapp:")
    app = ProgressMiddleware(app, table=backend.progress, mailbox=backend.mailbox)
    ...
    backend.close()

``redis`` (the ``wsgiprogress[redis]`` extra) is imported only for a
``redis://`` or ``rediss://`` URL.  Every Redis call has a timeout.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple, Union

from .errors import ConfigurationError
from .mailbox import Mailbox, MailboxStore
from .settings import as_backend
from .store import ProgressStore
from .table import ProgressTable
from .waiters import Waiters

#: Seconds any Redis call, or the wait for a pooled connection, may take
#: before it counts as a failure: a burst of a thousand long-polls queues for
#: the pool's connections.
REDIS_TIMEOUT = 5.0
#: Seconds to open a connection.
REDIS_CONNECT_TIMEOUT = 2.0
#: Connections to Redis per process, at most (one more for the wake-ups).
REDIS_CONNECTIONS = 32


class Backend:
    """The progress store and mailbox store of one backend, sharing *waiters*.

    The mailbox store is made on first use, so a backend that never serves
    mailboxes never creates one.
    """

    def __init__(self, progress: ProgressStore, make_mailbox: Callable[[], MailboxStore],
                 closers: Optional[List[Callable[[], None]]] = None) -> None:
        self.progress = progress
        self._make_mailbox = make_mailbox
        self._mailbox: Optional[MailboxStore] = None
        self._closers = closers or []

    @property
    def mailbox(self) -> MailboxStore:
        if self._mailbox is None:
            self._mailbox = self._make_mailbox()
        return self._mailbox

    def close(self) -> None:
        """Write what is pending and release connections and threads."""
        for close in self._closers:
            close()


def open_stores(options: Mapping[str, Any], given: Iterable[str],
                table: Optional[ProgressStore], mailbox: Union[MailboxStore, bool, None],
                waiters: Waiters) -> Tuple[ProgressStore, Optional[MailboxStore],
                                           Optional[Backend]]:
    """The stores an entry point serves: *table* and *mailbox* when given as
    objects, else made from the resolved *options* (``backend``, ``ttl``,
    ``capacity``, ``key_prefix``); ``mailbox=True`` asks for the backend's.
    Both share *waiters*, stores passed in included, so the entry point's
    ``max_waiters`` bounds every waiting client.

    :raises ConfigurationError: when table settings come with a table object.
    """
    clash = [name for name in ("backend", "ttl", "capacity", "key_prefix") if name in given]
    if table is not None and clash:
        raise ConfigurationError(
            f"{' and '.join(clash)} {'belongs' if len(clash) == 1 else 'belong'} to the "
            "table you passed: configure it there, "
            "e.g. ProgressTable(ttl=..., capacity=...) or backend_from_url(...).progress")
    backend = None
    if table is None or mailbox is True:
        backend = backend_from_url(options["backend"], waiters=waiters, ttl=options["ttl"],
                                   capacity=options["capacity"], prefix=options["key_prefix"])
    if table is None:
        assert backend is not None
        table = backend.progress
    if not isinstance(mailbox, MailboxStore):
        mailbox = backend.mailbox if mailbox and backend else None
    for store in (table, mailbox):
        if store is not None:
            store.waiters = waiters
    return table, mailbox, backend


def backend_from_url(url: str = "memory://", *, waiters: Optional[Waiters] = None,
                     ttl: float = 30.0, capacity: int = 10_000,
                     prefix: str = "wsgiprogress:", **mailbox_options: Any) -> Backend:
    """The backend *url* names; *mailbox_options* are :class:`Mailbox` bounds.

    :raises ConfigurationError: for an unknown scheme, or ``redis://`` without
        the ``redis`` package (``pip install "wsgiprogress[redis]"``).
    """
    waiters = waiters if waiters is not None else Waiters(50)
    try:
        url = as_backend(url)
    except ValueError as exc:
        raise ConfigurationError(f"backend: {exc}") from None
    if url == "memory://":
        return Backend(ProgressTable(ttl=ttl, capacity=capacity, waiters=waiters),
                       lambda: Mailbox(waiters=waiters, **mailbox_options))
    try:
        import redis
    except ImportError:
        raise ConfigurationError(
            f"backend {url!r} needs redis-py: pip install \"wsgiprogress[redis]\"") from None
    from .redis_events import RedisWakeups, waker
    from .redis_mailbox import RedisMailbox
    from .redis_progress import RedisProgressStore

    # a bounded pool that makes a thread wait for a free connection (up to
    # the timeout) instead of failing: a burst of 1000 long-polls needs no
    # 1000 connections
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_TIMEOUT, decode_responses=True,
        socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=30)
    client = redis.Redis(connection_pool=pool)
    progress = RedisProgressStore(client, prefix=prefix, ttl=ttl, capacity=capacity,
                                  waiters=waiters)
    mailbox = RedisMailbox(client, prefix=prefix, waiters=waiters, **mailbox_options)
    wakeups = RedisWakeups(client, {progress.channel: waker(lambda: progress.waiters),
                                    mailbox.channel: mailbox.posted})
    return Backend(progress, lambda: mailbox, [progress.close, wakeups.close, client.close])
