"""
Kept responses
==============

The final response of an operation that answered ``202 Accepted`` is kept,
so the client gets it from the monitor's response-message location even if
its connection dropped.  A :class:`KeptBody` holds the body in memory up to
:data:`SPILL_AT` bytes and in an anonymous temporary file beyond (gone when
closed, or when the process ends), up to its *limit*; a body over the limit
is dropped, not cut.  Closed (forgotten, expired, or making room) while
clients read it, it is released when the last of them is done: no client
gets it cut short.

.. code-block:: python

    body = KeptBody(limit=16 * 2**20)
    for chunk in app_iter:
        body.write(chunk)           # False once over the limit: dropped
    kept = KeptResponse("201 Created", [("Content-Type", "text/plain")], body)
    b"".join(kept.body.chunks())
"""
from __future__ import annotations

import tempfile
import threading
from typing import Iterator, List, NamedTuple, Tuple

#: Bodies up to this size stay in memory; larger ones go to a temporary file.
SPILL_AT = 256 * 1024
#: The size of the pieces a kept body is read back in.
READ_SIZE = 64 * 1024


class KeptBody:
    """A response body written once, then read back any number of times,
    concurrently.  At most *limit* bytes: beyond, it is :attr:`dropped`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.dropped = False
        self._file = tempfile.SpooledTemporaryFile(max_size=SPILL_AT,  # noqa: SIM115
                                                   prefix="wsgiprogress-kept-")
        self._lock = threading.Lock()
        self._readers = 0
        self._closing = False

    def write(self, data: bytes) -> bool:
        """Append *data*; False (and the body released) once over the limit."""
        if self.dropped:
            return False
        if self.size + len(data) > self.limit:
            self.dropped = True
            self.close()
            return False
        with self._lock:
            self._file.seek(0, 2)
            self._file.write(data)
        self.size += len(data)
        return True

    def chunks(self) -> Iterator[bytes]:
        """The body from its start, in pieces of at most :data:`READ_SIZE`
        (nothing when it was closed before the first)."""
        with self._lock:
            if self._closing:
                return
            self._readers += 1
        try:
            position = 0
            while position < self.size:
                with self._lock:
                    self._file.seek(position)
                    data = self._file.read(min(READ_SIZE, self.size - position))
                if not data:
                    return
                position += len(data)
                yield data
        finally:
            with self._lock:
                self._readers -= 1
                if self._closing and not self._readers:
                    self._file.close()

    def read(self) -> bytes:
        """The whole body (for a store that copies it elsewhere)."""
        return b"".join(self.chunks())

    def close(self) -> None:
        """Release the body, once the clients reading it are done."""
        with self._lock:
            self._closing = True
            if not self._readers:
                self._file.close()


class KeptResponse(NamedTuple):
    """A final response as the application gave it: the WSGI *status* line,
    the *headers* and the *body*."""

    status: str
    headers: List[Tuple[str, str]]
    body: KeptBody

    def message_head(self) -> bytes:
        """The status line and headers of the ``message/http`` form."""
        return message_head(self.status, self.headers)


def message_head(status: str, headers: List[Tuple[str, str]]) -> bytes:
    """An HTTP/1.1 status line and *headers*, up to the empty line."""
    lines = [f"HTTP/1.1 {status}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
