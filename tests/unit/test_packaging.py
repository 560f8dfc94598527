"""The wheel's explicit package list covers every package in the tree, and the migrations ship."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_in_the_tree_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "certkeeper").rglob("__init__.py")}
    assert listed == in_tree | {"certkeeper.migrations"}


def test_migrations_are_found_from_a_checkout() -> None:
    from certkeeper.store.db import _migrations_dir

    assert (_migrations_dir() / "env.py").exists()
    assert list((_migrations_dir() / "versions").glob("*.py"))
