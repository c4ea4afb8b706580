"""
Response heads
==============

:func:`response_head` is the head waitress's ``WSGITask.build_response_header``
writes for a response whose body length is known, byte for byte
(tests/test_probe_answer.py compares the two for generated responses), and
:data:`HEADS` keeps the heads made this second by what they are made of: a
server answers the same few shapes over and over (a probe, a mailbox's
answer to a thousand waiters), and waitress's ``Date`` is the same all second
long.  :class:`~wsgiprogress.server.task.ProgressTask` and the probe's answer
(:mod:`~wsgiprogress.server.loop_probe`) take their heads from it.

.. code-block:: python

    made = HEADS.head("1.1", "", "200 OK", [("Content-Length", "2")], "waitress")
    if made is not None:
        head, closes = made
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from waitress.utilities import build_http_date

Headers = List[Tuple[str, str]]
#: Statuses whose response has no body.
NO_BODY = ("1", "204", "304")
#: Heads kept at most (each a few hundred bytes).
MAX_HEADS = 256


def response_head(version: str, connection: str, status: str,
                  headers: Sequence[Tuple[str, str]], ident: str, date: str
                  ) -> Optional[Tuple[bytes, bool]]:
    """The head waitress writes for a response of *status* and *headers*
    with its body in full, to a request of HTTP *version* with a
    ``Connection`` header *connection*, at *date* (``Date``), and whether
    the connection closes after it.  ``None`` for a body without
    ``Content-Length`` (waitress chunks it, or closes after it)."""
    if version not in ("1.0", "1.1"):
        version = "1.0"  # as waitress's Task
    has_body = not status.startswith(NO_BODY)
    connection = connection.lower()
    lines: Headers = []
    length: Optional[str] = None
    server: Optional[str] = None
    date_given: Optional[str] = None
    given_connection: Optional[str] = None
    for name, value in headers:
        name = "-".join(part.capitalize() for part in name.split("-"))
        if name == "Content-Length":
            if not has_body:
                continue
            length = value
        elif name == "Date":
            date_given = value
        elif name == "Server":
            server = value
        elif name == "Connection":
            given_connection = value
        lines.append((name, value))
    close = (version == "1.0" and not (connection == "keep-alive" and length)) or (
        version == "1.1" and (connection == "close" or not length))
    if has_body and not length:
        return None
    if version == "1.0" and not close:
        lines.append(("Connection", "Keep-Alive"))
    if close and given_connection is None:
        lines.append(("Connection", "close"))
    if server is None:
        if ident:
            lines.append(("Server", ident))
    else:
        lines.append(("Via", ident or "waitress"))
    if date_given is None:
        lines.append(("Date", date))
    lines.sort(key=lambda line: line[0])  # stable: same-named headers keep their order
    head = "\r\n".join([f"HTTP/{version} {status}", *(f"{n}: {v}" for n, v in lines)])
    return (head + "\r\n\r\n").encode("latin-1"), close


class Heads:
    """The heads made this second, by what they are made of (at most
    :data:`MAX_HEADS`).  Their ``Date`` is when the head is made; waitress
    writes when its task started, which for a parked or slow response was
    long before the response."""

    def __init__(self) -> None:
        self.second = -1
        self.date = ""
        self.made: Dict[Tuple[Any, ...], Optional[Tuple[bytes, bool]]] = {}

    def head(self, version: str, connection: str, status: str, headers: Headers,
             ident: str) -> Optional[Tuple[bytes, bool]]:
        when = time.time()
        if int(when) != self.second:  # a new Date: the heads made before go
            self.second, self.date, self.made = int(when), build_http_date(when), {}
        date = self.date
        key = (version, connection, status, tuple(headers), ident, date)
        made = self.made
        try:
            if key in made:
                return made[key]
            keep = True
        except TypeError:  # a header given as a list: made, not kept
            keep = False
        head = response_head(version, connection, status, headers, ident, date)
        if keep:
            if len(made) >= MAX_HEADS:
                made.clear()
            made[key] = head
        return head


#: The heads of this process.
HEADS = Heads()
