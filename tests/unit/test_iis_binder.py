"""The IIS binder at the PowerShell boundary (recording runner; IIS cannot run on Linux)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.binders.iis import IMPORT_PFX_SCRIPT, SET_BINDING_SCRIPT, IisBinder, IisBinding
from certkeeper.binders.powershell import Command, RecordingRunner, SecureString
from certkeeper.binders.windows import thumbprint
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Bundle
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.gateways import TestPKI
from tests.fixtures.powershell_syntax import problems
from tests.support import FakeProbe

BINDINGS = (IisBinding("mail.contoso.com", 443, "*", True), IisBinding("", 8443, "*", False))
BOUND_BEFORE = {443: "1" * 40, 8443: "2" * 40}


def runner_with_bindings() -> RecordingRunner:
    return RecordingRunner(
        outputs={
            "Set-IisSslBinding": lambda c: [BOUND_BEFORE[c.params["Port"]]],
        }
    )


def binder(runner: RecordingRunner, probe: FakeProbe, state: MemoryState | None = None) -> IisBinder:
    return IisBinder(
        "web",
        runner_for=lambda _s: runner,
        server="web01",
        site="Default Web Site",
        bindings=BINDINGS,
        state=state or MemoryState(),
        verify=["web01:443"],
        prober=probe,
    )


@pytest.fixture
def bundles(test_pki: TestPKI) -> tuple[Bundle, Bundle]:
    return test_pki.bundle("mail.contoso.com"), test_pki.bundle("mail.contoso.com")


def test_exact_commands(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    runner, probe = runner_with_bindings(), FakeProbe()
    iis = binder(runner, probe)
    iis.deploy(new, old)
    t = thumbprint(new.cert_pem)
    pfx = runner.calls[2].params["FileData"]
    assert [c.name for c in runner.calls] == [
        "Get-Website",
        "Get-ChildItem",
        "Import-Pfx (X509Store)",
        "Set-IisSslBinding",
        "Set-IisSslBinding",
    ]
    assert runner.calls[1].describe() == (
        f"Get-ChildItem -Path 'Cert:\\LocalMachine\\My\\{t}' -ErrorAction 'SilentlyContinue'"
    )
    assert (
        runner.calls[2]
        .describe()
        .endswith("} -FileData $FileData -Password $Password -StoreName 'My' -Exportable:$false")
    )
    assert (
        runner.calls[3]
        .describe()
        .endswith(
            f"}} -Site 'Default Web Site' -IPAddress '*' -Port 443 -HostHeader 'mail.contoso.com' -Sni:$true "
            f"-Thumbprint '{t}'"
        )
    )
    # PowerShell 2.0 and no Import-PfxCertificate (Windows Server 2012+ only)
    for command in runner.calls:
        assert problems(command.describe(), "2.0") == [], command.describe()
    assert runner.calls[2].script == IMPORT_PFX_SCRIPT and "X509Store" in IMPORT_PFX_SCRIPT
    assert runner.calls[3].script == SET_BINDING_SCRIPT and "AddSslCertificate" in SET_BINDING_SCRIPT
    password = runner.calls[2].params["Password"]
    assert isinstance(password, SecureString)
    assert pkcs12.load_pkcs12(pfx, password.value.encode()).cert is not None
    assert len(probe.calls) == 1 and runner.closed == 1
    assert iis.markers.has("web01", t)


@pytest.mark.parametrize("failing", ["Get-ChildItem", "Import-Pfx (X509Store)", "bind-1", "bind-2", "verify"])
def test_failures_restore_the_bindings_that_changed(failing: str, bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    t = thumbprint(new.cert_pem)
    runner, probe = runner_with_bindings(), FakeProbe(stuck_everywhere=failing == "verify")
    if failing in ("Get-ChildItem", "Import-Pfx (X509Store)"):
        runner.fail[failing] = "Access is denied."
    elif failing.startswith("bind"):
        port = 443 if failing == "bind-1" else 8443

        def fail(command: Command) -> str | None:
            return "injected" if command.params["Port"] == port and command.params["Thumbprint"] == t else None

        runner.fail["Set-IisSslBinding"] = fail
    with pytest.raises(VerifyError if failing == "verify" else BindError) as caught:
        binder(runner, probe).deploy(new, old)
    rebinds = [(c.params["Port"], c.params["Thumbprint"]) for c in runner.calls if c.name == "Set-IisSslBinding"]
    if failing in ("Get-ChildItem", "Import-Pfx (X509Store)", "bind-1"):
        assert "no binding was changed" in str(caught.value)
        assert all(thumb == t for _, thumb in rebinds)
    else:
        # the changed bindings go back to what they had before, last changed first
        back = rebinds[rebinds.index((443, t)) + 1 :]
        expected = (
            [(8443, BOUND_BEFORE[8443]), (443, BOUND_BEFORE[443])]
            if failing == "verify"
            else [(443, BOUND_BEFORE[443])]
        )
        assert [r for r in back if r[1] != t] == expected
    assert not any(c.name == "Remove-Item" for c in runner.calls)
    assert runner.closed == 1


def test_retire_only_what_certkeeper_imported(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    runner = runner_with_bindings()
    iis = binder(runner, FakeProbe())
    iis.retire(old, new)
    assert runner.calls == []
    iis.deploy(old, None)
    iis.deploy(new, old)
    runner.calls.clear()
    iis.retire(old, new)
    assert runner.lines() == [
        f"Remove-Item -Path 'Cert:\\LocalMachine\\My\\{thumbprint(old.cert_pem)}' -ErrorAction 'Stop'"
    ]


def test_a_server_running_exchange_is_refused(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    runner = runner_with_bindings()
    runner.outputs["Get-Website"] = lambda _c: ["Default Web Site", "Exchange Back End"]
    with pytest.raises(BindError, match=r"web01 runs Exchange \(it has the 'Exchange Back End' site\)"):
        binder(runner, FakeProbe()).deploy(new, old)
    assert runner.names() == ["Get-Website"]


def test_dry_run_plan_parses(bundles: tuple[Bundle, Bundle]) -> None:
    old, new = bundles
    steps = binder(runner_with_bindings(), FakeProbe()).plan(new, old)
    assert [s.step for s in steps] == [
        "pre-flight",
        "find",
        "import",
        "bind *:443:mail.contoso.com",
        "bind *:8443:",
        "verify",
        "retire",
    ]
    for step in steps:
        if step.endpoint != "certkeeper":  # the TLS probe runs in certkeeper, not in PowerShell
            assert problems(step.script, "2.0") == [], step.script
    assert "$Password = ConvertTo-SecureString -String '<redacted>' -AsPlainText -Force" in steps[2].script


def test_options_refuse_exchange_back_end(tmp_path: Path) -> None:
    context = PluginContext(clock=None, state=MemoryState(), data_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Back End"):
        IisBinder.from_options("w", {"site": "Exchange Back End", "runner": "local"}, context)
    with pytest.raises(ConfigError, match="port 444"):
        IisBinder.from_options("w", {"bindings": [{"port": 444}], "runner": "local"}, context)
    with pytest.raises(ConfigError, match=r"bindings\.w\.bindings\[0\]\.port"):
        IisBinder.from_options("w", {"bindings": [{"port": 0}], "runner": "local"}, context)
    with pytest.raises(ConfigError, match=r"bindings\.w\.verify: give at least one endpoint"):
        IisBinder.from_options("w", {"server": "web01"}, context)
    ok = IisBinder.from_options(
        "w",
        {"server": "web01", "bindings": [{"host_header": "a", "sni": True}], "verify": ["web01:443"]},
        context,
    )
    assert ok.bindings == (IisBinding("a", 443, "*", True),)
