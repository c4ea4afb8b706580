"""
Query strings
=============

The one parser of URL query strings.  :func:`query_param` finds one value
without splitting more than it must (it runs on waitress's I/O thread for
every tracked request); :func:`query_params` reads a whole query for an
endpoint, bounded so a flood of parameters costs nothing.  Both match names
as whole parameters and decode ``%xx`` and ``+``.

.. code-block:: python

    query_param("a=1&X-Progress-ID=abc", "x-progress-id")   # 'abc'
    query_params("after=7&wait=30")                          # {'after': '7', 'wait': '30'}
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Tuple
from urllib.parse import unquote_plus

#: The most parameters an endpoint reads from one query.
MAX_QUERY_FIELDS = 32


class TooManyParameters(ValueError):
    """A query with more than :data:`MAX_QUERY_FIELDS` parameters."""


def _pairs(query: str) -> Iterator[Tuple[str, str]]:
    # (name, raw value) of each parameter with "="; a bare name has no value
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep:
            yield unquote_plus(key), value


def query_param(query: str, name_lower: str) -> Optional[str]:
    """The first value of the parameter named *name_lower* (any case) in
    *query*, percent-decoded; ``None`` when absent (a name without ``=``
    has no value)."""
    lowered = query.lower()
    if "%" not in query and "+" not in query:
        # fast path (every tracked request on the I/O thread): the name as sent
        at = lowered.find(name_lower + "=")
        while at > 0 and query[at - 1] != "&":
            at = lowered.find(name_lower + "=", at + 1)
        if at < 0:
            return None
        start = at + len(name_lower) + 1
        end = query.find("&", start)
        return query[start:] if end < 0 else query[start:end]
    for key, value in _pairs(query):
        if key.lower() == name_lower:
            return unquote_plus(value)
    return None


def query_params(query: str) -> Dict[str, str]:
    """The first value of each parameter of *query*, names as sent.

    :raises TooManyParameters: beyond :data:`MAX_QUERY_FIELDS` parameters.
    """
    if query.count("&") >= MAX_QUERY_FIELDS:
        raise TooManyParameters(f"too many query parameters (at most {MAX_QUERY_FIELDS})")
    params: Dict[str, str] = {}
    for key, value in _pairs(query):
        params.setdefault(key, unquote_plus(value))
    return params


def wants_event_stream(accept: str, transport: Optional[str]) -> bool:
    """True for a request that asks for server-sent events: ``Accept:
    text/event-stream`` or ``?transport=sse``."""
    return transport == "sse" or "text/event-stream" in accept.lower()


def parse_wait(value: Optional[str], cap: float) -> float:
    """A ``wait=`` parameter in seconds, at most *cap*; absent means 0.

    :raises ValueError: for anything but a number >= 0.
    """
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise ValueError("invalid wait: expected seconds >= 0")
    return min(seconds, cap)
