"""``certkeeper check`` against a real nginx gateway: passes for a right certificate, names each
failure for a wrong one (missing name, expired, untrusted chain, principal mismatch, no challenge)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from certkeeper.binders import probe
from certkeeper.model import Bundle
from certkeeper.outlook.checker import CheckReport, Status, check
from tests.fixtures.core import run_cli
from tests.fixtures.gateways import NginxGateway, TestPKI, start_nginx

pytestmark = pytest.mark.e2e

URL = "https://mail.contoso.com"
NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


def serve(gateway: NginxGateway, bundle: Bundle) -> None:
    gateway.install(bundle)
    gateway.reload()  # waits until the old worker is gone
    assert probe.verify_endpoints(
        bundle.fingerprint, [gateway.endpoint], ["mail.contoso.com"], settle_seconds=10
    ).ok


def statuses(report: CheckReport) -> dict[str, Status]:
    return {item.id: item.status for item in report.items}


@pytest.fixture
def roots(tmp_path: Path, test_pki: TestPKI) -> str:
    return str(test_pki.root_pem_file(tmp_path / "roots.pem"))


def run(gateway: NginxGateway, roots: str, **kwargs: object) -> CheckReport:
    return check(URL, connect=gateway.endpoint, ca_file=roots, timeout=5, **kwargs)  # type: ignore[arg-type]


def test_correct_certificate_passes_every_item(nginx_gateway: NginxGateway, roots: str) -> None:
    report = run(nginx_gateway, roots)
    assert report.ok, report.to_dict()
    assert all(item.status is Status.PASS for item in report.items), report.to_dict()
    assert [item.id for item in report.items] == [
        "tls",
        "chain",
        "names",
        "principal",
        "key",
        "signature",
        "expiry",
        "rpcproxy",
        "mapi",
        "autodiscover",
    ]
    assert report.item("rpcproxy").detail == "401 with Negotiate, NTLM"
    assert (
        nginx_gateway.initial is not None and report.served_fingerprint == nginx_gateway.initial.fingerprint
    )
    assert "2 certificate(s) sent" in report.item("tls").detail  # leaf + intermediate
    assert run(nginx_gateway, roots, names=["autodiscover.contoso.com"]).ok


def test_missing_name(nginx_gateway: NginxGateway, roots: str, test_pki: TestPKI) -> None:
    serve(nginx_gateway, test_pki.bundle("webmail.contoso.com", common_name="webmail.contoso.com"))
    report = run(nginx_gateway, roots, principal="msstd:webmail.contoso.com")
    assert [item.id for item in report.failures()] == ["names"]
    assert "not in the certificate: mail.contoso.com" in report.item("names").detail


def test_expired(nginx_gateway: NginxGateway, roots: str, test_pki: TestPKI) -> None:
    now = datetime.now(UTC)
    serve(
        nginx_gateway,
        test_pki.bundle(
            *NAMES,
            common_name=NAMES[0],
            not_before=now - timedelta(days=90),
            not_after=now - timedelta(days=1),
        ),
    )
    report = run(nginx_gateway, roots)
    assert {item.id for item in report.failures()} == {"chain", "expiry"}
    assert report.item("expiry").detail.startswith("expired on")
    assert "expired" in report.item("chain").detail


@pytest.mark.parametrize(("days", "status"), [(45, Status.WARN), (10, Status.FAIL), (90, Status.PASS)])
def test_days_left_against_healthchecker_thresholds(
    nginx_gateway: NginxGateway, roots: str, test_pki: TestPKI, days: int, status: Status
) -> None:
    now = datetime.now(UTC)
    serve(
        nginx_gateway,
        test_pki.bundle(
            *NAMES,
            common_name=NAMES[0],
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=days, hours=12),
        ),
    )
    report = run(nginx_gateway, roots)
    assert report.item("expiry").status is status
    assert report.ok is (status is not Status.FAIL)  # a warning does not fail the check


def test_untrusted_chain(nginx_gateway: NginxGateway, roots: str) -> None:
    stranger = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = stranger.issue_cert(*NAMES, common_name=NAMES[0], key_type=trustme.KeyType.RSA)
    from tests.fixtures.gateways import bundle_from_pems

    serve(nginx_gateway, bundle_from_pems(leaf, "mail", NAMES))
    report = run(nginx_gateway, roots)
    assert [item.id for item in report.failures()] == ["chain"]
    assert "unable to get local issuer certificate" in report.item("chain").detail


def test_principal_mismatch_and_the_cn_rule(
    nginx_gateway: NginxGateway, roots: str, test_pki: TestPKI
) -> None:
    report = run(nginx_gateway, roots, principal="msstd:outlook.contoso.com")
    assert [item.id for item in report.failures()] == ["principal"]
    assert "msstd:outlook.contoso.com matches neither" in report.item("principal").detail
    # in the SAN but not the CN: newer Outlook is fine, Windows XP is not -> a warning
    serve(nginx_gateway, test_pki.bundle(*NAMES, common_name="autodiscover.contoso.com"))
    report = run(nginx_gateway, roots)
    assert report.ok and report.item("principal").status is Status.WARN
    assert "Windows XP" in report.item("principal").detail


def test_ecdsa_key_is_a_warning(nginx_gateway: NginxGateway, roots: str, test_pki: TestPKI) -> None:
    serve(nginx_gateway, test_pki.bundle(*NAMES, common_name=NAMES[0], key_type=trustme.KeyType.ECDSA))
    report = run(nginx_gateway, roots)
    assert report.ok and report.item("key").status is Status.WARN and "ECDSA" in report.item("key").detail


def test_no_authentication_challenge(tmp_path: Path, roots: str, test_pki: TestPKI) -> None:
    gateway = start_nginx(
        tmp_path / "open", test_pki.bundle(*NAMES, common_name=NAMES[0]), auth_challenge=False
    )
    try:
        report = run(gateway, roots)
    finally:
        gateway.process.terminate()
        gateway.process.wait(timeout=10)
    assert {item.id for item in report.failures()} == {"rpcproxy", "mapi", "autodiscover"}
    assert "answers without asking for authentication" in report.item("rpcproxy").detail


def test_nothing_listening_is_one_clear_failure(roots: str) -> None:
    from tests.fixtures.core import free_port

    report = check(URL, connect=f"127.0.0.1:{free_port()}", ca_file=roots, timeout=2)
    assert [(item.id, item.status) for item in report.items] == [("tls", Status.FAIL)]


def test_cli_check_exit_codes_and_json(nginx_gateway: NginxGateway, roots: str, test_pki: TestPKI) -> None:
    good = run_cli("check", URL, "--connect", nginx_gateway.endpoint, "--ca-file", roots)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Outlook would connect" in good.stdout and "PASS" in good.stdout

    bad = run_cli(
        "check",
        URL,
        "--connect",
        nginx_gateway.endpoint,
        "--ca-file",
        roots,
        "--principal",
        "msstd:outlook.contoso.com",
        "--name",
        "autodiscover.fabrikam.com",
        "--json",
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    data = json.loads(bad.stdout)
    assert data["ok"] is False
    assert [item["id"] for item in data["items"] if item["status"] == "fail"] == ["names", "principal"]
