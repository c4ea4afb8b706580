"""
Upload storage
==============

:class:`UploadStorage` is the one interface the resumable-upload protocols
use; configuration picks its implementation in one place
(:meth:`wsgiprogress.backends.Backend.uploads`).  The bytes always live in
a directory (``resumable_dir``): ``<id>.bin`` (the body) and, once the
application answered, ``<id>.response`` (the kept response body).  The
record (the :class:`~.upload.Upload`) and the per-upload append lock live
where the implementation keeps them:

* :class:`DirectoryStorage` (the default): ``<id>.json`` beside the bytes,
  replaced atomically (write, fsync, rename), and ``<id>.lock``, taken with
  ``flock``, so several processes of one host share the directory.
* :class:`wsgiprogress.backends.redis.uploads.RedisUploads` (the Redis
  backend): records and expiring, token-owned locks in Redis, so several
  hosts share the directory on shared storage.

Durability (the fsync policy): an offset is reported only once the bytes
before it are on disk.  :meth:`Appender.commit` fsyncs the data file, then
writes the record with the new offset (for the directory: fsync, rename,
fsync of the directory).  It runs when an append ends, every
:data:`SYNC_BYTES` during a long one, and when a connection breaks (what
arrived is kept).  Bytes past the recorded offset (a process killed
mid-append) are cut off by the next append, so the bytes before the offset
are never disturbed.

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
from typing import IO, Callable, ContextManager, Iterator, List, Optional, Tuple

from ..errors import ProgressError
from .upload import Upload, is_upload_id

log = logging.getLogger("wsgiprogress")

#: A long append is committed (fsync + offset) after this many bytes.
SYNC_BYTES = 16 * 1024 * 1024
#: Between an upload's ID and a token: a request body being written (:mod:`.parts`).
PART = ".part-"
#: A full disk, a full quota, a file-size limit (RLIMIT_FSIZE): all mean 507.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: The files of one upload in the directory, whatever keeps its record.
FILES = (".bin", ".response")


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


class StorageUnavailable(StorageError):
    """Where the records live (Redis) does not answer: no upload can go on
    without its record, so the client is asked to retry."""

    status = "503 Service Unavailable"


class TooLong(StorageError):
    """The bytes sent go past the upload's length or ``resumable_max_size``."""

    status = "400 Bad Request"


