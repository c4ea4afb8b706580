"""
A message's body
================

What a publish (``POST <mailbox_url>/<name>``) carries, as text (UTF-8),
read within the message size bound whatever the server: a
``Content-Length`` body, or a chunked one that the server ends
(``wsgi.input_terminated``).  A body over the bound is not read.

.. code-block:: python

    text = read_message(environ, store.max_message_bytes)
    if text is None:
        return too_large_message(start_response, store.max_message_bytes)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, List, Optional

from .cursors import BadRequest
from .responses import plain

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def read_message(environ: WSGIEnvironment, limit: int) -> Optional[str]:
    """The text of a publish: its ``Content-Length`` bytes, or a chunked body
    to its end when the server says where it ends (``wsgi.input_terminated``:
    werkzeug's and gunicorn's servers give one without a length); ``None``
    when it has more than *limit* bytes, which are not read (of a chunked
    body, no more than one byte past *limit*).

    :raises BadRequest: for a Content-Length that is no number, a chunked
        body the server does not end, or a body that is not UTF-8.
    """
    stream = environ["wsgi.input"]
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest("invalid Content-Length")
        length = int(declared)
        return None if length > limit else _text(stream.read(length))
    if environ.get("wsgi.input_terminated"):
        pieces: List[bytes] = []
        left = limit + 1
        while left > 0:
            piece = stream.read(left)
            if not piece:
                break
            pieces.append(piece)
            left -= len(piece)
        return None if left <= 0 else _text(b"".join(pieces))
    if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
        raise BadRequest("a chunked message needs a server that ends it; send a Content-Length")
    return ""


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("a message must be UTF-8 text") from None


def too_large_message(start_response: StartResponse, limit: int) -> Iterable[bytes]:
    """The 413 of a message over *limit* bytes."""
    return plain(start_response, "413 Payload Too Large",
                 f"a message may have at most {limit} bytes")
