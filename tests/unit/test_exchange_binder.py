"""The Exchange binder against a fake organisation at the PowerShell boundary, per version.

Recorded transcripts (tests/transcripts/<version>/*.txt) hold the exact script text of every
step for deploy, hybrid and rollback on 2010, 2013, 2016, 2019 and SE; every script is also parsed
with tree-sitter-powershell and checked against what that version's PowerShell lacks. Exchange
cannot run on Linux: this proves what certkeeper sends, not that Exchange accepts it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certkeeper.binders.exchange import ExchangeBinder, ExchangeServer
from certkeeper.binders.powershell import Command, ExchangeVersion
from certkeeper.binders.windows import thumbprint
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Bundle, EndpointCheck, Verification
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.exchange import NETSH_SNI, FakeExchange, check_transcript, windows_name
from tests.fixtures.gateways import TestPKI
from tests.fixtures.powershell_syntax import problems

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")
SERVERS = ("ex01.contoso.com", "ex02.contoso.com")
ENDPOINTS = {"10.0.0.11:443": SERVERS[0], "10.0.0.12:443": SERVERS[1]}
VERSIONS = [v.value for v in ExchangeVersion]
UPDATE = bool(os.environ.get("CERTKEEPER_UPDATE_TRANSCRIPTS"))


class ExchangeProbe:
    """The TLS probe, answered from the Exchange fake: an endpoint serves what its server has for
    IIS (unlike tests.support.FakeProbe, which follows the bundles it is asked about)."""

    def __init__(self, fake: FakeExchange) -> None:
        self.fake = fake
        self.stuck: dict[str, str] = {}  # endpoint -> thumbprint it keeps serving
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, bundle: Bundle, endpoints: Any) -> Verification:
        self.calls.append(tuple(endpoints))
        wanted = thumbprint(bundle.cert_pem)
        checks = []
        for endpoint in endpoints:
            served = self.stuck.get(endpoint) or next(iter(self.fake.enabled_for(ENDPOINTS[endpoint], "IIS")), None)
            checks.append(EndpointCheck(endpoint, NAMES[0], served == wanted, served, "probe"))
        return Verification(tuple(checks))


def cert(bundle: Bundle) -> x509.Certificate:
    return x509.load_pem_x509_certificate(bundle.cert_pem)


def organisation(version: str, old: Bundle, *, services: str = "IIS") -> FakeExchange:
    fake = FakeExchange(ExchangeVersion(version), list(SERVERS))
    for server in SERVERS:
        fake.install(server, cert(old), services)
    return fake


def make(fake: FakeExchange, probe: ExchangeProbe, state: MemoryState | None = None, **kwargs: Any) -> ExchangeBinder:
    servers = [ExchangeServer(SERVERS[0], ("10.0.0.11:443",)), ExchangeServer(SERVERS[1], ("10.0.0.12:443",))]
    return ExchangeBinder(
        "oa",
        version=fake.version,
        servers=servers,
        sessions=fake.session,
        state=state or MemoryState(),
        prober=probe,
        **kwargs,
    )


@pytest.fixture
def bundles(test_pki: TestPKI) -> tuple[Bundle, Bundle]:
    return test_pki.bundle(*NAMES, common_name=NAMES[0]), test_pki.bundle(*NAMES, common_name=NAMES[0])


def tokens(old: Bundle, new: Bundle) -> dict[str, str]:
    return {
        thumbprint(old.cert_pem): "<OLD>",
        thumbprint(new.cert_pem): "<NEW>",
        windows_name(cert(old).issuer): "<OLD-ISSUER>",
        windows_name(cert(new).issuer): "<NEW-ISSUER>",
        windows_name(cert(old).subject): "<OLD-SUBJECT>",
        windows_name(cert(new).subject): "<NEW-SUBJECT>",
        f"{new.not_after:%Y-%m-%d}": "<NOT-AFTER>",
    }


def assert_scripts_run_on(fake: FakeExchange, version: str) -> None:
    """Every script text sent parses and needs nothing newer than the version's PowerShell."""
    powershell = ExchangeVersion(version).powershell
    assert fake.scripts
    for script in fake.scripts:
        assert problems(script, powershell) == [], script


