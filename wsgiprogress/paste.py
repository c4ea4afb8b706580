"""
PasteDeploy filter
==================

:func:`filter_app_factory` is the ``paste.filter_app_factory`` behind
``use = egg:wsgiprogress``: it wraps the next application of a pipeline in
:class:`~wsgiprogress.middleware.ProgressMiddleware`, configured from the
filter's section.

.. code-block:: ini

    [filter:progress]
    use = egg:wsgiprogress
    ttl = 60
    methods = POST PUT
    max_request_size = 100M

    [pipeline:main]
    pipeline =
        progress
        myapp

Every setting of the middleware is accepted as its ini string and converted
by the converter declared in :mod:`wsgiprogress.settings`; ``mailbox = true``
also serves the backend's mailboxes at ``mailbox_url`` and puts the store in
``environ["wsgiprogress.mailbox"]``, as ``wsgiprogress-serve --mailbox`` does.
An unknown name or a bad value raises
:class:`~wsgiprogress.errors.ConfigurationError` when the ini file is loaded.
Values in ``[DEFAULT]`` (PasteDeploy's ``global_conf``) are not read: they
belong to every section.

Under :mod:`wsgiprogress.server` the filter stands aside and the server
counts, so ``[server:main] use = egg:wsgiprogress`` and this filter can share
an ini file; the filter counts when another server (gunicorn, werkzeug) runs
the same pipeline.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from .errors import ConfigurationError
from .middleware import ProgressMiddleware
from .settings import MAILBOX_SWITCH, MIDDLEWARE_SETTINGS, Setting, mailbox_strays, resolve

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


__all__ = ["FILTER_SETTINGS", "convert",
           "filter_app_factory", "make_middleware"]

#: Where the application finds the mailbox store; the key the server uses too.

#: The middleware's settings plus the server's ``mailbox`` switch.
FILTER_SETTINGS: Tuple[Setting, ...] = MIDDLEWARE_SETTINGS + (MAILBOX_SWITCH,)



def filter_app_factory(app: WSGIApplication, global_conf: Optional[Dict[str, str]] = None,
                       **local_conf: str) -> ProgressMiddleware:
    """PasteDeploy ``paste.filter_app_factory``: ``[filter:x] use = egg:wsgiprogress``.

    :raises ConfigurationError: for an unknown setting or a bad value.
    """
    return make_middleware(app, local_conf)


def make_middleware(app: WSGIApplication, given: Mapping[str, Any],
                    prefix: str = "") -> ProgressMiddleware:
    """*app* in a :class:`~wsgiprogress.middleware.ProgressMiddleware` made from
    *given*, a mapping of :data:`FILTER_SETTINGS` names to values (ini strings
    or native values).

    .. code-block:: python

        make_middleware(app, {"ttl": "60", "mailbox": "true"})

    :param prefix: how the names appear where they were written, for error
        messages (``"wsgiprogress."`` for Pyramid settings).
    :raises ConfigurationError: for an unknown name (with a suggestion), a bad
        value, or a mailbox setting without ``mailbox`` on.
    """
    options = convert(given, prefix)
    if not options.pop("mailbox", False):
        stray = mailbox_strays(options, bool(options.get("dashboard_url")))
        if stray:
            raise ConfigurationError(
                f"{prefix}{stray[0]} configures mailboxes: set {prefix}mailbox = true too")
        return ProgressMiddleware(app, **options)
    return ProgressMiddleware(app, mailbox=True, **options)


def convert(given: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """The values of *given*, converted by the :data:`FILTER_SETTINGS` they name.

    .. code-block:: python

        convert({"ttl": "60", "methods": "POST PUT"})
        # {"ttl": 60.0, "methods": ("POST", "PUT")}

    :raises ConfigurationError: for an unknown name or a bad value, naming the
        setting as ``prefix + name``.
    """
    resolved = resolve(FILTER_SETTINGS, given, prefix)
    return {name: resolved[name] for name in given}
