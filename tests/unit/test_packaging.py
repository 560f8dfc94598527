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


def test_the_systemd_unit_stops_the_daemon_only_and_is_valid(tmp_path: Path) -> None:
    """KillMode=mixed: SIGTERM reaches the daemon alone, so a reload it runs is not killed with it
    and the running step finishes (the README's promise); systemd-analyze checks the syntax."""
    import shutil
    import subprocess

    from tests.fixtures.core import run_cli

    done = run_cli("daemon", "--systemd-unit")
    assert done.returncode == 0, done.stderr
    settings = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and line[:1].isalpha())
    assert settings["KillMode"] == "mixed"
    assert settings["KillSignal"] == "SIGTERM" and int(settings["TimeoutStopSec"]) >= 60
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the content is checked; the syntax check needs systemd's tools
    unit = tmp_path / "certkeeper.service"
    unit.write_text(done.stdout)
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert "certkeeper.service:" not in checked.stderr, checked.stderr  # no line it failed to parse
