"""
Settings
========

Every option of wsgiprogress is declared once, in
:mod:`wsgiprogress.settings.table`, as a :class:`Setting` with a converter
(:mod:`wsgiprogress.settings.converters`), a default, a help text and the
*scope* that reads it.  That one table drives keyword validation
and defaults in every constructor, the command line's options, the PasteDeploy
and Pyramid keys and Flask's ``PROGRESS_*`` keys; :func:`check_front` refuses
the same mistakes between settings at every front door.

.. code-block:: python

    from wsgiprogress.settings import MIDDLEWARE_SETTINGS, resolve

    options = resolve(MIDDLEWARE_SETTINGS, {"ttl": "60", "methods": "POST PUT"})
    options["methods"]   # ('POST', 'PUT')

Scopes, and who reads them: ``probe`` (:mod:`wsgiprogress.web.probe`),
``backend`` (which backend :mod:`wsgiprogress.backends` opens), ``store``
(the stores it opens), ``wait`` (long-polls and event streams of the probe and
the mailboxes), ``waiters`` (their bound, :mod:`wsgiprogress.web.front`),
``mailbox`` (:mod:`wsgiprogress.mailbox` and :mod:`wsgiprogress.web.mailbox`),
``dashboard``, ``operations`` (:mod:`wsgiprogress.operations` and
:mod:`wsgiprogress.web.monitor`), ``resumable`` (:mod:`wsgiprogress.resumable`),
``tracking`` (:mod:`wsgiprogress.progress.tracking`), ``middleware`` and
``server`` (one front door each), ``websocket`` (our server's WebSocket
endpoints, :mod:`wsgiprogress.server.websocket`).
"""
from __future__ import annotations

import difflib
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Iterable,
    Iterator,
    Mapping,
    Optional,
    Tuple,
)

from ..errors import ConfigurationError
from . import extras
from .table import ID_LENGTHS as ID_LENGTHS
from .table import SETTINGS as SETTINGS
from .table import Setting as Setting
from .table import as_id_length as as_id_length

#: How a front door spells a setting's name in its messages.
Spell = Callable[[str], str]

_BY_NAME = {s.name: s for s in SETTINGS}


def scope(*scopes: str) -> Tuple[Setting, ...]:
    """The settings of *scopes*, in table order."""
    return tuple(s for s in SETTINGS if s.scope in scopes)


PROBE_SETTINGS = scope("probe")
STORE_SETTINGS = scope("store")
WAIT_SETTINGS = scope("wait")
MAILBOX_SETTINGS = scope("mailbox")
OPERATIONS_SETTINGS = scope("operations")
#: The bounds of a mailbox store (memory or Redis).
MAILBOX_LIMITS = tuple(s for s in MAILBOX_SETTINGS
                       if s.name.startswith("max_") or s.name == "mailbox_ttl")
#: What both front doors (middleware and server) serve in front of the application.
RESUMABLE_SETTINGS = scope("resumable")
FRONT_SETTINGS = scope("probe", "backend", "store", "wait", "waiters", "mailbox", "dashboard",
                       "operations", "resumable", "tracking")
#: Everything :class:`~wsgiprogress.middleware.ProgressMiddleware` accepts
#: (and the Paste filter, the Pyramid include and Flask's keys).
MIDDLEWARE_SETTINGS = FRONT_SETTINGS + scope("middleware")
#: WebSocket on our server.
WEBSOCKET_SETTINGS = scope("websocket")
#: The scopes only our server reads (the middleware refuses them, saying so).
SERVER_ONLY = ("server", "websocket")
#: What :mod:`wsgiprogress.server` accepts besides waitress's own settings.
SERVER_SETTINGS = FRONT_SETTINGS + scope(*SERVER_ONLY)

#: Waiting clients under the middleware, which cannot know the server's threads.
MIDDLEWARE_WAITERS = 50

