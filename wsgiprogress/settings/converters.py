"""
Converters
==========

Each setting of :mod:`wsgiprogress.settings` names one of these.  A converter
takes a native value or its string form (from a command line, an ini file or
a Flask config) and returns the value the code uses, or raises
:class:`ValueError` with a message that says what it expected.

.. code-block:: python

    as_size("10M")          # 10485760
    as_methods("POST, PUT")  # ('POST', 'PUT')
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Tuple, TypeVar
from urllib.parse import parse_qsl, urlsplit

#: The probe dialects, as :mod:`wsgiprogress.web.dialects` renders them.
DIALECTS = ("native", "lighttpd", "nginx")
#: The backend URL schemes :func:`wsgiprogress.backends.backend_from_url` knows.
BACKEND_SCHEMES = ("memory://", "redis://", "rediss://", "unix://")

T = TypeVar("T")

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))
# ASCII digits only: int() reads "²" nowhere and "１２" as 12, which no
# ini file or shell means
_WHOLE = re.compile(r"\s*[0-9]+\s*\Z")
_SIZE = re.compile(r"\s*([0-9]+)\s*([kmg]i?b?)?\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
_METHOD = re.compile(r"[A-Z]{1,20}\Z")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}\Z")
_ORIGIN = re.compile(r"https?://[^/\s]+\Z")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def as_bool(value: Any) -> bool:
    """``True``/``False``, or one of 1/0, true/false, yes/no, on/off; a typo
    is refused, never taken for false."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false (1/0, yes/no, on/off), not {value!r}")


def as_seconds(value: Any) -> float:
    """A number of seconds >= 0."""
    try:
        seconds = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError, OverflowError):
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"expected a number of seconds >= 0, not {value!r}")
    return seconds


def as_positive_seconds(value: Any) -> float:
    """A number of seconds > 0."""
    try:
        seconds = as_seconds(value)
    except ValueError:
        seconds = 0.0
    if seconds == 0:
        raise ValueError(f"expected a number of seconds > 0, not {value!r}")
    return seconds


def as_rate(value: Any) -> float:
    """Bytes per second >= 0 (0: no minimum)."""
    try:
        return as_seconds(value)
    except ValueError:
        raise ValueError(f"expected bytes per second >= 0, not {value!r}") from None


def as_count(value: Any) -> int:
    """A whole number >= 1."""
    if isinstance(value, bool) or not _WHOLE.match(str(value)) or int(value) < 1:
        raise ValueError(f"expected a whole number >= 1, not {value!r}")
    return int(value)


def _optional(convert: Callable[[Any], T], value: Any, expected: str) -> Optional[T]:
    """``None`` for none, else *value* as *convert* takes it; its refusal
    says *expected* and that none is allowed."""
    if _is_none(value):
        return None
    try:
        return convert(value)
    except ValueError:
        raise ValueError(f"expected {expected}, not {value!r}") from None


def as_optional_count(value: Any) -> Optional[int]:
    """``None`` or a whole number >= 1."""
    return _optional(as_count, value, "a whole number >= 1, or None for the default")


def as_size(value: Any) -> int:
    """Bytes >= 1, or a string such as ``"10M"`` (KiB, MiB, GiB)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"expected a size in bytes >= 1 such as 1048576 or '10M', "
                         f"not {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "")[:1].lower()]


def as_optional_size(value: Any) -> Optional[int]:
    """``None`` (no limit), or a size as :func:`as_size` takes it."""
    return _optional(as_size, value, "a size in bytes >= 1 such as 1048576 or '10M', "
                                     "or None for no limit")


def _items(value: Any, expected: str) -> List[Any]:
    """The items of a list, tuple or set, or of a string split at spaces and commas."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    raise ValueError(f"expected {expected}, not {value!r}")


def as_methods(value: Any) -> Tuple[str, ...]:
    """HTTP methods, as a list or a string separated by spaces or commas."""
    items = _items(value, "HTTP methods such as 'POST PUT'")
    methods = tuple(str(m).upper() for m in items)
    if not methods or not all(_METHOD.match(m) for m in methods):
        raise ValueError(f"expected HTTP methods such as 'POST PUT', not {value!r}")
    return methods


