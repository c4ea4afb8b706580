"""The settings table, walked: every default survives its own converter, every
converter refuses garbage with one sentence that names the setting and says
what it expected, takes the string forms a command line, an ini file or a
Flask config gives it, and fails on any text with ValueError only; every
setting has help and a documented scope; a typo gets the closest name."""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wsgiprogress.settings
from wsgiprogress import ConfigurationError
from wsgiprogress.settings import SETTINGS, Setting, prefixed, resolve, unknown_setting
from wsgiprogress.settings import converters as conv

MiB = 1024 * 1024
GiB = 1024 * MiB
TOKEN = "s3cret-token-0123456789"
NAMES = [s.name for s in SETTINGS]

Converter = Callable[[Any], Any]

def bad(value: Any, id: str, *marks: Any) -> Any:
    return pytest.param(value, id=id, marks=marks)


#: Garbage of the wrong kind, per converter; each must be refused.
NOT_SECONDS = [
    bad("soon", "word"), bad("", "empty"), bad("x y", "words"), bad(-1, "negative"),
    bad("-1", "negative-text"), bad(True, "bool"), bad(None, "none"), bad(object(), "object"),
    bad("nan", "nan"), bad("inf", "inf"), bad([60], "list"), bad(10 ** 400, "huge"),
]
NOT_METHODS = [
    bad("", "empty"), bad("  ", "blank"), bad("POST/PUT", "slash"), bad("P0ST", "digit"),
    bad("GET;DELETE", "semicolon"), bad([], "empty-list"), bad(["POST", 1], "number-in-list"),
    bad(-1, "negative"), bad(True, "bool"),
    bad(None, "none"), bad(object(), "object"),
]
GARBAGE: Dict[Converter, List[Any]] = {
    conv.as_seconds: NOT_SECONDS,
    conv.as_positive_seconds: NOT_SECONDS + [bad(0, "zero"), bad("0", "zero-text")],
    conv.as_rate: NOT_SECONDS,
    conv.as_count: [
        bad("soon", "word"), bad("", "empty"), bad("x y", "words"), bad(-1, "negative"),
        bad(0, "zero"), bad("0", "zero-text"), bad("-5", "negative-text"),
        bad("1.5", "fraction-text"), bad(1.5, "fraction"), bad(True, "bool"),
        bad(None, "none"), bad(object(), "object"), bad("²", "superscript"),
        bad("１２", "wide-digits"),
    ],
    wsgiprogress.settings.as_id_length: [
        bad("soon", "word"), bad("", "empty"), bad(7, "below-the-id-rule"),
        bad("129", "above-the-id-rule"), bad(0, "zero"), bad(-32, "negative"),
        bad(1.5, "fraction"), bad(True, "bool"), bad(None, "none"), bad(object(), "object"),
    ],
    conv.as_optional_count: [
        bad("soon", "word"), bad("x y", "words"), bad(-1, "negative"), bad(0, "zero"),
        bad(1.5, "fraction"), bad(True, "bool"), bad(object(), "object"),
    ],
    conv.as_size: [
        bad("soon", "word"), bad("", "empty"), bad("x y", "words"), bad(-1, "negative"),
        bad(0, "zero"), bad("0", "zero-text"), bad("0M", "zero-megabytes"),
        bad("10X", "unknown-unit"), bad("1.5M", "fraction-text"), bad("-5M", "negative-text"),
        bad(1.5, "fraction"), bad(True, "bool"), bad(None, "none"), bad(object(), "object"),
        bad("²", "superscript"), bad("１０M", "wide-digits"),
    ],
    conv.as_optional_size: [
        bad("soon", "word"), bad("x y", "words"), bad(-1, "negative"), bad(0, "zero"),
        bad("10X", "unknown-unit"), bad(1.5, "fraction"), bad(True, "bool"),
        bad(object(), "object"),
    ],
    conv.as_bool: [
        bad("soon", "word"), bad("", "empty"), bad("x y", "words"), bad("ture", "typo"),
        bad(2, "two"), bad(-1, "negative"), bad(1.0, "float"), bad(None, "none"),
        bad(object(), "object"),
    ],
    conv.as_methods: NOT_METHODS,
    conv.as_origins: [
        bad("soon", "word"), bad("x y", "words"), bad("example.com", "no-scheme"),
        bad("ftp://example.com", "ftp"), bad("https://example.com/path", "with-path"),
        bad(["*", "nope"], "bad-in-list"),
        bad(-1, "negative"), bad(True, "bool"),
        bad(object(), "object"),
    ],
    conv.as_optional_token: [
        bad("soon", "word"), bad("x y", "words"), bad("x" * 15, "fifteen"),
        bad(TOKEN + " x", "space"), bad(-1, "negative"), bad(12345678901234567890, "number"),
        bad(TOKEN.encode(), "bytes"), bad(True, "bool"), bad(object(), "object"),
    ],
    conv.as_path: [
        bad("soon", "word"), bad("", "empty"), bad("x y", "words"), bad("/a b", "space"),
        bad("/a?b", "query"), bad("/a#b", "fragment"), bad(None, "none"), bad(-1, "negative"),
        bad(True, "bool"), bad(object(), "object"),
    ],
    conv.as_optional_path: [
        bad("soon", "word"), bad("x y", "words"), bad("/a b", "space"), bad("/a?b", "query"),
        bad(-1, "negative"), bad(True, "bool"), bad(object(), "object"),
    ],
    conv.as_optional_directory: [
        bad(["/tmp"], "list"), bad("up\0loads", "nul"), bad(-1, "negative"), bad(True, "bool"),
        bad(object(), "object"),
    ],
    conv.as_dialect: [
        bad("soon", "word"), bad("", "empty"), bad("x y", "words"), bad("NGINX", "capitals"),
        bad(None, "none"), bad(-1, "negative"), bad(True, "bool"), bad(object(), "object"),
    ],
    conv.as_header_name: [
        bad("", "empty"), bad("x y", "words"), bad("X_Progress_ID", "underscore"),
        bad("x" * 65, "too-long"), bad(None, "none"), bad(-1, "negative"), bad(True, "bool"),
        bad(object(), "object"),
    ],
    conv.as_backend: [
        bad("soon", "word"), bad("", "empty"), bad("x y", "words"), bad("memory", "no-slashes"),
        bad("http://example.com", "http"), bad("redis://a b", "space"), bad(None, "none"),
        bad("redis://cache:http/0", "port-name"), bad("redis://cache:0/0", "port-zero"),
        bad("redis://cache:6379/1x", "db-typo"), bad("redis://cache/0?db=one", "db-query"),
        bad("unix://", "unix-no-path"),
        bad(-1, "negative"), bad(True, "bool"), bad(object(), "object"),
    ],
    conv.as_prefix: [
        bad("", "empty"), bad("x y", "words"), bad("x" * 65, "too-long"),
        bad("tab\there", "tab"), bad(None, "none"), bad(-1, "negative"), bad(True, "bool"),
        bad(object(), "object"),
    ],
}


