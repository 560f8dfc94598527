"""Benchmarks: run on demand with `python -m pytest tests/perf -s -n0` (in one process, so that `-s`
shows their figures).

They print their figures and compare them with the targets; the normal suite never collects them
(norecursedirs in pyproject.toml) and never times anything.
"""

import compileall
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _bytecode_like_an_installed_package() -> None:
    """pip compiles bytecode when it installs certkeeper; a checkout run with
    PYTHONDONTWRITEBYTECODE=1 (as on these machines) would recompile every module on every CLI
    call instead. Compile once, so the figures are those of an installed package."""
    root = Path(__file__).resolve().parents[2]
    compileall.compile_dir(str(root / "certkeeper"), quiet=1)
    compileall.compile_dir(str(root / "migrations"), quiet=1)
