"""dns-01 by RFC 2136 dynamic update (TSIG) to a real BIND 9 that is also Pebble's resolver."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from certkeeper.clock import SystemClock
from certkeeper.errors import IssuanceError
from certkeeper.issuers.acme.issuer import AcmeIssuer
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.pebble import Bind, Pebble, make_csr, verify_chain

pytestmark = pytest.mark.e2e


def issuer_for(pebble: Pebble, bind: Bind, tmp_path: Path, secret: str | None = None,
               **dns01: Any) -> AcmeIssuer:
    secrets = {"secret:tsig": secret or bind.key_secret}
    context = PluginContext(clock=SystemClock(), state=MemoryState(), data_dir=tmp_path,
                            resolve_secret=secrets.__getitem__)
    table: dict[str, Any] = {"mode": "rfc2136", "server": "127.0.0.1", "port": bind.port,
                             "tsig_key_name": bind.key_name, "tsig_secret": "secret:tsig",
                             "resolver": bind.address, "propagation_timeout": 10}
    table.update(dns01)
    return AcmeIssuer.from_options("bind", {
        "directory": pebble.directory, "agree_tos": True, "ca_bundle": str(pebble.ca_bundle),
        "public_names_only": False, "challenge": "dns-01", "dns01": table}, context)


def issue(issuer: AcmeIssuer, names: tuple[str, ...]) -> tuple[bytes, bytes]:
    _key, csr = make_csr(names)
    result = issuer.issue(IssueRequest(certificate_id="b", names=names, csr_pem=csr))
    return result.cert_pem, result.chain_pem


def test_rfc2136_with_tsig_and_cname_delegation(pebble_bind: Pebble, bind: Bind, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="certkeeper.issuers.acme.solvers.dns01")
    issuer = issuer_for(pebble_bind, bind, tmp_path)
    names = ("mail.contoso.test", "alias.contoso.test", "*.contoso.test")
    cert_pem, chain_pem = issue(issuer, names)
    verify_chain(cert_pem, chain_pem, pebble_bind.root_pem(), "alias.contoso.test")
    assert "_acme-challenge.alias.contoso.test. is delegated by CNAME to alias.acme-zone.test." in caplog.text
    updates = (bind.folder / "named.log").read_text()
    assert "updating zone 'acme-zone.test/IN': adding an RR at 'alias.acme-zone.test' TXT" in updates
    # cleaned up, including the delegated record
    assert bind.txt("_acme-challenge.mail.contoso.test") == []
    assert bind.txt("alias.acme-zone.test") == []
    assert bind.txt("_acme-challenge.contoso.test") == []


def test_rfc2136_with_an_explicit_zone_and_nameservers(pebble_bind: Pebble, bind: Bind,
                                                       tmp_path: Path) -> None:
    issuer = issuer_for(pebble_bind, bind, tmp_path, zone="contoso.test", nameservers=[bind.address],
                        cname_delegation=False)
    cert_pem, chain_pem = issue(issuer, ("autodiscover.contoso.test",))
    verify_chain(cert_pem, chain_pem, pebble_bind.root_pem(), "autodiscover.contoso.test")


def test_rfc2136_wrong_tsig_key_is_refused(pebble_bind: Pebble, bind: Bind, tmp_path: Path) -> None:
    import base64

    wrong = base64.b64encode(b"x" * 32).decode()
    issuer = issuer_for(pebble_bind, bind, tmp_path, secret=wrong)
    with pytest.raises(IssuanceError, match=r"TSIG|NOTAUTH|REFUSED") as caught:
        issue(issuer, ("wrongkey.contoso.test",))
    assert wrong not in str(caught.value) and bind.key_secret not in str(caught.value)
    assert caught.value.name == "wrongkey.contoso.test"
