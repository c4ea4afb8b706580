"""JavaScript clients the tests run, pinned by a package-lock.json under
tests/js/<dir> and installed by ``npm ci`` on first use, so the README's one
test command is all a newcomer runs."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parent / "js"


def npm_ci(directory: str, package: str) -> Path:
    """The ``node_modules`` of tests/js/*directory*, holding *package*."""
    where = JS / directory
    modules = where / "node_modules"
    if (modules / package).is_dir():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is needed to install {package}: apt-get install -y npm")
    subprocess.run([npm, "ci", "--prefix", str(where), "--no-audit", "--no-fund"],
                   capture_output=True, timeout=600, check=True)
    return modules
