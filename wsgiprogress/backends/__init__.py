"""
Backends
========

A backend is where progress entries, mailboxes, operations and the records
and locks of resumable uploads live: ``memory://`` (the default: one
process; uploads' records and locks beside their bytes, shared by the
processes of one host) or ``redis://host:port/db`` (every process and host
that uses that Redis).  Every entry point takes the URL as its ``backend``
setting (``--backend`` on the command line).

.. code-block:: python

    from wsgiprogress.backends import backend_from_url

    backend = backend_from_url("redis://127.0.0.1:6379/0", key_prefix="myapp:")
    app = ProgressMiddleware(app, store=backend.progress, mailbox=backend.mailbox)
    ...
    backend.close()

``redis`` (the ``wsgiprogress[redis]`` extra) is imported only for a
``redis://`` or ``rediss://`` URL, by :mod:`wsgiprogress.backends.redis`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ..errors import ConfigurationError
from ..mailbox import MailboxStore, MemoryMailboxes
from ..operations import MemoryOperations, OperationStore
from ..progress import ProgressStore, ProgressTable
from ..resumable.storage import DirectoryStorage, UploadStorage
from ..settings import MAILBOX_LIMITS, OPERATIONS_SETTINGS, STORE_SETTINGS, resolve
from ..settings.converters import as_backend
from ..waiters import Waiters

_TABLE = ("ttl", "capacity")
_LIMITS = frozenset(s.name for s in MAILBOX_LIMITS)
#: The operations settings a backend's operations store takes.
OPERATIONS_BOUNDS = ("max_operations", "operations_ttl", "max_kept_bytes")
_OPERATIONS = tuple(s for s in OPERATIONS_SETTINGS if s.name in OPERATIONS_BOUNDS)
#: Makes a backend's upload storage: (directory, lock_ttl, bounds).
MakeUploads = Callable[[str, float, Dict[str, Any]], UploadStorage]


class Backend:
    """The progress store, mailbox store and operations store of one
    backend, sharing *waiters*.

    The mailbox and operations stores are made on first use, so a backend
    that never serves them never creates them.
    """

    def __init__(self, progress: ProgressStore, make_mailbox: Callable[[], MailboxStore],
                 closers: Optional[List[Callable[[], None]]] = None,
                 make_operations: Optional[Callable[[], OperationStore]] = None,
                 make_uploads: Optional[MakeUploads] = None) -> None:
        self.progress = progress
        self._make_uploads = make_uploads
        self._make_mailbox = make_mailbox
        self._mailbox: Optional[MailboxStore] = None
        self._make_operations = make_operations or (
            lambda: MemoryOperations(waiters=progress.waiters))
        self._operations: Optional[OperationStore] = None
        self._closers = closers or []

    @property
    def mailbox(self) -> MailboxStore:
        if self._mailbox is None:
            self._mailbox = self._make_mailbox()
        return self._mailbox

    @property
    def operations(self) -> OperationStore:
        if self._operations is None:
            self._operations = self._make_operations()
        return self._operations

    def uploads(self, directory: str, *, lock_ttl: float, **bounds: Any) -> UploadStorage:
        """The storage of resumable uploads whose bytes are in *directory*:
        records and locks beside them (:class:`DirectoryStorage`), or in
        Redis for the Redis backend, with locks that expire *lock_ttl*
        seconds after a host holding one died.

        :param bounds: ``ttl``, ``max_size``, ``max_uploads``, ``max_disk``
            (:class:`~wsgiprogress.resumable.storage.UploadStorage`).
        :raises OSError: when *directory* cannot be made.
        """
        if self._make_uploads is None:
            return DirectoryStorage(directory, **bounds)
        return self._make_uploads(directory, lock_ttl, bounds)

    def close(self) -> None:
        """Write what is pending and release connections, threads and kept responses."""
        if self._operations is not None:
            self._operations.close()
        for close in self._closers:
            close()


def backend_from_url(url: str = "memory://", *, waiters: Optional[Waiters] = None,
                     **settings: Any) -> Backend:
    """The backend *url* names.

    :param waiters: the process's waiters, shared by both stores.
    :param settings: the store settings ``key_prefix``, ``ttl``, ``capacity``
        (:data:`wsgiprogress.settings.STORE_SETTINGS`), the mailbox bounds
        (:data:`wsgiprogress.settings.MAILBOX_LIMITS`) and the operations
        bounds (:data:`OPERATIONS_BOUNDS`).
    :raises ConfigurationError: for an unknown scheme or setting, or
        ``redis://`` without the ``redis`` package
        (``pip install "wsgiprogress[redis]"``).
    """
    waiters = waiters if waiters is not None else Waiters()
    try:
        url = as_backend(url)
    except ValueError as exc:
        raise ConfigurationError(f"backend: {exc}") from None
    limits = {name: value for name, value in settings.items() if name in _LIMITS}
    bounds = resolve(_OPERATIONS, {name: value for name, value in settings.items()
                                   if name in OPERATIONS_BOUNDS})
    store = resolve(STORE_SETTINGS, {name: value for name, value in settings.items()
                                     if name not in _LIMITS and name not in OPERATIONS_BOUNDS})
    if url == "memory://":
        return Backend(ProgressTable(waiters=waiters, **{n: store[n] for n in _TABLE}),
                       lambda: MemoryMailboxes(waiters=waiters, **limits),
                       make_operations=lambda: MemoryOperations(waiters=waiters, **bounds))
    from .redis import redis_backend

    return redis_backend(url, waiters, store, limits, bounds)
