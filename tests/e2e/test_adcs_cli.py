"""Issue 7 end to end: the certkeeper CLI, in separate processes, against the certsrv protocol double
(tests/fixtures/certsrv.py; a local HTTPS server speaking the certsrv protocol, not a Windows CA).

The daemon waiting for approval across its own restart is shown on a FrozenClock in
tests/integration/test_adcs.py (test_a_restarted_daemon_keeps_waiting_for_approval_then_completes)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from tests.fixtures.certsrv import CertsrvDouble
from tests.fixtures.core import run_cli

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")

def write_config(home: Path, double: CertsrvDouble, **extra: Any) -> None:
    options = double.options(**extra)
    lines = ["[issuers.corp]", 'type = "adcs"']
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, numbers and booleans are TOML too
    (home / "certkeeper.toml").write_text("\n".join(lines) + "\n")


def stored_chain_verifies(cert_id: str, double: CertsrvDouble) -> x509.Certificate:
    shown = run_cli("show", cert_id, "--pem")
    assert shown.returncode == 0, shown.stderr
    leaf, *intermediates = x509.load_pem_x509_certificates(shown.stdout.encode())
    store = Store(x509.load_pem_x509_certificates(double.ca.root_pem))
    for name in NAMES:
        verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
        verifier.verify(leaf, intermediates)
    return leaf


def test_issue_with_adcs_issuer_stores_a_chain_to_the_ca_root(home: Path, certsrv_factory: Any) -> None:
    double: CertsrvDouble = certsrv_factory("ntlm")
    write_config(home, double)

    done = run_cli("issue", *NAMES, "--issuer", "corp", "--json")

    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["issuer"] == "corp" and tuple(outcome["names"]) == NAMES
    leaf = stored_chain_verifies(outcome["certificate_id"], double)
    (record,) = double.requests.values()
    assert record.cert == leaf and record.auth_scheme == "NTLM"
    assert double.submissions[0]["CertAttrib"] == "CertificateTemplate:WebServer\r\n"
    # the renewal engine sees it like any other issuer's certificate
    listed = run_cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["id"] == outcome["certificate_id"] and row["health"] == "Ready"
    dry = run_cli("renew", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    (decision,) = json.loads(dry.stdout)["decisions"]
    assert decision["action"] == "wait"


def test_pending_request_survives_a_restart_and_completes_when_approved(home: Path, certsrv_factory: Any) -> None:
    double: CertsrvDouble = certsrv_factory("basic")
    double.mode = "pending"
    write_config(home, double, poll_minutes=0.005)  # asks again after 0.3 s

    first = run_cli("issue", *NAMES, "--issuer", "corp")

    assert first.returncode == 1
    (record,) = double.requests.values()
    assert f"request {record.request_id} awaits a CA manager's approval" in first.stderr
    shown = run_cli("show", "mail.contoso.com", "--json")
    assert shown.returncode == 0, shown.stderr
    assert any(event["kind"] == "pending_approval" for event in json.loads(shown.stdout)["events"])

    # not approved yet: a new process asks again, does not submit a second request
    time.sleep(0.4)
    polls = len(double.polls)
    still = run_cli("renew")
    assert len(double.submissions) == 1, still.stdout + still.stderr
    assert double.polls[polls:] == [record.request_id]

    double.approve(record.request_id)
    time.sleep(0.4)
    second = run_cli("renew")  # a fresh process: only the stored checkpoint links it to the request

    assert second.returncode == 0, second.stdout + second.stderr
    assert len(double.submissions) == 1
    leaf = stored_chain_verifies("mail.contoso.com", double)
    assert leaf == double.requests[record.request_id].cert


def test_template_that_ignores_the_csr_names_stores_nothing(home: Path, certsrv_factory: Any) -> None:
    double: CertsrvDouble = certsrv_factory("basic")
    write_config(home, double, template="ADSubject")

    done = run_cli("-v", "issue", *NAMES, "--issuer", "corp")

    assert done.returncode == 1
    assert "ignored the CSR's names" in done.stderr and "ADSubject" in done.stderr
    assert "other names" in done.stderr
    assert run_cli("show", "mail.contoso.com", "--pem").returncode == 1
