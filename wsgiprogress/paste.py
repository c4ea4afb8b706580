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

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from .middleware import ProgressMiddleware
from .settings import MIDDLEWARE_SETTINGS, prefixed
from .web.front import Front

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from .web.mailbox import Authorize


__all__ = ["FILTER_SETTINGS", "filter_app_factory", "make_middleware"]

#: What the filter's section accepts: every setting of the middleware.
FILTER_SETTINGS = MIDDLEWARE_SETTINGS


def filter_app_factory(app: WSGIApplication, global_conf: Optional[Dict[str, str]] = None,
                       **local_conf: str) -> ProgressMiddleware:
    """PasteDeploy ``paste.filter_app_factory``: ``[filter:x] use = egg:wsgiprogress``.

    :raises ConfigurationError: for an unknown setting or a bad value.
    """
    return make_middleware(app, local_conf)


def make_middleware(app: WSGIApplication, given: Mapping[str, Any], prefix: str = "",
                    authorize: Optional[Authorize] = None) -> ProgressMiddleware:
    """*app* in a :class:`~wsgiprogress.middleware.ProgressMiddleware` made from
    *given*, a mapping of :data:`FILTER_SETTINGS` names to values (ini strings
    or native values).

    .. code-block:: python

        make_middleware(app, {"ttl": "60", "mailbox": "true"})

    :param prefix: how the names appear where they were written, for error
        messages (``"wsgiprogress."`` for Pyramid settings).
    :raises ConfigurationError: for an unknown name (with a suggestion), a bad
        value, or settings that contradict each other.
    """
    return ProgressMiddleware(app, front=Front(given, authorize=authorize,
                                               spell=prefixed(prefix)))