def ok(value: Any, expected: Any, id: str) -> Any:
    return pytest.param(value, expected, id=id)


#: What a command line, an ini file or a Flask config writes, and what it means.
ACCEPTED: Dict[Converter, List[Any]] = {
    conv.as_seconds: [ok("60", 60.0, "whole"), ok("0.5", 0.5, "fraction"),
                      ok(" 2 ", 2.0, "spaces"), ok("0", 0.0, "zero"), ok(60, 60.0, "int")],
    conv.as_positive_seconds: [ok("60", 60.0, "whole"), ok("0.25", 0.25, "fraction"),
                               ok(7, 7.0, "int")],
    conv.as_rate: [ok("500", 500.0, "whole"), ok("0", 0.0, "off"), ok(1e6, 1e6, "float")],
    conv.as_count: [ok("500", 500, "text"), ok(" 7 ", 7, "spaces"), ok(1, 1, "int")],
    wsgiprogress.settings.as_id_length: [ok("32", 32, "text"), ok(8, 8, "int"),
                                         ok(" 128 ", 128, "spaces")],
    conv.as_optional_count: [ok("500", 500, "text"), ok("none", None, "none"),
                             ok("", None, "empty"), ok(None, None, "None")],
    conv.as_size: [ok("10M", 10 * MiB, "megabytes"), ok("64k", 64 * 1024, "kilobytes"),
                   ok("1 GiB", GiB, "gibibytes"), ok("2MB", 2 * MiB, "mb"),
                   ok("1048576", MiB, "bytes-text"), ok(4096, 4096, "int")],
    conv.as_optional_size: [ok("100M", 100 * MiB, "megabytes"), ok("none", None, "none"),
                            ok("", None, "empty"), ok(None, None, "None")],
    conv.as_bool: [ok("true", True, "true"), ok("off", False, "off"), ok("ON", True, "ON"),
                   ok(" yes ", True, "spaces"), ok("No", False, "No"), ok("1", True, "one"),
                   ok("0", False, "zero"), ok(False, False, "bool")],
    conv.as_methods: [ok("POST, PUT", ("POST", "PUT"), "comma"),
                      ok("post put", ("POST", "PUT"), "spaces-lower"),
                      ok("GET", ("GET",), "one"), ok(["patch"], ("PATCH",), "list")],
    conv.as_origins: [ok("https://a.example, http://b.example:8080",
                         ("https://a.example", "http://b.example:8080"), "two"),
                      ok("*", ("*",), "any"), ok("", (), "empty"), ok(None, (), "None")],
    conv.as_optional_token: [ok(TOKEN, TOKEN, "token"), ok("", None, "empty"),
                             ok(None, None, "None")],
    conv.as_path: [ok("/upload-progress", "/upload-progress", "path")],
    conv.as_optional_path: [ok("/_dashboard", "/_dashboard", "path"),
                            ok("none", None, "none"), ok("", None, "empty")],
    conv.as_optional_directory: [ok("/var/lib/uploads", "/var/lib/uploads", "path"),
                                 ok("uploads", "uploads", "relative"),
                                 ok("none", None, "none"), ok("", None, "empty")],
    conv.as_dialect: [ok("nginx", "nginx", "nginx"), ok("lighttpd", "lighttpd", "lighttpd")],
    conv.as_header_name: [ok("X-Upload-ID", "X-Upload-ID", "header")],
    conv.as_backend: [ok("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", "redis"),
                      ok("rediss://cache:6380/1", "rediss://cache:6380/1", "rediss"),
                      ok("unix:///tmp/redis.sock", "unix:///tmp/redis.sock", "unix"),
                      ok("redis://cache", "redis://cache", "host-alone"),
                      ok("redis://:s3cret@cache:6379/2?db=3", "redis://:s3cret@cache:6379/2?db=3",
                         "password-and-query"),
                      ok("memory://", "memory://", "memory")],
    conv.as_prefix: [ok("myapp:", "myapp:", "prefix")],
}

