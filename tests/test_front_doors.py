"""Every front door (the command line, ``create_server``, ``ProgressMiddleware``,
the Paste filter, the Pyramid include, Flask) refuses the same mistakes
between settings with the same sentence, naming the settings as its users
write them; the settings that sentence asks for are accepted; and the mailbox
bounds set at any door reach the store it opens."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, NamedTuple

import pytest

from wsgiprogress.cli import run
from wsgiprogress.settings import MIDDLEWARE_SETTINGS, resolve
from wsgiprogress.web.mailbox import unguessable_names

import server_apps
from front_door_support import (
    APP_SPEC,
    DOORS,
    HOOK_DOORS,
    PROG,
    FrontDoor,
    Spelled,
    cli_side_effects,  # noqa: F401 (autouse)
    refusal,
    serving,
)

TOKEN = "publish-token-0123456789"
MiB = 1024 * 1024
#: Where the front doors that the resumable mistake's fix turns on store uploads.
UPLOADS = os.path.join(tempfile.gettempdir(), "wsgiprogress-front-door-uploads")


class Mistake(NamedTuple):
    """Settings that contradict each other, the sentence every door answers
    with (names in braces, spelled per door), and the settings it asks for."""

    given: Dict[str, Any]
    sentence: str
    fix: Dict[str, Any]


OVERLAP = "overlap, so one would answer the other's requests: give them paths apart"
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
    pytest.param(Mistake(
        {"dashboard_url": "/progress", "publish_token": TOKEN},
        "{progress_url} '/progress' and {dashboard_url} '/progress' " + OVERLAP,
        {"dashboard_url": "/_dashboard"}), id="dashboard-at-the-probe"),
    pytest.param(Mistake(
        {"mailbox": True, "operations": True, "operations_url": "/mailbox/jobs"},
        "{mailbox_url} '/mailbox' and {operations_url} '/mailbox/jobs' " + OVERLAP,
        {"operations_url": "/jobs"}), id="monitors-under-the-mailboxes"),
    pytest.param(Mistake(
        {"resumable_dir": UPLOADS, "resumable_url": "/progress/", "progress_url": "/progress"},
        "{progress_url} '/progress' and {resumable_url} '/progress/' " + OVERLAP,
        {"resumable_url": "/files/"}), id="uploads-at-the-probe"),
]

#: Issue 10's mailbox bounds, as given and as the store must hold them.
BOUNDS = {"max_messages": 500, "mailbox_ttl": 60, "max_bytes": 2 * MiB,
          "max_message_bytes": 128 * 1024, "max_age": 600, "max_mailboxes": 50}
STORE_BOUNDS = {"max_messages": 500, "mailbox_ttl": 60.0, "max_bytes": 2 * MiB,
                "max_message_bytes": 128 * 1024, "max_age": 600.0, "max_mailboxes": 50}


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
