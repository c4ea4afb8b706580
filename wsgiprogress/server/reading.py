"""
Reads
=====

What a read of a connection costs besides the bytes it brings, which on an
upload is paid thousands of times a second.

Read sizes: waitress asks every read of a connection for ``recv_bytes``
(256 KiB by default on our server: an upload arrives far faster in big
reads).  Above glibc's mmap threshold (128 KiB), each such read maps its
buffer and unmaps it again: 15 us a read, measured, for a request of a few
hundred bytes, on the path of every probe and every publish.
:class:`SizedReads` (a base of
:class:`~wsgiprogress.server.channel.ProgressChannel`) asks for
:data:`FIRST_READ` until a read gets :data:`UPLOADING` or more, and for
``recv_bytes`` as long as reads get that much (an upload).

The body's file: waitress keeps a body above ``inbuf_overflow`` in a
temporary file, and every append to it asks the file where it is, seeks to
its end and back (three system calls, ~1 us) so that a reader could read on
in between.  A request's body has no reader until the whole body is in:
:class:`BodyBuffer` appends where the last append ended, and seeks back to
where reading starts once someone reads.

.. code-block:: python

    parser.body_rcv.buf = BodyBuffer(adj.inbuf_overflow)   # before the body comes
"""
from __future__ import annotations

from typing import IO, Any

from waitress.buffers import FileBasedBuffer, OverflowableBuffer

#: What a read asks for while the connection's reads are small: below
#: glibc's threshold.
FIRST_READ = 64 * 1024
#: A read that gets this much or more is an upload's: the next asks for ``recv_bytes``.
UPLOADING = 16 * 1024


class SizedReads:
    """``recv`` with the size chosen as the module docstring says."""

    #: True when the last read got :data:`UPLOADING` or more.
    uploading = False

    def recv(self, buffer_size: int) -> bytes:
        size = buffer_size if self.uploading else min(buffer_size, FIRST_READ)
        data: bytes = super().recv(size)  # type: ignore[misc]
        self.uploading = len(data) >= UPLOADING
        return data


class BodyBuffer(OverflowableBuffer):  # type: ignore[misc]
    """waitress's buffer of a request body, whose temporary file, once the
    body outgrows memory, is an :class:`AppendedFile`."""

    buf: Any

    def _set_large_buffer(self) -> None:
        super()._set_large_buffer()
        self.buf = AppendedFile(self.buf)


class AppendedFile(FileBasedBuffer):  # type: ignore[misc]
    """A body's temporary file, appended to without a seek until it is read."""

    def __init__(self, made: FileBasedBuffer) -> None:
        super().__init__(made.file)
        self.remain = made.remain
        file: IO[bytes] = made.file
        #: Where reading starts; the file stays at its end while appending.
        self.read_pos = file.tell()
        self.appending = True
        file.seek(0, 2)

    def append(self, s: bytes) -> None:
        if not self.appending:
            return super().append(s)  # type: ignore[no-any-return]
        self.file.write(s)
        self.remain += len(s)

    def reading(self) -> None:
        """Someone reads: back to where reading starts, seeking as waitress does."""
        if self.appending:
            self.appending = False
            self.file.seek(self.read_pos)

    def get(self, numbytes: int = -1, skip: bool = False) -> bytes:
        self.reading()
        return super().get(numbytes, skip)  # type: ignore[no-any-return]

    def skip(self, numbytes: int, allow_prune: int = 0) -> None:
        self.reading()
        super().skip(numbytes, allow_prune)

    def getfile(self) -> Any:
        self.reading()
        return self.file

    def prune(self) -> None:
        self.reading()
        super().prune()

    def newfile(self) -> Any:
        from tempfile import TemporaryFile

        return TemporaryFile("w+b")
