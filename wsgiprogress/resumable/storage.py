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
    with storage.locked(upload.id) as upload, Appender(storage, upload) as out:
        out.write(chunk)          # committed when the block ends (.appender)
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import time
from typing import IO, Callable, Iterator, List, Optional

from ..errors import ProgressError
from .upload import Upload, is_upload_id

log = logging.getLogger("wsgiprogress")

#: A long append is committed (fsync + offset) after this many bytes.
SYNC_BYTES = 16 * 1024 * 1024
#: Between an upload's ID and a token: a request body being written (:mod:`.parts`).
PART = ".part-"
#: A full disk, a full quota, a file-size limit (RLIMIT_FSIZE): all mean 507.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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

    def part_path(self, upload_id: str) -> str:
        """A fresh file name for one request's body (:mod:`.parts`)."""
        return self.path(upload_id, PART + secrets.token_hex(8))

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
            if exc.errno in DISK_FULL:
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
            if exc.errno in DISK_FULL:
                raise StorageFull("the disk is full") from exc
            raise
        self._sync_directory()

    def delete(self, upload_id: str) -> None:
        """Remove the upload and everything kept for it."""
        self._remove(upload_id)

    def sweep(self) -> List[Upload]:
        """Remove expired uploads, and bodies a killed process left behind;
        the uploads left."""
        left = []
        stale = self.clock() - self.ttl
        for name in os.listdir(self.directory):
            if name.endswith(".json"):
                upload = self.get(name[:-len(".json")])
                if upload is not None:
                    left.append(upload)
            elif PART in name:
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mtime < stale:
                        os.unlink(path)
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

    def open_body(self, upload: Upload) -> IO[bytes]:
        """The stored bytes, for reading."""
        return open(self.path(upload.id, ".bin"), "rb")

    def open_response(self, upload: Upload, mode: str = "rb") -> IO[bytes]:
        """The kept response body (``"wb"``: to write it)."""
        return open(self.path(upload.id, ".response"), mode)

    def _remove(self, upload_id: str) -> None:
        for suffix in (".json", ".bin", ".response", ".lock", ".json.tmp"):
            with contextlib.suppress(OSError, ValueError):
                os.unlink(self.path(upload_id, suffix))
        # bodies still arriving for it: their appends will find no upload
        prefix = upload_id + PART
        for name in os.listdir(self.directory):
            if name.startswith(prefix):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reserves(upload: Upload) -> int:
    return upload.length if upload.length is not None else upload.offset