#: waitress settings whose defaults :mod:`wsgiprogress.server` changes, and why.
#: This module may not import waitress (importing wsgiprogress needs only the
#: standard library), so the server applies those the installed waitress knows
#: (``wsgiprogress.server.TUNED_DEFAULTS``: no ``channel_request_lookahead`` before 2.0).
TUNED_WAITRESS_DEFAULTS: Dict[str, Tuple[Any, str]] = {
    "recv_bytes": (262144, "256 KiB reads: about 1.1 GB/s instead of 290 MB/s with "
                           "8 KiB, and far better while another thread is busy"),
    "asyncore_use_poll": (True, "poll() instead of select(), which kills the process "
                                "above about 1020 open descriptors"),
    "channel_request_lookahead": (1, "lets a running request see that its client left "
                                     "(waitress.client_disconnected)"),
}


def default(name: str) -> Any:
    """The declared default of setting *name*."""
    return _BY_NAME[name].default


def waiter_limit(max_waiters: Optional[int], threads: Optional[int] = None,
                 connections: Optional[int] = None) -> int:
    """How many clients may wait at once: *max_waiters* when set; on a server
    that parks waiters on its I/O loop, its *connections* but a quarter (at
    least ``threads + 2``), kept for ordinary requests; on a server whose
    waiters hold one of its *threads*, all but a quarter of them (at least
    one); elsewhere :data:`MIDDLEWARE_WAITERS`."""
    if max_waiters is not None:
        return max_waiters
    if connections is not None:
        return max(1, connections - max((threads or 0) + 2, connections // 4))
    if threads is None:
        return MIDDLEWARE_WAITERS
    return max(1, threads - max(1, threads // 4))


def prefixed(prefix: str) -> Spell:
    """Spells names as ``prefix + name`` (``wsgiprogress.ttl`` in Pyramid)."""
    return lambda name: prefix + name


def as_written(name: str) -> str:
    """Spells names as they are: keyword arguments and ini keys."""
    return name


#: The prefix of Flask's config keys (``PROGRESS_TTL``).
FLASK_PREFIX = "PROGRESS_"


def config_key(name: str) -> str:
    """Spells names as Flask's config keys: ``ttl`` is ``PROGRESS_TTL``,
    ``progress_url`` is ``PROGRESS_URL`` (:mod:`flask_progress`; the server
    names an application's keys so too)."""
    if name.startswith("progress_"):
        name = name[len("progress_"):]
    return FLASK_PREFIX + name.upper()


def unknown_setting(name: str, known: Iterable[str], spell: Spell = as_written,
                    list_known: bool = True) -> ConfigurationError:
    """The error for setting *name*, which is none of *known*: it suggests the
    closest one, else lists them all (when *list_known*); names are shown as
    *spell* writes them."""
    known = sorted(known)
    setting = _BY_NAME.get(name)
    if setting is not None and setting.scope in SERVER_ONLY and name not in known:
        # a setting of ours, for the other front door: no typo to suggest a fix for
        return ConfigurationError(f"{spell(name)} is read by wsgiprogress's server only, "
                                  f"never by the middleware: give {name} to "
                                  "wsgiprogress-serve or serve(), or remove it")
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        hint = f"; did you mean {spell(close[0])!r}?"
    else:
        hint = "; known settings: " + ", ".join(spell(k) for k in known) if list_known else ""
    return ConfigurationError(f"unknown setting {spell(name)!r}{hint}")


def misspelt_key(keys: Iterable[Any], known: Collection[str], prefix: str,
                 fold: Callable[[str], str] = str.lower) -> Optional[Tuple[str, str]]:
    """The first of *keys* (of a config that holds other things too: Flask's,
    Pyramid's settings) one typo away from one of *known* (names as the front
    door spells them, all starting with *prefix*), and that name; ``None``
    when there is none.  Keys that start with *prefix* are left to
    :func:`resolve`; *fold* makes a key's case the names'.

    .. code-block:: python

        misspelt_key({"wsgiprogres.ttl": "60"}, ["wsgiprogress.ttl"], "wsgiprogress.")
        # ("wsgiprogres.ttl", "wsgiprogress.ttl")
    """
    for key in keys:
        if not isinstance(key, str) or key.startswith(prefix):
            continue
        written = fold(key)
        for name in known:
            if abs(len(name) - len(written)) <= 1 and _one_typo_apart(written, name):
                return key, name
    return None


def _one_typo_apart(a: str, b: str) -> bool:
    """Whether *a* and *b* differ by at most one inserted, deleted, replaced
    or swapped character."""
    if a == b:
        return True
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    if len(a) == len(b):
        swapped = a[start + 2:] == b[start + 2:] and a[start:start + 2] == b[start:start + 2][::-1]
        return a[start + 1:] == b[start + 1:] or swapped
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[start + 1:] == shorter[start:]


def resolve(settings: Iterable[Setting], given: Mapping[str, Any],
            spell: Spell = as_written) -> Dict[str, Any]:
    """Defaults overlaid with the converted *given* values.

    :param spell: how the names were written, for error messages.
    :raises ConfigurationError: for an unknown name (with a suggestion) or a
        value its converter rejects.
    """
    table = {s.name: s for s in settings}
    for name in given:
        if name not in table:
            raise unknown_setting(name, table, spell)
    resolved = {}
    for name, setting in table.items():
        if name not in given:
            resolved[name] = setting.default
            continue
        try:
            resolved[name] = setting.convert(given[name])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{spell(name)}: {exc}") from None
    return resolved


def check_mailbox_limits(options: Mapping[str, Any], spell: Spell = as_written) -> None:
    """Refuse mailbox bounds that contradict each other.

    :raises ConfigurationError: naming the settings as *spell* writes them.
    """
    if options["max_message_bytes"] > options["max_bytes"]:
        raise ConfigurationError(f"{spell('max_message_bytes')} must not exceed "
                                 f"{spell('max_bytes')}, or a message could never be kept")


def check_operations(options: Mapping[str, Any], given: Collection[str],
                     spell: Spell = as_written) -> None:
    """Refuse operation settings that cannot work: given with operations off,
    or a kept response larger than all that is kept.

    :raises ConfigurationError: naming the settings as *spell* writes them.
    """
    if not options["operations"]:
        for name in sorted(set(given) & {s.name for s in OPERATIONS_SETTINGS} - {"operations"}):
            if options[name] != default(name):
                raise ConfigurationError(f"{spell(name)} configures operations: turn "
                                         f"{spell('operations')} on too")
    if options["max_kept_response"] > options["max_kept_bytes"]:
        raise ConfigurationError(f"{spell('max_kept_response')} must not exceed "
                                 f"{spell('max_kept_bytes')}, or a response could never "
                                 "be kept")


#: What an endpoint answers: the paths it answers exactly, and the prefix of
#: those it answers under it.
Paths = Tuple[Tuple[str, ...], Optional[str]]


def _overlap(one: Paths, other: Paths) -> bool:
    (exact, prefix), (other_exact, other_prefix) = one, other
    under = [(path, other_prefix) for path in exact] + [(path, prefix) for path in other_exact]
    if prefix is not None and other_prefix is not None:
        under += [(prefix, other_prefix), (other_prefix, prefix)]
    return bool(set(exact) & set(other_exact)) or any(
        start is not None and path.startswith(start) for path, start in under)


def _endpoints(options: Mapping[str, Any], mailboxes: bool
               ) -> Iterator[Tuple[str, Paths]]:
    """Each endpoint that is on: the setting that places it, the paths it
    answers exactly and the prefix of those under it, as
    :meth:`wsgiprogress.web.front.Front.route` matches them."""
    yield "progress_url", ((options["progress_url"],), None)
    if options["dashboard_url"] is not None:
        base = options["dashboard_url"].rstrip("/")
        yield "dashboard_url", ((options["dashboard_url"], base + "/data"), None)
    for name, on in (("mailbox_url", mailboxes), ("operations_url", options["operations"]),
                     ("resumable_url", options["resumable_dir"] is not None)):
        if on:
            base = options[name].rstrip("/")
            yield name, ((base,) if name == "resumable_url" else (), base + "/")


def check_paths(options: Mapping[str, Any], mailboxes: bool, spell: Spell = as_written) -> None:
    """Refuse endpoints whose paths overlap: the one routed first would
    answer what the other should.

    :raises ConfigurationError: naming both settings as *spell* writes them.
    """
    endpoints = list(_endpoints(options, mailboxes))
    for n, (name, paths) in enumerate(endpoints):
        for other, other_paths in endpoints[n + 1:]:
            if _overlap(paths, other_paths):
                raise ConfigurationError(
                    f"{spell(name)} {options[name]!r} and {spell(other)} {options[other]!r} "
                    "overlap, so one would answer the other's requests: give them paths apart")


def check_front(options: Mapping[str, Any], given: Collection[str], *,
                store_given: bool = False, mailbox_given: bool = False,
                authorize_given: bool = False, spell: Spell = as_written) -> None:
    """Refuse settings that contradict each other: the one place every front
    door (CLI, ``serve``, middleware, Paste, Pyramid, Flask) checks them, so
    each refuses the same mistakes with the same message.

    :param options: the resolved settings.
    :param given: the names set explicitly.
    :param store_given: a progress store object was passed in.
    :param mailbox_given: a mailbox store object was passed in.
    :param authorize_given: an ``authorize`` hook was passed in (it guards
        the probe too, so it is never without use).
    :raises ConfigurationError: naming the settings as *spell* writes them.
    """
    mailboxes = options["mailbox"] or mailbox_given
    dashboard = options["dashboard_url"] is not None
    if not mailboxes:
        for name in sorted(set(given) & {s.name for s in MAILBOX_SETTINGS} - {"mailbox"}):
            # a value that is the default changes nothing: only a real one is a mistake
            if options[name] != default(name) and not (dashboard and name == "publish_token"):
                raise ConfigurationError(f"{spell(name)} configures mailboxes: turn "
                                         f"{spell('mailbox')} on too")
    can_authorize = authorize_given or options["publish_token"] is not None
    if dashboard and not can_authorize:
        raise ConfigurationError(f"{spell('dashboard_url')} needs {spell('publish_token')} "
                                 "or an authorize hook: without either nobody could open "
                                 "the dashboard")
    if mailboxes and options["publish"] and not can_authorize:
        raise ConfigurationError(f"{spell('publish')} needs {spell('publish_token')} or an "
                                 "authorize hook: without either nobody could publish")
    check_mailbox_limits(options, spell)
    check_operations(options, given, spell)
    check_paths(options, mailboxes, spell)
    if options["resumable_dir"] is None:
        for name in sorted(set(given) & {s.name for s in RESUMABLE_SETTINGS}):
            if options[name] != default(name):
                raise ConfigurationError(f"{spell(name)} configures resumable uploads: set "
                                         f"{spell('resumable_dir')} too")
    if options["backend"] != "memory://":
        problem = extras.redis_url_problem(options["backend"])
        if problem is not None:
            raise ConfigurationError(f"{spell('backend')}: {problem}")
    if options["per_file"]:
        problem = extras.multipart_problem()
        if problem is not None:
            raise ConfigurationError(f"{spell('per_file')} needs werkzeug's multipart "
                                     f"decoder; {problem}")
    clash = [name for name in given if name in {s.name for s in scope("backend", "store")}]
    if store_given and clash:
        raise ConfigurationError(
            f"{' and '.join(spell(n) for n in clash)} "
            f"{'belongs' if len(clash) == 1 else 'belong'} to the progress store you "
            "passed: configure it there, e.g. ProgressTable(ttl=..., capacity=...) or "
            "backend_from_url(...).progress")


def check_websocket(options: Mapping[str, Any], given: Collection[str],
                    spell: Spell = as_written) -> None:
    """Refuse WebSocket settings without ``websocket``, and ``websocket``
    without wsproto installed (:mod:`wsgiprogress.settings.extras`)."""
    if not options["websocket"]:
        for name in sorted(set(given) & {s.name for s in WEBSOCKET_SETTINGS} - {"websocket"}):
            if options[name] != default(name):
                raise ConfigurationError(f"{spell(name)} configures WebSockets: turn "
                                         f"{spell('websocket')} on too")
        return
    problem = extras.websocket_problem()
    if problem is not None:
        raise ConfigurationError(f"{spell('websocket')} needs wsproto; {problem}")