def as_optional_token(value: Any) -> Optional[str]:
    """``None`` (no token), or a secret of at least 16 characters."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) < 16 or any(c.isspace() for c in value):
        raise ValueError("expected a secret of at least 16 characters without spaces, "
                         "e.g. from secrets.token_urlsafe()")
    return value


def as_path(value: Any) -> str:
    """A URL path starting with ``/``."""
    if not isinstance(value, str) or not value.startswith("/") or any(
            c in value for c in "?# \t\r\n"):
        raise ValueError(f"expected a URL path starting with '/', such as '/progress', "
                         f"not {value!r}")
    return value


def as_optional_path(value: Any) -> Optional[str]:
    """``None`` (off), or a URL path starting with ``/``."""
    return _optional(as_path, value, "a URL path starting with '/', such as '/_dashboard', "
                                     "or None for off")


def as_optional_directory(value: Any) -> Optional[str]:
    """``None`` (off), or a filesystem directory path (created when missing)."""
    if _is_none(value):
        return None
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError(f"expected a directory path such as '/var/lib/uploads', or None "
                         f"for off, not {value!r}")
    return value


def as_dialect(value: Any) -> str:
    """One of ``native``, ``lighttpd``, ``nginx``."""
    if value not in DIALECTS:
        raise ValueError(f"expected one of {', '.join(DIALECTS)}, not {value!r}")
    return str(value)


def as_header_name(value: Any) -> str:
    """A header name of letters, digits and ``-`` (servers drop names with ``_``)."""
    if not isinstance(value, str) or not _HEADER_NAME.match(value):
        raise ValueError(f"expected 1-64 letters, digits or '-', not {value!r} "
                         "(servers drop header names containing '_')")
    return value


def as_origins(value: Any) -> Tuple[str, ...]:
    """Origins allowed to read cross-origin: ``*`` or a list of
    ``scheme://host[:port]``; empty turns CORS off."""
    if value is None:
        return ()
    items = _items(value, "'*' or origins such as 'https://example.com'")
    for origin in items:
        if origin != "*" and not _ORIGIN.match(str(origin)):
            raise ValueError(f"expected '*' or origins such as 'https://example.com', "
                             f"not {origin!r}")
    return tuple(str(o) for o in items)


def as_backend(value: Any) -> str:
    """``memory://`` or a Redis URL such as ``redis://127.0.0.1:6379/0``
    (``rediss://`` with TLS, ``unix:///run/redis.sock?db=0``) whose port and
    database are numbers: redis-py would take ``/1x`` for database 0."""
    if value == "memory://":
        return "memory://"
    problem = _redis_url_problem(value)
    if problem is not None:
        raise ValueError(f"expected memory:// or a Redis URL such as "
                         f"redis://127.0.0.1:6379/0{problem}, not {value!r}")
    return str(value)


def _redis_url_problem(value: Any) -> Optional[str]:
    """``None`` for a well-formed Redis URL, else what the message adds."""
    if not isinstance(value, str) or not value.startswith(BACKEND_SCHEMES[1:]) \
            or any(c.isspace() for c in value):
        return ""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        return " (a port from 1 to 65535)"
    if parts.scheme == "unix" and not parts.path.strip("/"):
        return " (unix:// and the socket's path: unix:///run/redis.sock)"
    if parts.scheme != "unix" and not _WHOLE.match(parts.path.lstrip("/") or "0"):
        return " (a database number after the last /)"
    if any(name == "db" and not _WHOLE.match(number)
           for name, number in parse_qsl(parts.query, keep_blank_values=True)):
        return " (a database number in db=)"
    return None


def as_prefix(value: Any) -> str:
    """A Redis key prefix: 1-64 printable characters without spaces."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable() \
            or " " in value:
        raise ValueError(f"expected 1-64 printable characters without spaces, not {value!r}")
    return value
