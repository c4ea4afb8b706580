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

from ..query import query_param
from ..settings import ID_LENGTHS, default
from ..settings.converters import as_header_name

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

MIN_ID_LENGTH, MAX_ID_LENGTH = ID_LENGTHS
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{%d,%d}\Z" % (MIN_ID_LENGTH, MAX_ID_LENGTH))

#: What a valid ID looks like, for error messages.
ID_RULE = (f"{MIN_ID_LENGTH} to {MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ : -")


def is_valid_id(value: str, min_length: int = MIN_ID_LENGTH) -> bool:
    """True for 8–128 characters of ``A-Z a-z 0-9 . _ : -``, and at least
    *min_length* of them (the ``min_id_length`` setting)."""
    return len(value) >= min_length and _VALID_ID.match(value) is not None


class IdFinder:
    """Finds the progress ID of a request: header first, then query.

    :param name: the header and query parameter name, ``X-Progress-ID`` by
        default.  Letters, digits and ``-`` only: servers drop headers whose
        names contain ``_``.
    """

    __slots__ = ("name", "environ_key", "header_key", "name_lower")

    def __init__(self, name: str = default("id_name")) -> None:
        try:
            self.name = as_header_name(name)
        except ValueError as exc:
            raise ValueError(f"id_name: {exc}") from None
        #: The header as waitress's parser keys it, and as the environ does.
        self.header_key = name.upper().replace("-", "_")
        self.environ_key = "HTTP_" + self.header_key
        self.name_lower = name.lower()

    def find(self, environ: WSGIEnvironment) -> Optional[str]:
        """The raw ID the request carries, valid or not; ``None`` when absent."""
        return self.find_in(environ.get(self.environ_key), environ.get("QUERY_STRING"))

    def find_in(self, header: Optional[str], query: Optional[str]) -> Optional[str]:
        """The raw ID from the ID header's value and the query string, either
        of which may be ``None``: what a server's parser sees."""
        if header is not None:
            return str(header).strip()
        if not query:
            return None
        return query_param(query, self.name_lower)