class UploadStorage:
    """Uploads whose bytes are files in *directory* (created when missing);
    subclasses keep the records and the locks.

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

    # -- the records and the locks (the subclass's) ---------------------------------

    def create(self, upload: Upload) -> None:
        """Store a new, empty *upload* after removing expired ones.

        :raises TooManyUploads, StorageFull: past a bound.
        """
        raise NotImplementedError

    def get(self, upload_id: str) -> Optional[Upload]:
        """The upload, or ``None`` when unknown, malformed or expired."""
        raise NotImplementedError

    def save(self, upload: Upload) -> None:
        """Store *upload*'s record; it now expires ``ttl`` from now."""
        raise NotImplementedError

    def delete(self, upload_id: str) -> None:
        """Remove the upload and everything kept for it."""
        raise NotImplementedError

    def locked(self, upload_id: str) -> ContextManager[Optional[Upload]]:
        """Hold the upload's lock and yield its record, fresh (``None`` when
        it is gone).

        :raises UploadBusy: when another request, in any process, holds it.
        """
        raise NotImplementedError

    def holding(self, upload_id: str) -> None:
        """Check, before bytes are written, that this process still holds
        *upload_id*'s lock (a lock that can expire may have).

        :raises UploadBusy: when it does not.
        """

    def close(self) -> None:
        """Release what the storage holds (connections, threads)."""

    # -- the bytes (shared) -----------------------------------------------------------

    def path(self, upload_id: str, suffix: str) -> str:
        if not is_upload_id(upload_id):  # never a path outside the directory
            raise ValueError(f"not an upload ID: {upload_id[:64]!r}")
        return os.path.join(self.directory, upload_id + suffix)

    def part_path(self, upload_id: str) -> str:
        """A fresh file name for one request's body (:mod:`.parts`)."""
        return self.path(upload_id, PART + secrets.token_hex(8))

    def has_body(self, upload_id: str) -> bool:
        """True when *upload_id*'s bytes are in the directory: one ``stat``,
        cheap enough for the server's I/O thread (the record may be gone)."""
        return is_upload_id(upload_id) and os.path.exists(self.path(upload_id, ".bin"))

    def open_body(self, upload: Upload) -> IO[bytes]:
        """The stored bytes, for reading."""
        return open(self.path(upload.id, ".bin"), "rb")

    def open_response(self, upload: Upload, mode: str = "rb") -> IO[bytes]:
        """The kept response body (``"wb"``: to write it)."""
        return open(self.path(upload.id, ".response"), mode)

    def _create_body(self, upload: Upload) -> None:
        """The empty data file of a new upload.

        :raises StorageFull: when the disk is full.
        """
        try:
            open(self.path(upload.id, ".bin"), "xb").close()
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise StorageFull("the disk is full") from exc
            raise

    def _remove_files(self, upload_id: str, suffixes: Tuple[str, ...] = FILES) -> None:
        """Remove *upload_id*'s files, bodies still arriving for it included
        (their appends will find no upload)."""
        for suffix in suffixes:
            with contextlib.suppress(OSError, ValueError):
                os.unlink(self.path(upload_id, suffix))
        prefix = upload_id + PART
        for name in os.listdir(self.directory):
            if name.startswith(prefix):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))

    def _sweep_files(self, known: Callable[[List[str]], List[bool]]) -> None:
        """Remove bodies a killed process left (parts older than ``ttl``) and
        the files of uploads whose record is gone: *known* says, for a list
        of IDs, which still have one."""
        stale = self.clock() - self.ttl
        bodies = []
        for name in os.listdir(self.directory):
            if PART in name:
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    if os.stat(path).st_mtime < stale:
                        os.unlink(path)
            elif name.endswith(".bin"):
                bodies.append(name[:-len(".bin")])
        bodies = [upload_id for upload_id in bodies if is_upload_id(upload_id)]
        for upload_id, kept in zip(bodies, known(bodies)):
            if not kept:
                self._remove_files(upload_id)


class DirectoryStorage(UploadStorage):
    """Records and locks beside the bytes: ``<id>.json`` and ``<id>.lock``."""

    def create(self, upload: Upload) -> None:
        stored = self.sweep()
        if len(stored) >= self.max_uploads:
            raise TooManyUploads(f"{self.max_uploads} uploads are stored; retry later")
        if self.max_disk is not None:
            reserved = sum(reserves(u) for u in stored) + reserves(upload)
            if reserved > self.max_disk:
                raise StorageFull("the upload storage is full")
        try:
            open(self.path(upload.id, ".lock"), "xb").close()
            self.save(upload)  # the record first: a sweep removes bodies without one
            self._create_body(upload)
        except (OSError, StorageError) as exc:
            self.delete(upload.id)
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                raise StorageFull("the disk is full") from exc
            raise

    def get(self, upload_id: str) -> Optional[Upload]:
        """An expired upload is removed."""
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
        """Written atomically: a temporary file, fsync, rename, fsync of the directory."""
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
        self._remove_files(upload_id, (".json", *FILES, ".lock", ".json.tmp"))

    def sweep(self) -> List[Upload]:
        """Remove expired uploads, and bodies a killed process left behind;
        the uploads left."""
        left = []
        for name in os.listdir(self.directory):
            if name.endswith(".json"):
                upload = self.get(name[:-len(".json")])
                if upload is not None:
                    left.append(upload)
        self._sweep_files(lambda ids: [os.path.exists(self.path(i, ".json")) for i in ids])
        return left

    @contextlib.contextmanager
    def locked(self, upload_id: str) -> Iterator[Optional[Upload]]:
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

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def reserves(upload: Upload) -> int:
    """The bytes *upload* holds against ``resumable_max_disk``."""
    return upload.length if upload.length is not None else upload.offset
