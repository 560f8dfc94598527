"""A deploy killed between the certificate file and the key file never leaves a mismatched pair
served: the next run writes the whole set again (or, if it must roll back, rolls back to the
previous certificate, not to the half-written pair) and removes the temp file the killed run left,
which holds a key. nginx's own check (``nginx -t`` loads the certificate and the key) is the judge.

The kill is deterministic: ``strace`` injects SIGKILL into the second rename(2) of
``certkeeper renew`` (the files binder renames the full chain, then the key), so the process dies
with the new full chain in place and the new key still in its temp file. The state is checked
before the next run, so a change in the number of renames fails loudly instead of testing nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certkeeper.atomicfile import TEMP_SUFFIX
from certkeeper.binders import probe
from certkeeper.pki.keys import load_private_key, public_key_der
from certkeeper.pki.parse import load_certificates
from tests.fixtures.core import REPO_ROOT, to_toml
from tests.fixtures.gateways import NginxGateway

pytestmark = pytest.mark.e2e

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


@pytest.fixture(scope="module")
def strace() -> str:
    binary = shutil.which("strace")
    if binary is None:
        pytest.skip("strace is not installed")
    if subprocess.run([binary, "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True, check=False).returncode:
        pytest.skip("strace cannot trace here (ptrace not permitted)")
    return binary


def _config(home: Path, gateway: NginxGateway, reload: list[str] | None = None) -> None:
    table: dict[str, Any] = {
        "type": "files", "fullchain": str(gateway.fullchain), "key": str(gateway.key),
        "reload": reload or gateway.reload_argv, "verify": [gateway.endpoint], "settle_seconds": 5,
    }
    config = {"certificates": [{"id": "outlook", "names": list(NAMES), "bindings": [table]}]}
    (home / "certkeeper.toml").write_text(to_toml(config))


def _nginx_accepts_the_files(gateway: NginxGateway) -> bool:
    """``nginx -t``: the configuration test loads the certificate and key (a mismatch fails it)."""
    done = subprocess.run(["nginx", "-t", "-p", str(gateway.root), "-c", str(gateway.conf)], capture_output=True,
                          check=False, timeout=30)
    return done.returncode == 0


def _pair_matches(gateway: NginxGateway) -> bool:
    leaf = load_certificates(gateway.fullchain.read_bytes(), what="fullchain")[0]
    return public_key_der(leaf.public_key()) == public_key_der(load_private_key(gateway.key.read_bytes()))


def _temps(gateway: NginxGateway) -> list[Path]:
    return [path for path in gateway.cert_dir.iterdir() if path.name.endswith(TEMP_SUFFIX)]


def _kill_between_the_two_renames(ck, strace: str, gateway: NginxGateway) -> bytes:  # type: ignore[no-untyped-def]
    """Deploy revision 1, then renew under strace until it is killed on its second rename; returns
    revision 1's key. Checks the state a kill leaves: new chain, old key, a temp file with a key."""
    assert ck("issue", "--id", "outlook", *NAMES).code == 0
    assert ck("deploy").code == 0
    gateway.settle()
    first_key = gateway.key.read_bytes()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    killed = subprocess.run(
        [strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2",
         "-e", "inject=rename,renameat,renameat2:signal=KILL:when=2",
         sys.executable, "-m", "certkeeper", "renew", "outlook", "--force"],
        env=env, cwd=REPO_ROOT, capture_output=True, timeout=180, check=False)
    assert killed.returncode in (-9, 137), (killed.returncode, killed.stdout, killed.stderr)
    current = ck("show", "outlook", "--pem").out.encode()  # revision 2: issued and stored before the kill
    assert gateway.fullchain.read_bytes() == current  # the new certificate is in place ...
    assert gateway.key.read_bytes() == first_key  # ... beside the old key
    [temp] = _temps(gateway)
    assert b"PRIVATE KEY" in temp.read_bytes()
    assert not _pair_matches(gateway) and not _nginx_accepts_the_files(gateway)  # nginx could not start
    return first_key


def test_the_next_run_writes_a_matching_pair_and_removes_the_temp_file(
        ck, home: Path, nginx_gateway: NginxGateway, strace: str) -> None:  # type: ignore[no-untyped-def]
    _config(home, nginx_gateway)
    _kill_between_the_two_renames(ck, strace, nginx_gateway)

    deployed = ck("deploy")
    assert deployed.code == 0, deployed
    assert _temps(nginx_gateway) == []
    assert _pair_matches(nginx_gateway) and _nginx_accepts_the_files(nginx_gateway)
    status = json.loads(ck("status", "--json").out)["certificates"][0]
    nginx_gateway.settle()
    served = probe.fetch(probe.parse_endpoint(nginx_gateway.endpoint), NAMES[0]).fingerprint
    assert served == status["fingerprint"] == status["deployments"][-1]["served_fingerprint"]


def test_a_rollback_after_the_kill_restores_the_previous_pair_not_the_half_written_one(
        ck, home: Path, nginx_gateway: NginxGateway, strace: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _config(home, nginx_gateway)
    first_key = _kill_between_the_two_renames(ck, strace, nginx_gateway)

    # the next run's reload fails (the first time only): the binder must roll back
    calls = tmp_path / "calls"
    script = (f"echo x >> {calls}; test $(wc -l < {calls}) -gt 1 || exit 3; "
              + " ".join(nginx_gateway.reload_argv))
    _config(home, nginx_gateway, reload=["/bin/sh", "-c", script])
    deployed = ck("deploy")
    assert deployed.code == 1, deployed
    assert "previous files restored" in deployed.out + deployed.err
    # back to revision 1, whole: its key and its certificate, which nginx accepts
    assert nginx_gateway.key.read_bytes() == first_key
    assert _pair_matches(nginx_gateway) and _nginx_accepts_the_files(nginx_gateway)
    assert _temps(nginx_gateway) == []
