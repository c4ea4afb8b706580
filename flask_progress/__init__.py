"""
Flask-Progress
==============

Live upload progress for Flask applications: :class:`Progress` wraps the
application in :class:`~wsgiprogress.ProgressMiddleware`, configured from
``PROGRESS_*`` keys, and registers a blueprint that serves the JS client and
names the probe and mailbox URLs for :func:`flask.url_for`.

.. code-block:: python

    from flask import Flask
    from flask_progress import Progress

    progress = Progress()

    def create_app():
        app = Flask(__name__)
        app.config["PROGRESS_MAX_REQUEST_SIZE"] = "100M"
        progress.init_app(app)
        return app

In a template::

    {{ progress_script() }}
    <script>
      WSGIProgress.upload(form, {url: {{ url_for("progress.probe")|tojson }},
                                 bar: "#bar", text: "#info"});
    </script>

From a view:

.. code-block:: python

    entry = progress.get(progress_id)     # a ProgressEntry, or None
    # with PROGRESS_MAILBOX = True:
    progress.post(request.form["mailbox"], {"text": "your report is ready"})

Every key is ``PROGRESS_`` and a setting's name in capitals (``PROGRESS_TTL``,
``PROGRESS_DIALECT``, ``PROGRESS_BACKEND``; ``progress_url`` is
``PROGRESS_URL``), plus ``PROGRESS_MAILBOX``.  With ``PROGRESS_BACKEND =
"redis://host:6379/0"`` every worker process shares progress and mailboxes.

The probe (``PROGRESS_URL``, default ``/progress``) and the mailbox endpoints
are answered by the middleware, in front of Flask: a probe costs no session,
no ``before_request`` hook and no login redirect, and answers exactly as under
the plain middleware and :mod:`wsgiprogress.server`.  Their blueprint rules
are build-only, so ``url_for("progress.probe")`` and ``url_for("progress.mailbox",
name=...)`` give the right URL, ``SCRIPT_NAME`` included.

Served by ``wsgiprogress-serve`` (or :func:`wsgiprogress.server.serve`), the
server counts and the middleware stands aside, so nothing is counted twice;
the server serves this extension's store, probe and mailboxes with the
``PROGRESS_*`` settings (:mod:`wsgiprogress.server.adopt`), and
``PROGRESS_MAX_REQUEST_SIZE`` is its ``max_request_body_size``.  An option
given to the server that contradicts a key refuses to start, naming both.

``init_app`` refuses what would silently go wrong: a config key that looks
like a misspelled ``PROGRESS_*`` key (``PROGRES_TTL``, ``progress_ttl``), an
application route at the probe, mailbox or dashboard URL (the middleware
answers those paths in front of Flask), and a blueprint already named
``progress``: pass ``Progress(blueprint_name="uploads")``, then
``url_for("uploads.probe")``.
"""
from __future__ import annotations

import logging
import os
import secrets
from typing import Any, Dict, Iterable, Mapping, NamedTuple, Optional, Union

from flask import Blueprint, Flask, current_app, has_request_context, json, request, url_for
from markupsafe import Markup

import wsgiprogress
from wsgiprogress import ConfigurationError, ProgressEntry, ProgressMiddleware, ProgressStore, keys
from wsgiprogress.mailbox import MailboxStore
from wsgiprogress.operations import report
from wsgiprogress.settings import (
    FLASK_PREFIX,
    MIDDLEWARE_SETTINGS,
    config_key,
    misspelt_key,
    resolve,
)
from wsgiprogress.web.front import Front, front_options
from wsgiprogress.web.mailbox import Authorize

__all__ = ["CONFIG_SETTINGS", "Progress", "ProgressState", "config_key"]

log = logging.getLogger("wsgiprogress")

#: Where ``progress.js`` lives; the blueprint serves this folder.
STATIC_FOLDER = os.path.join(os.path.dirname(wsgiprogress.__file__), "static")
PREFIX = FLASK_PREFIX
EXTENSION_KEY = "progress"
#: The blueprint's name unless ``Progress(blueprint_name=...)`` says otherwise.
BLUEPRINT_NAME = "progress"

#: What the ``PROGRESS_*`` keys set: every setting of the middleware.
SETTINGS = MIDDLEWARE_SETTINGS
_NAMES = frozenset(s.name for s in SETTINGS)


def setting_name(key: str) -> str:
    """The setting a ``PROGRESS_*`` *key* sets (the inverse of :func:`config_key`):
    ``PROGRESS_URL`` is ``progress_url``."""
    name = key[len(PREFIX):].lower()
    return "progress_" + name if name not in _NAMES and "progress_" + name in _NAMES else name


#: Every ``PROGRESS_*`` key with its converter, default and help.
CONFIG_SETTINGS = tuple(s._replace(name=config_key(s.name)) for s in SETTINGS)
_KEYS = tuple(s.name for s in CONFIG_SETTINGS)


