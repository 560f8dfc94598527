"""dns-01 through dns-lexicon's powerdns provider against a real PowerDNS Authoritative (Debian's
pdns-server, sqlite3 backend, HTTP API on loopback), with Pebble validating through that PowerDNS."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certkeeper.clock import SystemClock
from certkeeper.errors import IssuanceError
from certkeeper.issuers.acme.issuer import AcmeIssuer
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.core import run_cli, to_toml
from tests.fixtures.pebble import Pebble, make_csr, verify_chain
from tests.fixtures.powerdns import PowerDns

pytestmark = pytest.mark.e2e


def dns01_table(powerdns: PowerDns, **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "mode": "lexicon", "provider": "powerdns",
        "provider_options": {"pdns_server": powerdns.api_url},
        "credentials": {"auth_token": "secret:pdns-api-key"},
        "resolver": powerdns.address, "nameservers": [powerdns.address], "propagation_timeout": 15,
    }
    table.update(extra)
    return table


def issuer_for(pebble: Pebble, powerdns: PowerDns, tmp_path: Path, api_key: str | None = None,
               **dns01: Any) -> AcmeIssuer:
    secrets = {"secret:pdns-api-key": api_key or powerdns.api_key}
    context = PluginContext(clock=SystemClock(), state=MemoryState(), data_dir=tmp_path,
                            resolve_secret=secrets.__getitem__)
    return AcmeIssuer.from_options("pdns", {
        "directory": pebble.directory, "agree_tos": True, "ca_bundle": str(pebble.ca_bundle),
        "challenge": "dns-01", "dns01": dns01_table(powerdns, **dns01)}, context)


def test_lexicon_powerdns_issues_with_wildcard_and_cname_delegation(
        pebble_powerdns: Pebble, powerdns: PowerDns, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = issuer_for(pebble_powerdns, powerdns, tmp_path)
    names = ("mail.pdns.test", "alias.pdns.test", "*.pdns.test")
    _key, csr = make_csr(names)
    result = issuer.issue(IssueRequest(certificate_id="p", names=names, csr_pem=csr))
    verify_chain(result.cert_pem, result.chain_pem, pebble_powerdns.root_pem(), "alias.pdns.test")
    verify_chain(result.cert_pem, result.chain_pem, pebble_powerdns.root_pem(), "owa.pdns.test")
    assert "_acme-challenge.alias.pdns.test. is delegated by CNAME to alias.acme-pdns.test." in caplog.text
    assert "lexicon powerdns created TXT alias.acme-pdns.test. in zone acme-pdns.test." in caplog.text
    # every value is gone afterwards, the delegated one included (the wildcard and the base name
    # shared _acme-challenge.pdns.test with two values)
    assert powerdns.txt("_acme-challenge.mail.pdns.test") == []
    assert powerdns.txt("_acme-challenge.pdns.test") == []
    assert powerdns.txt("alias.acme-pdns.test") == []
    # the API key was sent on every request and never logged
    assert powerdns.api_key not in caplog.text


def test_wrong_api_key_is_one_clear_line(pebble_powerdns: Pebble, powerdns: PowerDns, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-4f1c2d"
    issuer = issuer_for(pebble_powerdns, powerdns, tmp_path, api_key=wrong)
    _key, csr = make_csr(("wrongkey.pdns.test",))
    with pytest.raises(IssuanceError) as caught:
        issuer.issue(IssueRequest(certificate_id="w", names=("wrongkey.pdns.test",), csr_pem=csr))
    message = str(caught.value)
    assert message == ("dns-01: the powerdns DNS API refused the credentials (HTTP 401) while trying to create "
                       "TXT _acme-challenge.wrongkey.pdns.test. in zone pdns.test: check issuers.pdns.dns01."
                       "credentials")
    assert caught.value.name == "wrongkey.pdns.test"
    assert wrong not in caplog.text and powerdns.api_key not in caplog.text


def test_cli_issue_and_renew_remove_the_record(pebble_powerdns: Pebble, powerdns: PowerDns, tmp_path: Path) -> None:
    config = {"issuers": {"pdns": {
        "type": "acme", "directory": pebble_powerdns.directory, "agree_tos": True,
        "ca_bundle": str(pebble_powerdns.ca_bundle), "challenge": "dns-01", "dns01": dns01_table(powerdns)}}}
    (tmp_path / "certkeeper.toml").write_text(to_toml(config))
    env = {"CERTKEEPER_DATA_DIR": str(tmp_path / "data"), "CERTKEEPER_CONFIG": str(tmp_path / "certkeeper.toml")}
    stored = run_cli("secret", "set", "pdns-api-key", env=env, input=powerdns.api_key + "\n")
    assert stored.returncode == 0, stored.stderr

    issued = run_cli("issue", "owa.pdns.test", "--issuer", "pdns", env=env)
    assert issued.returncode == 0, issued.stderr + issued.stdout
    assert "authorization owa.pdns.test (dns-01)" in issued.stdout
    assert powerdns.txt("_acme-challenge.owa.pdns.test") == []

    renewed = run_cli("renew", "owa.pdns.test", "--force", env=env)
    assert renewed.returncode == 0, renewed.stderr + renewed.stdout
    assert powerdns.txt("_acme-challenge.owa.pdns.test") == []
    shown = run_cli("show", "owa.pdns.test", "--pem", env=env)
    leaf = x509.load_pem_x509_certificates(shown.stdout.encode())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["owa.pdns.test"]
    listed = run_cli("list", "--json", env=env)
    assert '"revision": 2' in listed.stdout, listed.stdout
    for output in (issued, renewed):
        assert powerdns.api_key not in output.stdout + output.stderr

    # a wrong key in the store: one clear line naming what to fix, no traceback, no key
    wrong = run_cli("secret", "set", "pdns-api-key", env=env, input="not-the-key-77aa\n")
    assert wrong.returncode == 0
    failed = run_cli("issue", "bad.pdns.test", "--issuer", "pdns", env=env)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == (
        "error: dns-01: the powerdns DNS API refused the credentials (HTTP 401) while trying to create TXT "
        "_acme-challenge.bad.pdns.test. in zone pdns.test: check issuers.pdns.dns01.credentials")
    assert "Traceback" not in failed.stdout + failed.stderr
    assert "not-the-key-77aa" not in failed.stdout + failed.stderr
