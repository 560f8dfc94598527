"""dns-01 through acme-dns: register once (credentials sealed in the issuer's state), a clear
"create this CNAME" until the zone owner does, then /update per challenge; Pebble validates by
following the CNAME to the acme-dns double's DNS."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from certkeeper.clock import SystemClock
from certkeeper.errors import IssuanceError
from certkeeper.issuers.acme.issuer import AcmeIssuer
from certkeeper.model import IssueRequest
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.acmedns import AcmeDnsDouble
from tests.fixtures.pebble import Pebble, make_csr, verify_chain

pytestmark = pytest.mark.e2e


def issuer_for(pebble: Pebble, acme_dns: AcmeDnsDouble, state: MemoryState, tmp_path: Path) -> AcmeIssuer:
    context = PluginContext(clock=SystemClock(), state=state, data_dir=tmp_path)
    return AcmeIssuer.from_options("acmedns", {
        "directory": pebble.directory, "agree_tos": True, "ca_bundle": str(pebble.ca_bundle),
        "challenge": "dns-01",
        "dns01": {"mode": "acme-dns", "acme_dns_url": acme_dns.url, "resolver": acme_dns.dns_address,
                  "nameservers": [acme_dns.dns_address], "propagation_timeout": 10}}, context)


def test_acme_dns_registers_once_asks_for_the_cname_then_issues(
        pebble_acme_dns: Pebble, acme_dns: AcmeDnsDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state = MemoryState()
    issuer = issuer_for(pebble_acme_dns, acme_dns, state, tmp_path)
    names = ("mail.acmedns.test", "*.acmedns.test", "acmedns.test")
    _key, csr = make_csr(names)
    with pytest.raises(IssuanceError) as first:
        issuer.issue(IssueRequest(certificate_id="m", names=names, csr_pem=csr))
    message = str(first.value)
    assert re.fullmatch(r"acme-dns: registered it just now; _acme-challenge\.(mail\.)?acmedns\.test\. does not point "
                        r"to acme-dns yet: create the record  _acme-challenge\.(mail\.)?acmedns\.test\. CNAME "
                        r"[0-9a-f-]{36}\.auth\.acme-dns\.test\.  and retry", message), message
    stored = {key: json.loads(value) for key, value in state.data.items() if key.startswith("acme-dns/")}
    assert len(stored) == 1  # the first name failed before the others were registered

    # the zone owner creates the CNAMEs certkeeper printed (one per base name)
    for name in ("mail.acmedns.test", "acmedns.test"):
        registration = issuer.solvers["dns-01"].register(name)[0]  # type: ignore[attr-defined]
        acme_dns.cnames[f"_acme-challenge.{name}."] = registration.fulldomain + "."
    registrations, updates = acme_dns.calls.count("/register"), acme_dns.calls.count("/update")
    result = issuer.issue(IssueRequest(certificate_id="m", names=names, csr_pem=csr))
    verify_chain(result.cert_pem, result.chain_pem, pebble_acme_dns.root_pem(), "owa.acmedns.test")
    assert acme_dns.calls.count("/register") == registrations  # registered once per name, ever
    # one per authorization (the double is shared by the session's tests); *. and the base share a record
    assert acme_dns.calls.count("/update") - updates == 3
    # the wildcard and its base name share one acme-dns record holding both values
    shared = next(value for key, value in state.data.items() if key.endswith("/acmedns.test"))
    assert len(acme_dns.txt[json.loads(shared)["subdomain"]]) == 2
    for account in acme_dns.accounts.values():
        assert account["password"] not in caplog.text and account["password"] not in message


def test_acme_dns_refused_credentials_are_one_line_without_the_password(
        pebble_acme_dns: Pebble, acme_dns: AcmeDnsDouble, tmp_path: Path) -> None:
    state = MemoryState()
    issuer = issuer_for(pebble_acme_dns, acme_dns, state, tmp_path)
    registration = issuer.solvers["dns-01"].register("bad.acmedns.test")[0]  # type: ignore[attr-defined]
    acme_dns.cnames["_acme-challenge.bad.acmedns.test."] = registration.fulldomain + "."
    [key] = [key for key in state.data if key.endswith("/bad.acmedns.test")]
    tampered = json.loads(state.data[key]) | {"password": "stolen-or-rotated-99"}
    state.data[key] = json.dumps(tampered).encode()
    _key, csr = make_csr(("bad.acmedns.test",))
    with pytest.raises(IssuanceError) as caught:
        issuer.issue(IssueRequest(certificate_id="b", names=("bad.acmedns.test",), csr_pem=csr))
    assert str(caught.value) == (f"acme-dns: {acme_dns.url} refused the stored credentials (HTTP 401); register "
                                 "again with 'certkeeper dns register --again'")