class ProgressState(NamedTuple):
    """What :meth:`Progress.init_app` keeps in ``app.extensions["progress"]``."""

    #: The :class:`Progress` object registered on the application.
    extension: Progress
    #: The middleware installed around ``app.wsgi_app``.
    middleware: ProgressMiddleware
    #: The application's progress store, which the probe reads.
    store: ProgressStore
    #: The application's mailboxes, in ``PROGRESS_BACKEND``; ``None`` unless
    #: ``PROGRESS_MAILBOX``.
    mailbox: Optional[MailboxStore]
    #: Every setting, converted, by its lower-case name (``"ttl"``, ``"mailbox"``).
    settings: Dict[str, Any]


class Progress:
    """Upload progress, a probe and mailboxes for one or more Flask applications.

    :param app: the application; or call :meth:`init_app` later, once per
        application (application factories).
    :param authorize: who may read and publish mailboxes; see
        :func:`wsgiprogress.web.mailbox.unguessable_names`.  Needs
        ``PROGRESS_MAILBOX``.
    :param blueprint_name: the name of the blueprint it registers, and of its
        ``url_for`` endpoints (``"progress.probe"``); change it when the
        application has a blueprint named ``progress`` already.
    :param options: defaults for the ``PROGRESS_*`` keys, by setting name
        (``ttl=60``, ``dialect="nginx"``, ``mailbox=True``); the
        application's config wins.
    :raises ConfigurationError: for an unknown option, a bad value or a
        *blueprint_name* Flask cannot take.

    .. code-block:: python

        progress = Progress(max_request_size="1G")
        progress.init_app(app)
    """

    def __init__(self, app: Optional[Flask] = None, *,
                 authorize: Optional[Authorize] = None,
                 blueprint_name: str = BLUEPRINT_NAME, **options: Any) -> None:
        if not isinstance(blueprint_name, str) or not blueprint_name or "." in blueprint_name:
            raise ConfigurationError(
                f"blueprint_name: expected a name without dots such as 'uploads', "
                f"not {blueprint_name!r}")
        self.authorize = authorize
        self.blueprint_name = blueprint_name
        self._defaults = {config_key(name): value
                          for name, value in resolve(SETTINGS, options).items()}
        self._given = tuple(config_key(name) for name in options)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate *app*'s ``PROGRESS_*`` keys, install the middleware around
        ``app.wsgi_app`` and register the blueprint (``progress``, or
        *blueprint_name*).

        :raises ConfigurationError: for an unknown ``PROGRESS_*`` key, a bad
            value, a key that looks like a misspelled one, a route of *app* at
            a URL the middleware answers, or a blueprint of *app* with our
            blueprint's name; the message says what to change.
        :raises RuntimeError: when *app* already has a :class:`Progress`.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'Progress' instance has already been registered on this Flask app "
                f"{app.name!r}. Import and use that instance instead of calling "
                "init_app again.")
        check_key_spelling(app.config)
        if self.blueprint_name in app.blueprints:
            raise ConfigurationError(
                f"the app {app.name!r} has a blueprint named {self.blueprint_name!r} "
                "already: pass Progress(blueprint_name=...) with another name")
        # in the order written, so a refusal names the same key every run
        explicit = dict.fromkeys([*self._given, *(
            key for key in app.config if isinstance(key, str) and key.startswith(PREFIX))])
        given = {setting_name(key): app.config.get(key, self._defaults.get(key))
                 for key in explicit}
        # checked before anything opens: a refusal leaves no backend behind
        options, _, _ = front_options(given, SETTINGS, authorize=self.authorize,
                                      spell=config_key)
        check_routes(app, options)
        front = Front(given, authorize=self.authorize, spell=config_key)
        for key, value in self._defaults.items():
            app.config.setdefault(key, value)
        settings = front.options
        middleware = ProgressMiddleware(app.wsgi_app, front=front)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = ProgressState(
            self, middleware, front.store, front.mailboxes, settings)
        app.register_blueprint(_blueprint(settings, self.blueprint_name))
        if settings["debug"]:
            log.info("progress for %s: probe at %s, mailboxes %s", app.name,
                     settings["progress_url"],
                     settings["mailbox_url"] if front.mailboxes is not None else "off")

    def state(self, app: Optional[Flask] = None) -> ProgressState:
        """The :class:`ProgressState` of *app* (default: the current app).

        :raises RuntimeError: when this object was not registered on it.
        """
        if app is None:
            app = current_app
        state: Optional[ProgressState] = app.extensions.get(EXTENSION_KEY)
        if state is None or state.extension is not self:
            raise RuntimeError(
                f"this Progress object is not registered on the Flask app {app.name!r}: "
                "call progress.init_app(app) in your application factory")
        return state

    @property
    def store(self) -> ProgressStore:
        """The current application's progress store."""
        return self.state().store

    def get(self, progress_id: str) -> Optional[ProgressEntry]:
        """The current application's progress entry for *progress_id*, or
        ``None`` when unknown or expired.  During a request it reads the store
        that tracks requests: our server's, when the application runs on it."""
        store: Optional[ProgressStore] = request.environ.get(keys.PROGRESS_STORE) \
            if has_request_context() else None
        return (store or self.state().store).read(progress_id)

    def report(self, done: int, total: Optional[int] = None,
               label: Optional[str] = None) -> None:
        """Report how far the current request's work got: its probe shows it,
        and with ``PROGRESS_OPERATIONS = True`` its status monitor and 102s
        (:func:`wsgiprogress.report`).  Read ``request.environ["wsgiprogress.operation"]
        .cancelled`` to stop when a client cancelled.

        .. code-block:: python

            for n, sheet in enumerate(sheets, 1):
                knit(sheet)
                progress.report(n, len(sheets), "Knitting sweaters")
        """
        report(request.environ, done, total, label)

    def post(self, names: Union[str, Iterable[str]], data: Any) -> Dict[str, int]:
        """Post *data* to one mailbox or to each of several at once.

        :param names: a mailbox name or an iterable of names.
        :param data: a string, posted as is, or a value posted as JSON (made
            by the application's JSON provider).
        :returns: the new message's id in each mailbox, by name.
        :raises ConfigurationError: when ``PROGRESS_MAILBOX`` is off.
        :raises wsgiprogress.mailbox.MailboxError: when the message or the
            number of mailboxes is over its bound.
        """
        mailbox = self.state().mailbox
        if mailbox is None:
            raise ConfigurationError(
                "mailboxes are off for this app: set PROGRESS_MAILBOX = True")
        if not isinstance(data, str):
            data = json.dumps(data)
        return mailbox.post(names, data)


