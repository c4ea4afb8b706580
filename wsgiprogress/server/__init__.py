"""
Threaded server with live progress
==================================

waitress reads a whole request body before it calls the application, so a
middleware sees 0 % and then 100 %.  This server is waitress with hooks in its
parser, channel, task and dispatcher that count bytes *as they arrive* and as
they leave, feed the same progress table the probe reads, answer probes on
threads of their own, and fix waitress's ``Expect: 100-continue`` handling.

.. code-block:: python

    from wsgiprogress.server import serve

    serve(app, listen="127.0.0.1:8080", max_request_body_size=100 * 2**20)

``serve`` and ``create_server`` take every waitress setting plus
wsgiprogress's own (:data:`wsgiprogress.settings.SERVER_SETTINGS`: ``ttl``,
``capacity``, ``methods``, ``progress_url``, ``dialect``, ``id_name``,
``allowed_origins``, ``debug``, ``probe_threads``, ``mailbox``,
``max_waiters``, ``dashboard_url`` and the mailbox and waiting settings),
``store``, the progress store to use, and ``authorize``, the mailbox and
dashboard access hook.  What it serves in front of the application comes
from :class:`~wsgiprogress.web.front.Front`, as under the middleware.

Clients that wait (long-polls with ``wait=``, event streams) are parked on
the I/O loop and hold no thread (:mod:`wsgiprogress.server.parking`); at most
``max_waiters`` wait at once (default: ``connection_limit`` less a quarter,
kept for other requests), the next get 503 with ``Retry-After``.  Four
waitress defaults change (:data:`wsgiprogress.settings.TUNED_WAITRESS_DEFAULTS`):
``recv_bytes`` 256 KiB, ``asyncore_use_poll`` on, ``channel_request_lookahead``
1 (waitress 2.0 and later), and ``connection_limit``, which defaults to what
the process's file descriptors allow, up to 16,384 (the soft ``RLIMIT_NOFILE``
is raised to the hard one at start).

It runs on waitress 1.4.4 and later.  Before 2.0 waitress cannot read ahead
(no ``channel_request_lookahead``, no ``waitress.client_disconnected``): the
channel then peeks at a running request's socket to see its client leave and
gives the application ``waitress.client_disconnected`` itself, and
:func:`create_server` logs once what still differs.

The application needs no change: wrapping it in
:class:`~wsgiprogress.middleware.ProgressMiddleware` as well is harmless, as
the middleware sees that the server counts and stands aside.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple, Union

import waitress
from waitress.adjustments import Adjustments, aslist
from waitress.adjustments import asbool as waitress_asbool
from waitress.server import BaseWSGIServer

from ..errors import ConfigurationError
from ..progress.tracking import TrackingRules
from ..settings import (
    SERVER_SETTINGS,
    TUNED_WAITRESS_DEFAULTS,
    Spell,
    as_written,
    check_websocket,
    unknown_setting,
)
from ..settings.converters import as_bool, as_size
from ..web.front import front_options
from ..web.resumable import usable_directory
from .adopt import server_front
from .channel import ProgressChannel
from .compat import PEEK_FOR_DEPARTURE, waitress_version
from .dispatch import ProgressDispatcher, RoutedApp
from .limits import default_connection_limit, raise_fd_limit
from .loop import Loop
from .shedding import SlowClients, stir_closing

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..mailbox import MailboxStore
    from ..progress.store import ProgressStore
    from ..web.mailbox import Authorize

__all__ = ["check_settings", "create_server", "serve", "serve_paste", "split_settings"]

_OUR_NAMES = frozenset(s.name for s in SERVER_SETTINGS)
_WAITRESS_CONVERTERS = dict(Adjustments._params)
_WAITRESS_NAMES = frozenset(_WAITRESS_CONVERTERS)
#: The tuned defaults the installed waitress knows (1.4.4 lacks channel_request_lookahead).
TUNED_DEFAULTS = {name: value for name, (value, _) in TUNED_WAITRESS_DEFAULTS.items()
                  if name in _WAITRESS_NAMES}
#: waitress settings that older releases lack, and the release that added them.
_NEWER_WAITRESS = {"channel_request_lookahead": "2.0", "server_name": "2.0"}
#: waitress's settings in bytes, which take sizes such as ``"10M"`` here as
#: in ini files and Flask (those of the installed waitress, which may lack some).
WAITRESS_SIZES = frozenset({
    "max_request_body_size", "max_request_header_size", "inbuf_overflow",
    "outbuf_overflow", "outbuf_high_watermark", "send_bytes", "recv_bytes",
}) & _WAITRESS_NAMES
#: The least value of waitress's whole-number settings that can work: waitress
#: itself takes any integer, and ``threads=0`` starts a server that never answers.
_LEAST = {"threads": 1, "backlog": 1, "cleanup_interval": 1, "channel_timeout": 1,
          "channel_request_lookahead": 0, "trusted_proxy_count": 1}
_PORTS = range(65536)

log = logging.getLogger("wsgiprogress")
_waitress_log = logging.getLogger("waitress")


def degraded() -> List[str]:
    """What the installed waitress cannot do that newer ones can, one line each."""
    missing = []
    if PEEK_FOR_DEPARTURE:
        missing.append("channel_request_lookahead cannot be set (waitress >= 2.0): "
                       "wsgiprogress watches each running request's connection itself, "
                       "as with channel_request_lookahead=1; pipelined requests run in "
                       "one task, and a 100 Continue may go out before the response "
                       "to an earlier pipelined request")
        missing.append("waiting clients (long-polls, event streams) each hold a worker "
                       "thread instead of parking on the I/O loop; max_waiters defaults "
                       "to threads minus a quarter")
    return missing


_warned_degraded = False


def _warn_degraded() -> None:
    """Log once per process what this waitress cannot do."""
    global _warned_degraded
    if _warned_degraded:
        return
    _warned_degraded = True
    for line in degraded():
        log.warning("waitress %s: %s", waitress_version(), line)


def split_settings(settings: Dict[str, Any], spell: Spell = as_written
                   ) -> Tuple[Dict[str, Any], Dict[str, Any], int]:
    """Split *settings* into (wsgiprogress's as given, waitress's converted
    and validated, waitress's ``threads``).

    waitress's come back with the tuned defaults filled in; a size with a
    suffix (``max_request_body_size="1G"``) comes back in bytes.

    :param spell: how the names were written, for error messages.
    :raises ConfigurationError: for an unknown name or a bad waitress value.
    """
    for name in settings:
        if name not in _OUR_NAMES and name not in _WAITRESS_NAMES and name != "table":
            if name in _NEWER_WAITRESS:
                raise ConfigurationError(
                    f"{spell(name)} needs waitress >= {_NEWER_WAITRESS[name]}; "
                    f"installed: waitress {waitress_version()}")
            raise unknown_setting(name, _OUR_NAMES | _WAITRESS_NAMES, spell, list_known=False)
    ours = {k: v for k, v in settings.items() if k not in _WAITRESS_NAMES}
    theirs = dict(TUNED_DEFAULTS)
    theirs.update((k, v) for k, v in settings.items() if k in _WAITRESS_NAMES)
    for name, value in theirs.items():
        try:
            theirs[name] = _waitress_value(name, value)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{spell(name)}: {exc}") from None
    _check_addresses(theirs, spell)
    try:
        adj = Adjustments(**theirs)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(_adjustments_error(str(exc), theirs, spell)) from None
    if "connection_limit" not in settings:
        theirs["connection_limit"] = adj.connection_limit = default_connection_limit(
            adj.threads, adj.asyncore_use_poll)
    if adj.connection_limit < adj.threads + 2:
        raise ConfigurationError(
            f"{spell('connection_limit')} {adj.connection_limit} leaves threads idle: "
            f"waitress counts its listener and trigger as connections, so set it to at "
            f"least {spell('threads')} + 2 ({adj.threads + 2})")
    return ours, theirs, adj.threads


def _waitress_value(name: str, value: Any) -> Any:
    """*value* as waitress is to get it, or :class:`ValueError`."""
    convert = _WAITRESS_CONVERTERS[name]
    if convert is waitress_asbool:
        return as_bool(value)  # waitress's asbool turns a typo into False; ours refuses it
    if name in WAITRESS_SIZES:
        size = as_size(value)
        # a plain number goes to waitress as given; its int() cannot read "10M"
        return value if str(value).strip().isdigit() else size
    number = convert(value)
    least = _LEAST.get(name)
    if least is not None and number < least:
        raise ValueError(f"expected a whole number >= {least}, not {value!r}")
    if name == "port" and number not in _PORTS:
        raise ValueError(f"expected a port from 0 to 65535, not {value!r}")
    return value


def _check_addresses(theirs: Dict[str, Any], spell: Spell) -> None:
    """Refuse a ``listen`` address whose port is no number from 0 to 65535:
    the resolver would take 99999 modulo 65536 and listen on another port."""
    for address in aslist(theirs.get("listen", "")):
        host, colon, port = address.rpartition(":")
        if not colon or "]" in port:
            continue  # a host alone: waitress adds the port setting
        if not host or not port.isdigit() or int(port) not in _PORTS:
            raise ConfigurationError(
                f"{spell('listen')}: expected host:port with a port from 0 to 65535, "
                f"such as 127.0.0.1:8080, not {address!r}")


def _adjustments_error(message: str, theirs: Dict[str, Any], spell: Spell) -> str:
    """waitress's own error, naming the address it could not resolve."""
    if message != "Invalid host/port specified.":
        return message
    if "listen" in theirs:
        return (f"{spell('listen')}: cannot resolve {theirs['listen']!r}; expected "
                "host:port such as 127.0.0.1:8080")
    return (f"{spell('host')}: cannot resolve {theirs.get('host', Adjustments.host)!r}; "
            "expected an address or host name such as 127.0.0.1")


def check_settings(settings: Dict[str, Any], spell: Spell = as_written) -> None:
    """Every check :func:`create_server` makes of *settings*, without opening
    a backend or listening (``resumable_dir`` is made, as serving would make
    it): the command line validates with it.  A Redis
    backend is checked as the other doors check it: its URL, and redis-py
    being importable (:func:`~wsgiprogress.settings.check_front`).

    :raises ConfigurationError: for an unknown setting, a bad value or
        settings that contradict each other.
    """
    ours, _, _ = split_settings(settings, spell)
    options, _, _ = front_options(ours, SERVER_SETTINGS, spell=spell)
    check_websocket(options, ours, spell)
    if options["resumable_dir"] is not None:
        usable_directory(options["resumable_dir"], spell)


def create_server(app: WSGIApplication, *, store: Optional[ProgressStore] = None,
                  mailbox: Union[MailboxStore, bool, str, None] = None,
                  authorize: Optional[Authorize] = None, **settings: Any) -> Any:
    """A waitress server for *app* that tracks progress; call ``.run()`` on it.

    :param store: the progress store; by default the ``backend``'s.  The
        server keeps it as ``server.progress_store``.
    :param mailbox: a :class:`~wsgiprogress.mailbox.MailboxStore` to serve
        under ``mailbox_url``, or true for the backend's.  The application
        finds it in ``environ["wsgiprogress.mailbox"]``.
    :param authorize: who may read and publish mailboxes and open the
        dashboard; see :func:`wsgiprogress.web.mailbox.unguessable_names`.

    When *app* carries its own :class:`~wsgiprogress.middleware.ProgressMiddleware`
    (Flask's ``Progress``, Pyramid's include), the server serves that one's
    store, probe and mailboxes, with its settings, and its ``max_request_size``
    is ``max_request_body_size`` unless given: :mod:`wsgiprogress.server.adopt`.

    :raises ConfigurationError: for an *app* that is no WSGI application, an
        unknown setting, a bad value, settings that contradict each other or
        one that contradicts the application's own.
    """
    ours, theirs, threads = split_settings(settings)
    _warn_degraded()
    fds = raise_fd_limit()
    front, options = server_front(app, settings, ours, theirs, threads, store=store,
                                  mailbox=mailbox, authorize=authorize)
    check_websocket(options, ours)
    log.info("up to %d clients may wait at once, parked on the I/O loop without a thread: "
             "connection_limit %d (%s) less a quarter kept for other requests; "
             "file descriptors: soft limit %s, raised from %s", front.waiters.limit,
             theirs["connection_limit"],
             "given" if "connection_limit" in settings else "default", fds[1], fds[0])
    dispatcher = ProgressDispatcher(options["probe_threads"])
    dispatcher.set_thread_count(threads)
    routed = RoutedApp(app, front)
    server = waitress.create_server(routed, _dispatcher=dispatcher, **theirs)
    rules = TrackingRules.from_options(front.store, options,
                                       server.adj.url_prefix + front.progress_url)
    listeners = _listeners(server)
    loop = server.asyncore = Loop(listeners[0].trigger)  # server.run() runs it
    blocking = front.may_block
    probe_path, prefixes = front.endpoint_paths()
    prefix = server.adj.url_prefix
    endpoints = (prefix + probe_path, tuple(prefix + each for each in prefixes))
    websocket = None
    if options["websocket"]:  # wsproto only then
        policy = importlib.import_module(".websocket", __package__).WebSocketPolicy
        websocket = policy(options, front.options["allowed_origins"])
    for listener in listeners:
        listener.channel_class = ProgressChannel
        listener.progress_rules = rules
        listener.progress_loop = loop
        listener.pull_trigger = loop.pull_trigger  # none from the loop to itself
        listener.maintenance = stir_closing(listener)  # idle ones may rest on the loop
        listener.progress_blocking = blocking  # endpoints and parked steps go to the lane
        listener.progress_endpoints = endpoints
        # probes answered without a task: not to an authorize hook (it may
        # read the whole environ), not on waitress 1.4 (one task a connection),
        # not behind a trusted proxy (waitress checks its headers, may answer 400)
        listener.progress_probe = None if front.probe.authorize is not None \
            or PEEK_FOR_DEPARTURE or server.adj.trusted_proxy else front.probe
        # mailboxes answered without a task: only where nothing they do blocks,
        # and no trusted proxy's headers are checked (waitress may answer 400)
        listener.progress_mailboxes = None if blocking or PEEK_FOR_DEPARTURE \
            or front.mailbox_app is None or server.adj.trusted_proxy else routed
        listener.progress_websocket = websocket  # our endpoints' WebSockets
        listener.progress_handoff = options["websocket"]  # WebSocket apps get the socket
        listener.progress_uploads = front.resumable
    loop.every(0.25, SlowClients(listeners[0]._map, listeners, **{
        name: options[name] for name in ("header_timeout", "body_timeout", "body_min_rate")}))
    server.progress_front = front
    server.progress_store = server.progress_table = front.store
    server.mailbox = front.mailboxes
    return server


def serve(app: WSGIApplication, **settings: Any) -> None:
    """Serve *app* until Ctrl-C or SIGTERM (systemd, containers), which stop
    it alike: WebSocket sessions close with 1001, waitress's threads stop;
    see :func:`create_server`.  SIGTERM is taken only from the main thread
    and when nothing else handles it."""
    logging.basicConfig()  # idempotent; waitress's own serve() does the same
    server = create_server(app, **settings)
    print_listen(server, "Serving on http://{}:{}")
    with _sigterm_as_exit():
        try:
            server.run()
        finally:
            server.progress_front.close()


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises :class:`SystemExit` meanwhile, as Ctrl-C raises
    :class:`KeyboardInterrupt`: waitress's ``run()`` shuts down on both."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve_paste(app: WSGIApplication, global_conf: Optional[Dict[str, str]] = None,
                **settings: str) -> int:
    """PasteDeploy ``paste.server_runner``: ``[server:main] use = egg:wsgiprogress``."""
    serve(app, **settings)
    return 0


def print_listen(server: Any, format_str: str) -> None:
    """*format_str* with each address the server listens on, logged as
    waitress 2.0+ logs it (logger ``waitress``, INFO); waitress 1.4 would print
    ``localhost`` for 127.0.0.1 on stdout, so there it is done here."""
    if not PEEK_FOR_DEPARTURE:
        server.print_listen(format_str)
        return
    for listener in _listeners(server):
        address = listener.socket.getsockname()
        if isinstance(address, tuple):
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            _waitress_log.info(format_str.format(host, address[1]))
        else:  # a unix socket
            _waitress_log.info(format_str.format(address, ""))


def _listeners(server: Any) -> List[BaseWSGIServer]:
    if isinstance(server, BaseWSGIServer):
        return [server]
    return [d for d in server.map.values() if isinstance(d, BaseWSGIServer)]
