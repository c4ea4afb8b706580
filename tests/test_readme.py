"""The README as a newcomer pastes it: every code block is extracted and
checked, so a command or snippet that does not work verbatim fails here.

Extraction: every fenced block (```lang ... ```, also inside list items).
Commands must be fenced: an indented code block (a line indented 4 spaces
after a blank line, outside a list) fails the test.

Python blocks (```python):

* every one is compiled;
* one whose first line is ``# fragment: <why>`` is only compiled (at most
  :data:`MAX_FRAGMENTS` of them);
* every other one is *run as pasted*: as ``__main__``, in a subprocess, in an
  empty temporary directory (so nothing of the checkout can be imported but
  the installed packages), within :data:`TIMEOUT` seconds.  Before it runs,
  the two calls that serve forever, ``wsgiprogress.server.serve`` and
  ``werkzeug.serving.run_simple`` (which Flask's ``app.run`` calls), are
  replaced by a stand-in that serves the application on a free loopback port
  in a daemon thread, sends ``GET /`` (any status below 500 will do) and a
  progress probe (which must answer JSON, state ``unknown``), and returns;
  the process then exits, and its server with it;
* one whose first line is ``# <name>.py`` is also saved as that file for the
  commands' dry runs below (Flask's ``app.py``);
* the block after ``<!-- example: <path> -->`` must be that file, exactly.

Shell blocks (```sh, ```bash, ```console): each line (``\\`` continues it) is
split into simple commands at ``&&``, ``||``, ``;``, ``|`` and ``&``; output
redirections, leading ``VAR=value`` assignments and ``sudo`` are dropped.  By
program, each command is:

* run as a dry run, from the checkout, with stubs for the README's
  placeholders (``myproject``, and ``app.py`` from its block) on PYTHONPATH:

  - ``wsgiprogress-serve ARGS``: ``wsgiprogress.cli.run(argv, _serve=...)`` in
    a subprocess: the options parse, the settings are valid and the
    application loads and is callable; nothing listens;
  - ``flask --app X ...``: ``python -m flask --app X routes`` (loads the app);
  - ``gunicorn ARGS``: ``python -m gunicorn --check-config ARGS`` (parses the
    options and loads the app);
  - ``pserve INI``: the ini file's application is built with
    ``pyramid.paster.get_app``;
  - ``python3 FILE.py``: run as ``__main__`` like a Python block, serving
    stand-in and all;

* checked, not run:

  - ``python3 -m venv .venv`` (the ``venv`` module exists; creating a
    virtualenv takes too long here) and ``. .venv/bin/activate`` (it must
    follow ``python3 -m venv .venv`` in its line, or come later in the
    README than the first one);
  - ``python3 -m pip install -e SPEC``: SPEC is ``.`` or ``.[extras]`` with
    extras that setup.py declares, never a name to fetch from an index (the
    package is not on PyPI);
  - ``python3 -m MODULE``: the module exists; ``python3 -m pytest`` is also
    the command .ci/run runs;
  - ``apt-get install -y PKGS``: each package is one .ci/run installs, or
    ``python3-venv``;
  - ``head``, ``curl`` and ``sleep``: they talk to the server an earlier
    command starts, and are not run.

Any other program fails the test, so a new kind of command needs a rule here.
Other blocks: ``json`` must parse, ``ini`` must parse with configparser;
``nginx`` is run by tests/test_reverse_proxy.py; ``html`` and ``apache`` are
not checked.  Nothing here skips.
"""
from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
TIMEOUT = 60
MAX_FRAGMENTS = 2
SHELLS = ("sh", "bash", "console", "shell")
FRAGMENT = re.compile(r"#\s*fragment:\s*\S")
SAVE_AS = re.compile(r"#\s*([A-Za-z_]\w*\.py)\s*$")
EXAMPLE = re.compile(r"<!--\s*example:\s*(\S+)\s*-->\s*$")
#: The one test command, as the README shows it last in its line and .ci/run runs it.
TEST_COMMAND = 'python3 -m pip install -e ".[test]" && python3 -m pytest'
VENV_STEP = "python3 -m venv .venv && . .venv/bin/activate && "


class Block(NamedTuple):
    lang: str
    text: str
    line: int          # 1-based line of the opening fence
    before: str        # the last non-blank line before the fence

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'no language'})"


