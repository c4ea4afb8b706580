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
        (nothing when it was closed before this call).  The body is held for
        them from this call until they are read to the end or closed (WSGI
        calls ``close()``), so a server handed them with the body's
        ``Content-Length`` gets every byte."""
        with self._lock:
            if self._closing:
                return iter(())
            self._readers += 1
        return _Pieces(self)

    def _piece(self, position: int) -> bytes:
        """Up to :data:`READ_SIZE` bytes from *position* (a reader holds the body)."""
        with self._lock:
            self._file.seek(position)
            return self._file.read(min(READ_SIZE, self.size - position))

    def _release(self) -> None:
        """A reader is done: the last one closes a body closed meanwhile."""
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


class _Pieces:
    """One reading of a :class:`KeptBody` (:meth:`KeptBody.chunks`), which
    holds the body until it is read to its end or closed."""

    def __init__(self, body: KeptBody) -> None:
        self.body = body
        self.position = 0
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self.done and self.position < self.body.size:
            data = self.body._piece(self.position)
            if data:
                self.position += len(data)
                return data
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Done reading (WSGI's ``close()``): the body may go."""
        if not self.done:
            self.done = True
            self.body._release()


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
