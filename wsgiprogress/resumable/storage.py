"""
Directory storage
=================

:class:`DirectoryStorage` keeps each upload as files in one directory:
``<id>.bin`` (the bytes), ``<id>.json`` (the :class:`~.upload.Upload`),
``<id>.lock`` (taken with ``flock`` by the one request appending) and, once
the application answered, ``<id>.response`` (the kept response body).
Several processes may share the directory: appends are serialized by the
lock file, metadata is replaced atomically (write, fsync, rename).

Durability (the fsync policy): an offset is reported only once the bytes
before it are on disk.  :meth:`Appender.commit` fsyncs the data file, then
writes the metadata with the new offset (fsync, rename, fsync of the
directory).  It runs when an append ends, every :data:`SYNC_BYTES` during a
long one, and when a connection breaks (what arrived is kept).  Bytes past
the recorded offset (a process killed mid-append) are cut off by the next
append, so the bytes before the offset are never disturbed.

.. code-block:: python

    storage = DirectoryStorage("/var/lib/uploads", ttl=86400, max_size=2**30,
                               max_uploads=1000, max_disk=None)
    storage.create(upload)
    with storage.locked(upload.id) as upload, storage.appender(upload) as out:
        out.write(chunk)          # committed when the block ends
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import time
from typing import IO, Any, Callable, Iterator, List, Optional

from ..errors import ProgressError
from .upload import Upload, is_upload_id

log = logging.getLogger("wsgiprogress")

#: A long append is committed (fsync + offset) after this many bytes.
SYNC_BYTES = 16 * 1024 * 1024
#: A full disk, a full quota, a file-size limit (RLIMIT_FSIZE): all mean 507.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class StorageError(ProgressError):
    """An upload cannot be stored; :attr:`status` is the HTTP answer."""

    status = "500 Internal Server Error"


class UploadBusy(StorageError):
    """Another request is appending to this upload."""

    status = "423 Locked"


class StorageFull(StorageError):
    """The disk, or ``resumable_max_disk``, is full; nothing was corrupted."""

    status = "507 Insufficient Storage"


class TooManyUploads(StorageError):
    """``resumable_max_uploads`` uploads are stored already."""

    status = "503 Service Unavailable"


class TooLong(StorageError):
    """The bytes sent go past the upload's length or ``resumable_max_size``."""

    status = "400 Bad Request"


class DirectoryStorage:
    """Uploads stored in *directory* (created when missing).

    :param ttl: seconds an upload lives after its last change.
    :param max_size: the largest upload.
    :param max_uploads: uploads stored at once.
    :param max_disk: bytes all uploads may reserve together (a known length
        reserves itself, a deferred one what is stored); ``None``: the disk.
    :param clock: epoch seconds; injectable for tests.
    """

    def __init__(self, directory: str, *, ttl: float, max_size: int, max_uploads: int,
                 max_disk: Optional[int], clock: Callable[[], float] = time.time) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.ttl = ttl
        self.max_size = max_size
        self.max_uploads = max_uploads
        self.max_disk = max_disk
        self.clock = clock

    def path(self, upload_id: str, suffix: str) -> str:
        if not is_upload_id(upload_id):  # never a path outside the directory
            raise ValueError(f"not an upload ID: {upload_id[:64]!r}")
        return os.path.join(self.directory, upload_id + suffix)

    # -- resources -------------------------------------------------------------

    def create(self, upload: Upload) -> None:
        """Store a new, empty *upload* after removing expired ones.

        :raises TooManyUploads, StorageFull: past a bound.
        """
        stored = self.sweep()
        if len(stored) >= self.max_uploads:
            raise TooManyUploads(f"{self.max_uploads} uploads are stored; retry later")
        if self.max_disk is not None:
            reserved = sum(_reserves(u) for u in stored) + _reserves(upload)
            if reserved > self.max_disk:
                raise StorageFull("the upload storage is full")
        try:
            open(self.path(upload.id, ".lock"), "xb").close()
            open(self.path(upload.id, ".bin"), "xb").close()
            self.save(upload)
        except OSError as exc:
            self._remove(upload.id)
            if exc.errno in _DISK_FULL:
                raise StorageFull("the disk is full") from exc
            raise

    def get(self, upload_id: str) -> Optional[Upload]:
        """The upload, or ``None`` when unknown, malformed or expired (an
        expired one is removed)."""
        if not is_upload_id(upload_id):
            return None
        try:
            with open(self.path(upload_id, ".json"), encoding="utf-8") as f:
                upload = Upload.from_json(json.load(f))
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if upload.expires <= self.clock():
            self.delete(upload_id)
            return None
        return upload

    def save(self, upload: Upload) -> None:
        """Write *upload*'s metadata atomically; it now expires ``ttl`` from now."""
        upload.expires = self.clock() + self.ttl
        final = self.path(upload.id, ".json")
        temporary = final + ".tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(upload.to_json(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if exc.errno in _DISK_FULL:
                raise StorageFull("the disk is full") from exc
            raise
        self._sync_directory()

    def delete(self, upload_id: str) -> None:
        """Remove the upload and everything kept for it."""
        self._remove(upload_id)

    def sweep(self) -> List[Upload]:
        """Remove expired uploads; the ones left."""
        left = []
        for name in os.listdir(self.directory):
            if name.endswith(".json"):
                upload = self.get(name[:-len(".json")])
                if upload is not None:
                    left.append(upload)
        return left

    @contextlib.contextmanager
    def locked(self, upload_id: str) -> Iterator[Optional[Upload]]:
        """Hold the upload's lock and yield it fresh from disk (``None`` when
        it is gone).

        :raises UploadBusy: when another request, in any process, holds it.
        """
        try:
            fd = os.open(self.path(upload_id, ".lock"), os.O_RDWR)
        except (OSError, ValueError):
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadBusy("another request is appending to this upload") from None
            yield self.get(upload_id)
        finally:
            os.close(fd)

    # -- bytes ------------------------------------------------------------------

    def appender(self, upload: Upload, *, algorithm: Optional[str] = None,
                 commit_partial: bool = True) -> Appender:
        """Append to *upload* (its lock held) at its offset."""
        return Appender(self, upload, algorithm, commit_partial)

    def open_body(self, upload: Upload) -> IO[bytes]:
        """The stored bytes, for reading."""
        return open(self.path(upload.id, ".bin"), "rb")

    def open_response(self, upload: Upload, mode: str = "rb") -> IO[bytes]:
        """The kept response body (``"wb"``: to write it)."""
        return open(self.path(upload.id, ".response"), mode)

    def concatenate(self, final: Upload, parts: List[Upload]) -> None:
        """Store the bytes of *parts*, in order, as *final*'s."""
        with self.appender(final) as out:
            for part in parts:
                with self.open_body(part) as body:
                    remaining = part.offset
                    while remaining:
                        chunk = body.read(min(remaining, 1024 * 1024))
                        if not chunk:
                            raise StorageError(f"partial upload {part.id} lost bytes")
                        out.write(chunk)
                        remaining -= len(chunk)

    def _remove(self, upload_id: str) -> None:
        for suffix in (".json", ".bin", ".response", ".lock", ".json.tmp"):
            with contextlib.suppress(OSError, ValueError):
                os.unlink(self.path(upload_id, suffix))

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reserves(upload: Upload) -> int:
    return upload.length if upload.length is not None else upload.offset


