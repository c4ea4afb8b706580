"""
Resumable uploads on Redis
==========================

:class:`RedisUploads` is the :class:`~wsgiprogress.resumable.storage.UploadStorage`
of the Redis backend: the bytes stay in ``resumable_dir`` (shared storage
every host mounts), the records and the append locks live in Redis, so an
upload created on one host can be appended to on another and completed on a
third.

* The record of upload ``<id>`` is ``<key_prefix>upload:<id>`` (the
  :class:`~wsgiprogress.resumable.upload.Upload` as JSON), expiring at its
  ``Upload-Expires`` (``PEXPIREAT``).  ``<key_prefix>uploads`` (scored by
  expiry) and ``<key_prefix>uploads:reserved`` (the bytes each reserves)
  bound their number and their disk (``resumable_max_uploads``,
  ``resumable_max_disk``), checked in the one script that creates a record.
* The append lock is ``<key_prefix>upload:<id>:lock``: a random token set
  with ``NX PX resumable_lock_ttl``, released and extended only by its owner
  (compare-and-delete, compare-and-extend scripts).  One thread per process
  (:class:`LockKeeper`) extends the locks it holds every third of the TTL
  while an append streams or the application runs; a host killed with
  SIGKILL stops extending, and its lock expires.
* A record is written only by the lock's owner: the save script checks the
  token, so a host whose lock expired can never move an offset.  The bytes
  are fsynced before that write (:meth:`~wsgiprogress.resumable.appender.Appender.commit`),
  and the next append on any host cuts the file back to the offset Redis
  holds.  Before each write an appender asks :meth:`RedisUploads.holding`,
  which answers from the last extension this process saw succeed, with a
  margin: a host that may have lost its lock writes nothing more.
* Redis unreachable: every call raises
  :class:`~wsgiprogress.resumable.storage.StorageUnavailable`, which the
  protocols answer ``503`` with ``Retry-After``: an upload cannot go on
  without its record.  Calls go through the backend's
  :class:`~wsgiprogress.backends.redis.outage.Outage`: once one could not
  reach Redis, the others fail at once for a second instead of holding their
  request's thread for the socket timeout.  Tracked requests that are not uploads go on as ever.

.. code-block:: python

    backend = backend_from_url("redis://127.0.0.1:6379/0")
    storage = backend.uploads("/mnt/shared/uploads", lock_ttl=30, ttl=86400,
                              max_size=2**30, max_uploads=1000, max_disk=None)
    with storage.locked(upload_id) as upload, Appender(storage, upload) as out:
        out.write(chunk)
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, TypeVar

from redis.exceptions import RedisError

from ...progress.ratelimit import RateLimitedWarning
from ...resumable.storage import (
    StorageFull,
    StorageUnavailable,
    TooManyUploads,
    UploadBusy,
    UploadStorage,
    reserves,
)
from ...resumable.upload import Upload, is_upload_id
from .outage import Outage, Unreachable

if TYPE_CHECKING:
    import redis

log = logging.getLogger("wsgiprogress")
T = TypeVar("T")

#: The share of the lock's TTL this process trusts its lock for after an
#: extension was sent: the rest covers clock drift and the round trip.
LOCK_TRUST = 0.8

# KEYS: record, index, reserved.  ARGV: id, now ms, expires ms, max uploads,
# max disk (-1: none), reserve, record.
_CREATE = """
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('HDEL', KEYS[3], gone)
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 'count' end
if tonumber(ARGV[5]) >= 0 then
  local total = tonumber(ARGV[6])
  for _, bytes in ipairs(redis.call('HVALS', KEYS[3])) do total = total + tonumber(bytes) end
  if total > tonumber(ARGV[5]) then return 'disk' end
end
redis.call('SET', KEYS[1], ARGV[7])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
return 'ok'
"""

# KEYS: record, index, reserved, lock.  ARGV: token, id, expires ms, reserve, record.
_SAVE = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
return 1
"""

# KEYS: lock.  ARGV: token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock.  ARGV: token, ttl ms.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_UNAVAILABLE = RateLimitedWarning("resumable uploads: Redis is unavailable (%s); "
                                  "their requests are answered 503")


@dataclasses.dataclass
class HeldLock:
    """A lock this process holds: its key, its token, until when (monotonic)
    it trusts it, and whether Redis answered the last extension."""

    key: str
    token: str
    trusted_until: float
    reachable: bool = True


class LockKeeper:
    """One thread that extends every lock this process holds, every third
    of *ttl*, while it holds it (started with the first lock)."""

    def __init__(self, extend: Callable[[HeldLock], bool], ttl: float) -> None:
        self.extend = extend
        self.ttl = ttl
        self.held: Dict[str, HeldLock] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def hold(self, upload_id: str, lock: HeldLock) -> None:
        with self._lock:
            self.held[upload_id] = lock
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="wsgiprogress-upload-locks")
                self._thread.start()

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self.held.pop(upload_id, None)

    def get(self, upload_id: str) -> Optional[HeldLock]:
        with self._lock:
            return self.held.get(upload_id)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                locks = list(self.held.values())
            for lock in locks:
                sent = time.monotonic()
                try:
                    ours = self.extend(lock)
                except StorageUnavailable:
                    lock.reachable = False  # trusted until it lapses: Redis may be back
                    continue
                lock.reachable = True
                lock.trusted_until = sent + self.ttl * LOCK_TRUST if ours else 0.0

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)


