"""
Settings
========

Every option of wsgiprogress is declared once here, as a :class:`Setting`
with a converter, a default and a help text.  That one table drives keyword
validation, defaults and — for the command line and ini files — parsing of
string values.  Converters accept native values and strings alike and raise
:class:`~wsgiprogress.errors.ConfigurationError` with a message that says how
to fix the value.

.. code-block:: python

    from wsgiprogress.settings import MIDDLEWARE_SETTINGS, resolve

    options = resolve(MIDDLEWARE_SETTINGS, {"ttl": "60", "methods": "POST PUT"})
    options["methods"]   # ('POST', 'PUT')
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from .errors import ConfigurationError
from .ids import IdFinder

DIALECTS = ("native", "lighttpd", "nginx")

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))
_SIZE = re.compile(r"\s*(\d+)\s*([kmg]i?b?)?\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
_METHOD = re.compile(r"[A-Z]{1,20}\Z")


class Setting(NamedTuple):
    """One option: its *name*, a *convert* callable, a *default* and *help*."""

    name: str
    convert: Callable[[Any], Any]
    default: Any
    help: str


def as_bool(value: Any) -> bool:
    """``True``/``False``, or one of 1/0, true/false, yes/no, on/off."""
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
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"expected a number of seconds >= 0, not {value!r}")
    return seconds


def as_count(value: Any) -> int:
    """A whole number >= 1."""
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise ValueError(f"expected a whole number >= 1, not {value!r}")
    return int(value)


def as_optional_size(value: Any) -> Optional[int]:
    """``None`` (no limit), bytes, or a string such as ``"10M"`` (KiB/MiB/GiB)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    match = _SIZE.match(str(value)) if isinstance(value, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"expected a size in bytes >= 1 such as 1048576 or '10M', "
                         f"or None for no limit, not {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "")[:1].lower()]


def as_methods(value: Any) -> Tuple[str, ...]:
    """HTTP methods, as a list or a string separated by spaces or commas."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    methods = tuple(str(m).upper() for m in items)
    if not methods or not all(_METHOD.match(m) for m in methods):
        raise ValueError(f"expected HTTP methods such as 'POST PUT', not {value!r}")
    return methods


def as_optional_count(value: Any) -> Optional[int]:
    """``None`` or a whole number >= 1."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    return as_count(value)


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
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        return as_path(value)
    except ValueError:
        raise ValueError(f"expected a URL path starting with '/', such as '/_dashboard', "
                         f"or None for off, not {value!r}") from None


def as_dialect(value: Any) -> str:
    """One of ``native``, ``lighttpd``, ``nginx``."""
    if value not in DIALECTS:
        raise ValueError(f"expected one of {', '.join(DIALECTS)}, not {value!r}")
    return str(value)


def as_id_name(value: Any) -> str:
    """A header name of letters, digits and ``-``."""
    return IdFinder(value).name


def as_origins(value: Any) -> Tuple[str, ...]:
    """Origins allowed to read probes cross-origin: ``*`` or a list of
    ``scheme://host[:port]``; empty turns CORS off."""
    if value is None:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    for origin in items:
        if origin != "*" and not re.match(r"https?://[^/\s]+\Z", str(origin)):
            raise ValueError(f"expected '*' or origins such as 'https://example.com', "
                             f"not {origin!r}")
    return tuple(str(o) for o in items)


#: What the probe accepts; shared by the middleware and the server.
PROBE_SETTINGS: Tuple[Setting, ...] = (
    Setting("progress_url", as_path, "/progress",
            "URL path of the progress probe"),
    Setting("dialect", as_dialect, "native",
            "default probe format: native, lighttpd or nginx"),
    Setting("id_name", as_id_name, "X-Progress-ID",
            "header and query parameter that carries the progress ID"),
    Setting("allowed_origins", as_origins, (),
            "origins allowed to poll the probe cross-origin ('*' for any); "
            "empty: CORS off"),
    Setting("debug", as_bool, False,
            "log every tracked request and every probe answer"),
)

#: The backend URL schemes :func:`wsgiprogress.backends.backend_from_url` knows.
BACKEND_SCHEMES = ("memory://", "redis://", "rediss://", "unix://")


def as_backend(value: Any) -> str:
    """``memory://`` or a Redis URL such as ``redis://127.0.0.1:6379/0``."""
    if not isinstance(value, str) or not (value == "memory://" or (
            value.startswith(BACKEND_SCHEMES[1:]) and not any(c.isspace() for c in value))):
        raise ValueError(f"expected memory:// or a Redis URL such as "
                         f"redis://127.0.0.1:6379/0, not {value!r}")
    return value


def as_prefix(value: Any) -> str:
    """A Redis key prefix: 1-64 printable characters without spaces."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable() \
            or " " in value:
        raise ValueError(f"expected 1-64 printable characters without spaces, not {value!r}")
    return value


#: What the table accepts when the middleware or server makes one.
TABLE_SETTINGS: Tuple[Setting, ...] = (
    Setting("backend", as_backend, "memory://",
            "where progress and mailboxes live: memory:// (this process) or "
            "redis://host:port/db (shared by every process using it)"),
    Setting("key_prefix", as_prefix, "wsgiprogress:",
            "prefix of every Redis key, so applications can share one Redis"),
    Setting("ttl", as_seconds, 30.0,
            "seconds a finished request's progress stays visible"),
    Setting("capacity", as_count, 10_000,
            "most progress entries held; beyond it new requests run untracked"),
)

#: How waiting clients are served: long-polls (``wait=``) and SSE streams.
WAIT_SETTINGS: Tuple[Setting, ...] = (
    Setting("max_wait", as_seconds, 30.0,
            "longest a long-poll (wait=) waits for a change, in seconds"),
    Setting("sse_keepalive", as_seconds, 15.0,
            "seconds between SSE comment keepalives"),
    Setting("sse_retry", as_count, 3000,
            "reconnection delay hint sent to SSE clients, in milliseconds"),
    Setting("sse_max_duration", as_seconds, 300.0,
            "seconds after which an SSE stream ends (the client resumes at once)"),
)

#: What :class:`~wsgiprogress.mailbox_app.MailboxApp` accepts besides WAIT_SETTINGS.
MAILBOX_SETTINGS: Tuple[Setting, ...] = (
    Setting("mailbox_url", as_path, "/mailbox",
            "URL path under which mailboxes are served: <mailbox_url>/<name>"),
    Setting("publish", as_bool, False,
            "accept POST <mailbox_url>/<name> to publish (needs authorize or publish_token)"),
    Setting("publish_token", as_optional_token, None,
            "bearer token that allows publishing, reading stats and the dashboard"),
)

_METHODS = Setting("methods", as_methods, ("POST",),
                   "HTTP methods whose requests are tracked")

#: Where :class:`~wsgiprogress.dashboard.Dashboard` answers; off by default.
DASHBOARD_URL = Setting("dashboard_url", as_optional_path, None,
                        "URL path of the operator dashboard, protected like the stats "
                        "(needs publish_token or authorize); none: off")

#: Everything :class:`~wsgiprogress.middleware.ProgressMiddleware` accepts.
_MAX_WAITERS = Setting("max_waiters", as_optional_count, None,
                       "most clients waiting at once (long-polls, streams), each holding a "
                       "thread; beyond it 503 with Retry-After; default: the server's "
                       "threads minus a quarter, under the middleware 50")

_SHARED = PROBE_SETTINGS + TABLE_SETTINGS + MAILBOX_SETTINGS + WAIT_SETTINGS + (
    DASHBOARD_URL, _MAX_WAITERS)
MIDDLEWARE_SETTINGS: Tuple[Setting, ...] = _SHARED + (
    _METHODS,
    Setting("max_request_size", as_optional_size, None,
            "answer 413 to a tracked request whose Content-Length exceeds this"),
)

#: Whether an entry point serves mailboxes: the server, the Paste filter, the
#: Pyramid include and Flask's ``PROGRESS_MAILBOX`` (the middleware takes a
#: ``mailbox=`` argument instead).
MAILBOX_SWITCH = Setting("mailbox", as_bool, False,
                         "serve the backend's mailboxes at mailbox_url (the app finds the "
                         "store in environ['wsgiprogress.mailbox'])")

#: What :mod:`wsgiprogress.server` accepts besides waitress's own settings.
SERVER_SETTINGS: Tuple[Setting, ...] = _SHARED + (
    _METHODS,
    Setting("probe_threads", as_count, 2,
            "threads that answer probes, apart from the application's threads"),
    MAILBOX_SWITCH,
)

#: waitress settings whose defaults :mod:`wsgiprogress.server` changes, and why.
TUNED_WAITRESS_DEFAULTS: Dict[str, Tuple[Any, str]] = {
    "recv_bytes": (262144, "256 KiB reads: about 1.1 GB/s instead of 290 MB/s with "
                           "8 KiB, and far better while another thread is busy"),
    "asyncore_use_poll": (True, "poll() instead of select(), which kills the process "
                                "above about 1020 open descriptors"),
    "channel_request_lookahead": (1, "lets a running request see that its client left "
                                     "(waitress.client_disconnected)"),
}


def mailbox_strays(names: Iterable[str], dashboard: bool) -> List[str]:
    """The mailbox settings among *names*, which do nothing while mailboxes
    are off (``publish_token`` also guards a *dashboard*): an entry point
    refuses them rather than ignore them silently."""
    strays = sorted(set(names) & {s.name for s in MAILBOX_SETTINGS})
    return [name for name in strays if not (dashboard and name == "publish_token")]


def unknown_setting(name: str, known: Iterable[str], prefix: str = "",
                    list_known: bool = True) -> ConfigurationError:
    """The error for setting *name*, which is none of *known*: it suggests the
    closest one, else lists them all (when *list_known*); every name is shown
    with *prefix*, as it was written (``wsgiprogress.`` in Pyramid settings)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        hint = f"; did you mean {prefix + close[0]!r}?"
    else:
        hint = "; known settings: " + ", ".join(prefix + k for k in known) if list_known else ""
    return ConfigurationError(f"unknown setting {prefix + name!r}{hint}")


def resolve(settings: Iterable[Setting], given: Mapping[str, Any],
            prefix: str = "") -> Dict[str, Any]:
    """Defaults overlaid with the converted *given* values.

    :param prefix: how the names were written, for error messages.
    :raises ConfigurationError: for an unknown name (with a suggestion) or a
        value its converter rejects.
    """
    table = {s.name: s for s in settings}
    for name in given:
        if name not in table:
            raise unknown_setting(name, table, prefix)
    resolved = {}
    for name, setting in table.items():
        if name not in given:
            resolved[name] = setting.default
            continue
        try:
            resolved[name] = setting.convert(given[name])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{prefix}{name}: {exc}") from None
    return resolved
