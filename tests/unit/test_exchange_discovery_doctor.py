"""`plan --from-exchange` and `doctor` against the fake organisation, per version, with recorded
transcripts (cmdlet outputs shaped like the documented Get-OutlookAnywhere, Get-*VirtualDirectory,
Get-OutlookProvider, Get-AcceptedDomain ... output). PowerShell boundary only."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from certkeeper.binders.exchange import discovery, doctor
from certkeeper.binders.powershell import Command, ExchangeVersion
from tests.fixtures.exchange import NETSH_SNI, FakeExchange, check_transcript
from tests.fixtures.gateways import TestPKI
from tests.fixtures.powershell_syntax import problems

VERSIONS = [v.value for v in ExchangeVersion]
UPDATE = bool(os.environ.get("CERTKEEPER_UPDATE_TRANSCRIPTS"))
SERVER = "ex01.contoso.com"


def settings(fake: FakeExchange, *, internal_url_host: str = "mail.contoso.com", principal: str | None = None) -> None:
    def oa(_s: str, _c: Command) -> list[Any]:
        record = {
            "Identity": "EX01\\Rpc (Default Web Site)",
            "ExternalHostname": "mail.contoso.com",
            "SSLOffloading": "False",
            "IISAuthenticationMethods": ["Basic", "Ntlm"],
        }
        if fake.version.is_2013_or_later:
            record.update(
                InternalHostname="mail.contoso.com",
                ExternalClientAuthenticationMethod="Negotiate",
                InternalClientAuthenticationMethod="Ntlm",
            )
        else:
            record["ClientAuthenticationMethod"] = "Ntlm"
        return [record]

    def vdir(name: str) -> Any:
        return lambda _s, _c: [
            {
                "Identity": f"EX01\\{name} (Default Web Site)",
                "InternalUrl": f"https://{internal_url_host}/{name.lower()}",
                "ExternalUrl": f"https://mail.contoso.com/{name.lower()}",
            }
        ]

    fake.answers.update(
        {
            "Get-OutlookAnywhere": oa,
            "Get-OwaVirtualDirectory": vdir("owa"),
            "Get-EcpVirtualDirectory": vdir("ecp"),
            "Get-WebServicesVirtualDirectory": vdir("EWS"),
            "Get-ActiveSyncVirtualDirectory": vdir("Microsoft-Server-ActiveSync"),
            "Get-OabVirtualDirectory": vdir("OAB"),
            "Get-MapiVirtualDirectory": vdir("mapi"),
            "Get-ClientAccessServer": lambda _s, _c: [
                {"AutoDiscoverServiceInternalUri": "https://autodiscover.contoso.com/Autodiscover/Autodiscover.xml"}
            ],
            "Get-ClientAccessService": lambda _s, _c: [
                {"AutoDiscoverServiceInternalUri": "https://autodiscover.contoso.com/Autodiscover/Autodiscover.xml"}
            ],
            "Get-AcceptedDomain": lambda _s, _c: [
                {"DomainName": "contoso.com", "DomainType": "Authoritative"},
                {"DomainName": "fabrikam.com", "DomainType": "InternalRelay"},
            ],
            "Get-OutlookProvider": lambda _s, _c: [{"Identity": "EXPR", "CertPrincipalName": principal}],
            "Get-ImapSettings": lambda _s, _c: [{"X509CertificateName": "imap.contoso.com"}],
            "Get-PopSettings": lambda _s, _c: [{"X509CertificateName": None}],
            "Get-ExchangeServer": lambda _s, _c: [{"Name": "EX01", "AdminDisplayVersion": "Version 15.2"}],
        }
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_plan_from_exchange_transcript(version: str) -> None:
    fake = FakeExchange(ExchangeVersion(version), [SERVER])
    settings(fake, internal_url_host="ex01.contoso.local", principal="msstd:outlook.contoso.com")
    found = discovery.discover(fake.session(SERVER).exchange, fake.version, SERVER)
    result = discovery.plan_from(found)
    assert result.names[0] == "mail.contoso.com"
    assert "autodiscover.contoso.com" in result.names and "imap.contoso.com" in result.names
    assert "autodiscover.fabrikam.com" not in result.names  # an internal relay domain is not ours
    codes = [note.code for note in result.notes]
    # ex01.contoso.local cannot be on a public certificate: every URL using it is named
    not_covered = [n.message for n in result.notes if n.code == "url-not-covered"]
    assert any("Set-OwaVirtualDirectory -InternalUrl" in m and "ex01.contoso.local" in m for m in not_covered)
    assert "expr-principal" in codes and not result.ok
    mapi = any("Get-MapiVirtualDirectory" in line for line in fake.transcript)
    assert mapi is (version != "2010")
    scp = "Get-ClientAccessService" if version in ("2016", "2019", "se") else "Get-ClientAccessServer"
    assert any(line.split("] ")[-1].startswith(scp) for line in fake.transcript)
    for script in fake.scripts:
        assert problems(script, ExchangeVersion(version).powershell) == []
    check_transcript(f"{version}/plan-from-exchange", "\n".join(fake.transcript) + "\n", UPDATE)


def test_plan_from_exchange_clean_settings_pass() -> None:
    fake = FakeExchange(ExchangeVersion.EX2019, [SERVER])
    settings(fake)
    result = discovery.plan_from(discovery.discover(fake.session(SERVER).exchange, fake.version, SERVER))
    assert result.ok, result.notes and result.principal == "msstd:mail.contoso.com"


@pytest.mark.parametrize("version", VERSIONS)
def test_doctor_transcript(version: str, test_pki: TestPKI) -> None:
    fake = FakeExchange(ExchangeVersion(version), [SERVER])
    settings(fake)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    iis = test_pki.bundle("mail.contoso.com", "autodiscover.contoso.com", common_name="mail.contoso.com")
    thumb = fake.install(SERVER, x509.load_pem_x509_certificate(iis.cert_pem), "IIS, SMTP")
    auth = test_pki.bundle(
        "auth.contoso.com", common_name="Microsoft Exchange Server Auth Certificate", not_after=now + timedelta(days=20)
    )
    fake.auth_thumb = fake.install(SERVER, x509.load_pem_x509_certificate(auth.cert_pem), "SMTP")
    back_end = fake.certificates[SERVER][thumb].copy()
    back_end.update(Thumbprint="FEDCBA9876543210FEDCBA9876543210FEDCBA98", Services="None")
    fake.certificates[SERVER][back_end["Thumbprint"]] = back_end
    fake.netsh[SERVER] = list(NETSH_SNI)
    lines = doctor.run(fake.session(SERVER), fake.version, now=now, key_is_ecdsa=True)
    status = {line.check: line.status for line in lines}
    assert status["rights"] == "ok" and status["back-end-444"] == "ok"
    assert status["sni-bindings"] == "fail"
    assert status["ecc"] == ("fail" if version in ("2010", "2013") else "warn")
    assert status["outlook-anywhere-host"] == "ok" and status["expr-principal"] == "ok"
    assert status["certificate-status"] == "ok"
    if version == "2010":
        assert "auth-certificate" not in status  # no OAuth certificate before 2013
    else:
        assert status["auth-certificate"] == "warn"  # 20 days left: HealthChecker warns below 60
    for script in fake.scripts:
        assert problems(script, ExchangeVersion(version).powershell) == []
    text = "\n".join(f"{line.status} {line.check}: {line.message}" for line in lines)
    text = text.replace(thumb, "<IIS>").replace(fake.auth_thumb, "<AUTH>")
    check_transcript(f"{version}/doctor", text + "\n", UPDATE)


def test_doctor_without_rights_stops_at_the_first_read() -> None:
    fake = FakeExchange(ExchangeVersion.SE, [SERVER])
    fake.fail["Get-ExchangeServer"] = "The term 'Get-ExchangeServer' is not recognized as the name of a cmdlet"
    lines = doctor.run(fake.session(SERVER), fake.version, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert [(line.check, line.status) for line in lines] == [("read Get-ExchangeServer", "fail")]
    assert "does the account have the Exchange role?" in lines[0].message
