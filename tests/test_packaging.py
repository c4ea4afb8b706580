"""What a user gets from ``pip install``: an sdist and a wheel built from the
tree, the wheel installed into a fresh virtualenv (no system site-packages;
werkzeug and waitress come from the package index), and everything checked
from a directory outside the source tree, so nothing of the checkout can
stand in for a missing file.

The build and the install happen once for the module (about 15-30 s); every
subprocess is bounded by a timeout and killed on the way out.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from http.client import HTTPConnection
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Set

import pytest

from server_support import HOST, SlowUpload, probe, stop_group, wait_for_state

# the fixture builds and installs before the first test: more than the
# configured per-test 120 s must be allowed when the package index is slow
pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
NAME = "wsgiprogress"

#: Files and folders the sdist must carry besides the package itself.
SDIST_MUST_HAVE = (
    "setup.py", "README.md", "CHANGES.txt", "LICENSE.txt", "MANIFEST.in",
    "tests/js/harness.js", "tests/server_support.py", "tests/test_packaging.py",
    "examples/upload_demo.py", "examples/upload_demo.html",
    "benchmarks/README.md",
    "wsgiprogress/__init__.py", "wsgiprogress/py.typed", "wsgiprogress/static/progress.js",
)
#: Source folders whose every file (bar caches) must reach the sdist, when
#: they exist (the first four always do: see SDIST_MUST_HAVE).
SDIST_FOLDERS = ("wsgiprogress", "tests", "examples", "benchmarks", "flask_progress")
#: Packages whose every file must reach the wheel, when they exist.
PACKAGES = ("wsgiprogress", "flask_progress")
#: Left out when the tree is copied for building: caches and earlier builds.
BUILD_JUNK = (".git", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".venv",
              ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".benchmarks")


def run(argv: List[str], *, cwd: Path, timeout: float = 120,
        env: "Dict[str, str] | None" = None,
        check: bool = True) -> "subprocess.CompletedProcess[str]":
    """Run *argv* to completion within *timeout* s (killed after it)."""
    try:
        result = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # subprocess.run killed it
        pytest.fail(f"{argv} took more than {timeout} s:\n{exc.stdout!r}\n{exc.stderr!r}")
    if check and result.returncode != 0:
        pytest.fail(f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def clean_env(venv: "Path | None" = None) -> Dict[str, str]:
    """This environment without anything that points Python at other code."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "__PYVENV_LAUNCHER__")}
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Installed(NamedTuple):
    sdist: Path
    wheel: Path
    source: Path      # the copy of the tree the sdist was built from
    venv: Path
    python: Path
    outside: Path     # an empty directory, outside the source tree, to run from


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    assert ROOT not in base.parents, f"{base} is inside the source tree {ROOT}"
    # build from a copy: the build writes egg-info and build/ next to setup.py,
    # and other work in the checkout must not see (or feed) them
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_JUNK))
    dist = base / "dist"
    run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(dist)],
        cwd=source, env=clean_env())
    sdists = list(dist.glob(f"{NAME}-*.tar.gz"))
    assert len(sdists) == 1, sdists
    # the wheel is built from the sdist, as pip does for a user who installs it:
    # a file missing from the sdist breaks this build, not just a check below.
    # No cache: a wheel cached under the same sdist path from an earlier run
    # must never stand in for this one.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
         "--wheel-dir", str(dist), str(sdists[0])], cwd=base, env=clean_env(), timeout=180)
    wheels = list(dist.glob(f"{NAME}-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())

    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=base, env=clean_env())
    python = venv / "bin" / "python"
    assert python.exists(), list((venv / "bin").iterdir())
    run([str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir",
         "--disable-pip-version-check", str(wheels[0])],
        cwd=base, env=clean_env(venv), timeout=180)
    outside = base / "elsewhere"
    outside.mkdir()
    return Installed(sdists[0], wheels[0], source, venv, python, outside)


def venv_python(inst: Installed, code: str, *args: str, timeout: float = 60) -> str:
    """Run *code* with the venv's Python from outside the tree; its stdout."""
    return run([str(inst.python), "-c", textwrap.dedent(code), *args],
               cwd=inst.outside, env=clean_env(inst.venv), timeout=timeout).stdout


# --- the sdist ------------------------------------------------------------------

def source_files(source: Path, folders: "tuple[str, ...]") -> Set[str]:
    """Every file under *folders* of *source*, bar caches, dot-files and
    what npm installed (tests/js/tus/node_modules)."""
    found = set()
    for folder in folders:
        for path in (source / folder).rglob("*"):
            relative = path.relative_to(source)
            if path.is_file() and path.suffix not in (".pyc", ".pyo") and not any(
                    part.startswith(".") or part in ("__pycache__", "node_modules")
                    for part in relative.parts):
                found.add(relative.as_posix())
    return found


def sdist_names(sdist: Path) -> Set[str]:
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    top = members[0].split("/")[0]
    assert all(m == top or m.startswith(top + "/") for m in members), members[:5]
    return {m[len(top) + 1:] for m in members if m != top}


def test_sdist_carries_tests_examples_docs_and_benchmarks(installed: Installed) -> None:
    names = sdist_names(installed.sdist)
    missing = [n for n in SDIST_MUST_HAVE if n not in names]
    assert not missing, f"missing from the sdist: {missing}"
    for folder in ("tests/", "examples/", "benchmarks/"):
        assert any(n.startswith(folder) for n in names), folder


def test_sdist_has_every_source_file_and_no_caches(installed: Installed) -> None:
    names = sdist_names(installed.sdist)
    expected = source_files(installed.source, SDIST_FOLDERS)
    missing = sorted(expected - names)
    assert not missing, ("in the tree but not in the sdist (add a MANIFEST.in line): "
                         f"{missing}")
    junk = sorted(n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")))
    assert not junk, junk


# --- the installed wheel ---------------------------------------------------------

def test_import_comes_from_the_venv_and_needs_only_the_stdlib(installed: Installed) -> None:
    answer = json.loads(venv_python(installed, """
        import json, sys
        before = set(sys.modules)
        import wsgiprogress
        print(json.dumps({
            "file": wsgiprogress.__file__,
            "version": wsgiprogress.__version__,
            "new": sorted(set(sys.modules) - before),
            "stdlib": sorted(getattr(sys, "stdlib_module_names", ())),
            "prefix": sys.prefix,
        }))
    """))
    package = Path(answer["file"]).parent
    assert installed.venv in package.parents, f"imported from {package}, not the venv"
    assert Path(answer["prefix"]) == installed.venv
    assert installed.wheel.name.startswith(f"{NAME}-{answer['version']}-")
    tops = {name.split(".")[0] for name in answer["new"]}
    assert not tops & {"waitress", "werkzeug"}, sorted(tops)
    if answer["stdlib"]:  # Python 3.10+ lists the standard library
        foreign = sorted(tops - set(answer["stdlib"]) - {NAME})
        assert not foreign, f"importing wsgiprogress pulled in {foreign}"


def test_package_data_is_installed(installed: Installed) -> None:
    listing = json.loads(venv_python(installed, """
        import json, os, sysconfig
        import wsgiprogress
        package = os.path.dirname(wsgiprogress.__file__)
        site = sysconfig.get_paths()["purelib"]
        print(json.dumps({
            "files": sorted(os.path.relpath(os.path.join(d, f), package)
                            for d, _, fs in os.walk(package) for f in fs),
            "site": sorted(os.listdir(site)),
        }))
    """))
    with zipfile.ZipFile(installed.wheel) as wheel:
        in_wheel = set(wheel.namelist())
    missing = sorted(source_files(installed.source, PACKAGES) - in_wheel)
    assert not missing, f"package files missing from the wheel (setup.py package_data): {missing}"
    files = set(listing["files"])
    assert {"static/progress.js", "py.typed", "server/__init__.py"} <= files, sorted(files)
    js = (installed.venv / "lib").glob("python3*/site-packages/wsgiprogress/static/progress.js")
    assert b"WSGIProgress" in next(js).read_bytes()
    # the wheel installs the package only: no stray top-level tests or examples
    assert not {"tests", "examples", "benchmarks"} & set(listing["site"]), listing["site"]


def test_console_script_help(installed: Installed) -> None:
    script = installed.venv / "bin" / "wsgiprogress-serve"
    assert script.exists(), "the wsgiprogress-serve console script was not installed"
    result = run([str(script), "--help"], cwd=installed.outside,
                 env=clean_env(installed.venv), timeout=60)
    assert result.stdout.startswith("usage: wsgiprogress-serve"), result.stdout[:200]
    assert "--listen" in result.stdout and "--threads" in result.stdout


def test_python_m_wsgiprogress_help(installed: Installed) -> None:
    result = run([str(installed.python), "-m", NAME, "--help"], cwd=installed.outside,
                 env=clean_env(installed.venv), timeout=60)
    assert result.stdout.startswith("usage: "), result.stdout[:200]
    assert "--listen" in result.stdout and "--threads" in result.stdout


ENTRY_POINTS = """
    import json
    from importlib.metadata import distribution
    print(json.dumps([[ep.group, ep.name, ep.value]
                      for ep in distribution("wsgiprogress").entry_points]))
"""


def test_paste_server_runner_is_registered(installed: Installed) -> None:
    answer = json.loads(venv_python(installed, """
        import json, sys
        from importlib.metadata import entry_points
        eps = entry_points()
        if hasattr(eps, "select"):
            group = eps.select(group="paste.server_runner")
        else:  # Python 3.8/3.9: a dict of groups
            group = eps.get("paste.server_runner", ())
        found = [ep for ep in group if ep.value.startswith("wsgiprogress")]
        runner = found[0].load() if found else None
        print(json.dumps({
            "found": [[ep.name, ep.value] for ep in found],
            "callable": callable(runner),
        }))
    """))
    assert answer["found"] == [["main", "wsgiprogress.server:serve_paste"]], answer
    assert answer["callable"], answer


def test_every_declared_entry_point_loads(installed: Installed) -> None:
    declared = json.loads(venv_python(installed, ENTRY_POINTS))
    assert ["console_scripts", "wsgiprogress-serve", "wsgiprogress.cli:main"] in declared
    broken = json.loads(venv_python(installed, """
        import json, sys
        from importlib.metadata import distribution
        broken = []
        for ep in distribution("wsgiprogress").entry_points:
            try:
                ep.load()
            except Exception as exc:
                broken.append(f"{ep.group} {ep.name} = {ep.value}: {exc!r}")
        print(json.dumps(broken))
    """))
    assert not broken, f"entry points that do not load from the installed wheel: {broken}"


# --- serving from the installed package -----------------------------------------

APP_MODULE = """
    import wsgiprogress


    def app(environ, start_response):
        stream = environ["wsgi.input"]
        total = 0
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            total += len(piece)
        body = ("%d %s" % (total, wsgiprogress.__file__)).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])




@contextlib.contextmanager
def serving(inst: Installed, app_dir: Path,
            log_path: Path) -> Iterator["tuple[subprocess.Popen[bytes], int]"]:
    """The venv's ``wsgiprogress-serve`` on a free port; a few tries if another
    process takes the port between our look and the server's bind."""
    script = str(inst.venv / "bin" / "wsgiprogress-serve")
    for _attempt in range(3):
        port = free_port()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [script, "--listen", f"{HOST}:{port}", "--threads", "4", "mymod:app"],
                cwd=app_dir, env=clean_env(inst.venv), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if _wait_serving(process, port, log_path):
                yield process, port
                return
        finally:
            stop_group(process)
        text = log_path.read_text(errors="replace")
        if process.returncode != 1 or "in use" not in text.lower():
            pytest.fail(f"wsgiprogress-serve exited {process.returncode}:\n{text}")
    pytest.fail(f"no free port after 3 tries:\n{log_path.read_text(errors='replace')}")


def _wait_serving(process: "subprocess.Popen[bytes]", port: int, log_path: Path,
                  timeout: float = 20.0) -> bool:
    """True once the server accepts connections; False if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"wsgiprogress-serve not serving after {timeout} s:\n"
                + log_path.read_text(errors="replace"))


def test_installed_server_serves_and_tracks_an_upload(installed: Installed,
                                                      tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "mymod.py").write_text(textwrap.dedent(APP_MODULE))
    log_path = tmp_path / "serve.log"
    size = 3 * 1024 * 1024 + 7
    with serving(installed, app_dir, log_path) as (process, port):
        assert probe(port, "pkg-upload-1")["state"] == "unknown"
        client = SlowUpload(port, "/upload?X-Progress-ID=pkg-upload-1", size,
                            piece=256 * 1024, delay=0.002)
        client.start()
        client.join(30)
        assert not client.is_alive() and client.error is None, client.error
        head, _, body = client.reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), client.reply[:300]
        count, _, module_file = body.decode().partition(" ")
        assert int(count) == size
        assert installed.venv in Path(module_file).parents, module_file
        entry = wait_for_state(port, "pkg-upload-1", ("done", "error"))
        assert (entry["state"], entry["received"], entry["size"], entry["status"]) == (
            "done", size, size, 200), entry
        conn = HTTPConnection(HOST, port, timeout=5)
        conn.request("GET", "/progress?X-Progress-ID=pkg-upload-1&dialect=nginx")
        assert json.loads(conn.getresponse().read())["state"] == "done"
        conn.close()
        code = stop_group(process)
    log = log_path.read_text(errors="replace")
    assert code == 0, f"SIGTERM should stop it cleanly (exit 0), got {code}:\n{log}"
    assert f"Serving on http://{HOST}:{port}" in log, log
