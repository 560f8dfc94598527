"""The CLI against a local Pebble: issue with --issuer pebble, account commands, and a process
killed after placing its order that finishes the same order when run again."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tests.fixtures.core import REPO_ROOT, run_cli
from tests.fixtures.pebble import ChallTestSrv, Pebble, verify_chain
from tests.support import wait_for, write_dns_hook

pytestmark = pytest.mark.e2e

NAMES = ("mail.contoso.test", "autodiscover.contoso.test")


def write_config(path: Path, pebble: Pebble, extra: str = "") -> None:
    path.write_text(f"""
[issuers.pebble]
type = "acme"
directory = "{pebble.directory}"
contact = ["mailto:exchange-admins@contoso.test"]
agree_tos = true
ca_bundle = "{pebble.ca_bundle}"
public_names_only = false
{extra}
[issuers.pebble.http01]
mode = "standalone"
address = "127.0.0.1"
port = {pebble.http_port}
""")


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"CERTKEEPER_DATA_DIR": str(tmp_path / "data"), "CERTKEEPER_CONFIG": str(tmp_path / "certkeeper.toml")}


def orders_placed(pebble: Pebble) -> int:
    return len(re.findall(r"Added order ", pebble.log()))


def test_cli_issue_from_pebble_then_account_commands(pebble: Pebble, home: Path, ck) -> None:  # type: ignore[no-untyped-def]
    tmp_path = home
    write_config(tmp_path / "certkeeper.toml", pebble)
    env = env_for(tmp_path)
    done = run_cli("issue", *NAMES, "--issuer", "pebble", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    for step in ("account", "order", "authorization mail.contoso.test (http-01)", "validation", "finalize",
                 "download"):
        assert step in done.stdout + done.stderr
    shown = ck("show", "mail.contoso.test", "--pem")
    assert shown.code == 0, shown
    certs = x509.load_pem_x509_certificates(shown.out.encode())
    leaf_pem = shown.out.encode().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    chain_pem = shown.out.encode()[len(leaf_pem):]
    assert len(certs) >= 2
    verify_chain(leaf_pem, chain_pem, pebble.root_pem(), "autodiscover.contoso.test")

    # renewal through the service sends ARI `replaces` for the current certificate
    renewed = ck("renew", "mail.contoso.test", "--force")
    assert renewed.code == 0, renewed
    assert len(re.findall(r'ARI: order "[^"]+" is a replacement of', pebble.log())) >= 1
    shown = ck("show", "mail.contoso.test", "--pem")
    leaf_pem = shown.out.encode().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"

    revoked = ck("revoke", "mail.contoso.test", "--reason", "superseded", "--yes")
    assert revoked.code == 0, revoked
    assert pebble.cert_status(x509.load_pem_x509_certificate(leaf_pem).serial_number)["Status"] == "Revoked"

    account = ck("account", "show", "--issuer", "pebble", "--json")
    assert account.code == 0, account
    info = json.loads(account.out)
    assert info["status"] == "valid" and info["contact"] == ["mailto:exchange-admins@contoso.test"]
    assert info["url"].startswith(f"https://127.0.0.1:{pebble.port}/")
    assert "BEGIN" not in account.out and '"d"' not in account.out  # no key material

    gone = ck("account", "deactivate", "--issuer", "pebble", "--yes")
    assert gone.code == 0, gone
    assert "deactivated" in gone.out
    again = ck("account", "show", "--issuer", "pebble")
    assert "unregistered" in again.out
    registered = ck("account", "register", "--issuer", "pebble", "--json")
    assert registered.code == 0, registered
    assert json.loads(registered.out)["url"] != info["url"]

    wrong = ck("account", "show", "--issuer", "internal")
    assert wrong.code == 1 and "not an ACME issuer" in wrong.err


def test_killed_after_the_order_then_rerun_finishes_that_order(pebble: Pebble, challtestsrv: ChallTestSrv,
                                                               tmp_path: Path) -> None:
    hang, started = tmp_path / "hang", tmp_path / "started"
    hook = write_dns_hook(tmp_path / "hook.py", challtestsrv.management_port, hang=hang, started=started)
    write_config(tmp_path / "certkeeper.toml", pebble, extra=f"""challenge = "dns-01"
[issuers.pebble.dns01]
mode = "exec"
script = "{hook}"
cname_delegation = false
""")
    env = dict(os.environ) | env_for(tmp_path)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    hang.touch()
    before = orders_placed(pebble)
    process = subprocess.Popen([sys.executable, "-m", "certkeeper", "issue", *NAMES, "--issuer", "pebble"],
                               env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    def hook_started() -> bool:
        assert process.poll() is None, "the CLI ended before solving its challenge"
        return started.exists()

    try:
        wait_for(hook_started, 60, what="the DNS hook to start")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert orders_placed(pebble) == before + 1

    hang.unlink()
    # The killed process still holds the certificate's issue lease; the rerun on the same host
    # sees that its holder is dead and takes it over at once.
    with sqlite3.connect(tmp_path / "data" / "certkeeper.db") as db:
        assert db.execute("select count(*) from certificates where lease_holder is not null").fetchone()[0] == 1
    done = run_cli("issue", *NAMES, "--issuer", "pebble", env=env_for(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "resuming" in done.stdout + done.stderr
    assert orders_placed(pebble) == before + 1  # the same order, finished