@pytest.mark.parametrize("version", VERSIONS)
def test_deploy_transcript(version: str, bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    fake = organisation(version, old, services="IIS, IMAP")
    fake.services = {
        s: [
            {"Name": "MSExchangeIMAP4", "StartMode": "Auto", "State": "Running"},
            {"Name": "MSExchangeIMAP4BE", "StartMode": "Auto", "State": "Running"},
        ]
        for s in SERVERS
    }
    fake.ssl_flags = ""  # the site root does not require SSL (an HTTP->HTTPS redirect)
    probe, state = ExchangeProbe(fake), MemoryState()
    binder = make(fake, probe, state, services=("IIS", "IMAP"))
    for server in SERVERS:
        binder.markers.add(server, thumbprint(old.cert_pem))

    binder.deploy(new, old)

    new_thumb, old_thumb = thumbprint(new.cert_pem), thumbprint(old.cert_pem)
    for server in SERVERS:
        assert fake.enabled_for(server, "IIS") == [new_thumb] and fake.enabled_for(server, "IMAP") == [new_thumb]
        assert old_thumb in fake.certificates[server]  # removal waits for retire
        assert binder.markers.has(server, new_thumb)
    enable = next(line for line in fake.transcript if "Enable-ExchangeCertificate" in line)
    assert "-DoNotRequireSsl:$true" in enable and "-ErrorAction 'Stop'" in enable
    # one session per server per deploy, all closed
    assert fake.opened == list(SERVERS) and len(fake.closed) == 4
    assert probe.calls == [("10.0.0.11:443",), ("10.0.0.12:443",)]
    imap = [line for line in fake.transcript if "Restart-Service" in line]
    expected_services = "'MSExchangeIMAP4','MSExchangeIMAP4BE'" if version != "2010" else "'MSExchangeIMAP4'"
    if version == "2010":
        fake.services = {}
    assert len(imap) == 2 and expected_services in "\n".join(fake.transcript)

    binder.retire(old, new)
    for server in SERVERS:
        assert old_thumb not in fake.certificates[server] and not binder.markers.has(server, old_thumb)
    assert_scripts_run_on(fake, version)
    check_transcript(f"{version}/deploy", fake.scrubbed(tokens(old, new)), UPDATE)


@pytest.mark.parametrize("version", VERSIONS)
def test_hybrid_transcript(version: str, bundles: tuple[Bundle, Bundle], test_pki: TestPKI) -> None:
    old, _ = bundles
    # Let's Encrypt rotates intermediates: the renewal comes from another issuer
    other_issuer = test_pki.root.create_child_ca()
    new = test_pki.bundle(*NAMES, common_name=NAMES[0], ca=other_issuer)
    fake = organisation(version, old, services="IIS, SMTP")
    old_name = f"<I>{windows_name(cert(old).issuer)}<S>{windows_name(cert(old).subject)}"
    new_name = f"<I>{windows_name(cert(new).issuer)}<S>{windows_name(cert(new).subject)}"
    old_thumb, new_thumb = thumbprint(old.cert_pem), thumbprint(new.cert_pem)
    if version == "2010":
        fake.send_connectors = [
            {"Identity": "Outbound to Office 365", "Fqdn": "mail.contoso.com", "RequireTLS": "True"}
        ]
        fake.hybrid = {"Name": "Hybrid Configuration", "SecureMailCertificateThumbprint": old_thumb}
    else:
        fake.send_connectors = [
            {"Identity": "Outbound to Office 365 - 1b2c", "TlsCertificateName": old_name, "Fqdn": "mail.contoso.com"},
            {"Identity": "Internet", "TlsCertificateName": None, "Fqdn": ""},
        ]
        fake.receive_connectors = {
            s: [
                {
                    "Identity": f"{s.split('.')[0].upper()}\\Default Frontend {s.split('.')[0].upper()}",
                    "TlsCertificateName": old_name,
                }
            ]
            for s in SERVERS
        }
        fake.hybrid = {"Name": "Hybrid Configuration", "TlsCertificateName": old_name}
    probe = ExchangeProbe(fake)
    binder = make(fake, probe, services=("IIS", "SMTP"), smtp_replace_default=True, hybrid=True)
    for server in SERVERS:
        binder.markers.add(server, old_thumb)

    binder.deploy(new, old)

    if version == "2010":
        assert fake.hybrid["SecureMailCertificateThumbprint"] == new_thumb
    else:
        assert fake.send_connectors[0]["TlsCertificateName"] == new_name
        assert fake.send_connectors[1]["TlsCertificateName"] is None  # never named the old one
        assert all(c["TlsCertificateName"] == new_name for cs in fake.receive_connectors.values() for c in cs)
        assert fake.hybrid["TlsCertificateName"] == new_name
    enables = [line for line in fake.transcript if "Enable-ExchangeCertificate" in line]
    assert all("-Force" in line for line in enables)
    binder.retire(old, new)  # only now can the old one go
    assert all(old_thumb not in fake.certificates[s] for s in SERVERS)
    assert_scripts_run_on(fake, version)
    check_transcript(f"{version}/hybrid", fake.scrubbed(tokens(old, new)), UPDATE)


@pytest.mark.parametrize("version", VERSIONS)
def test_rollback_transcript(version: str, bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    fake = organisation(version, old)
    probe = ExchangeProbe(fake)
    probe.stuck["10.0.0.12:443"] = thumbprint(old.cert_pem)  # ex02 keeps serving the old one
    binder = make(fake, probe)
    with pytest.raises(VerifyError) as caught:
        binder.deploy(new, old)
    message = str(caught.value)
    old_thumb, new_thumb = thumbprint(old.cert_pem), thumbprint(new.cert_pem)
    assert message.startswith(f"oa: {SERVERS[1]}: verify:")
    assert f"previous certificate {old_thumb} enabled again on {SERVERS[1]}, {new_thumb} removed again" in message
    assert f"previous certificate {old_thumb} enabled again on {SERVERS[0]}" in message
    for server in SERVERS:
        assert fake.enabled_for(server, "IIS") == [old_thumb]
        assert new_thumb not in fake.certificates[server]
        assert not binder.markers.has(server, new_thumb)
    assert_scripts_run_on(fake, version)
    check_transcript(f"{version}/rollback", fake.scrubbed(tokens(old, new)), UPDATE)


@pytest.mark.parametrize("version", ["2010", "2019"])
def test_hybrid_update_failure_keeps_the_old_certificate(
    version: str, bundles: tuple[Bundle, Bundle], test_pki: TestPKI
) -> None:
    old, _ = bundles
    new = test_pki.bundle(*NAMES, common_name=NAMES[0], ca=test_pki.root.create_child_ca())
    fake = organisation(version, old, services="IIS, SMTP")
    old_thumb = thumbprint(old.cert_pem)
    old_name = f"<I>{windows_name(cert(old).issuer)}<S>{windows_name(cert(old).subject)}"
    fake.send_connectors = [{"Identity": "Outbound to Office 365", "TlsCertificateName": old_name}]
    fake.receive_connectors[SERVERS[0]] = [{"Identity": "EX01\\Default Frontend EX01", "TlsCertificateName": old_name}]
    fake.hybrid = {"TlsCertificateName": old_name, "SecureMailCertificateThumbprint": old_thumb}
    fake.fail["Set-HybridConfiguration"] = "The operation couldn't be performed (object not found)."
    binder = make(fake, ExchangeProbe(fake), services=("IIS", "SMTP"), smtp_replace_default=True, hybrid=True)
    with pytest.raises(BindError, match="oa: hybrid: Set-HybridConfiguration failed") as caught:
        binder.deploy(new, old)
    assert f"the previous certificate {old_thumb} is kept" in str(caught.value)
    if version != "2010":
        assert "Send connector Outbound to Office 365 put back" in str(caught.value)
        assert fake.send_connectors[0]["TlsCertificateName"] == old_name
        assert fake.receive_connectors[SERVERS[0]][0]["TlsCertificateName"] == old_name
    for server in SERVERS:
        assert fake.enabled_for(server, "SMTP") == [old_thumb] and old_thumb in fake.certificates[server]


STEPS = ["Get-ExchangeCertificate", "Import-ExchangeCertificate", "Enable-ExchangeCertificate", "Restart-WebAppPool"]


@pytest.mark.parametrize("version", ["2010", "2016"])
@pytest.mark.parametrize("step", STEPS)
def test_an_error_record_at_each_step_rolls_back_and_leaves_no_marker(
    version: str, step: str, bundles: tuple[Bundle, Bundle]
) -> None:
    old, new = bundles
    fake = organisation(version, old)
    new_thumb = thumbprint(new.cert_pem)

    failed: list[str] = []

    def on_ex01_for_new(server: str, command: Command) -> str | None:
        if server != SERVERS[0] or command.params.get("Thumbprint", new_thumb) != new_thumb or failed:
            return None
        failed.append(command.name)  # once: the rollback's own restart works
        return "An error record (non-terminating) the way Exchange writes them."

    fake.fail[step] = on_ex01_for_new
    binder = make(fake, ExchangeProbe(fake))
    with pytest.raises(BindError) as caught:
        binder.deploy(new, old)
    word = {
        "Get-ExchangeCertificate": "import",
        "Import-ExchangeCertificate": "import",
        "Enable-ExchangeCertificate": "enable",
        "Restart-WebAppPool": "restart",
    }[step]
    assert f"oa: {SERVERS[0]}: {word}:" in str(caught.value) and f"not attempted: {SERVERS[1]}" in str(caught.value)
    assert not any(SERVERS[1] in line and "Import-ExchangeCertificate" in line for line in fake.transcript)
    assert fake.enabled_for(SERVERS[0], "IIS") == [thumbprint(old.cert_pem)]
    assert not binder.markers.has(SERVERS[0], new_thumb)
    assert new_thumb not in fake.certificates[SERVERS[0]]


def test_sni_binding_refused_before_anything_changes(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    fake = organisation("2019", old)
    fake.netsh[SERVERS[1]] = list(NETSH_SNI)
    with pytest.raises(
        BindError,
        match=r"ex02.contoso.com: pre-flight: netsh http show sslcert lists "
        r"mail.contoso.com:443 .*nothing was changed",
    ):
        make(fake, ExchangeProbe(fake)).deploy(new, old)
    assert not any("-ExchangeCertificate" in line and "Get-" not in line for line in fake.transcript)


def test_retire_reports_a_refused_removal_and_keeps_the_marker(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    fake = organisation("2016", old)
    old_thumb = thumbprint(old.cert_pem)
    fake.fail["Remove-ExchangeCertificate"] = lambda server, c: (
        "A special Rpc error occurs on server: These certificates are tagged with following Send Connectors : "
        "Outbound to Office 365."
        if server == SERVERS[0]
        else None
    )
    binder = make(fake, ExchangeProbe(fake))
    for server in SERVERS:
        fake.certificates[server][old_thumb]["Services"] = "None"
        binder.markers.add(server, old_thumb)
    with pytest.raises(BindError, match=r"retire: the previous certificate stays: ex01.contoso.com: .*tagged"):
        binder.retire(old, new)
    assert binder.markers.has(SERVERS[0], old_thumb)  # not counted as done
    assert not binder.markers.has(SERVERS[1], old_thumb)  # the other server still went ahead


def test_retire_never_removes_the_auth_certificate_or_unmarked_ones(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    fake = organisation("2019", old)
    binder = make(fake, ExchangeProbe(fake))
    binder.retire(old, new)  # never imported by certkeeper
    assert fake.transcript == []
    fake.auth_thumb = thumbprint(old.cert_pem)
    binder.markers.add(SERVERS[0], thumbprint(old.cert_pem))
    binder.retire(old, new)
    assert [line.split("] ")[1] for line in fake.transcript if line.startswith("[")] == ["Get-AuthConfig"]


def test_options(tmp_path: Path) -> None:
    context = PluginContext(
        clock=None,
        state=MemoryState(),
        data_dir=tmp_path,  # type: ignore[arg-type]
        resolve_secret=lambda ref: "pw",
    )
    good = {
        "version": "2019",
        "servers": [
            {"name": "ex01.contoso.com", "verify": ["10.0.0.11:443"]},
            {"name": "ex02.contoso.com", "verify": ["10.0.0.12:443"]},
        ],
        "username": "svc@CONTOSO.COM",
        "password": "env:X",
    }
    binder = ExchangeBinder.from_options("ex", good, context)
    assert [s.name for s in binder.servers] == ["ex01.contoso.com", "ex02.contoso.com"]
    assert binder.pfx_encryption == "aes256" and binder.restart == "app-pools"
    shared = {**good, "servers": ["ex01.contoso.com", "ex02.contoso.com"], "verify": ["mail.contoso.com:443"]}
    for bad, match in [
        ({**good, "version": "2007"}, r"bindings\.ex\.version"),
        ({**good, "auth": "ntlm"}, "accepts Kerberos only"),
        ({**good, "username": "CONTOSO\\svc"}, "UPN form"),
        ({**good, "servers": ["EX01"], "verify": ["10.0.0.11:443"]}, "own FQDN"),
        (shared, "share the verify endpoint mail.contoso.com:443"),
        ({**good, "services": ["IIS", "SMTP"]}, "Edge Subscription"),
        ({**good, "hybrid": True}, 'add "SMTP" to services'),
        ({**good, "runner": "local"}, "local runner manages the server certkeeper runs on"),
        ({**good, "services": ["Federation"]}, "federation trust"),
        ({**good, "do_not_require_ssl": True}, "do_not_require_ssl"),
    ]:
        with pytest.raises(ConfigError, match=match):
            ExchangeBinder.from_options("ex", bad, context)


def test_no_secret_reaches_the_logs_or_the_transcript(
    bundles: tuple[Bundle, Bundle], caplog: pytest.LogCaptureFixture
) -> None:
    old, new = bundles
    fake = organisation("2019", old)
    seen: list[str] = []
    fake.fail["Import-ExchangeCertificate"] = lambda s, c: seen.append(c.params["Password"].value) or None  # type: ignore[func-returns-value]
    probe = ExchangeProbe(fake)
    probe.stuck["10.0.0.12:443"] = "0" * 40
    caplog.set_level(logging.DEBUG)
    with pytest.raises(VerifyError) as caught:
        make(fake, probe).deploy(new, old)
    text = caplog.text + str(caught.value) + "\n".join(fake.transcript)
    assert seen and all(password not in text for password in seen)
    assert "PRIVATE KEY" not in text and "-Password $Password" in text
