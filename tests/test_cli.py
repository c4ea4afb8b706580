"""``wsgiprogress-serve`` and the PasteDeploy server runner, in real processes."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List

import pytest

from wsgiprogress.cli import run

from server_support import (
    TESTS,
    exchange,
    probe,
    start_process,
    stop_process,
    wait_for_state,
)


def upload_and_probe(port: int, progress_id: str) -> dict:
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


def test_cli_address_in_use_exits_1() -> None:
    first, port = start_process([sys.executable, "-m", "wsgiprogress", "--listen",
                         "127.0.0.1:0", "server_apps:app"])
    try:
        second = subprocess.run(
            [sys.executable, "-m", "wsgiprogress", "--listen", f"127.0.0.1:{port}",
             "server_apps:app"], cwd=TESTS, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert "cannot serve" in second.stderr and "in use" in second.stderr
    finally:
        assert stop_process(first) == 0


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
    pytest.param(["--bogus", "m:a"], 2, "unrecognized arguments", id="unknown-option"),
    pytest.param(["--threads", "x", "m:a"], 2, "threads:", id="bad-waitress-value"),
    pytest.param(["--ttl", "-1", "m:a"], 2, "ttl: expected a number of seconds", id="bad-ttl"),
    pytest.param(["--dialect", "apache", "m:a"], 2, "expected one of native", id="bad-dialect"),
    pytest.param(["--connection-limit", "3", "m:a"], 2, "at least threads + 2",
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
    calls: List[dict] = []
    argv = ["wsgiprogress-serve", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2",
            "--no-asyncore-use-poll", "--debug", "--methods", "POST PUT", "server_apps:app"]
    assert run(argv, _serve=lambda app, **kw: calls.append(kw)) == 0
    assert calls == [{"listen": "127.0.0.1:1 127.0.0.1:2", "asyncore_use_poll": False,
                      "debug": True, "methods": "POST PUT"}]


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(TESTS))
    yield
