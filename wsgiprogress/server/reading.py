"""
Read sizes
==========

waitress asks every read of a connection for ``recv_bytes`` (256 KiB by
default on our server: an upload arrives far faster in big reads).  Above
glibc's mmap threshold (128 KiB), each such read maps its buffer and unmaps
it again: 15 us a read, measured, for a request of a few hundred bytes, on
the path of every probe and every publish.  :class:`SizedReads` (a base of
:class:`~wsgiprogress.server.channel.ProgressChannel`) asks for
:data:`FIRST_READ` until a read gets :data:`UPLOADING` or more, and for
``recv_bytes`` as long as reads get that much (an upload).
"""
from __future__ import annotations

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
