"""``wsgiprogress-serve`` and the PasteDeploy server runner, in real processes."""
from __future__ import annotations

import argparse
import re
import signal
import socket
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from waitress.adjustments import Adjustments

from wsgiprogress import ConfigurationError, __version__
from wsgiprogress.cli import build_parser, run
from wsgiprogress.server import WAITRESS_SIZES, create_server
from wsgiprogress.settings import SERVER_SETTINGS

from server_support import (
    TESTS,
    exchange,
    probe,
    start_process,
    stop_process,
    wait_for_state,
)


def upload_and_probe(port: int, progress_id: str) -> Dict[str, Any]:
    body = b"x" * 300_000
    request = (f"POST /any/path?X-Progress-ID={progress_id} HTTP/1.1\r\nHost: t\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    reply = exchange(port, request, read_for=5, until=b"300000")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"300000")
    return wait_for_state(port, progress_id, ("done",))


@pytest.mark.parametrize("args, signum", [
    pytest.param(["server_apps:app"], signal.SIGINT, id="module-attr"),
    pytest.param(["--call", "server_apps:create_app"], signal.SIGTERM, id="factory-sigterm"),
    pytest.param(["server_apps:create_app()"], signal.SIGINT, id="factory-call-syntax"),
])
def test_cli_serves_with_progress(args: List[str], signum: int) -> None:
    process, port = start_process([sys.executable, "-m", "wsgiprogress", "--listen",
                           "127.0.0.1:0", "--ttl", "5", *args])
    try:
        entry = upload_and_probe(port, "cliupload1")
        assert (entry["received"], entry["size"], entry["status"]) == (300_000, 300_000, 200)
        assert probe(port, "cliupload1", "&dialect=nginx") is not None
    finally:
        assert stop_process(process, signum) == 0


def test_paste_server_runner(tmp_path: Path) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text(textwrap.dedent("""\
        [app:main]
        use = call:server_apps:app_factory

        [server:main]
        use = egg:wsgiprogress
        listen = 127.0.0.1:0
        threads = 2
        dialect = nginx
        ttl = 60
        asyncore_use_poll = true
        """))
    script = ("import logging, sys; logging.basicConfig(level=logging.INFO);"
              "from paste.deploy import loadapp, loadserver;"
              "uri = 'config:' + sys.argv[1];"
              "loadserver(uri)(loadapp(uri))")
    process, port = start_process([sys.executable, "-c", script, str(ini)])
    try:
        upload_and_probe(port, "pasteupload1")
        reply = exchange(port, b"GET /progress?X-Progress-ID=pasteupload1 HTTP/1.1\r\n"
                               b"Host: t\r\n\r\n", until=b"}\r\n")
        assert reply.endswith(b'\r\n\r\n{ "state" : "done" }\r\n'), reply
    finally:
        assert stop_process(process) == 0


@pytest.mark.parametrize("argv, code, message", [
    pytest.param(["--help"], 0, "module:app", id="help"),
    pytest.param([], 2, "the following arguments are required", id="no-app"),
    pytest.param(["--bogus", "m:a"], 2, "unknown setting '--bogus'", id="unknown-option"),
    pytest.param(["m:a", "n:b"], 2, "unrecognized arguments: n:b", id="two-apps"),
    pytest.param(["--threads", "x", "m:a"], 2, "threads:", id="bad-waitress-value"),
    pytest.param(["--ttl", "-1", "m:a"], 2, "ttl: expected a number of seconds", id="bad-ttl"),
    pytest.param(["--dialect", "apache", "m:a"], 2, "expected one of native", id="bad-dialect"),
    pytest.param(["--connection-limit", "3", "m:a"], 2, "at least --threads + 2 (6)",
                 id="connection-limit"),
    pytest.param(["no_such_module_xyz:app"], 1, "cannot load", id="missing-module"),
    pytest.param(["server_apps:nothing"], 1, "has no attribute", id="missing-attr"),
    pytest.param(["server_apps"], 1, "expected module:app", id="no-colon"),
])
def test_cli_exit_codes(argv: List[str], code: int, message: str,
                        capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)
    served: List[object] = []
    assert run(["wsgiprogress-serve", *argv], _serve=lambda app, **kw: served.append(app)) == code
    out, err = capsys.readouterr()
    assert message in out + err
    assert served == []


def test_cli_passes_settings_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)
    calls: List[Dict[str, Any]] = []
    argv = ["wsgiprogress-serve", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2",
            "--no-asyncore-use-poll", "--debug", "--methods", "POST PUT", "server_apps:app"]
    assert run(argv, _serve=lambda app, **kw: calls.append(kw)) == 0
    assert calls == [{"listen": "127.0.0.1:1 127.0.0.1:2", "asyncore_use_poll": False,
                      "debug": True, "methods": "POST PUT"}]