def progress_id() -> str:
    """A fresh progress ID: 32 random hex digits.  A Jinja global."""
    return secrets.token_hex(16)


def progress_script() -> Markup:
    """The ``<script>`` tag that loads the JS client, from the current app's
    blueprint (whatever its name).  A Jinja global."""
    state: Optional[ProgressState] = current_app.extensions.get(EXTENSION_KEY)
    name = state.extension.blueprint_name if state is not None else BLUEPRINT_NAME
    return Markup('<script src="%s"></script>') % url_for(
        f"{name}.static", filename="progress.js")


def check_key_spelling(config: Mapping[str, Any]) -> None:
    """Refuse a config key one typo away from a ``PROGRESS_*`` key
    (``PROGRES_TTL``, ``PROGESS_URL``, ``progress_ttl``): Flask would keep it
    and nothing would read it.  Keys further away are left alone; unknown
    keys that do start with ``PROGRESS_`` are :func:`resolve`'s to refuse.

    :raises ConfigurationError: naming the key and the one it resembles.
    """
    found = misspelt_key(config, _KEYS, PREFIX, str.upper)
    if found is not None:
        raise ConfigurationError(
            f"config key {found[0]!r} is read by nothing: did you mean {found[1]!r}? "
            "(Flask-Progress reads PROGRESS_ and a setting's name, in capitals)")


def check_routes(app: Flask, settings: Mapping[str, Any]) -> None:
    """Refuse a route of *app* at a URL the middleware answers in front of
    Flask (the probe, the mailboxes, the monitors, the dashboard), which would never be
    reached.  Rules with variables (``/<path:page>``) are left alone.

    :raises ConfigurationError: naming the route's endpoint and the key to change.
    """
    exact = {settings["progress_url"]: "progress_url"}
    if settings["dashboard_url"] is not None:
        dashboard = settings["dashboard_url"]
        exact.update({dashboard: "dashboard_url", dashboard.rstrip("/") + "/data": "dashboard_url"})
    mailboxes = settings["mailbox_url"].rstrip("/") + "/" if settings["mailbox"] else None
    monitors = settings["operations_url"].rstrip("/") + "/" if settings["operations"] else None
    for rule in app.url_map.iter_rules():
        if getattr(rule, "build_only", False):
            continue
        path = rule.rule
        name = exact.get(path) if "<" not in path else None
        if name is None and mailboxes is not None and path.startswith(mailboxes):
            name = "mailbox_url"
        if name is None and monitors is not None and path.startswith(monitors):
            name = "operations_url"
        if name is not None:
            raise ConfigurationError(
                f"the app's route {rule.endpoint!r} ({path}) is under {config_key(name)} "
                f"{settings[name]!r}, which the middleware answers before Flask: set "
                f"{config_key(name)} to another path, or move the route")


def _blueprint(settings: Dict[str, Any], name: str = BLUEPRINT_NAME) -> Blueprint:
    """The blueprint *name*: the JS client under ``<progress_url>/static/``,
    build-only rules for the probe and mailboxes (the middleware answers them)
    and the Jinja globals."""
    blueprint = Blueprint(name, __name__, static_folder=STATIC_FOLDER,
                          static_url_path=settings["progress_url"].rstrip("/") + "/static")
    blueprint.add_url_rule(settings["progress_url"], endpoint="probe", build_only=True)
    if settings["mailbox"]:
        blueprint.add_url_rule(settings["mailbox_url"].rstrip("/") + "/<name>",
                               endpoint="mailbox", build_only=True)
    blueprint.add_app_template_global(progress_id)
    blueprint.add_app_template_global(progress_script)
    return blueprint