def blocks(text: str) -> List[Block]:
    """Every fenced block, with fences indented as in a list item."""
    found: List[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^( *)```(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent, lang = len(match.group(1)), match.group(2)
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        body: List[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        assert j < len(lines), f"README.md:{i + 1}: the fence is never closed"
        found.append(Block(lang, "\n".join(body) + "\n", i + 1, before))
        i = j + 1
    return found


README_TEXT = README.read_text(encoding="utf-8")
BLOCKS = blocks(README_TEXT)
PYTHON = [b for b in BLOCKS if b.lang == "python"]
SHELL = [b for b in BLOCKS if b.lang in SHELLS]


def python_id(block: Block) -> str:
    return f"line{block.line}"


# --- the README's shape ---------------------------------------------------------------

def test_commands_are_fenced_not_indented() -> None:
    lines = README_TEXT.splitlines()
    fenced = False
    indented = []
    for number, line in enumerate(lines, 1):
        if re.match(r"^ *```", line):
            fenced = not fenced
            continue
        previous = lines[number - 2] if number > 1 else ""
        if not fenced and line.startswith("    ") and line.strip() and not previous.strip():
            # a list item's continuation is indented by its marker's width, not 4
            item = next((p for p in reversed(lines[:number - 1])
                         if p.strip() and not p.startswith(" ")), "")
            if not re.match(r"^\s*([*+-]|\d+\.)\s", item):
                indented.append(f"README.md:{number}: {line.strip()}")
    assert not indented, ("indented code blocks escape tests/test_readme.py; fence them "
                          "(```sh or ```python):\n" + "\n".join(indented))


def test_try_it_has_exactly_the_two_newcomer_commands() -> None:
    section = README_TEXT.split("## Try it", 1)[1].split("\n## ", 1)[0]
    commands = [b.text.strip() for b in blocks(section) if b.lang in SHELLS]
    assert len(commands) == 2, commands
    demo, tests = commands
    for command in commands:
        assert "\n" not in command, f"one command, one line: {command!r}"
        # Debian's own pip refuses (externally-managed-environment): a venv first
        assert command.index(VENV_STEP) < command.index("pip install"), command
        assert "python3-venv" in command.split("&&")[0], command
    assert "pip install -e . &&" in demo and "wsgiprogress-serve" in demo, demo
    assert "examples.upload_demo:app" in demo, demo
    assert tests.endswith(VENV_STEP + TEST_COMMAND), tests
    assert "not on PyPI" in section


def test_the_readme_names_only_servers_that_give_live_progress() -> None:
    # measured: under gunicorn's sync worker a probe sent during an upload is
    # answered after it (tests/test_live_gunicorn.py); gthread answers live
    section = README_TEXT.split("## Which piece do I need?", 1)[1].split("\n### ", 1)[0]
    (row,) = [line for line in section.splitlines() if "gunicorn with **one**" in line]
    servers, answer = row.split("|")[1], row.split("|")[3]
    assert "gthread" in servers and "sync" not in servers, row
    assert "`sync` worker does not" in answer, row  # named as the one that is not live


def test_ci_runs_the_readme_test_command() -> None:
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    assert any(line.strip("()") == VENV_STEP + TEST_COMMAND for line in lines), (
        f".ci/run must run the README's test command: {VENV_STEP + TEST_COMMAND}")


def test_the_package_is_never_installed_by_name() -> None:
    # not on PyPI: "pip install wsgiprogress[redis]" would fail or fetch another package
    by_name = [argument for arguments in re.findall(r"pip install((?:[ \t]+[^\s&;|`]+)+)",
                                                    README_TEXT)
               for argument in arguments.split()
               if re.match(r"^[\"']?wsgiprogress\b", argument)]
    assert not by_name, by_name
    assert "not on PyPI" in README_TEXT


def test_fragments_are_few() -> None:
    fragments = [str(b) for b in PYTHON if FRAGMENT.match(b.text)]
    assert len(fragments) <= MAX_FRAGMENTS, fragments


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "json"], ids=str)
def test_json_blocks_parse(block: Block) -> None:
    json.loads(block.text)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "ini"], ids=str)
def test_ini_blocks_parse(block: Block) -> None:
    parser = configparser.ConfigParser()
    parser.read_string(block.text)
    assert parser.sections(), block.text


def test_examples_shown_are_the_files() -> None:
    shown = 0
    for block in BLOCKS:
        match = EXAMPLE.match(block.before)
        if match:
            path = ROOT / match.group(1)
            assert block.text == path.read_text(encoding="utf-8"), (
                f"{block} differs from {match.group(1)}: copy the file into the README")
            shown += 1
    assert shown >= 1, "the README shows examples/redirect_after_upload.py"


