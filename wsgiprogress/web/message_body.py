"""
A message's body
================

What a publish (``POST <mailbox_url>/<name>``) carries, read within the
message size bound whatever the server: a ``Content-Length`` body, or a
chunked one that the server ends (``wsgi.input_terminated``).  A body over
the bound is not read.

.. code-block:: python

    body = read_message(environ, store.max_message_bytes)
    if body is None:
        ...  # 413
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

from .cursors import BadRequest

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


def read_message(environ: WSGIEnvironment, limit: int) -> Optional[bytes]:
    """The body of a publish: its ``Content-Length`` bytes, or a chunked body
    to its end when the server says where it ends (``wsgi.input_terminated``:
    werkzeug's and gunicorn's servers give one without a length); ``None``
    when it has more than *limit* bytes, which are not read (of a chunked
    body, no more than one byte past *limit*).

    :raises BadRequest: for a Content-Length that is no number, or a chunked
        body the server does not end.
    """
    stream = environ["wsgi.input"]
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest("invalid Content-Length")
        length = int(declared)
        return None if length > limit else stream.read(length)
    if environ.get("wsgi.input_terminated"):
        pieces: List[bytes] = []
        left = limit + 1
        while left > 0:
            piece = stream.read(left)
            if not piece:
                break
            pieces.append(piece)
            left -= len(piece)
        return None if left <= 0 else b"".join(pieces)
    if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
        raise BadRequest("a chunked message needs a server that ends it; send a Content-Length")
    return b""
