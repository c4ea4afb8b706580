"""
Appending
=========

An :class:`Appender` writes one request's bytes at the end of an upload (its
lock held, :meth:`~.storage.UploadStorage.locked`) and commits them as
:mod:`.storage` describes: fsync, then the offset.

.. code-block:: python

    with storage.locked(upload_id) as upload, Appender(storage, upload) as out:
        out.write(chunk)          # or out.adopt(part): a body stored already
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from typing import IO, TYPE_CHECKING, Any, List, Optional

from . import storage as storage_module
from .storage import (
    DISK_FULL,
    StorageError,
    StorageFull,
    StorageUnavailable,
    TooLong,
    UploadBusy,
    UploadStorage,
)
from .upload import Upload

if TYPE_CHECKING:
    from .parts import StoredPart

#: A broken append is committed, except when one of these broke it: nothing
#: can be committed (a full disk, the lock lost, the records unreachable).
NO_COMMIT = (StorageFull, UploadBusy, StorageUnavailable)


def concatenate(storage: UploadStorage, final: Upload, parts: List[Upload]) -> None:
    """Store the bytes of *parts*, in order, as *final*'s (its lock held)."""
    with Appender(storage, final) as out:
        for part in parts:
            with storage.open_body(part) as body:
                remaining = part.offset
                while remaining:
                    chunk = body.read(min(remaining, 1024 * 1024))
                    if not chunk:
                        raise StorageError(f"partial upload {part.id} lost bytes")
                    out.write(chunk)
                    remaining -= len(chunk)


class Appender:
    """Writes one request's bytes at the end of an upload; a context manager
    that commits what was written when it ends, unless :meth:`discard` ran.

    :param algorithm: a :mod:`hashlib` name: :attr:`digest` is then the
        digest of the bytes written.
    :param commit_partial: commit during the append (every
        :data:`~.storage.SYNC_BYTES`) and when it breaks; off when the bytes must be
        checked first (a checksum).
    """

    def __init__(self, storage: UploadStorage, upload: Upload, *,
                 algorithm: Optional[str] = None, commit_partial: bool = True) -> None:
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
            if kind is None or (self.commit_partial and not isinstance(exc, NO_COMMIT)):
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
        self.storage.holding(self.upload.id)  # never write once another may
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
        if self.commit_partial and self._unsynced >= storage_module.SYNC_BYTES:
            self.commit()

    def adopt(self, part: StoredPart) -> None:
        """Append the whole body *part* holds: its file becomes the upload's
        bytes when nothing is stored yet (a rename), else it is copied in the
        kernel.

        :raises TooLong: past the length (nothing appended).
        :raises StorageFull: when the disk is full.
        """
        if self.end + part.size > self.limit:
            raise TooLong(f"the upload's length is {self.limit} bytes")
        self.storage.holding(self.upload.id)
        part.written()
        if self.hash is not None:
            with open(part.path, "rb") as body:
                for chunk in iter(lambda: body.read(1024 * 1024), b""):
                    self.hash.update(chunk)
        try:
            if self.end == 0:
                os.replace(part.path, self.storage.path(self.upload.id, ".bin"))
                self._file.close()
                self._file = open(self.storage.path(self.upload.id, ".bin"), "r+b",
                                  buffering=0)
                self._file.seek(part.size)
            else:
                with open(part.path, "rb", buffering=0) as body:
                    self._file.seek(self.end)
                    _copy(body, self._file, part.size)
        except OSError as exc:
            self._disk_error(exc)
        part.adopted = True
        part.remove()  # after a copy; after a rename nothing is left to remove
        self.written += part.size
        self._unsynced += part.size

    def commit(self) -> None:
        """Make the bytes written durable, then record the new offset."""
        if not self._unsynced:
            return
        try:
            os.fsync(self._file.fileno())
            self.upload.offset = self.end
            self.storage.save(self.upload)  # fenced: only while the lock is ours
        except OSError as exc:
            self.upload.offset = self._committed
            self._disk_error(exc)
        except StorageError:
            self.upload.offset = self._committed
            self.discard()
            raise
        self._committed = self.upload.offset
        self._unsynced = 0

    def discard(self) -> None:
        """Forget what was written since the last commit."""
        self._unsynced = 0
        try:
            self.storage.holding(self.upload.id)
        except StorageError:
            return  # the lock expired: the bytes past the offset may be another's now
        with contextlib.suppress(OSError):
            self._file.truncate(self._committed)

    def _disk_error(self, exc: OSError) -> None:
        self.discard()
        if exc.errno in DISK_FULL:
            raise StorageFull("the disk is full") from exc
        raise exc


def _copy(source: IO[bytes], target: IO[bytes], size: int) -> None:
    """*size* bytes from *source* (unbuffered, at 0) to *target* at its
    position: in the kernel where it can (copy_file_range), else through a buffer."""
    remaining = size
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        with contextlib.suppress(OSError):  # not on every filesystem; a full disk
            while remaining:  # fails below again, where it is reported
                copied = copy_range(source.fileno(), target.fileno(), remaining)
                if not copied:
                    break
                remaining -= copied
    source.seek(size - remaining)
    shutil.copyfileobj(_Limited(source, remaining), target)


class _Limited:
    """At most *size* bytes of *stream*."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream = stream
        self.remaining = size

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        data = self.stream.read(n)
        self.remaining -= len(data)
        return data