CONVERTERS = sorted({s.convert for s in SETTINGS}, key=lambda c: c.__name__)


def per_setting(table: Dict[Converter, List[Any]]) -> List[Any]:
    """One case per setting and entry of *table* for its converter."""
    return [pytest.param(setting, *case.values, id=f"{setting.name}-{case.id}",
                         marks=case.marks)
            for setting in SETTINGS for case in table[setting.convert]]


def documented_scopes() -> List[str]:
    doc = wsgiprogress.settings.__doc__ or ""
    paragraph = doc[doc.index("Scopes, and who reads them:"):].split("\n\n")[0]
    return re.findall(r"``(\w+)``", paragraph)


def test_every_converter_has_cases() -> None:
    assert [c.__name__ for c in CONVERTERS if c not in GARBAGE] == []
    assert [c.__name__ for c in CONVERTERS if c not in ACCEPTED] == []


def test_every_setting_is_declared_once() -> None:
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("setting", SETTINGS, ids=NAMES)
def test_the_default_passes_its_own_converter(setting: Setting) -> None:
    assert setting.convert(setting.default) == setting.default
    assert resolve([setting], {setting.name: setting.default}) == {
        setting.name: setting.default}


@pytest.mark.parametrize("setting, garbage", per_setting(GARBAGE))
def test_garbage_is_refused_naming_the_setting(setting: Setting, garbage: Any) -> None:
    with pytest.raises(ValueError):
        setting.convert(garbage)
    with pytest.raises(ConfigurationError) as info:
        resolve([setting], {setting.name: garbage})
    message = str(info.value)
    assert message.startswith(f"{setting.name}: expected "), message
    assert "\n" not in message


