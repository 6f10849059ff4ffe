"""The layering is a contract: the core imports no layer, each layer imports the core and the layer before it.

Every import is checked, at module level, inside functions and under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "lakehouse": set(),  # the core: config, engine, catalog, run log, shared format parsing
    "bronze": {"lakehouse"},
    "expectations": {"lakehouse"},  # quality suites over Silver tables, run by the Silver job
    "silver": {"lakehouse", "bronze", "expectations"},
    "gold": {"lakehouse", "silver"},
    "synthetic": set(),  # a tool: writes files a hospital would send
    "lakehouse_app": {"lakehouse", "bronze", "silver", "gold", "expectations", "synthetic"},
    "jobs": {"lakehouse", "lakehouse_app"},
    "benchmarks": {"lakehouse", "bronze", "silver", "gold", "expectations", "synthetic", "lakehouse_app"},
}
PACKAGES = set(ALLOWED)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every absolute import of a project package in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(fn) if n is not fn)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(n, node.lineno, id(node) not in in_function) for n in names if n.split(".")[0] in PACKAGES]
    return found


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            out[".".join(path.relative_to(REPO).with_suffix("").parts)] = path
    return out


def test_every_package_exists() -> None:
    assert all((REPO / p / "__init__.py").is_file() for p in PACKAGES)


def test_packages_import_only_the_layers_below_them() -> None:
    violations = []
    for module, path in _modules().items():
        package = module.split(".")[0]
        for name, line, _ in _imports(path):
            target = name.split(".")[0]
            if target != package and target not in ALLOWED[package]:
                violations.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert violations == []


def test_project_imports_are_at_module_level() -> None:
    hidden = [f"{path.relative_to(REPO)}:{line} imports {name} inside a function"
              for path in _modules().values() for name, line, top in _imports(path) if not top]
    assert hidden == []


def test_no_package_level_import_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in _modules().items():
        for name, _, _ in _imports(path):
            if name.split(".")[0] != module.split(".")[0]:
                graph[module.split(".")[0]].add(name.split(".")[0])

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert [p for p in PACKAGES if reaches(p, p, set())] == []


def test_the_check_catches_a_violation(tmp_path: Path) -> None:
    planted = tmp_path / "bad.py"
    planted.write_text("def f():\n    from silver.job import build_silver\n    return build_silver\n")
    assert _imports(planted) == [("silver.job", 2, False)]