# --- Python blocks ---------------------------------------------------------------------

#: Runs a file as __main__ with the serve-forever calls replaced (see the docstring).
RUNNER = r'''
import json, os, runpy, sys, threading, urllib.error, urllib.request

import werkzeug.serving
import wsgiprogress.server

served = []


def check(port):
    base = "http://127.0.0.1:%d" % port
    try:
        with urllib.request.urlopen(base + "/", timeout=10) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status < 500, "GET / answered %d" % status
    with urllib.request.urlopen(base + "/progress?X-Progress-ID=readme-check-01",
                                timeout=10) as answer:
        state = json.loads(answer.read())["state"]
    assert state == "unknown", state
    served.append(port)


def serve(app, **settings):
    for name in ("listen", "host", "port", "unix_socket"):
        settings.pop(name, None)
    server = wsgiprogress.server.create_server(app, host="127.0.0.1", port=0, **settings)
    threading.Thread(target=server.run, daemon=True).start()
    check(int(server.effective_port))


def run_simple(hostname, port, application, **options):
    server = werkzeug.serving.make_server("127.0.0.1", 0, application, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    check(server.server_port)


wsgiprogress.server.serve = serve
werkzeug.serving.run_simple = run_simple
path = sys.argv[1]
sys.argv = [path] + sys.argv[2:]
runpy.run_path(path, run_name="__main__")
print("SERVED %d" % len(served))
sys.stdout.flush()
os._exit(0)
'''


def run_python(path: Path, cwd: Path, *, pythonpath: str = "") -> str:
    """Run *path* with :data:`RUNNER`; its stdout. Fails on an error or timeout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    try:
        result = subprocess.run([sys.executable, "-c", RUNNER, str(path)], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{path.name} still ran after {TIMEOUT} s:\n{exc.stderr!r}")
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("block", PYTHON, ids=python_id)
def test_python_block_compiles(block: Block) -> None:
    compile(block.text, str(block), "exec")


@pytest.mark.parametrize("block", [b for b in PYTHON if not FRAGMENT.match(b.text)],
                         ids=python_id)
def test_python_block_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "block.py"
    path.write_text(block.text, encoding="utf-8")
    out = run_python(path, tmp_path)
    served = int(re.findall(r"SERVED (\d+)", out)[-1])
    if re.search(r"\bserve\(|\.run\(|run_simple\(", block.text):
        assert served >= 1, f"{block} serves, but the stand-in was never called"


def test_some_python_blocks_serve() -> None:
    assert sum(bool(re.search(r"\bserve\(|app\.run\(", b.text)) for b in PYTHON) >= 2


# --- shell blocks ----------------------------------------------------------------------

SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "2>", "2>&1"}


class Command(NamedTuple):
    argv: List[str]
    block: Block
    line: str


def commands() -> Iterator[Command]:
    for block in SHELL:
        text = block.text.replace("\\\n", " ")
        for line in text.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            argv: List[str] = []
            tokens = list(lexer)
            i = 0
            while i <= len(tokens):
                token = tokens[i] if i < len(tokens) else ";"
                if token in SEPARATORS:
                    if argv:
                        yield Command(argv, block, line)
                    argv = []
                elif token in REDIRECTS:
                    i += 1  # and its target
                else:
                    argv.append(token)
                i += 1


COMMANDS = list(commands())


def command_id(command: Command) -> str:
    return f"line{command.block.line}-{command.argv[0]}-" + "-".join(command.argv[1:3])


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's placeholders, importable: ``myproject`` (``app``,
    ``wsgi.application``) and every Python block saved as ``# <name>.py``."""
    base = tmp_path_factory.mktemp("readme-stubs")
    package = base / "myproject"
    package.mkdir()
    app = textwrap.dedent('''
        from wsgiprogress import ProgressMiddleware


        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"myproject"]


        app = ProgressMiddleware(application)
    ''')
    (package / "__init__.py").write_text(app)
    (package / "wsgi.py").write_text(app)
    for block in PYTHON:
        match = SAVE_AS.match(block.text.splitlines()[0])
        if match:
            (base / match.group(1)).write_text(block.text, encoding="utf-8")
    return base


