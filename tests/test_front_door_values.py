"""Every front door (the command line, ``create_server``, ``ProgressMiddleware``,
the Paste filter, the Pyramid include, Flask) refuses the same bad value when
it is made, not at the first request, with the same one line: the setting as
that door spells it (``--ttl``, ``wsgiprogress.ttl``, ``PROGRESS_TTL``) and
what to write instead.  Values of the wrong type or out of range, unknown
names, malformed Redis URLs, a setting of our server given to the middleware;
the strings an ini file writes for a switch are read as the switch."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wsgiprogress import ConfigurationError
from wsgiprogress.cli import run
from wsgiprogress.settings import FRONT_SETTINGS, SERVER_SETTINGS, resolve

from front_door_support import (
    DOORS,
    PROG,
    FrontDoor,
    Spelled,
    cli_side_effects,  # noqa: F401 (autouse)
    refusal,
)

#: The doors that run the middleware, not our server.
MIDDLEWARE_DOORS = [door for door in DOORS if door.id not in ("cli", "create_server")]
SERVER_DOORS = [door for door in DOORS if door.id in ("cli", "create_server")]
#: The doors a switch can be given text at (the command line has --x and --no-x).
TEXT_SWITCH_DOORS = [door for door in DOORS if door.id != "cli"]
REDIS_URL = "{backend}: expected memory:// or a Redis URL such as redis://127.0.0.1:6379/0"


class BadValue(NamedTuple):
    """Settings every door refuses, and the sentence: names in braces spelled
    per door, ``{value}`` the value as the door passed it on."""

    given: Dict[str, Any]
    sentence: str


def case(given: Dict[str, Any], sentence: str, id: str) -> Any:
    return pytest.param(BadValue(given, sentence), id=id)


BAD_VALUES = [
    # the wrong type
    case({"ttl": [60]}, "{ttl}: expected a number of seconds >= 0, not {value}", "list"),
    case({"max_messages": 1.5}, "{max_messages}: expected a whole number >= 1, not {value}",
         "fraction"),
    case({"methods": 3}, "{methods}: expected HTTP methods such as 'POST PUT', not {value}",
         "number-for-methods"),
    case({"capacity": "²"}, "{capacity}: expected a whole number >= 1, not {value}",
         "superscript-digit"),
    case({"max_bytes": "１０M"},
         "{max_bytes}: expected a size in bytes >= 1 such as 1048576 or '10M', not {value}",
         "wide-digits"),
    # out of range
    case({"ttl": -1}, "{ttl}: expected a number of seconds >= 0, not {value}", "negative"),
    case({"sse_keepalive": 0}, "{sse_keepalive}: expected a number of seconds > 0, not {value}",
         "zero"),
    case({"min_id_length": 4},
         "{min_id_length}: expected a whole number from 8 to 128, not {value}", "short-ids"),
    case({"max_waiters": 0},
         "{max_waiters}: expected a whole number >= 1, or None for the default, not {value}",
         "no-waiters"),
    # unknown names
    case({"tll": 60}, "unknown setting '{tll}'; did you mean '{ttl}'?", "typo-name"),
    case({"max_mesages": 5}, "unknown setting '{max_mesages}'; did you mean '{max_messages}'?",
         "dropped-letter"),
    # contradicting pairs
    case({"mailbox_url": "/m"}, "{mailbox_url} configures mailboxes: turn {mailbox} on too",
         "mailbox-url-without-mailbox"),
    case({"operations_ttl": 5}, "{operations_ttl} configures operations: turn {operations} on "
         "too", "operations-setting-without-operations"),
    case({"operations": True, "max_kept_response": "2M", "max_kept_bytes": "1M"},
         "{max_kept_response} must not exceed {max_kept_bytes}, or a response could never be "
         "kept", "kept-response-over-kept-bytes"),
    # malformed Redis URLs: redis-py raises at the first call, or takes db 0
    case({"backend": "redis://127.0.0.1:http/0"},
         REDIS_URL + " (a port from 1 to 65535), not {value}", "redis-port"),
    case({"backend": "redis://127.0.0.1:65536/0"},
         REDIS_URL + " (a port from 1 to 65535), not {value}", "redis-port-range"),
    case({"backend": "redis://127.0.0.1:6379/1x"},
         REDIS_URL + " (a database number after the last /), not {value}", "redis-db-typo"),
    case({"backend": "redis://127.0.0.1:6379?db=one"},
         REDIS_URL + " (a database number in db=), not {value}", "redis-db-query"),
    case({"backend": "unix://"},
         REDIS_URL + " (unix:// and the socket's path: unix:///run/redis.sock), not {value}",
         "unix-without-path"),
    case({"backend": "redis://127.0.0.1:6379/0?sockettimeout=5"},
         "{backend}: redis-py knows no 'sockettimeout' in the query of "
         "'redis://127.0.0.1:6379/0?sockettimeout=5': remove it, or see redis-py's from_url "
         "for the arguments it takes", "redis-query-typo"),
    case({"backend": "redis://127.0.0.1:6379/0?socket_timeout=soon"},
         "{backend}: redis-py refuses 'redis://127.0.0.1:6379/0?socket_timeout=soon': Invalid "
         "value for 'socket_timeout' in connection URL.", "redis-query-value"),
]

#: Settings only our server reads, as the middleware's doors are given them.
SERVER_ONLY = [
    pytest.param({"header_timeout": 5}, "header_timeout", id="header-timeout"),
    pytest.param({"probe_threads": 4}, "probe_threads", id="probe-threads"),
    pytest.param({"websocket": True}, "websocket", id="websocket"),
    pytest.param({"websocket_ping": 5, "websocket": True}, "websocket_ping",
                 id="websocket-ping"),
]


def sentence(door: FrontDoor, bad: BadValue) -> str:
    """*bad*'s sentence as *door* says it."""
    spelled = Spelled(door.spell)
    spelled["value"] = repr(door.written(next(iter(bad.given.values()))))
    return bad.sentence.format_map(spelled)


