"""The package's layout is its architecture: no import circles, lower layers
never import higher ones, no module over ~400 lines, the stdlib only on
import, and every old module path still imports."""
from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Set

import pytest

from wsgiprogress.moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "wsgiprogress"
#: Each layer may import its own and lower layers only.
LAYERS = [
    {"errors", "keys", "query", "settings"},
    {"waiters"},
    {"progress", "mailbox", "operations", "resumable"},
    {"backends"},
    {"web"},
    {"middleware", "server"},
    {"paste", "pyramid", "cli", "moved", "__init__", "__main__"},
]
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Set[str]:
    """Every wsgiprogress module *path* imports, TYPE_CHECKING ones included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names
                          if known(f"{target}.{alias.name}")]
            candidates = submodules or [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("wsgiprogress") and known(c))
    found.discard(name)
    return found


def known(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").exists() or \
        (PACKAGE.parent / relative / "__init__.py").exists()


def graph() -> Dict[str, Set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer(name: str) -> int:
    top = name.split(".")[1] if "." in name else "__init__"
    return next(i for i, members in enumerate(LAYERS) if top in members)


def test_no_import_circles() -> None:
    edges = graph()
    # a package's __init__ re-exporting its modules is not a circle
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    state: Dict[str, int] = {}
    circles: List[List[str]] = []

    def visit(node: str, stack: List[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = sorted(f"{m} -> {t}" for m, ts in graph().items() for t in ts
                   if layer(t) > layer(m))
    assert wrong == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=module_name)
def test_no_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_importing_the_package_pulls_in_the_stdlib_only() -> None:
    code = ("import sys; before = set(sys.modules); import wsgiprogress, wsgiprogress.web.front; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))")
    loaded = eval(subprocess.check_output([sys.executable, "-c", code], text=True))
    stdlib = set(sys.stdlib_module_names) | {"wsgiprogress", "_typeshed"}
    assert [m for m in loaded if m.lstrip("_") not in stdlib and m not in stdlib] == []


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_module_paths_still_import(old: str, new: str) -> None:
    code = (f"import warnings, importlib; warnings.simplefilter('error', DeprecationWarning)\n"
            f"try:\n    importlib.import_module({old!r})\n"
            f"except DeprecationWarning as w:\n    print(w)\n")
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == \
        f"{old} moved to {new}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = __import__(old, fromlist=["_"])
    assert module is sys.modules[new]


def test_every_required_dependency_is_imported_by_the_package() -> None:
    setup = (PACKAGE.parent / "setup.py").read_text()
    required = ast.literal_eval(setup.split("install_requires=", 1)[1].split("]", 1)[0] + "]")
    names = {req.split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in required}
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    assert names and names <= imported, names - imported