def declared_extras() -> List[str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            assert isinstance(node.value, ast.Dict)
            return [ast.literal_eval(key) for key in node.value.keys if key is not None]
    raise AssertionError("setup.py declares no extras_require")


def ci_packages() -> List[str]:
    return re.findall(r"missing\+=\(([\w.-]+)\)", CI_RUN.read_text(encoding="utf-8"))


def run_dry(argv: List[str], stubs: Path, what: str,
            **extra_env: str) -> "subprocess.CompletedProcess[str]":
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), str(ROOT)]), **extra_env}
    try:
        result = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: the dry run took more than {TIMEOUT} s")
    assert result.returncode == 0, f"{what}:\n{result.stdout}\n{result.stderr}"
    return result


def executable(name: str) -> Optional[str]:
    """*name* from this Python's bin directory (a venv's), else from PATH."""
    import shutil
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


DRY_SERVE = r'''
import json, sys
from wsgiprogress.cli import run
calls = []
code = run(sys.argv[1:], _serve=lambda app, **settings: calls.append(settings))
assert code == 0 and len(calls) == 1, (code, calls)
print(json.dumps(calls[0]))
'''

PSERVE = r'''
import sys
from pyramid.paster import get_app
app = get_app(sys.argv[1])
assert callable(app), app
'''


@pytest.mark.parametrize("command", COMMANDS, ids=command_id)
def test_shell_command(command: Command, stubs: Path) -> None:
    argv = [a for a in command.argv]
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        argv.pop(0)
    if argv[0] == "sudo":
        argv.pop(0)
    program, args = argv[0], argv[1:]
    what = f"{command.block}: {' '.join(command.argv)}"

    if program == "wsgiprogress-serve":
        assert executable(program), f"{what}: wsgiprogress-serve is not installed"
        run_dry([sys.executable, "-c", DRY_SERVE, program, *args], stubs, what)
    elif program == "flask":
        assert args[0] == "--app", what
        assert executable(program), what
        # FLASK_APP is what --app sets, and Flask before 2.2 knows only it
        out = run_dry([sys.executable, "-m", "flask", "routes"], stubs, what,
                      FLASK_APP=args[1])
        assert "static" in out.stdout, out.stdout
    elif program == "gunicorn":
        assert executable(program), what
        run_dry([sys.executable, "-m", "gunicorn", "--check-config", *args], stubs, what)
    elif program == "pserve":
        assert executable(program), what
        (ini,) = args
        run_dry([sys.executable, "-c", PSERVE, ini], stubs, what)
    elif program == "python3" and args and args[0] == "-m":
        module, rest = args[1], args[2:]
        assert importlib.util.find_spec(module) is not None, f"{what}: no module {module}"
        if module == "venv":
            assert rest == [".venv"], what
        elif module == "pip":
            assert rest[:2] == ["install", "-e"] and len(rest) == 3, (
                f"{what}: install from the checkout (pip install -e .): "
                "the package is not on PyPI")
            match = re.fullmatch(r"\.(?:\[([\w,]+)\])?", rest[2])
            assert match, f"{what}: install the checkout, '.' or '.[extra]'"
            unknown = set((match.group(1) or "").split(",")) - set(declared_extras()) - {""}
            assert not unknown, f"{what}: setup.py declares no extra {unknown}"
        elif module == "pytest":
            assert command.line.endswith(TEST_COMMAND), what
        else:
            assert not rest or rest[0].startswith("-"), what
    elif program == "python3":
        (script,) = args
        assert (ROOT / script).is_file(), f"{what}: no file {script}"
        out = run_python(ROOT / script, ROOT, pythonpath=str(ROOT))
        assert int(re.findall(r"SERVED (\d+)", out)[-1]) >= 1, f"{what}: it served nothing"
    elif program == ".":
        assert args == [".venv/bin/activate"], what
        created = "python3 -m venv .venv" in command.line.split(". .venv/bin/activate")[0]
        first = README_TEXT.index("python3 -m venv .venv")
        assert created or README_TEXT.index(command.line) > first, (
            f"{what}: activates a .venv nothing made yet")
    elif program == "apt-get":
        assert args[:2] == ["install", "-y"], what
        unknown = set(args[2:]) - set(ci_packages()) - {"python3-venv"}
        assert not unknown, f"{what}: .ci/run does not install {unknown}"
    elif program in ("head", "curl", "sleep"):
        pass  # not run: see the docstring
    else:
        pytest.fail(f"{what}: tests/test_readme.py has no rule for {program!r}; add one")


def test_every_program_the_readme_runs_is_seen() -> None:
    programs = {c.argv[0] for c in COMMANDS}
    assert {"wsgiprogress-serve", "python3", "."} <= programs, programs
