"""
The application's own settings
==============================

An application may carry its own
:class:`~wsgiprogress.middleware.ProgressMiddleware`: Flask's ``Progress``
installs one around ``app.wsgi_app``, Pyramid's
``config.include("wsgiprogress")`` one in its execution policy, or the
application is wrapped in one.  Under our server that middleware stands aside
(the server counts), so its settings would go unread.  Instead the server
serves the middleware's :class:`~wsgiprogress.web.front.Front` -- its store,
probe, mailboxes and dashboard -- rather than building its own: the probe
answers where and how the application says, and the application's views
read the very store the server counts into.  The application's
``max_request_size`` becomes waitress's ``max_request_body_size`` unless the
server was given one.

A setting the server was given explicitly must agree with the application's
(a flag left off, such as ``mailbox=False``, agrees with anything; a limit the
application leaves unset, ``max_request_size`` or ``max_waiters``, is the
server's to set); otherwise the server refuses to start, naming both:

.. code-block:: text

    progress_url: the server says '/a', the application's PROGRESS_URL says '/b'; set one

.. code-block:: python

    front, options = server_front(app, settings, ours, theirs, threads)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union

from ..errors import ConfigurationError
from ..mailbox import MailboxStore
from ..middleware import ProgressMiddleware, check_application
from ..settings import (
    SERVER_SETTINGS,
    Spell,
    as_written,
    config_key,
    default,
    prefixed,
    scope,
    waiter_limit,
)
from ..settings.converters import as_size
from ..web.front import Front, front_options
from .compat import PEEK_FOR_DEPARTURE

if TYPE_CHECKING:
    from ..progress.store import ProgressStore
    from ..web.mailbox import Authorize

__all__ = ["Adopted", "find_middleware", "server_front"]

#: Where Flask's ``Progress`` keeps its state in ``app.extensions``.
FLASK_EXTENSION = "progress"
#: Where the Pyramid include keeps its execution policy in the registry
#: (:data:`wsgiprogress.pyramid.POLICY_KEY`; the server must not import Pyramid).
PYRAMID_POLICY = "wsgiprogress.policy"
#: How deep wrappers are followed before giving up.
MAX_DEPTH = 32


class Adopted(NamedTuple):
    """The middleware an application carries, and how it names its settings."""

    middleware: ProgressMiddleware
    spell: Spell


def find_middleware(app: Any) -> Optional[Adopted]:
    """The outermost :class:`~wsgiprogress.middleware.ProgressMiddleware` of
    *app*, found through the wrappers we know: a Flask application's
    ``extensions["progress"]`` and ``wsgi_app``, a Pyramid router's registry,
    and the ``app`` of a middleware (ours, werkzeug's ``ProxyFix``, …).
    ``None`` when there is none."""
    seen = set()
    current = app
    for _ in range(MAX_DEPTH):
        if current is None or id(current) in seen:
            return None
        seen.add(id(current))
        if isinstance(current, ProgressMiddleware):
            return Adopted(current, as_written)
        extensions = getattr(current, "extensions", None)
        if isinstance(extensions, dict):
            middleware = getattr(extensions.get(FLASK_EXTENSION), "middleware", None)
            if isinstance(middleware, ProgressMiddleware):
                return Adopted(middleware, config_key)
        registry = getattr(current, "registry", None)
        if isinstance(registry, dict):
            middleware = getattr(registry.get(PYRAMID_POLICY), "middleware", None)
            if isinstance(middleware, ProgressMiddleware):
                return Adopted(middleware, prefixed("wsgiprogress."))
        inner = getattr(current, "wsgi_app", None)
        current = inner if inner is not None else getattr(current, "app", None)
    return None


def parked(theirs: Mapping[str, Any]) -> Optional[int]:
    """The connections that bound the waiters when the server parks them on
    its I/O loop (waitress 2.0 and later), else ``None``: each holds a thread."""
    return None if PEEK_FOR_DEPARTURE else int(theirs["connection_limit"])


def server_front(app: Any, given: Mapping[str, Any], ours: Dict[str, Any],
                 theirs: Dict[str, Any], threads: int, *,
                 store: Optional[ProgressStore] = None,
                 mailbox: Union[MailboxStore, bool, str, None] = None,
                 authorize: Optional[Authorize] = None) -> Tuple[Front, Dict[str, Any]]:
    """The :class:`~wsgiprogress.web.front.Front` the server serves for
    *app*, and the settings it runs with: the application's own, when it
    carries a middleware (:func:`find_middleware`), else one made from *ours*.

    :param given: every setting the server was given, by name.
    :param ours: wsgiprogress's settings among them; *theirs*: waitress's,
        whose ``max_request_body_size`` this sets from the application's
        ``max_request_size`` when *given* has none.
    :raises ConfigurationError: for an application that is no WSGI callable,
        or a setting the server was given that contradicts the application's.
    """
    check_application(app, "create_server")
    found = find_middleware(app)
    if found is None:
        front = Front(ours, settings=SERVER_SETTINGS, store=store, mailbox=mailbox,
                      authorize=authorize, threads=threads, connections=parked(theirs))
        return front, front.options
    named = {name for name in ours if name != "table"}
    if mailbox is not None and not isinstance(mailbox, MailboxStore):
        named.add("mailbox")
    options, store, mailbox = front_options(ours, SERVER_SETTINGS, store=store,
                                            mailbox=mailbox, authorize=authorize)
    front = found.middleware.front
    _check_objects(front, store, mailbox, authorize)
    # a mailbox store passed in turns mailboxes on, whatever the setting says
    app_options = {**front.options, "mailbox": front.mailboxes is not None}
    for setting in SERVER_SETTINGS:
        name = setting.name
        if name not in named or name not in app_options or (
                name == "max_waiters" and app_options[name] is None):
            continue
        if options[name] is False and setting.default is False:
            continue  # a flag left off (mailbox=False, --no-debug) adds nothing: no conflict
        if options[name] != app_options[name]:
            raise _conflict(name, options[name], name, app_options[name], found.spell)
    if app_options["max_waiters"] is None:  # the default depends on the server
        front.waiters.limit = waiter_limit(options["max_waiters"], threads, parked(theirs))
    limit = app_options["max_request_size"]
    if limit is not None:
        if "max_request_body_size" not in given:
            theirs["max_request_body_size"] = limit
        elif as_size(theirs["max_request_body_size"]) != limit:
            raise _conflict("max_request_body_size", as_size(theirs["max_request_body_size"]),
                            "max_request_size", limit, found.spell)
    return front, {**app_options, **{s.name: options[s.name] for s in scope("server", "websocket")}}


def _check_objects(front: Front, store: Optional[ProgressStore],
                   mailbox: Optional[MailboxStore], authorize: Optional[Authorize]) -> None:
    """Refuse store objects and hooks given to the server that the
    application's front does not use: they would be ignored."""
    where = "; leave it out, the server uses the application's"
    if store is not None and store is not front.store:
        raise ConfigurationError(
            f"store: the server was given a progress store, the application has its own{where}")
    if mailbox is not None and mailbox is not front.mailboxes:
        raise ConfigurationError(
            f"mailbox: the server was given a mailbox store, the application has "
            f"{'its own' if front.mailboxes is not None else 'mailboxes off'}{where}")
    hooks = [getattr(endpoint, "authorize", None)
             for endpoint in (front.probe, front.mailbox_app, front.dashboard)]
    if authorize is not None and authorize not in hooks:
        raise ConfigurationError(
            "authorize: the server was given a hook, the application's middleware has its "
            "own settings; pass authorize to the application (Progress(authorize=...), "
            "ProgressMiddleware(app, authorize=...)), not to the server")


def _conflict(ours: str, our_value: Any, name: str, value: Any,
              spell: Spell) -> ConfigurationError:
    note = " (its default)" if value == default(name) else ""
    return ConfigurationError(
        f"{ours}: the server says {_shown(our_value)}, the application's {spell(name)} "
        f"says {_shown(value)}{note}; set one")


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list, frozenset)):
        return repr(" ".join(str(item) for item in value))
    return repr(value)
