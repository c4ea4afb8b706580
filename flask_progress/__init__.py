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

Served by ``wsgiprogress-serve``, the server counts and answers probes at its
own ``progress_url`` from its own store; the middleware stands aside, so
nothing is counted twice.  Give the server the same ``--progress-url``,
``--dialect`` and ``--backend`` as the ``PROGRESS_*`` keys, and let
``PROGRESS_MAILBOX`` serve mailboxes (no ``--mailbox``, whose store the views
would not post to).  Starting the server from Python,
``serve(app, store=app.extensions["progress"].store)`` makes
:meth:`Progress.get` see what the server counts.
"""
from __future__ import annotations

import logging
import os
import secrets
from typing import Any, Dict, Iterable, NamedTuple, Optional, Union

from flask import Blueprint, Flask, current_app, has_request_context, json, request, url_for
from markupsafe import Markup

import wsgiprogress
from wsgiprogress import ConfigurationError, ProgressEntry, ProgressMiddleware, ProgressStore, keys
from wsgiprogress.mailbox import MailboxStore
from wsgiprogress.settings import MIDDLEWARE_SETTINGS, resolve
from wsgiprogress.web.front import Front
from wsgiprogress.web.mailbox import Authorize

__all__ = ["CONFIG_SETTINGS", "Progress", "ProgressState", "config_key"]

log = logging.getLogger("wsgiprogress")

#: Where ``progress.js`` lives; the blueprint serves this folder.
STATIC_FOLDER = os.path.join(os.path.dirname(wsgiprogress.__file__), "static")
PREFIX = "PROGRESS_"
EXTENSION_KEY = "progress"

#: What the ``PROGRESS_*`` keys set: every setting of the middleware.
SETTINGS = MIDDLEWARE_SETTINGS
_NAMES = frozenset(s.name for s in SETTINGS)


def config_key(name: str) -> str:
    """The config key of the setting *name*: ``ttl`` is ``PROGRESS_TTL``,
    ``progress_url`` is ``PROGRESS_URL``."""
    if name.startswith("progress_"):
        name = name[len("progress_"):]
    return PREFIX + name.upper()


def setting_name(key: str) -> str:
    """The setting a ``PROGRESS_*`` *key* sets (the inverse of :func:`config_key`):
    ``PROGRESS_URL`` is ``progress_url``."""
    name = key[len(PREFIX):].lower()
    return "progress_" + name if name not in _NAMES and "progress_" + name in _NAMES else name


#: Every ``PROGRESS_*`` key with its converter, default and help.
CONFIG_SETTINGS = tuple(s._replace(name=config_key(s.name)) for s in SETTINGS)


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
    :param options: defaults for the ``PROGRESS_*`` keys, by setting name
        (``ttl=60``, ``dialect="nginx"``, ``mailbox=True``); the
        application's config wins.
    :raises ConfigurationError: for an unknown option or a bad value.

    .. code-block:: python

        progress = Progress(max_request_size="1G")
        progress.init_app(app)
    """

    def __init__(self, app: Optional[Flask] = None, *,
                 authorize: Optional[Authorize] = None, **options: Any) -> None:
        self.authorize = authorize
        self._defaults = {config_key(name): value
                          for name, value in resolve(SETTINGS, options).items()}
        self._given = frozenset(config_key(name) for name in options)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate *app*'s ``PROGRESS_*`` keys, install the middleware around
        ``app.wsgi_app`` and register the ``progress`` blueprint.

        :raises ConfigurationError: for an unknown ``PROGRESS_*`` key or a
            bad value, naming the key.
        :raises RuntimeError: when *app* already has a :class:`Progress`.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'Progress' instance has already been registered on this Flask app "
                f"{app.name!r}. Import and use that instance instead of calling "
                "init_app again.")
        explicit = self._given.union(key for key in app.config if key.startswith(PREFIX))
        for key, value in self._defaults.items():
            app.config.setdefault(key, value)
        front = Front({setting_name(key): app.config[key] for key in explicit},
                      authorize=self.authorize, spell=config_key)
        settings = front.options
        middleware = ProgressMiddleware(app.wsgi_app, front=front)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = ProgressState(
            self, middleware, front.store, front.mailboxes, settings)
        app.register_blueprint(_blueprint(settings))
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
    """The ``<script>`` tag that loads the JS client.  A Jinja global."""
    return Markup('<script src="%s"></script>') % url_for(
        "progress.static", filename="progress.js")


def _blueprint(settings: Dict[str, Any]) -> Blueprint:
    """The ``progress`` blueprint: the JS client under
    ``<progress_url>/static/``, build-only rules for the probe and mailboxes
    (the middleware answers them) and the Jinja globals."""
    blueprint = Blueprint("progress", __name__, static_folder=STATIC_FOLDER,
                          static_url_path=settings["progress_url"].rstrip("/") + "/static")
    blueprint.add_url_rule(settings["progress_url"], endpoint="probe", build_only=True)
    if settings["mailbox"]:
        blueprint.add_url_rule(settings["mailbox_url"].rstrip("/") + "/<name>",
                               endpoint="mailbox", build_only=True)
    blueprint.add_app_template_global(progress_id)
    blueprint.add_app_template_global(progress_script)
    return blueprint
