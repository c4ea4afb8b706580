"""Every front door (the command line, ``create_server``, ``ProgressMiddleware``,
the Paste filter, the Pyramid include, Flask) refuses the same mistakes
between settings with the same sentence, naming the settings as its users
write them; the settings that sentence asks for are accepted; and the mailbox
bounds set at any door reach the store it opens."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
from typing import Any, Callable, ContextManager, Dict, Iterator, List, NamedTuple, Optional

import pytest
from flask import Flask
from pyramid.config import Configurator

from flask_progress import Progress
from wsgiprogress import ConfigurationError, ProgressMiddleware
from wsgiprogress.cli import run
from wsgiprogress.paste import filter_app_factory
from wsgiprogress.pyramid import POLICY_KEY
from wsgiprogress.server import create_server
from wsgiprogress.settings import MIDDLEWARE_SETTINGS, resolve
from wsgiprogress.web.front import Front
from wsgiprogress.web.mailbox import Authorize, unguessable_names

import server_apps
from server_support import HOST, TESTS

PROG = "wsgiprogress-serve"
APP_SPEC = "server_apps:app"
TOKEN = "publish-token-0123456789"
MiB = 1024 * 1024
#: Where the front doors that the resumable mistake's fix turns on store uploads.
UPLOADS = os.path.join(tempfile.gettempdir(), "wsgiprogress-front-door-uploads")

Spell = Callable[[str], str]
Opener = Callable[[Dict[str, Any], "pytest.CaptureFixture[str]", Optional[Authorize]],
                  ContextManager[Front]]


class FrontDoor(NamedTuple):
    """One way in: how its users write setting names, and how it is built
    (a context manager that yields the door's :class:`Front` and closes it)."""

    spell: Spell
    open: Opener
    takes_authorize: bool


class Mistake(NamedTuple):
    """Settings that contradict each other, the sentence every door answers
    with (names in braces, spelled per door), and the settings it asks for."""

    given: Dict[str, Any]
    sentence: str
    fix: Dict[str, Any]


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
            argv += [cli_flag(name), as_written(value)]
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


def flask_key(name: str) -> str:
    return "PROGRESS_" + name.upper()


CLI = pytest.param(FrontDoor(cli_flag, through_cli, False), id="cli")
SERVER = pytest.param(FrontDoor(same_name, through_server, True), id="create_server")
MIDDLEWARE = pytest.param(FrontDoor(same_name, through_middleware, True), id="middleware")
PASTE = pytest.param(FrontDoor(same_name, through_paste, False), id="paste")
PYRAMID = pytest.param(FrontDoor(pyramid_key, through_pyramid, False), id="pyramid")
FLASK = pytest.param(FrontDoor(flask_key, through_flask, True), id="flask")
DOORS = [CLI, SERVER, MIDDLEWARE, PASTE, PYRAMID, FLASK]
HOOK_DOORS = [door for door in DOORS if door.values[0].takes_authorize]

MISTAKES = [
    pytest.param(Mistake(
        {"publish": True},
        "{publish} configures mailboxes: turn {mailbox} on too",
        {"mailbox": True, "publish_token": TOKEN}), id="publish-without-mailbox"),
    pytest.param(Mistake(
        {"publish_token": TOKEN},
        "{publish_token} configures mailboxes: turn {mailbox} on too",
        {"mailbox": True}), id="token-without-mailbox-or-dashboard"),
    pytest.param(Mistake(
        {"max_messages": 500},
        "{max_messages} configures mailboxes: turn {mailbox} on too",
        {"mailbox": True}), id="bound-without-mailbox"),
    pytest.param(Mistake(
        {"mailbox": True, "publish": True},
        "{publish} needs {publish_token} or an authorize hook: without either nobody "
        "could publish",
        {"publish_token": TOKEN}), id="publish-without-token-or-authorize"),
    pytest.param(Mistake(
        {"dashboard_url": "/_dashboard"},
        "{dashboard_url} needs {publish_token} or an authorize hook: without either nobody "
        "could open the dashboard",
        {"publish_token": TOKEN}), id="dashboard-without-token-or-authorize"),
    pytest.param(Mistake(
        {"mailbox": True, "max_message_bytes": 2 * MiB, "max_bytes": MiB},
        "{max_message_bytes} must not exceed {max_bytes}, or a message could never be kept",
        {"max_bytes": 4 * MiB}), id="message-bytes-over-max-bytes"),
    pytest.param(Mistake(
        {"resumable_ttl": 60},
        "{resumable_ttl} configures resumable uploads: set {resumable_dir} too",
        {"resumable_dir": UPLOADS}), id="resumable-setting-without-directory"),
]

#: Issue 10's mailbox bounds, as given and as the store must hold them.
BOUNDS = {"max_messages": 500, "mailbox_ttl": 60, "max_bytes": 2 * MiB,
          "max_message_bytes": 128 * 1024, "max_age": 600, "max_mailboxes": 50}
STORE_BOUNDS = {"max_messages": 500, "mailbox_ttl": 60.0, "max_bytes": 2 * MiB,
                "max_message_bytes": 128 * 1024, "max_age": 600.0, "max_mailboxes": 50}


@pytest.fixture(autouse=True)
def _cli_side_effects(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
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


@pytest.mark.parametrize("mistake", MISTAKES)
@pytest.mark.parametrize("door", DOORS)
def test_every_door_refuses_a_mistake_with_the_same_sentence(
        door: FrontDoor, mistake: Mistake, capsys: pytest.CaptureFixture[str]) -> None:
    assert refusal(door, mistake.given, capsys) == mistake.sentence.format_map(
        Spelled(door.spell))


@pytest.mark.parametrize("mistake", MISTAKES)
@pytest.mark.parametrize("door", DOORS)
def test_what_the_sentence_asks_for_is_accepted(
        door: FrontDoor, mistake: Mistake, capsys: pytest.CaptureFixture[str]) -> None:
    corrected = {**mistake.given, **mistake.fix}
    expected = resolve(MIDDLEWARE_SETTINGS, corrected)
    with door.open(corrected, capsys, None) as front:
        assert {name: front.options[name] for name in corrected} == {
            name: expected[name] for name in corrected}
        assert (front.mailboxes is not None) == expected["mailbox"]


@pytest.mark.parametrize("door", HOOK_DOORS)
def test_an_authorize_hook_alone_guards_the_probe(
        door: FrontDoor, capsys: pytest.CaptureFixture[str]) -> None:
    with door.open({}, capsys, unguessable_names) as front:
        assert front.probe.authorize is unguessable_names
        assert front.mailbox_app is None and front.dashboard is None


@pytest.mark.parametrize("given", [
    pytest.param({"mailbox": True, "publish": True}, id="publish"),
    pytest.param({"dashboard_url": "/_dashboard"}, id="dashboard"),
])
@pytest.mark.parametrize("door", HOOK_DOORS)
def test_an_authorize_hook_stands_in_for_the_token(
        door: FrontDoor, given: Dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    with door.open(given, capsys, unguessable_names) as front:
        assert front.options["publish_token"] is None
        assert (front.dashboard is not None) == ("dashboard_url" in given)
        assert (front.mailbox_app is not None) == ("mailbox" in given)


def test_the_cli_carries_issue_10s_mailbox_bounds_to_the_servers_store(
        capsys: pytest.CaptureFixture[str]) -> None:
    served: List[Any] = []
    argv = [PROG, "--max-messages", "500", "--mailbox-ttl", "60", "--mailbox", APP_SPEC]
    assert run(argv, _serve=lambda app, **settings: served.append((app, settings))) == 0
    assert capsys.readouterr().err == ""
    [(app, settings)] = served
    assert app is server_apps.app
    assert settings == {"max_messages": "500", "mailbox_ttl": "60", "mailbox": True}
    with serving(settings) as server:
        assert (server.mailbox.max_messages, server.mailbox.mailbox_ttl) == (500, 60.0)
        assert server.mailbox is server.progress_front.mailboxes


@pytest.mark.parametrize("door", DOORS)
def test_mailbox_bounds_reach_the_store_through_every_door(
        door: FrontDoor, capsys: pytest.CaptureFixture[str]) -> None:
    with door.open({"mailbox": True, **BOUNDS}, capsys, None) as front:
        assert front.mailboxes is not None
        assert {name: getattr(front.mailboxes, name) for name in STORE_BOUNDS} == STORE_BOUNDS
