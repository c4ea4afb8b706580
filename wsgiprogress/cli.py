"""
Command line
============

``wsgiprogress-serve [options] module:app`` (also ``python -m wsgiprogress``)
serves a WSGI application on :mod:`wsgiprogress.server`.  Every option comes
from the settings tables: wsgiprogress's (:mod:`wsgiprogress.settings`) and
waitress's own, grouped and described by :data:`WAITRESS_GROUPS`; a boolean
``--x`` has a ``--no-x``, and sizes take suffixes (``--max-request-body-size 1G``).
Settings are checked before the application is loaded, and every mistake is
one line on stderr that says what to change.

.. code-block:: console

    $ wsgiprogress-serve --listen 127.0.0.1:8080 --threads 8 myproject.wsgi:app
    $ wsgiprogress-serve --call myproject:create_app

Exit codes: 0 after a normal shutdown (Ctrl-C or SIGTERM), 1 when the
application cannot be loaded (the message names the file and line that
failed) or the address cannot be listened on, 2 for bad options or settings
or an application that is not callable.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import sysconfig
import traceback
from importlib import metadata
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

from waitress.adjustments import Adjustments, asoctal
from waitress.adjustments import asbool as waitress_asbool

from . import __version__
from .errors import ConfigurationError
from .server import WAITRESS_SIZES, check_settings, serve
from .settings import SERVER_SETTINGS, TUNED_WAITRESS_DEFAULTS, unknown_setting
from .settings import converters as conv

PROG = "wsgiprogress-serve"

DESCRIPTION = """\
Serve a WSGI application on waitress with live upload progress: clients upload
with ?X-Progress-ID=<id> and poll GET /progress?X-Progress-ID=<id>.  A flag --x
has a --no-x; a SIZE is bytes or a number with K, M or G (10M)."""

EPILOG = """\
example: %(prog)s --listen 127.0.0.1:8080 --threads 8 myapp:app
exit codes: 0 after Ctrl-C or SIGTERM, 1 application not loadable or address
not available, 2 bad options or an application that is not callable"""

#: waitress's settings by topic, each with its metavar and one line of help;
#: the help adds the default: waitress's, or ours from TUNED_WAITRESS_DEFAULTS.
WAITRESS_GROUPS: Tuple[Tuple[str, Tuple[Tuple[str, str, str], ...]], ...] = (
    ("waitress: where to listen, what the application sees", (
        ("listen", "HOST:PORT", "address to listen on; repeat for several"),
        ("host", "HOST", "interface to listen on"),
        ("port", "PORT", "TCP port to listen on"),
        ("ipv4", "", "listen on IPv4 addresses"),
        ("ipv6", "", "listen on IPv6 addresses"),
        ("unix_socket", "PATH", "listen on this Unix socket, not TCP"),
        ("unix_socket_perms", "OCTAL", "the Unix socket's mode"),
        ("url_scheme", "SCHEME", "the app's wsgi.url_scheme"),
        ("url_prefix", "PATH", "path the application is mounted under"),
        ("server_name", "NAME", "SERVER_NAME for requests with no Host"),
        ("ident", "NAME", "Server header sent"),
        ("expose_tracebacks", "", "send error tracebacks to clients (unsafe)"),
    )),
    ("waitress: behind a reverse proxy", (
        ("trusted_proxy", "ADDR", "address of the proxy to trust; * for any"),
        ("trusted_proxy_count", "N", "proxies to trust in a chain"),
        ("trusted_proxy_headers", "LIST",
         "headers to trust: forwarded or x-forwarded-for, -host, -proto, -port, -by"),
        ("log_untrusted_proxy_headers", "", "log proxy headers that are not trusted"),
        ("clear_untrusted_proxy_headers", "", "drop proxy headers that are not trusted"),
    )),
    ("waitress: limits and tuning", (
        ("threads", "N", "threads that run the app"),
        ("connection_limit", "N", "most open connections"),
        ("max_request_body_size", "SIZE", "largest body; above it 413"),
        ("max_request_header_size", "SIZE", "largest headers; above 431"),
        ("backlog", "N", "connections the OS queues"),
        ("channel_timeout", "SECONDS", "idle seconds before a close"),
        ("cleanup_interval", "SECONDS", "seconds between idle checks"),
        ("channel_request_lookahead", "N", "requests read ahead, to see a client leave"),
        ("recv_bytes", "SIZE", "bytes read from a socket at once"),
        ("send_bytes", "SIZE", "deprecated: bytes per send"),
        ("inbuf_overflow", "SIZE", "request data held in memory"),
        ("outbuf_overflow", "SIZE", "response data held in memory"),
        ("outbuf_high_watermark", "SIZE", "unsent data pausing the app"),
        ("asyncore_use_poll", "", "poll(): select() fails at ~1020 sockets"),
        ("asyncore_loop_timeout", "SECONDS", "longest wait of the event loop"),
        ("log_socket_errors", "", "log clients that leave early"),
    )),
)

#: Defaults that are no constant, as the help shows them (``listen`` follows
#: ``--host`` and ``--port``, which show theirs).
_SHOWN_DEFAULTS: Dict[str, Optional[str]] = {
    "listen": None, "connection_limit": "what file descriptors allow, up to 16384",
    "trusted_proxy_count": "1"}

#: The metavar of each of our converters.
_METAVARS: Dict[Callable[[Any], Any], str] = {
    conv.as_path: "PATH", conv.as_optional_path: "PATH", conv.as_dialect: "NAME",
    conv.as_optional_directory: "DIR",
    conv.as_header_name: "NAME", conv.as_origins: "ORIGINS", conv.as_backend: "URL",
    conv.as_prefix: "PREFIX", conv.as_seconds: "SECONDS", conv.as_rate: "BYTES/S",
    conv.as_positive_seconds: "SECONDS", conv.as_count: "N", conv.as_optional_count: "N",
    conv.as_size: "SIZE", conv.as_optional_size: "SIZE", conv.as_methods: "METHODS",
    conv.as_optional_token: "TOKEN",
}
_SIZES = (conv.as_size, conv.as_optional_size)


def _add(group: Any, name: str, convert: Callable[[Any], Any], metavar: str,
         help_text: str) -> None:
    flag = _flag(name)
    if convert in (conv.as_bool, waitress_asbool):
        group.add_argument(flag, dest=name, action="store_const", const=True,
                           default=None, help=help_text)
        group.add_argument("--no-" + flag[2:], dest=name, action="store_const",
                           const=False, default=None, help=argparse.SUPPRESS)
    else:
        group.add_argument(flag, dest=name, metavar=metavar, default=None, help=help_text,
                           action="append" if name == "listen" else "store")


def _with_default(text: str, shown: Optional[str]) -> str:
    return text if shown is None else f"{text} (default {shown})"


def _show(value: Any, size: bool = False, octal: bool = False) -> Optional[str]:
    """A default as the help shows it; ``None`` for one that says nothing
    (off, unset, empty), which the help text explains."""
    if value is None or value is False or value in ("", (), [], set()):
        return None
    if value is True:
        return "on"
    if size:
        for unit, suffix in ((1024 ** 3, "G"), (1024 ** 2, "M"), (1024, "K")):
            if value % unit == 0:
                return f"{value // unit}{suffix}"
    if octal:
        return f"{value:o}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _waitress_default(name: str, convert: Callable[[Any], Any]) -> Optional[str]:
    if name in _SHOWN_DEFAULTS:
        return _SHOWN_DEFAULTS[name]
    size, octal = name in WAITRESS_SIZES, convert is asoctal
    theirs = _show(getattr(Adjustments, name, None), size, octal)
    if name not in TUNED_WAITRESS_DEFAULTS:
        return theirs
    ours = _show(TUNED_WAITRESS_DEFAULTS[name][0], size, octal)
    return f"{ours}; waitress's {theirs or 'off'}"


class _Parser(argparse.ArgumentParser):
    """Refuses in one line, as a bad setting is refused: argparse's own
    error shows the usage first."""

    def error(self, message: str) -> NoReturn:
        raise ConfigurationError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, generated from the settings tables: ours
    (:data:`~wsgiprogress.settings.SERVER_SETTINGS`) and waitress's
    (``Adjustments._params``, described by :data:`WAITRESS_GROUPS`)."""
    parser = _Parser(
        prog=PROG, usage="%(prog)s [options] module:app", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("app", metavar="module:app",
                        help="the WSGI application, e.g. myapp:app")
    parser.add_argument("--call", action="store_true",
                        help="call module:app to get the application")
    parser.add_argument("--version", action="version", version=_version())
    ours = parser.add_argument_group("progress settings")
    for setting in SERVER_SETTINGS:
        shown = _show(setting.default, size=setting.convert in _SIZES)
        _add(ours, setting.name, setting.convert, _METAVARS.get(setting.convert, "VALUE"),
             _with_default(setting.help, shown))
    theirs = dict(Adjustments._params)
    theirs.pop("sockets", None)  # sockets are objects, not something a shell can pass
    for title, entries in WAITRESS_GROUPS:
        group = parser.add_argument_group(title)
        for name, metavar, text in entries:
            convert = theirs.pop(name, None)
            if convert is not None:  # older waitress versions lack some
                _add(group, name, convert, metavar,
                     _with_default(text, _waitress_default(name, convert)))
    if theirs:  # a newer waitress's settings, not described here yet
        group = parser.add_argument_group("waitress: other settings")
        for name, convert in theirs.items():
            _add(group, name, convert, "VALUE", f"see waitress's documentation of {name}")
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Options and their help side by side where the terminal allows: the
    help column starts after the longest option, --clear-untrusted-proxy-headers."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=35)


def _version() -> str:
    try:
        waitress_version = metadata.version("waitress")
    except metadata.PackageNotFoundError:
        waitress_version = "unknown"
    return f"{PROG} {__version__} (waitress {waitress_version})"


def load_app(spec: str, call: bool = False) -> Any:
    """Import ``module:attribute.path`` from the current directory or sys.path;
    call it when *call* is true or the path ends with ``()`` (an app factory,
    as gunicorn and Flask accept: ``myproject:create_app()``)."""
    module_name, sep, attr_path = spec.partition(":")
    if attr_path.endswith("()"):
        attr_path, call = attr_path[:-2], True
    if not sep or not module_name or not attr_path:
        raise ValueError(f"expected module:app, such as myproject.wsgi:app, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj() if call else obj


def run(argv: Sequence[str] = sys.argv, _serve: Callable[..., Any] = serve) -> int:
    """Parse *argv*, load the application and serve it; returns the exit code."""
    try:
        args = parse(build_parser(), list(argv[1:]))
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    settings: Dict[str, Any] = {
        name: value for name, value in vars(args).items()
        if value is not None and name not in ("app", "call")}
    if "listen" in settings:
        settings["listen"] = " ".join(settings["listen"])
    try:
        check_settings(settings, spell=_flag)
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        app = load_app(args.app, args.call)
    except Exception as exc:
        print(f"{PROG}: cannot load {args.app}: {_failure(exc)}", file=sys.stderr)
        return 1
    if not callable(app):
        print(f"{PROG}: {args.app} is {type(app).__name__} {_short_repr(app)}, not a WSGI "
              "application: name the callable that takes (environ, start_response)",
              file=sys.stderr)
        return 2
    # the CLI owns the process: show waitress's "Serving on" and our warnings
    # (serve() shuts down cleanly on SIGTERM as on Ctrl-C)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    try:
        _serve(app, **settings)
    except ConfigurationError as exc:  # what only opening the backend finds out
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: cannot listen on {_addresses(settings)}: "
              f"{_lower_first(exc.strerror or str(exc))}", file=sys.stderr)
        return 1
    return 0


def parse(parser: argparse.ArgumentParser, argv: List[str]) -> argparse.Namespace:
    """*argv* parsed by *parser*; a mistake is refused as every front door
    refuses it: an unknown option with the closest one, a switch given a
    value (``--mailbox false``, as an ini file would write it) with the
    switches to write instead.

    :raises ConfigurationError: the one line that says what to change.
    """
    options = {option: action.dest for action in parser._actions
               for option in action.option_strings}
    switches = {action.dest for action in parser._actions if action.const is False}
    for word, following in zip(argv, argv[1:] + [""]):
        option, equals, value = word.partition("=")
        if options.get(option) in switches and (equals or _is_bool(following)):
            name = options[option]
            raise ConfigurationError(
                f"{option} takes no value, not {value if equals else following!r}: write "
                f"{_flag(name)} to turn it on, --no-{_flag(name)[2:]} to turn it off")
    args, extra = parser.parse_known_args(argv)
    for word in extra:
        if word.startswith("-"):
            name = word.partition("=")[0].lstrip("-").replace("-", "_")
            raise unknown_setting(name, set(options.values()) - {"help", "version"},
                                  _flag, list_known=False)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _is_bool(word: str) -> bool:
    try:
        conv.as_bool(word)
    except ValueError:
        return False
    return True


#: Where library code lives: a failure is shown in the application's own
#: code when the traceback passes through it.
_LIBRARIES = tuple(os.path.join(path, "") for path in {
    sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")})


def _failure(exc: Exception) -> str:
    """*exc* on one line, with the file and line that raised it: the
    innermost in the application's code, else the innermost outside the
    import machinery and this module."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, SyntaxError):
        return line  # its message names the file and line already
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not frame.filename.startswith("<") and frame.filename != __file__
              and not frame.filename.startswith(os.path.dirname(importlib.__file__))]
    own = [frame for frame in frames if not frame.filename.startswith(_LIBRARIES)]
    for frame in (own or frames)[-1:]:
        line += f" ({_shown_path(frame.filename)}, line {frame.lineno})"
    return line


def _shown_path(path: str) -> str:
    """*path* relative to the current directory when it lies below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return path
    return path if relative.startswith(os.pardir) else relative


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _addresses(settings: Dict[str, Any]) -> str:
    """Where *settings* say to listen, as the user wrote it."""
    if "unix_socket" in settings:
        return str(settings["unix_socket"])
    if "listen" in settings:
        return " and ".join(settings["listen"].split())
    return f"{settings.get('host', Adjustments.host)}:{settings.get('port', Adjustments.port)}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _flag(name: str) -> str:
    """Setting names as the command line spells them."""
    return "--" + name.replace("_", "-")


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv if argv is None else argv))
