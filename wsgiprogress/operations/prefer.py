"""
The Prefer header
=================

:func:`parse_prefer` reads the preferences of RFC 7240 that operations
honour: ``respond-async``, ``wait`` and ``processing``.  Unknown preferences
are ignored; a preference given twice counts once, the first time; a
malformed ``wait`` makes :attr:`Preferences.wait_ok` false, and the runner
then ignores ``respond-async`` (a hint never fails a request).  A ``wait``
is delta-seconds: any run of digits, one too large to hold taken as
:data:`MAX_WAIT` (RFC 9111 §1.2.2); the runner caps it further.

.. code-block:: python

    parse_prefer("respond-async, wait=10")
    # Preferences(respond_async=True, wait=10, wait_ok=True, processing=False)
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional

#: The most characters of Prefer read; a longer header is ignored whole.
MAX_PREFER = 1024
#: The longest wait told apart: a larger one, however many digits, is this
#: (2**31, as RFC 9111 §1.2.2 says of delta-seconds too large to represent).
MAX_WAIT = 2 ** 31


class Preferences(NamedTuple):
    respond_async: bool = False
    #: Seconds, when given and well-formed.
    wait: Optional[int] = None
    #: False when ``wait`` was given malformed.
    wait_ok: bool = True
    processing: bool = False


def _split(value: str, separator: str) -> List[str]:
    """*value* split at *separator* outside quoted strings."""
    parts: List[str] = []
    current: List[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_prefer(header: str) -> Preferences:
    """The preferences in the (combined) Prefer header *header*."""
    if not header or len(header) > MAX_PREFER:
        return Preferences()
    found: Dict[str, Optional[str]] = {}
    for element in _split(header, ","):
        preference = _split(element, ";")[0]
        name, equals, value = preference.partition("=")
        name = name.strip().lower()
        if not name or name in found:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found[name] = value if equals else None
    wait: Optional[int] = None
    wait_ok = True
    if "wait" in found:
        raw = found["wait"] or ""
        if raw.isascii() and raw.isdigit():  # at most MAX_PREFER digits: int() reads them
            wait = min(int(raw), MAX_WAIT)
        else:
            wait_ok = False
    return Preferences("respond-async" in found, wait, wait_ok, "processing" in found)