@pytest.mark.parametrize("setting", [s for s in SETTINGS
                                     if s.convert is conv.as_positive_seconds],
                         ids=lambda s: s.name)
def test_a_negative_value_hears_that_zero_is_too_little(setting: Setting) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve([setting], {setting.name: -1})
    assert "seconds > 0" in str(info.value)


@pytest.mark.parametrize("setting, written, expected", per_setting(ACCEPTED))
def test_string_forms_are_accepted(setting: Setting, written: Any, expected: Any) -> None:
    assert resolve([setting], {setting.name: written}) == {setting.name: expected}


def test_resolve_fills_in_the_defaults_of_what_is_not_given() -> None:
    resolved = resolve(SETTINGS, {"ttl": "60", "methods": "POST PUT"})
    assert resolved == {**{s.name: s.default for s in SETTINGS},
                        "ttl": 60.0, "methods": ("POST", "PUT")}


@pytest.mark.parametrize("setting", SETTINGS, ids=NAMES)
def test_help_and_a_documented_scope(setting: Setting) -> None:
    assert setting.help.strip()
    assert setting.scope in documented_scopes()


def test_every_documented_scope_has_settings() -> None:
    scopes = documented_scopes()
    assert len(scopes) == len(set(scopes)) >= 1
    assert sorted(scopes) == sorted({s.scope for s in SETTINGS})


@pytest.mark.parametrize("typo, meant", [
    pytest.param("tll", "ttl", id="transposed"),
    pytest.param("max_mesages", "max_messages", id="dropped-letter"),
    pytest.param("mailbox_tl", "mailbox_ttl", id="mailbox-ttl"),
    pytest.param("dialet", "dialect", id="dialect"),
    pytest.param("publish_tokn", "publish_token", id="publish-token"),
    pytest.param("max_request_sise", "max_request_size", id="wrong-letter"),
    pytest.param("dashbord_url", "dashboard_url", id="dashboard-url"),
    pytest.param("methds", "methods", id="methods"),
])
def test_an_unknown_setting_suggests_the_closest_name(typo: str, meant: str) -> None:
    assert str(unknown_setting(typo, NAMES)) == (
        f"unknown setting {typo!r}; did you mean {meant!r}?")
    spell = prefixed("wsgiprogress.")
    assert str(unknown_setting(typo, NAMES, spell)) == (
        f"unknown setting 'wsgiprogress.{typo}'; did you mean 'wsgiprogress.{meant}'?")
    with pytest.raises(ConfigurationError, match=re.escape(f"did you mean {meant!r}?")):
        resolve(SETTINGS, {typo: "1"})


def test_an_unknown_setting_far_from_every_name_lists_them() -> None:
    message = str(unknown_setting("xyzzy", NAMES))
    assert message == "unknown setting 'xyzzy'; known settings: " + ", ".join(sorted(NAMES))
    assert str(unknown_setting("xyzzy", NAMES, list_known=False)) == "unknown setting 'xyzzy'"


numberish = st.from_regex(r"\s*[-+]?\d{1,12}(\.\d{0,3})?\s*([kmgKMG]i?[bB]?)?\s*", fullmatch=True)
written_forms = st.sampled_from(sorted({case.values[0] for cases in ACCEPTED.values()
                                        for case in cases if isinstance(case.values[0], str)}))


@pytest.mark.parametrize("convert", CONVERTERS, ids=lambda c: c.__name__)
@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(), numberish, written_forms))
def test_any_text_converts_or_raises_value_error(convert: Converter, text: str) -> None:
    try:
        value = convert(text)
    except ValueError:
        return
    # a converted value converts to itself: Flask's defaults are resolved twice
    assert convert(value) == value
