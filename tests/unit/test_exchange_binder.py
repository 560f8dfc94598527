"""The Exchange binder at the PowerShell boundary: a recording runner checks the exact cmdlets,
parameters and order for Exchange 2010, 2013 and 2016/2019/SE, and scripted failures at every step.

Exchange cannot run on Linux; nothing here proves that Exchange accepts these commands, only that
certkeeper sends exactly what reference/exchange.md §3-4 says it should.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.binders.exchange import ExchangeBinder, ExchangeServer
from certkeeper.binders.powershell import Command, ExchangeVersion, RecordingRunner, SecureString
from certkeeper.binders.windows import thumbprint
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Bundle
from certkeeper.pki.pkcs12.structure import SCHANNEL_CSP
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.gateways import TestPKI
from tests.support import FakeProbe

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")
SERVERS = (ExchangeServer("EX01", ("10.0.0.11:443",)), ExchangeServer("EX02", ("10.0.0.12:443",)))
AUTH_THUMB = "A" * 40


def make(
    version: str, runner: RecordingRunner, probe: FakeProbe, state: MemoryState | None = None, **kwargs: Any
) -> ExchangeBinder:
    return ExchangeBinder(
        "exchange",
        version=ExchangeVersion(version),
        servers=SERVERS,
        runner_for=lambda _server: runner,
        state=state or MemoryState(),
        prober=probe,
        **kwargs,
    )


def recorder() -> RecordingRunner:
    return RecordingRunner(
        outputs={
            "Get-AuthConfig": lambda _c: [
                {"CurrentCertificateThumbprint": AUTH_THUMB, "NextCertificateThumbprint": ""}
            ],
        }
    )


@pytest.fixture
def bundles(test_pki: TestPKI) -> tuple[Bundle, Bundle]:
    return test_pki.bundle(*NAMES, common_name=NAMES[0]), test_pki.bundle(*NAMES, common_name=NAMES[0])


def expected_deploy(server: str, thumb: str, pfx_len: int, friendly: str, restart: list[str]) -> list[str]:
    return [
        f"Get-ExchangeCertificate -Server '{server}' -Thumbprint '{thumb}' -ErrorAction 'SilentlyContinue'",
        f"Import-ExchangeCertificate -Server '{server}' -FileData <{pfx_len} bytes> -Password <SecureString> "
        f"-PrivateKeyExportable:$false -FriendlyName '{friendly}'",
        f"Enable-ExchangeCertificate -Server '{server}' -Thumbprint '{thumb}' -Services 'IIS'",
        *restart,
    ]


@pytest.mark.parametrize("version", ["2010", "2013", "2016", "2019", "se"])
def test_exact_commands_and_order(version: str, bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    runner, probe, state = recorder(), FakeProbe(), MemoryState()
    binder = make(version, runner, probe, state, restart="app-pools")
    binder.deploy(old, None)  # the first certificate, so certkeeper recorded importing it
    runner.calls.clear()

    binder.deploy(new, old)

    new_thumb, old_thumb = thumbprint(new.cert_pem), thumbprint(old.cert_pem)
    imports = [c for c in runner.calls if c.name == "Import-ExchangeCertificate"]
    pfx_len = len(imports[0].params["FileData"])
    friendly = f"certkeeper mail {new.not_after:%Y-%m-%d}"
    pools = [
        "Restart-WebAppPool -Name 'MSExchangeOWAAppPool'",
        "Restart-WebAppPool -Name 'MSExchangeECPAppPool'",
    ]
    assert runner.lines() == [
        *expected_deploy("EX01", new_thumb, pfx_len, friendly, pools),
        *expected_deploy("EX02", new_thumb, pfx_len, friendly, pools),
    ]
    # never -FileName; the old certificate is not removed by deploy
    assert not any("FileName" in dict(c.parameters) or c.name.startswith("Remove-") for c in runner.calls)
    # one server at a time, verified before the next one starts
    assert probe.calls[-2:] == [(new.fingerprint, ("10.0.0.11:443",)), (new.fingerprint, ("10.0.0.12:443",))]

    # the PFX: opens with the SecureString password, carries the chain and the legacy-CSP tag
    password = imports[0].params["Password"]
    assert isinstance(password, SecureString)
    pfx = imports[0].params["FileData"]
    loaded = pkcs12.load_pkcs12(pfx, password.value.encode())
    assert loaded.cert is not None and loaded.key is not None and len(loaded.additional_certs) == 1
    info = subprocess.run(
        ["openssl", "pkcs12", "-legacy", "-nodes", "-nocerts", "-passin", f"pass:{password.value}"],
        input=pfx,
        capture_output=True,
    )
    assert f"Microsoft CSP Name: {SCHANNEL_CSP}" in info.stdout.decode(), info.stderr
    algorithm = subprocess.run(
        ["openssl", "pkcs12", "-legacy", "-info", "-noout", "-passin", f"pass:{password.value}"],
        input=pfx,
        capture_output=True,
    ).stderr.decode()
    # Windows Server 2016 and older only read 3DES; Exchange 2019/SE run on 2019+
    assert ("AES-256-CBC" in algorithm) == (version in ("2019", "se"))

    # retire: only after deploy, only the recorded thumbprint, never the Auth certificate
    runner.calls.clear()
    binder.retire(old, new)
    remove = [
        f"Remove-ExchangeCertificate -Server '{s}' -Thumbprint '{old_thumb}' -Confirm:$false"
        for s in ("EX01", "EX02")
    ]
    if version == "2010":  # no Get-AuthConfig (no OAuth certificate) on 2010
        assert runner.lines() == remove
    else:
        assert runner.lines() == ["Get-AuthConfig", remove[0], "Get-AuthConfig", remove[1]]
    runner.calls.clear()
    binder.retire(old, new)  # markers are gone: nothing to remove twice
    assert runner.calls == []


def test_redeploy_skips_import_when_the_certificate_is_there(bundles: tuple[Bundle, Bundle]) -> None:
    _, new = bundles
    runner = RecordingRunner(
        outputs={"Get-ExchangeCertificate": lambda c: [{"Thumbprint": c.params["Thumbprint"]}]}
    )
    binder = make("2016", runner, FakeProbe())
    binder.deploy(new, None)
    assert runner.names() == ["Get-ExchangeCertificate", "Enable-ExchangeCertificate"] * 2
    # not imported by certkeeper, so retire will never remove it
    assert not binder.markers.has("EX01", thumbprint(new.cert_pem))


STEPS = [
    "Get-ExchangeCertificate",
    "Import-ExchangeCertificate",
    "Enable-ExchangeCertificate",
    "Restart-WebAppPool",
    "verify",
]


@pytest.mark.parametrize("version", ["2010", "2013", "2019"])
@pytest.mark.parametrize("failing_server", ["EX01", "EX02"])
@pytest.mark.parametrize("step", STEPS)
def test_failure_at_each_step_rolls_back_and_never_removes_early(
    version: str, failing_server: str, step: str, bundles: tuple[Bundle, Bundle]
) -> None:
    old, new = bundles
    old_thumb, new_thumb = thumbprint(old.cert_pem), thumbprint(new.cert_pem)
    runner, probe, state = recorder(), FakeProbe(), MemoryState()
    binder = make(version, runner, probe, state, restart="app-pools")
    binder.deploy(old, None)
    runner.calls.clear()

    def fail_on_server(command: Command) -> str | None:
        if command.params.get("Server", failing_server) != failing_server:
            return None
        if command.name == "Enable-ExchangeCertificate" and command.params["Thumbprint"] == old_thumb:
            return None  # the rollback itself works
        return "The operation couldn't be performed because of an injected failure."

    if step == "verify":
        probe.stuck.add("10.0.0.11:443" if failing_server == "EX01" else "10.0.0.12:443")
    elif step == "Restart-WebAppPool":
        # fail only the restart right after the NEW certificate was enabled on the failing server
        def restart_fails(command: Command) -> str | None:
            last_enable = [c for c in runner.calls if c.name == "Enable-ExchangeCertificate"][-1]
            if (
                last_enable.params["Server"] == failing_server
                and last_enable.params["Thumbprint"] == new_thumb
            ):
                return "Restart-WebAppPool: injected failure"
            return None

        runner.fail[step] = restart_fails
    else:
        runner.fail[step] = fail_on_server

    expected_error = VerifyError if step == "verify" else BindError
    with pytest.raises(expected_error) as caught:
        binder.deploy(new, old)
    message = str(caught.value)
    step_word = {
        "Get-ExchangeCertificate": "import",
        "Import-ExchangeCertificate": "import",
        "Enable-ExchangeCertificate": "enable",
        "Restart-WebAppPool": "restart",
        "verify": "verify",
    }[step]
    assert f"exchange: {failing_server}: {step_word}:" in message

    # the previous certificate is never removed by a failed deploy
    assert not any(c.name.startswith("Remove-") for c in runner.calls)
    # later servers are not touched
    if failing_server == "EX01":
        assert all(c.params.get("Server") in (None, "EX01") for c in runner.calls)
        assert "not attempted: EX02" in message
    enables = [
        (c.params["Server"], c.params["Thumbprint"])
        for c in runner.calls
        if c.name == "Enable-ExchangeCertificate"
    ]
    if step_word == "import":
        # nothing was enabled on the failing server, so nothing to undo there
        assert (failing_server, new_thumb) not in enables and (failing_server, old_thumb) not in enables
        assert "nothing was changed" in message
    else:
        # the failing server goes back to the previous certificate, after the new one
        assert enables.index((failing_server, old_thumb)) > enables.index((failing_server, new_thumb))
        assert f"previous certificate {old_thumb} enabled again on {failing_server}" in message
    if failing_server == "EX02":
        # EX01 was done in this run: it is put back too, so the namespace serves one certificate
        assert enables[-1] == ("EX01", old_thumb)
    # the new certificate was imported by certkeeper where the import ran, so a later retry/retire knows it
    if step != "Get-ExchangeCertificate" and step != "Import-ExchangeCertificate":
        assert binder.markers.has(failing_server, new_thumb)


def test_rollback_without_a_previous_certificate_says_so(bundles: tuple[Bundle, Bundle]) -> None:
    _, new = bundles
    probe = FakeProbe()
    probe.stuck.add("10.0.0.11:443")
    binder = make("2019", recorder(), probe)
    with pytest.raises(VerifyError, match="no previous certificate to restore"):
        binder.deploy(new, None)


def test_retire_leaves_certificates_certkeeper_did_not_import_and_the_auth_certificate(
    bundles: tuple[Bundle, Bundle], test_pki: TestPKI
) -> None:
    old, new = bundles
    runner = recorder()
    binder = make("2019", runner, FakeProbe())
    binder.retire(old, new)  # old was never imported by certkeeper
    assert runner.calls == []

    # a certificate certkeeper imported that has since become the Auth certificate is kept
    binder.markers.add("EX01", thumbprint(old.cert_pem))
    runner.outputs["Get-AuthConfig"] = lambda _c: [{"CurrentCertificateThumbprint": thumbprint(old.cert_pem)}]
    binder.retire(old, new)
    assert runner.names() == ["Get-AuthConfig"]
    assert binder.markers.has("EX01", thumbprint(old.cert_pem))

    runner.calls.clear()
    binder.retire(new, new)  # same certificate: nothing to do
    assert runner.calls == []

    # when Get-AuthConfig says nothing usable, nothing is removed
    runner.outputs["Get-AuthConfig"] = lambda _c: ["garbled"]
    binder.retire(old, new)
    assert runner.names() == ["Get-AuthConfig"]
    assert binder.markers.has("EX01", thumbprint(old.cert_pem))


def test_retire_failure_is_a_bind_error_naming_the_step(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    runner = recorder()
    runner.fail["Remove-ExchangeCertificate"] = (
        "These certificates are tagged with following Send Connectors : Outbound to Office 365."
    )
    binder = make("2016", runner, FakeProbe())
    binder.markers.add("EX01", thumbprint(old.cert_pem))
    with pytest.raises(BindError, match="exchange: EX01: retire: Remove-ExchangeCertificate failed: These"):
        binder.retire(old, new)
    assert binder.markers.has("EX01", thumbprint(old.cert_pem))  # still ours; try again later


def test_smtp_needs_explicit_consent_and_then_passes_force(bundles: tuple[Bundle, Bundle]) -> None:
    _, new = bundles
    with pytest.raises(ConfigError, match="replaces the default SMTP certificate"):
        make("2019", recorder(), FakeProbe(), services=("IIS", "SMTP"))
    runner = recorder()
    binder = make(
        "2019",
        runner,
        FakeProbe(),
        services=("IIS", "SMTP"),
        smtp_replace_default=True,
        do_not_require_ssl=True,
    )
    binder.deploy(new, None)
    enable = next(c for c in runner.calls if c.name == "Enable-ExchangeCertificate")
    assert enable.describe() == (
        f"Enable-ExchangeCertificate -Server 'EX01' -Thumbprint '{thumbprint(new.cert_pem)}' "
        "-Services 'IIS,SMTP' -Force -DoNotRequireSsl"
    )


def test_iisreset_restart(bundles: tuple[Bundle, Bundle]) -> None:
    _, new = bundles
    runner = recorder()
    make("2013", runner, FakeProbe(), restart="iisreset").deploy(new, None)
    resets = [c for c in runner.calls if c.name == "iisreset"]
    assert len(resets) == 2 and resets[0].script is not None and "/noforce" in resets[0].script


def test_options(tmp_path: Path) -> None:
    context = PluginContext(
        clock=None,
        state=MemoryState(),
        data_dir=tmp_path,  # type: ignore[arg-type]
        resolve_secret=lambda ref: "pw",
    )
    good = {
        "version": "2019",
        "servers": ["EX01", {"name": "EX02", "verify": ["10.0.0.12:443"]}],
        "verify": ["mail.contoso.com:443"],
    }
    binder = ExchangeBinder.from_options("ex", good, context)
    assert binder.servers == (
        ExchangeServer("EX01", ("mail.contoso.com:443",)),
        ExchangeServer("EX02", ("10.0.0.12:443",)),
    )
    assert binder.pfx_encryption == "aes256"
    assert ExchangeBinder.from_options("ex", {**good, "version": "2016"}, context).pfx_encryption == "legacy"
    for bad, match in [
        ({**good, "version": "2007"}, r"bindings\.ex\.version"),
        ({**good, "servers": []}, r"bindings\.ex\.servers"),
        ({**good, "services": ["Federation"]}, "federation trust"),
        ({**good, "services": ["UM"]}, "Unified Messaging"),
        ({**good, "restart": "iisreset"}, "remote endpoint cannot recycle"),
        ({**good, "auth": "ntlm"}, "needs username and password"),
        ({**good, "friendly_name": "x" * 64}, r"bindings\.ex\.friendly_name"),
        ({**good, "verify": []}, r"bindings\.ex\.verify: EX01 has no endpoint"),
    ]:
        with pytest.raises(ConfigError, match=match):
            ExchangeBinder.from_options("ex", bad, context)
    local = ExchangeBinder.from_options("ex", {**good, "runner": "local", "restart": "iisreset"}, context)
    assert local.restart == "iisreset"


def test_no_secret_reaches_the_logs(bundles: tuple[Bundle, Bundle], caplog: pytest.LogCaptureFixture) -> None:
    old, new = bundles
    runner = recorder()
    probe = FakeProbe()
    probe.stuck.add("10.0.0.12:443")
    binder = make("2019", runner, probe)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(VerifyError) as caught:
        binder.deploy(new, old)
    imported = next(c for c in runner.calls if c.name == "Import-ExchangeCertificate")
    password = imported.params["Password"].value
    text = caplog.text + str(caught.value) + "\n".join(runner.lines()) + repr(runner.calls)
    assert password not in text
    assert "PRIVATE KEY" not in text