def refusal(argv: List[str], capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    """Run the CLI with *argv*, which must be refused with *code* before
    serving, on one line of stderr; that line."""
    served: List[object] = []
    assert run(["wsgiprogress-serve", *argv], _serve=lambda app, **kw: served.append(app)) == code
    out, err = capsys.readouterr()
    assert served == [] and out == ""
    assert err.count("\n") == 1 and err.startswith("wsgiprogress-serve: "), err
    return err.rstrip("\n")


def create_and_close(servers: List[Any]) -> Callable[..., None]:
    """A ``_serve`` that makes the real server (so it binds) and closes it again."""
    def serve(app: Any, **settings: Any) -> None:
        server = create_server(app, **settings)
        servers.append(server)
        server.close()
        server.task_dispatcher.shutdown(timeout=2)
        server.progress_front.close()
    return serve


@pytest.mark.parametrize("argv, message", [
    pytest.param(["--threads", "0"], "--threads: expected a whole number >= 1, not '0'",
                 id="no-threads"),
    pytest.param(["--threads", "-2"], "--threads: expected a whole number >= 1, not '-2'",
                 id="negative-threads"),
    pytest.param(["--listen", "127.0.0.1:99999"],
                 "--listen: expected host:port with a port from 0 to 65535, such as "
                 "127.0.0.1:8080, not '127.0.0.1:99999'", id="port-out-of-range"),
    pytest.param(["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:http"],
                 "--listen: expected host:port with a port from 0 to 65535, such as "
                 "127.0.0.1:8080, not '127.0.0.1:http'", id="port-not-a-number"),
    pytest.param(["--listen", ":8080"], "not ':8080'", id="no-host"),
    pytest.param(["--host", "127.0.0.1", "--port", "65536"],
                 "--port: expected a port from 0 to 65535, not '65536'", id="port-option"),
    pytest.param(["--max-request-body-size", "0"],
                 "--max-request-body-size: expected a size in bytes >= 1", id="size-zero"),
    pytest.param(["--recv-bytes", "lots"], "--recv-bytes: expected a size in bytes >= 1",
                 id="size-typo"),
    pytest.param(["--publish"], "--publish configures mailboxes: turn --mailbox on too",
                 id="publish-without-mailbox"),
    pytest.param(["--dashboard-url", "/_dashboard"],
                 "--dashboard-url needs --publish-token or an authorize hook",
                 id="dashboard-without-token"),
])
def test_cli_refuses_settings_that_cannot_work(argv: List[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert message in refusal([*argv, "server_apps:app"], capsys)


def test_cli_refuses_redis_backend_without_redis_py(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    line = refusal(["--backend", "redis://127.0.0.1:6379/0", "server_apps:app"], capsys)
    assert line == ("wsgiprogress-serve: --backend: 'redis://127.0.0.1:6379/0' needs redis-py, "
                    'which is not installed: pip install "wsgiprogress[redis]", or use memory://')


def test_cli_checks_a_redis_backend_without_connecting() -> None:
    pytest.importorskip("redis")
    served: List[Dict[str, Any]] = []
    # nothing listens on port 1: a check that connected would fail
    argv = ["wsgiprogress-serve", "--backend", "redis://127.0.0.1:1/0", "server_apps:app"]
    assert run(argv, _serve=lambda app, **kw: served.append(kw)) == 0
    assert served == [{"backend": "redis://127.0.0.1:1/0"}]


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Writes an application module into a fresh current directory; its name."""
    monkeypatch.chdir(tmp_path)

    def write(source: str) -> str:
        name = re.sub(r"\W", "_", request.node.name)  # one module name per test
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        request.addfinalizer(lambda: sys.modules.pop(name, None))
        return name
    return write


@pytest.mark.parametrize("source, attr, message", [
    pytest.param('app = "hello"\n', "app", "is str 'hello', not a WSGI application",
                 id="string"),
    pytest.param("settings = {'debug': True}\n", "settings",
                 "is dict {'debug': True}, not a WSGI application", id="dict"),
    pytest.param("def create_app():\n    return None\n", "create_app()",
                 "is NoneType None, not a WSGI application", id="factory-gives-none"),
])
def test_cli_refuses_an_app_that_is_not_callable(
        source: str, attr: str, message: str, capsys: pytest.CaptureFixture[str],
        app_module: Callable[[str], str]) -> None:
    name = app_module(source)
    line = refusal([f"{name}:{attr}"], capsys)
    assert line == (f"wsgiprogress-serve: {name}:{attr} {message}: name the callable that "
                    "takes (environ, start_response)")


@pytest.mark.parametrize("source, attr, failure", [
    pytest.param("import os\n\nratio = 1 / 0\n", "app",
                 "ZeroDivisionError: division by zero ({name}.py, line 3)", id="raises"),
    pytest.param("import os\nsecret = os.environ['WSGIPROGRESS_NO_SUCH_VARIABLE']\n", "app",
                 "KeyError: 'WSGIPROGRESS_NO_SUCH_VARIABLE' ({name}.py, line 2)",
                 id="raised-in-the-stdlib"),
    pytest.param("import wsgiprogress_no_such_dependency\n", "app",
                 "ModuleNotFoundError: No module named 'wsgiprogress_no_such_dependency' "
                 "({name}.py, line 1)", id="missing-dependency"),
    pytest.param("def create_app():\n    raise RuntimeError('no database')\n",
                 "create_app()", "RuntimeError: no database ({name}.py, line 2)",
                 id="factory-raises"),
    pytest.param("app = (\n", "app", "SyntaxError: '(' was never closed ({name}.py, line 1)",
                 id="syntax-error"),
])
def test_cli_shows_where_loading_the_app_failed(
        source: str, attr: str, failure: str, capsys: pytest.CaptureFixture[str],
        app_module: Callable[[str], str]) -> None:
    name = app_module(source)
    line = refusal([f"{name}:{attr}"], capsys, code=1)
    assert line == f"wsgiprogress-serve: cannot load {name}:{attr}: " + \
        failure.format(name=name)


@pytest.mark.filterwarnings("ignore:send_bytes will be removed:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(WAITRESS_SIZES))
def test_cli_takes_sizes_with_suffixes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)
    servers: List[Any] = []
    argv = ["wsgiprogress-serve", "--listen", "127.0.0.1:0", "--" + name.replace("_", "-"),
            "3M", "server_apps:app"]
    assert run(argv, _serve=create_and_close(servers)) == 0
    assert getattr(servers[0].adj, name) == 3 * 1024 * 1024


def test_cli_names_an_address_in_use(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)
    servers: List[Any] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run(["wsgiprogress-serve", "--listen", f"127.0.0.1:{port}", "server_apps:app"],
                   _serve=create_and_close(servers))
    assert (code, servers) == (1, [])
    assert capsys.readouterr().err == \
        f"wsgiprogress-serve: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_cli_answers_an_error_found_while_serving_in_one_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)

    def serve(app: Any, **settings: Any) -> None:
        raise ConfigurationError("backend 'redis://cache/0' needs redis-py")
    assert run(["wsgiprogress-serve", "server_apps:app"], _serve=serve) == 2
    assert capsys.readouterr().err == \
        "wsgiprogress-serve: backend 'redis://cache/0' needs redis-py\n"


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["wsgiprogress-serve", "--version"]) == 0
    assert capsys.readouterr().out == \
        f"wsgiprogress-serve {__version__} (waitress {metadata.version('waitress')})\n"


def test_cli_help_describes_every_option_briefly(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert run(["wsgiprogress-serve", "--help"]) == 0
    out = capsys.readouterr().out
    names = [s.name for s in SERVER_SETTINGS] + [
        name for name, _ in Adjustments._params if name != "sockets"]
    for name in names:
        assert f"  --{name.replace('_', '-')} " in out or \
            f"  --{name.replace('_', '-')}\n" in out, name
    helps = {action.dest: action.help for action in build_parser()._actions
             if action.help != argparse.SUPPRESS}
    assert len(helps) == len(names) + 4  # and --help, --version, --call, module:app
    assert all(text and len(text.split()) >= 3 for text in helps.values()), helps
    assert "waitress's own setting" not in out and "other settings" not in out
    for group in ("progress settings:", "waitress: where to listen, what the application sees:",
                  "waitress: behind a reverse proxy:", "waitress: limits and tuning:"):
        assert group in out
    assert helps["max_request_body_size"] == "largest body; above it 413 (default 1G)"
    # a tuned default, next to waitress's own
    assert helps["recv_bytes"] == "bytes read from a socket at once (default 256K; waitress's 8K)"
    assert len(out.splitlines()) < 180  # two lines an option at most


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(TESTS))
    yield
