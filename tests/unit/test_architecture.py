"""The shape of the package, checked on its source: no import cycle between certkeeper's modules
(imports inside functions and under TYPE_CHECKING count too, and so does the package a submodule
import runs first), no module over 600 lines, and no SQL outside ``certkeeper/store/``."""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "certkeeper"
MAX_LINES = 600


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _known(name: str, known: dict[str, Path]) -> str | None:
    """``name`` or its nearest enclosing module that exists (``a.b.func`` -> ``a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every certkeeper module ``module`` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from a import b` imports module a.b when there is one, else a name of a
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                     for alias in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("certkeeper"):
                continue
            target = _known(name, known)
            if target is None:
                continue
            yield target
            # importing a.b.c runs a.b's and a's __init__ first (the root package is everyone's)
            parent = target.rpartition(".")[0]
            while parent and parent != "certkeeper":
                if not module.startswith(parent + ".") and module != parent:
                    yield parent
                parent = parent.rpartition(".")[0]


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    return {module: set(_imported(module, path, known)) - {module} for module, path in known.items()}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle (``[a, b, ..., a]``), or None: the check of :class:`graphlib.TopologicalSorter`."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return modules(root)


def test_the_cycle_finder_sees_imports_in_functions_and_under_type_checking(tmp_path: Path) -> None:
    in_a_function = package(tmp_path / "one" / "certkeeper", {
        "status.py": "from certkeeper.web import render\n",
        "web/__init__.py": "",
        "web/render.py": "def page():\n    from certkeeper.status import x\n",
        "alone.py": "from certkeeper.status import x\n",
    })
    found = cycle(import_graph(in_a_function))
    assert found is not None and set(found) == {"certkeeper.status", "certkeeper.web.render"}
    type_checking = package(tmp_path / "two" / "certkeeper", {
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from certkeeper.model import Bundle\n",
        "model.py": "import certkeeper.typed\n",
    })
    found = cycle(import_graph(type_checking))
    assert found is not None and set(found) == {"certkeeper.model", "certkeeper.typed"}
    assert cycle(import_graph(package(tmp_path / "three" / "certkeeper", {"alone.py": "import certkeeper.other\n",
                                                                             "other.py": ""}))) is None


def test_no_import_cycle_between_certkeeper_modules() -> None:
    known = modules()
    assert len(known) > 100  # the whole package was read
    assert cycle(import_graph(known)) is None


def test_no_module_is_over_600_lines() -> None:
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in modules().values()}
    over = [f"{path.relative_to(PACKAGE)}: {lines} lines" for path, lines in sizes.items() if lines > MAX_LINES]
    assert over == [], "split these by concept"


def test_no_sql_outside_the_store() -> None:
    """Outside ``store/`` SQLAlchemy is named only for the session type a caller passes on."""
    offenders = []
    for module, path in modules().items():
        if module.startswith("certkeeper.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                extra = {alias.name for alias in node.names} - {"Connection"}
                if extra or node.module != "sqlalchemy":
                    offenders.append(f"{module}: from {node.module} import {', '.join(sorted(extra))}")
            elif isinstance(node, ast.Import) and any(alias.name.startswith("sqlalchemy") for alias in node.names):
                offenders.append(f"{module}: import sqlalchemy")
    assert offenders == []
