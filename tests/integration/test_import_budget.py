"""What a command imports (issue 14), read from ``python -X importtime`` in a subprocess.

``certkeeper list`` never loads the ACME stack (``acme``, ``josepy``, ``requests``): not on an
empty store, and not when the config has ACME certificates (their issuer is built to check the
names, but it talks to no CA); nor the SQLAlchemy ORM, nor cryptography once the store's key
exists. ``--help`` loads none of the heavy libraries at all. Nothing here is
timed: a module that comes back is the regression, whatever the machine's speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.core import REPO_ROOT

ACME_STACK = {"acme", "josepy", "requests"}


def imported(*args: str, home: Path) -> set[str]:
    """Modules imported by ``python -X importtime -m certkeeper ARGS``, and their top-level packages."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), CERTKEEPER_DATA_DIR=str(home / "data"),
               CERTKEEPER_CONFIG=str(home / "certkeeper.toml"))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "certkeeper", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "certkeeper.cli" in modules  # the output was read
    return modules | {module.split(".")[0] for module in modules}


def test_list_on_an_empty_store_imports_no_acme_stack(tmp_path: Path) -> None:
    first = imported("list", home=tmp_path)  # creates the store
    again = imported("list", home=tmp_path)
    assert not first & ACME_STACK
    assert not again & ACME_STACK
    # nor the ORM, nor (once the key exists) cryptography: list seals and opens nothing
    assert not again & {"pyasn1", "alembic", "sqlalchemy.orm", "cryptography"}


def test_list_with_acme_certificates_in_the_config_imports_no_acme_stack(tmp_path: Path) -> None:
    (tmp_path / "certkeeper.toml").write_text("""
[issuers.ca]
type = "acme"
directory = "https://127.0.0.1:9/dir"
agree_tos = true
public_names_only = false

[[certificates]]
id = "mail"
names = ["mail.contoso.test", "autodiscover.contoso.test"]
issuer = "ca"
""")
    imported("list", home=tmp_path)
    modules = imported("list", "--json", home=tmp_path)
    assert not modules & (ACME_STACK | {"sqlalchemy.orm", "cryptography"})


@pytest.mark.parametrize("args", [("--help",), ("list", "--help")])
def test_help_imports_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    modules = imported(*args, home=tmp_path)
    assert not modules & (ACME_STACK | {"sqlalchemy", "pydantic", "cryptography", "rich", "alembic"})
