"""
Command line
============

``wsgiprogress-serve [options] module:app`` (also ``python -m wsgiprogress``)
serves a WSGI application on :mod:`wsgiprogress.server`.  Every option comes
from the settings tables: wsgiprogress's (:mod:`wsgiprogress.settings`) and
waitress's own; a boolean ``--x`` has a ``--no-x``.

.. code-block:: console

    $ wsgiprogress-serve --listen 127.0.0.1:8080 --threads 8 myproject.wsgi:app
    $ wsgiprogress-serve --call myproject:create_app

Exit codes: 0 after a normal shutdown (Ctrl-C or SIGTERM), 1 when the
application cannot be loaded or the address cannot be listened on, 2 for bad
options or settings.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from waitress.adjustments import Adjustments
from waitress.adjustments import asbool as waitress_asbool

from .errors import ConfigurationError
from .server import check_settings, serve
from .settings import SERVER_SETTINGS, TUNED_WAITRESS_DEFAULTS
from .settings.converters import as_bool

PROG = "wsgiprogress-serve"

DESCRIPTION = """\
Serve a WSGI application on waitress with live upload and download progress.
Clients upload to any URL with ?X-Progress-ID=<id> (or an X-Progress-ID
header) and poll GET /progress?X-Progress-ID=<id> for the bytes received,
sent, speed and ETA.  The application needs no change."""

EPILOG = """\
examples:
  %(prog)s myapp:app
  %(prog)s --listen 127.0.0.1:8080 --threads 8 --max-request-body-size 104857600 myapp:app
  %(prog)s --call myapp:create_app

exit codes: 0 normal shutdown (Ctrl-C or SIGTERM), 1 application not loadable
or address not available, 2 bad options"""

#: Help for the waitress settings a newcomer reaches for; the rest are listed
#: under "waitress settings" and documented by waitress.
_WAITRESS_HELP = {
    "host": "interface to listen on (default 0.0.0.0)",
    "port": "TCP port to listen on (default 8080)",
    "listen": "host:port to listen on; repeat for several (replaces --host/--port)",
    "threads": "threads that run the application (default 4)",
    "connection_limit": "most open connections (default max(100, 2 * threads))",
    "max_request_body_size": "largest request body in bytes; above it 413 (default 1 GiB)",
    "url_prefix": "path prefix the application is mounted under",
    "unix_socket": "path of a Unix socket to listen on instead of TCP",
}


def _waitress_help(name: str) -> str:
    text = _WAITRESS_HELP.get(name, "waitress's own setting")
    tuned = TUNED_WAITRESS_DEFAULTS.get(name)
    if tuned is not None:
        text += f" (default here {tuned[0]}: {tuned[1]})"
    return text


def _add(group: Any, name: str, convert: Callable[[Any], Any], help_text: str,
         multiple: bool = False) -> None:
    flag = _flag(name)
    if convert in (as_bool, waitress_asbool):
        group.add_argument(flag, dest=name, action="store_const", const=True,
                           default=None, help=help_text)
        group.add_argument("--no-" + flag[2:], dest=name, action="store_const",
                           const=False, default=None, help=argparse.SUPPRESS)
    elif multiple:
        group.add_argument(flag, dest=name, action="append", metavar="VALUE",
                           default=None, help=help_text)
    else:
        group.add_argument(flag, dest=name, metavar="VALUE", default=None, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, generated from the settings tables."""
    parser = argparse.ArgumentParser(
        prog=PROG, usage="%(prog)s [options] module:app", description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", metavar="module:app",
                        help="the WSGI application, e.g. myproject.wsgi:application")
    parser.add_argument("--call", action="store_true",
                        help="call module:app with no arguments to get the application")
    ours = parser.add_argument_group("progress settings (--no-X turns a flag off)")
    for setting in SERVER_SETTINGS:
        _add(ours, setting.name, setting.convert,
             f"{setting.help} (default {_show(setting.default)})")
    theirs = parser.add_argument_group("waitress settings")
    for name, convert in Adjustments._params:
        if name == "sockets":
            continue  # sockets are objects, not something a shell can pass
        _add(theirs, name, convert, _waitress_help(name), multiple=(name == "listen"))
    return parser


def _show(default: Any) -> str:
    if isinstance(default, tuple):
        return " ".join(default) or "none"
    return str(default)


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
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv[1:]))
    except SystemExit as exc:
        return int(exc.code or 0)
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
        print(f"{PROG}: cannot load {args.app}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    # the CLI owns the process: show waitress's "Serving on" and our warnings,
    # and shut down cleanly on SIGTERM (systemd, containers) as on Ctrl-C
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _serve(app, **settings)
    except OSError as exc:
        print(f"{PROG}: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _flag(name: str) -> str:
    """Setting names as the command line spells them."""
    return "--" + name.replace("_", "-")


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)  # waitress's run() shuts its threads down on SystemExit


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv if argv is None else argv))