@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize("door", DOORS)
def test_every_door_refuses_a_bad_value_when_made_with_the_same_line(
        door: FrontDoor, bad: BadValue, capsys: pytest.CaptureFixture[str]) -> None:
    assert refusal(door, bad.given, capsys) == sentence(door, bad)


@pytest.mark.parametrize("door", DOORS)
def test_a_redis_backend_without_redis_py_is_refused_alike(
        door: FrontDoor, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    assert refusal(door, {"backend": "redis://127.0.0.1:6379/0"}, capsys) == (
        f"{door.spell('backend')}: 'redis://127.0.0.1:6379/0' needs redis-py, which is not "
        'installed: pip install "wsgiprogress[redis]", or use memory://')


@pytest.mark.parametrize("door", DOORS)
def test_a_resumable_dir_that_cannot_be_used_is_refused_alike(
        door: FrontDoor, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    assert refusal(door, {"resumable_dir": str(taken / "uploads")}, capsys) == (
        f"{door.spell('resumable_dir')}: cannot use {str(taken / 'uploads')!r} (Not a "
        "directory); give a directory this process may write")


@pytest.mark.parametrize("given, name", SERVER_ONLY)
@pytest.mark.parametrize("door", MIDDLEWARE_DOORS)
def test_a_setting_of_our_server_is_refused_by_the_middleware_saying_where_it_goes(
        door: FrontDoor, given: Dict[str, Any], name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert refusal(door, given, capsys) == (
        f"{door.spell(name)} is read by wsgiprogress's server only, never by the middleware: "
        f"give {name} to wsgiprogress-serve or serve(), or remove it")


@pytest.mark.parametrize("given, name", SERVER_ONLY)
@pytest.mark.parametrize("door", SERVER_DOORS)
def test_our_server_takes_its_own_settings(door: FrontDoor, given: Dict[str, Any], name: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with door.open(given, capsys, None) as front:
        assert front.options[name] == resolve(SERVER_SETTINGS, given)[name]


@pytest.mark.parametrize("written, meant", [
    ("false", False), ("0", False), ("no", False), ("off", False), ("FALSE", False),
    ("true", True), ("1", True), ("yes", True), ("on", True),
])
@pytest.mark.parametrize("door", TEXT_SWITCH_DOORS)
def test_the_strings_an_ini_file_writes_for_a_switch_are_the_switch(
        door: FrontDoor, written: str, meant: bool, capsys: pytest.CaptureFixture[str]) -> None:
    given = {"debug": written, "per_file": "no", "mailbox": written, "operations": written}
    with door.open(given, capsys, None) as front:
        assert (front.options["debug"], front.options["mailbox"], front.options["per_file"],
                front.options["operations"]) == (meant, meant, False, meant)
        assert (front.mailboxes is not None, front.runner is not None) == (meant, meant)


@pytest.mark.parametrize("door", TEXT_SWITCH_DOORS)
def test_a_misspelt_switch_is_refused_not_taken_for_false(
        door: FrontDoor, capsys: pytest.CaptureFixture[str]) -> None:
    assert refusal(door, {"mailbox": "flase"}, capsys) == (
        f"{door.spell('mailbox')}: expected true or false (1/0, yes/no, on/off), not 'flase'")


@pytest.mark.parametrize("argv, line", [
    pytest.param(["--mailbox", "false"], "--mailbox takes no value, not 'false': write "
                 "--mailbox to turn it on, --no-mailbox to turn it off", id="value-after"),
    pytest.param(["--debug=0"], "--debug takes no value, not '0': write --debug to turn it "
                 "on, --no-debug to turn it off", id="value-joined"),
    pytest.param(["--no-operations", "no"], "--no-operations takes no value, not 'no': write "
                 "--operations to turn it on, --no-operations to turn it off", id="no-flag"),
    pytest.param(["--max-request-size", "10M"], "unknown setting '--max-request-size'; did "
                 "you mean '--max-request-body-size'?", id="middleware-name"),
    pytest.param(["--tll", "60"], "unknown setting '--tll'; did you mean '--ttl'?",
                 id="typo-with-value"),
    pytest.param(["--xyzzy"], "unknown setting '--xyzzy'", id="far-from-every-name"),
])
def test_the_command_line_refuses_a_mistake_of_its_own_in_one_line(
        argv: List[str], line: str, capsys: pytest.CaptureFixture[str]) -> None:
    served: List[Any] = []
    assert run([PROG, *argv, "server_apps:app"], _serve=lambda app, **kw: served.append(kw)) == 2
    assert capsys.readouterr() == ("", f"{PROG}: {line}\n")
    assert served == []


#: A setting of each kind of converter every door takes (a switch is a flag
#: on the command line, which takes no text), for generated values.
GENERATED = [s for s in FRONT_SETTINGS if s.name in (
    "ttl", "sse_keepalive", "capacity", "max_bytes", "max_waiters", "methods", "dialect",
    "min_id_length", "allowed_origins", "backend", "id_name", "progress_url")]


@pytest.mark.parametrize("door", DOORS)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(setting=st.sampled_from(GENERATED),
       text=st.one_of(st.text(max_size=12), st.from_regex(
           r"-?[0-9]{1,4}(\.[0-9])?[kKmMxX]?|redis://[a-z0-9.:]{0,12}/[0-9a-z]{0,3}",
           fullmatch=True)))
def test_generated_text_every_door_refuses_is_refused_alike(
        door: FrontDoor, setting: Any, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        resolve([setting], {setting.name: text}, door.spell)
    except ConfigurationError as exc:
        expected = str(exc)
    else:
        assume(False)  # accepted values are the other tests' business
    assert refusal(door, {setting.name: text}, capsys) == expected