class Appender:
    """Writes one request's bytes at the end of an upload; a context manager
    that commits what was written when it ends, unless :meth:`discard` ran.

    :param algorithm: a :mod:`hashlib` name: :attr:`digest` is then the
        digest of the bytes written.
    :param commit_partial: commit during the append (every
        :data:`SYNC_BYTES`) and when it breaks; off when the bytes must be
        checked first (a checksum).
    """

    def __init__(self, storage: DirectoryStorage, upload: Upload, algorithm: Optional[str],
                 commit_partial: bool) -> None:
        self.storage = storage
        self.upload = upload
        self.limit = storage.max_size if upload.length is None else upload.length
        self.hash = hashlib.new(algorithm) if algorithm else None
        self.commit_partial = commit_partial
        self.written = 0
        self._unsynced = 0
        self._committed = upload.offset
        # unbuffered: a failed write leaves nothing pending to fail again
        self._file = open(storage.path(upload.id, ".bin"), "r+b", buffering=0)
        self._file.truncate(upload.offset)  # bytes past the offset never counted
        self._file.seek(upload.offset)

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if kind is None or (self.commit_partial and not isinstance(exc, StorageFull)):
                self.commit()
            else:
                self.discard()
        finally:
            self._file.close()

    @property
    def end(self) -> int:
        """The offset the bytes written so far reach."""
        return self._committed + self._unsynced

    def write(self, data: bytes) -> None:
        """Append *data*.

        :raises TooLong: past the upload's length or ``resumable_max_size``
            (nothing of *data* is written).
        :raises StorageFull: when the disk is full (what is committed stays).
        """
        if self.end + len(data) > self.limit:
            raise TooLong(f"the upload's length is {self.limit} bytes")
        try:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view) or 0:]
        except OSError as exc:
            self._disk_error(exc)
        if self.hash is not None:
            self.hash.update(data)
        self.written += len(data)
        self._unsynced += len(data)
        if self.commit_partial and self._unsynced >= SYNC_BYTES:
            self.commit()

    def commit(self) -> None:
        """Make the bytes written durable, then record the new offset."""
        if not self._unsynced:
            return
        try:
            os.fsync(self._file.fileno())
            self.upload.offset = self.end
            self.storage.save(self.upload)
        except OSError as exc:
            self.upload.offset = self._committed
            self._disk_error(exc)
        self._committed = self.upload.offset
        self._unsynced = 0

    def discard(self) -> None:
        """Forget what was written since the last commit."""
        self._unsynced = 0
        with contextlib.suppress(OSError):
            self._file.truncate(self._committed)

    def _disk_error(self, exc: OSError) -> None:
        self.discard()
        if exc.errno in _DISK_FULL:
            raise StorageFull("the disk is full") from exc
        raise exc