class RedisUploads(UploadStorage):
    """Upload records and locks in Redis, bytes in *directory*.

    :param client: a ``redis.Redis`` made with ``decode_responses=True``.
    :param key_prefix: the prefix of every key.
    :param lock_ttl: seconds a lock lives unless its owner extends it.
    :param bounds: ``ttl``, ``max_size``, ``max_uploads``, ``max_disk``
        (:class:`~wsgiprogress.resumable.storage.UploadStorage`).
    """

    def __init__(self, client: redis.Redis, directory: str, *, key_prefix: str,
                 lock_ttl: float, outage: Optional[Outage] = None, **bounds: Any) -> None:
        super().__init__(directory, **bounds)
        self.client = client
        self.outage = Outage() if outage is None else outage
        self.prefix = key_prefix
        self.lock_ttl = lock_ttl
        self._index = key_prefix + "uploads"
        self._reserved = key_prefix + "uploads:reserved"
        self._create = client.register_script(_CREATE)
        self._save = client.register_script(_SAVE)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self.keeper = LockKeeper(self._extend_lock, lock_ttl)

    def _key(self, upload_id: str) -> str:
        return f"{self.prefix}upload:{upload_id}"

    def _call(self, what: Callable[[], T], breaker: bool = True) -> T:
        """*what*'s result; through the breaker (:attr:`outage`) unless the
        caller holds no request (the lock keeper's thread, which tries each
        time): a stalled Redis then holds a request's thread once a second,
        not every request's for the socket timeout."""
        try:
            return self.outage.call(what) if breaker else what()
        except (Unreachable, RedisError) as exc:
            if not isinstance(exc, Unreachable):  # the breaker logs its own
                _UNAVAILABLE.warn(exc)
            raise StorageUnavailable("the upload records are unavailable (Redis); "
                                     "retry later") from exc

    # -- records -------------------------------------------------------------------

    def create(self, upload: Upload) -> None:
        self.sweep()
        upload.expires = self.clock() + self.ttl
        answer = self._call(lambda: self._create(
            keys=[self._key(upload.id), self._index, self._reserved],
            args=[upload.id, int(self.clock() * 1000), int(upload.expires * 1000),
                  self.max_uploads, -1 if self.max_disk is None else self.max_disk,
                  reserves(upload), json.dumps(upload.to_json())]))
        if answer == "count":
            raise TooManyUploads(f"{self.max_uploads} uploads are stored; retry later")
        if answer == "disk":
            raise StorageFull("the upload storage is full")
        try:
            self._create_body(upload)  # after the record: a sweep removes bodies without one
        except BaseException:
            self.delete(upload.id)
            raise

    def get(self, upload_id: str) -> Optional[Upload]:
        if not is_upload_id(upload_id):
            return None
        raw = self._call(lambda: self.client.get(self._key(upload_id)))
        if raw is None:
            return None
        try:
            upload = Upload.from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError):
            return None
        return upload if upload.expires > self.clock() else None

    def save(self, upload: Upload) -> None:
        """Only while this process holds the upload's lock.

        :raises UploadBusy: when it does not (any more).
        """
        held = self.keeper.get(upload.id)
        upload.expires = self.clock() + self.ttl
        key = self._key(upload.id)
        saved = self._call(lambda: self._save(
            keys=[key, self._index, self._reserved, key + ":lock"],
            args=[held.token if held is not None else "", upload.id,
                  int(upload.expires * 1000), reserves(upload), json.dumps(upload.to_json())]))
        if not int(saved):
            raise UploadBusy("this request no longer holds the upload's lock")

    def delete(self, upload_id: str) -> None:
        key = self._key(upload_id)

        def drop() -> None:
            pipe = self.client.pipeline()
            pipe.delete(key)
            pipe.zrem(self._index, upload_id)
            pipe.hdel(self._reserved, upload_id)
            pipe.execute()
        self._call(drop)
        self._remove_files(upload_id)

    def sweep(self) -> None:
        """Remove the files of uploads whose record expired or went, and
        bodies a killed process left."""
        self._sweep_files(self._known)

    def _known(self, upload_ids: List[str]) -> List[bool]:
        def exists() -> List[Any]:
            pipe = self.client.pipeline(transaction=False)
            for upload_id in upload_ids:
                pipe.exists(self._key(upload_id))
            return pipe.execute()
        return [bool(found) for found in self._call(exists)] if upload_ids else []

    # -- locks ----------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, upload_id: str) -> Iterator[Optional[Upload]]:
        if not is_upload_id(upload_id):
            yield None
            return
        key = self._key(upload_id) + ":lock"
        token = secrets.token_urlsafe(16)
        sent = time.monotonic()
        if not self._call(lambda: self.client.set(key, token, nx=True,
                                                  px=int(self.lock_ttl * 1000))):
            raise UploadBusy("another request is appending to this upload")
        self.keeper.hold(upload_id, HeldLock(key, token, sent + self.lock_ttl * LOCK_TRUST))
        try:
            yield self.get(upload_id)
        finally:
            self.keeper.drop(upload_id)
            try:
                self._call(lambda: self._release(keys=[key], args=[token]))
            except StorageUnavailable:
                pass  # it expires by itself within lock_ttl

    def holding(self, upload_id: str) -> None:
        held = self.keeper.get(upload_id)
        if held is not None and time.monotonic() < held.trusted_until:
            return
        if held is not None and not held.reachable:
            raise StorageUnavailable("the upload records are unavailable (Redis); retry later")
        raise UploadBusy("this request no longer holds the upload's lock")

    def _extend_lock(self, lock: HeldLock) -> bool:
        return bool(int(self._call(lambda: self._extend(
            keys=[lock.key], args=[lock.token, int(self.lock_ttl * 1000)]), breaker=False)))

    def close(self) -> None:
        self.keeper.close()
