"""The front doors (the command line, ``create_server``, ``ProgressMiddleware``,
the Paste filter, the Pyramid include, Flask), each as a context manager
that builds it from the same settings and yields its
:class:`~wsgiprogress.web.front.Front`, with how its users spell a setting's
name; for the tests that check every door refuses alike."""
from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any, Callable, ContextManager, Dict, Iterator, List, NamedTuple, Optional

import pytest
from flask import Flask
from pyramid.config import Configurator

from flask_progress import Progress
from flask_progress import config_key as flask_key
from wsgiprogress import ConfigurationError, ProgressMiddleware
from wsgiprogress.cli import run
from wsgiprogress.paste import filter_app_factory
from wsgiprogress.pyramid import POLICY_KEY
from wsgiprogress.server import create_server
from wsgiprogress.web.front import Front
from wsgiprogress.web.mailbox import Authorize

import server_apps
from server_support import HOST, TESTS

PROG = "wsgiprogress-serve"
APP_SPEC = "server_apps:app"
Spell = Callable[[str], str]
Opener = Callable[[Dict[str, Any], "pytest.CaptureFixture[str]", Optional[Authorize]],
                  ContextManager[Front]]


class FrontDoor(NamedTuple):
    """One way in: how its users write setting names, and how it is built
    (a context manager that yields the door's :class:`Front` and closes it)."""

    spell: Spell
    open: Opener
    takes_authorize: bool
    #: It passes every value on as text (a command line, an ini file).
    text: bool

    def written(self, value: Any) -> Any:
        """*value* as this door hands it to the settings."""
        return as_written(value) if self.text else value


class Spelled(Dict[str, str]):
    """``{name}`` in a sentence, spelled as a front door writes it."""

    def __init__(self, spell: Spell) -> None:
        super().__init__()
        self.spell = spell

    def __missing__(self, name: str) -> str:
        return self.spell(name)


def as_written(value: Any) -> str:
    """*value* as an ini file or a command line writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cli_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@contextlib.contextmanager
def serving(settings: Dict[str, Any],
            authorize: Optional[Authorize] = None) -> Iterator[Any]:
    """A server built by ``create_server`` on port 0, never run; closed on exit."""
    server = create_server(server_apps.app, host=HOST, port=0, authorize=authorize, **settings)
    try:
        yield server
    finally:
        server.close()
        server.task_dispatcher.shutdown(timeout=2)
        server.progress_front.close()


@contextlib.contextmanager
def closing_front(middleware: ProgressMiddleware) -> Iterator[Front]:
    try:
        yield middleware.front
    finally:
        middleware.front.close()


@contextlib.contextmanager
def through_cli(given: Dict[str, Any], capsys: pytest.CaptureFixture[str],
                authorize: Optional[Authorize] = None) -> Iterator[Front]:
    assert authorize is None, "a command line cannot pass a hook"
    argv = [PROG]
    for name, value in given.items():
        if isinstance(value, bool):
            argv.append(cli_flag(name) if value else "--no-" + cli_flag(name)[2:])
        else:
            # one word, so a value such as "-1" or "--x" stays the option's
            argv.append(f"{cli_flag(name)}={as_written(value)}")
    served: List[Dict[str, Any]] = []
    code = run([*argv, APP_SPEC], _serve=lambda app, **settings: served.append(settings))
    out, err = capsys.readouterr()
    if code == 2:
        assert (served, out) == ([], "")
        assert err.startswith(f"{PROG}: ") and err.count("\n") == 1 and err.endswith("\n"), err
        # raised again, so every door is checked alike
        raise ConfigurationError(err[len(PROG) + 2:-1])
    assert (code, err) == (0, ""), err
    with serving(served[0]) as server:
        yield server.progress_front


@contextlib.contextmanager
def through_server(given: Dict[str, Any], capsys: pytest.CaptureFixture[str],
                   authorize: Optional[Authorize] = None) -> Iterator[Front]:
    with serving(given, authorize) as server:
        yield server.progress_front


def through_middleware(given: Dict[str, Any], capsys: pytest.CaptureFixture[str],
                       authorize: Optional[Authorize] = None) -> ContextManager[Front]:
    return closing_front(ProgressMiddleware(server_apps.app, authorize=authorize, **given))


def through_paste(given: Dict[str, Any], capsys: pytest.CaptureFixture[str],
                  authorize: Optional[Authorize] = None) -> ContextManager[Front]:
    assert authorize is None, "an ini file cannot pass a hook"
    ini = {name: as_written(value) for name, value in given.items()}
    return closing_front(filter_app_factory(server_apps.app, {}, **ini))


def through_pyramid(given: Dict[str, Any], capsys: pytest.CaptureFixture[str],
                    authorize: Optional[Authorize] = None) -> ContextManager[Front]:
    assert authorize is None, "Pyramid settings cannot pass a hook"
    config = Configurator(settings={pyramid_key(name): as_written(value)
                                    for name, value in given.items()})
    config.include("wsgiprogress")
    return closing_front(config.registry[POLICY_KEY].middleware)


def through_flask(given: Dict[str, Any], capsys: pytest.CaptureFixture[str],
                  authorize: Optional[Authorize] = None) -> ContextManager[Front]:
    app = Flask(__name__)
    app.config.update({flask_key(name): value for name, value in given.items()})
    Progress(app, authorize=authorize)
    state = app.extensions["progress"]
    assert state.mailbox is state.middleware.front.mailboxes
    return closing_front(state.middleware)


def same_name(name: str) -> str:
    return name


def pyramid_key(name: str) -> str:
    return "wsgiprogress." + name


CLI = pytest.param(FrontDoor(cli_flag, through_cli, False, True), id="cli")
SERVER = pytest.param(FrontDoor(same_name, through_server, True, False), id="create_server")
MIDDLEWARE = pytest.param(FrontDoor(same_name, through_middleware, True, False), id="middleware")
PASTE = pytest.param(FrontDoor(same_name, through_paste, False, True), id="paste")
PYRAMID = pytest.param(FrontDoor(pyramid_key, through_pyramid, False, True), id="pyramid")
FLASK = pytest.param(FrontDoor(flask_key, through_flask, True, False), id="flask")
DOORS = [CLI, SERVER, MIDDLEWARE, PASTE, PYRAMID, FLASK]
HOOK_DOORS = [door for door in DOORS if door.values[0].takes_authorize]


@pytest.fixture(autouse=True)
def cli_side_effects(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``run`` imports the application from sys.path, configures logging and
    handles SIGTERM, as the process owner does: sys.path and SIGTERM are
    restored after each test, and pytest's logging is left alone."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    sigterm = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, sigterm)


def refusal(door: FrontDoor, given: Dict[str, Any], capsys: pytest.CaptureFixture[str],
            authorize: Optional[Authorize] = None) -> str:
    with pytest.raises(ConfigurationError) as info:
        with door.open(given, capsys, authorize):
            pass
    return str(info.value)

