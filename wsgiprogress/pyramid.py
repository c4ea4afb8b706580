"""
Pyramid include
===============

``config.include("wsgiprogress")`` gives a Pyramid application what
:class:`~wsgiprogress.middleware.ProgressMiddleware` gives a WSGI one: uploads
with an X-Progress-ID are tracked, ``/progress`` answers probes, and with
``wsgiprogress.mailbox = true`` mailboxes are served.

.. code-block:: python

    from pyramid.config import Configurator

    def main(global_config, **settings):
        with Configurator(settings=settings) as config:
            config.include("wsgiprogress")
            config.scan()
        return config.make_wsgi_app()

.. code-block:: ini

    [app:main]
    use = egg:myproject
    wsgiprogress.ttl = 60
    wsgiprogress.max_request_size = 100M

Settings are every middleware setting (:mod:`wsgiprogress.settings`) with the
``wsgiprogress.`` prefix, plus ``wsgiprogress.mailbox``; they are read and
converted when ``config.include`` runs, and a typo in a name or a value raises
:class:`~wsgiprogress.errors.ConfigurationError` there, with a suggestion.
Views find the mailbox store in ``request.environ["wsgiprogress.mailbox"]``.

How it hooks in
---------------

Counting has to see ``wsgi.input`` before anything reads it and the response
until the server closes it, so the include wraps Pyramid's outermost layer,
the execution policy (``Router.__call__`` runs
``policy(environ, router)`` and then calls the response it returns), in the
middleware.  A tween, as ``pyramid_tm`` uses, would come too late:
``pyramid_retry``'s policy copies the whole body before any tween runs, and
the response body is produced after the tween has returned.  The wrapping is
done by a configuration action ordered after the others (``WRAP_ORDER``), so
it wraps the policy in place at commit time, ``pyramid_retry``'s included:
the body is counted once, as it arrives, however many attempts read the copy.
(A ``Configurator(autocommit=True)`` runs actions at once: there, include
wsgiprogress after any ``set_execution_policy``.)

Nothing is counted twice and every probe is answered once: the probe is
answered in front of the router, like the middleware does, and a request that
an outer :class:`~wsgiprogress.middleware.ProgressMiddleware` (the PasteDeploy
filter) or :mod:`wsgiprogress.server` already tracks goes straight to the
application.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable

from pyramid.interfaces import IExecutionPolicy  # type: ignore[import-untyped]
from pyramid.router import default_execution_policy  # type: ignore[import-untyped]

from . import keys
from .errors import ConfigurationError
from .middleware import ProgressMiddleware
from .paste import FILTER_SETTINGS, make_middleware
from .settings import misspelt_key

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["POLICY_KEY", "PREFIX", "ProgressExecutionPolicy", "includeme", "settings_from"]

#: Settings of the include are the middleware's with this prefix.
PREFIX = "wsgiprogress."
_KEYS = tuple(PREFIX + s.name for s in FILTER_SETTINGS)
#: The registry's :class:`ProgressExecutionPolicy`, for the application.
POLICY_KEY = "wsgiprogress.policy"
#: The router, handed from the policy to the application inside the middleware.
ROUTER_KEY = "wsgiprogress.router"
#: Where the wrapping action runs: after every action of the default order
#: (0) and after ``pyramid_tm``'s (10), so it sees the final policy.
WRAP_ORDER = 1000

ExecutionPolicy = Callable[["WSGIEnvironment", Any], Any]


def includeme(config: Any) -> None:
    """Track uploads of the application *config* configures; see the module
    documentation.

    :raises ConfigurationError: for an unknown ``wsgiprogress.*`` setting, a
        bad value, or a setting one typo away from one (``wsgiprogres.ttl``).
    """
    registry = config.registry
    if POLICY_KEY in registry:
        return  # included as "wsgiprogress" and as "wsgiprogress.pyramid"
    given = config.get_settings() or {}
    found = misspelt_key(given, _KEYS, PREFIX)
    if found is not None:
        raise ConfigurationError(
            f"setting {found[0]!r} is read by nothing: did you mean {found[1]!r}? "
            "(the include reads wsgiprogress. and a setting's name)")
    settings = settings_from(given)
    # built now, so a bad setting raises from config.include, not at commit
    wrapper = registry[POLICY_KEY] = ProgressExecutionPolicy(default_execution_policy, settings)

    def wrap_policy() -> None:
        wrapper.policy = registry.queryUtility(
            IExecutionPolicy, default=default_execution_policy)
        registry.registerUtility(wrapper, IExecutionPolicy)

    config.action(("wsgiprogress", "execution policy"), wrap_policy, order=WRAP_ORDER)


def settings_from(settings: Dict[str, Any]) -> Dict[str, Any]:
    """The ``wsgiprogress.*`` entries of Pyramid *settings*, prefix removed.

    .. code-block:: python

        settings_from({"wsgiprogress.ttl": "60", "pyramid.includes": ""})
        # {"ttl": "60"}
    """
    return {name[len(PREFIX):]: value for name, value in settings.items()
            if name.startswith(PREFIX)}


class ProgressExecutionPolicy:
    """Runs Pyramid's execution *policy* inside a
    :class:`~wsgiprogress.middleware.ProgressMiddleware` made from *settings*
    (names without the prefix).

    Pyramid calls the policy with the raw environ; this one returns the
    middleware as the "response", which the router then calls with the same
    environ: the middleware answers probes and mailboxes itself and runs the
    wrapped policy, and the response it returns, for everything else.

    :raises ConfigurationError: for an unknown setting or a bad value.
    """

    def __init__(self, policy: ExecutionPolicy, settings: Dict[str, Any]) -> None:
        self.policy = policy
        self.middleware: ProgressMiddleware = make_middleware(self._invoke, settings, PREFIX)

    def __call__(self, environ: WSGIEnvironment, router: Any) -> WSGIApplication:
        if keys.TRACKER in environ:
            # an outer ProgressMiddleware or the server tracks this request
            return self.policy(environ, router)  # type: ignore[no-any-return]
        environ[ROUTER_KEY] = router
        return self.middleware

    def _invoke(self, environ: WSGIEnvironment,
                start_response: StartResponse) -> Iterable[bytes]:
        response = self.policy(environ, environ.pop(ROUTER_KEY))
        return response(environ, start_response)  # type: ignore[no-any-return]
