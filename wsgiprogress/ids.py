"""
Progress IDs
============

A progress ID names one tracked request.  Clients send it in the
``X-Progress-ID`` header or as a query parameter of the same name; the header
wins.  The parameter name matches case-insensitively but only as a whole
parameter (``fooX-Progress-ID=1`` is not a match).

.. code-block:: python

    finder = IdFinder("X-Progress-ID")
    raw = finder.find(environ)          # None when absent
    if raw is not None and is_valid_id(raw):
        ...
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

MIN_ID_LENGTH = 8
MAX_ID_LENGTH = 128
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{%d,%d}\Z" % (MIN_ID_LENGTH, MAX_ID_LENGTH))
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}\Z")

#: What a valid ID looks like, for error messages.
ID_RULE = (f"{MIN_ID_LENGTH} to {MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ : -")


def is_valid_id(value: str) -> bool:
    """True for 8–128 characters of ``A-Z a-z 0-9 . _ : -``."""
    return _VALID_ID.match(value) is not None


def query_param(query: str, name_lower: str) -> Optional[str]:
    """The first value of the parameter named *name_lower* (any case) in *query*.

    Only whole parameter names match; values are percent-decoded.
    """
    if name_lower not in query.lower() and "%" not in query:
        return None  # fast path; a percent-encoded name is decoded below
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep and unquote_plus(key).lower() == name_lower:
            return unquote_plus(value)
    return None


class IdFinder:
    """Finds the progress ID of a request: header first, then query.

    :param name: the header and query parameter name, ``X-Progress-ID`` by
        default.  Letters, digits and ``-`` only: servers drop headers whose
        names contain ``_``.
    """

    __slots__ = ("name", "environ_key", "name_lower")

    def __init__(self, name: str = "X-Progress-ID") -> None:
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(
                f"id_name must be 1-64 letters, digits or '-', not {name!r} "
                "(servers drop header names containing '_')")
        self.name = name
        self.environ_key = "HTTP_" + name.upper().replace("-", "_")
        self.name_lower = name.lower()

    def find(self, environ: WSGIEnvironment) -> Optional[str]:
        """The raw ID the request carries, valid or not; ``None`` when absent."""
        value = environ.get(self.environ_key)
        if value is not None:
            return str(value).strip()
        query = environ.get("QUERY_STRING")
        if not query:
            return None
        return query_param(query, self.name_lower)
