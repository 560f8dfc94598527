"""The runners at the PowerShell boundary: the local runner's process and line protocol (against a
stand-in process), the remote runner against a PSRP fake whose invocation completes with error
records, and the text every runner sends (parsed with tree-sitter-powershell per version)."""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from certkeeper.binders.exchange import ExchangeBinder, ExchangeServer
from certkeeper.binders.powershell import (
    SWITCH,
    Command,
    ExchangeVersion,
    LocalRunner,
    PowerShellError,
    RemoteRunner,
    SecureString,
    render,
)
from certkeeper.binders.powershell.local import parse_answer
from certkeeper.binders.windows import ServerSession, thumbprint
from certkeeper.errors import BindError, ConfigError
from certkeeper.model import Bundle, EndpointCheck, Verification
from certkeeper.plugins import MemoryState
from tests.fixtures.core import free_port
from tests.fixtures.gateways import TestPKI
from tests.fixtures.powershell_syntax import commands, problems

SECRET = "Tr0ub4dor&3-not-for-logs"


def import_command() -> Command:
    return Command(
        "Import-ExchangeCertificate",
        (
            ("Server", "EX01"),
            ("FileData", b"\x30\x82PFXBYTES"),
            ("Password", SecureString(SECRET)),
            ("PrivateKeyExportable", False),
            ("Services", ("IIS", "SMTP")),
            ("Force", SWITCH),
            ("Port", 443),
            ("FriendlyName", "it's"),
        ),
    )


def test_render_names_variables_for_secrets_and_bytes() -> None:
    text = render(import_command())
    assert text == (
        "Import-ExchangeCertificate -Server 'EX01' -FileData $FileData -Password $Password "
        "-PrivateKeyExportable:$false -Services 'IIS','SMTP' -Force -Port 443 -FriendlyName 'it''s'"
    )
    assert SECRET not in repr(import_command()) and problems(text, "2.0") == []


@pytest.mark.parametrize("version", list(ExchangeVersion))
def test_bootstrap_loads_exchange_the_supported_way_on_powershell_2(version: ExchangeVersion) -> None:
    runner = LocalRunner(exchange=version)
    argv = runner.argv()
    assert argv[:5] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass"]
    script = base64.b64decode(argv[-1]).decode("utf-16-le")
    assert script == runner.bootstrap()
    assert problems(script, "2.0") == []  # the same bootstrap on every version, so 2.0 for all
    called = commands(script)
    assert "Add-PSSnapin" not in called and "Connect-ExchangeServer" in called
    assert "ConvertFrom-Json" not in called and "ConvertTo-Json" not in called
    assert "RemoteExchange.ps1" in script and "Remove-PSSession" in called
    key = "v14" if version is ExchangeVersion.EX2010 else "v15"
    assert f"ExchangeServer\\{key}\\Setup" in script
    assert ("-ClientApplication:ManagementShell" in script) is (version is not ExchangeVersion.EX2010)
    request = runner.request(import_command()).decode()
    assert SECRET not in script and "EX01" not in script
    lines = request.splitlines()
    assert lines[0].startswith("SCRIPT ") and lines[-1] == "RUN"
    assert base64.b64decode(lines[0].split()[1]).decode() == render(import_command())
    assert [line.split()[:2] for line in lines[1:-1]] == [["BYTES", "FileData"], ["SECRET", "Password"]]
    assert base64.b64decode(lines[2].split()[2]).decode() == SECRET


# a stand-in for powershell.exe speaking the same line protocol; every start is logged, so a test
# can count processes
FAKE = """\
import base64, sys
log = open(sys.argv[0] + ".starts", "a"); log.write("start\\n"); log.close()
def b64(text): return base64.b64encode(text.encode()).decode()
print("Welcome to the Exchange Management Shell!", flush=True)
script = ""
for line in sys.stdin:
    line = line.rstrip("\\n")
    if line == "EXIT":
        break
    if line.startswith("SCRIPT "):
        script = base64.b64decode(line.split()[1]).decode()
    elif line == "RUN":
        print("WARNING: banner noise between answers", flush=True)
        print("@@certkeeper@@ BEGIN")
        if script.startswith("Fail-Now"):
            print("E " + b64("Fail-Now : The operation could not be performed."))
        elif script.startswith("Die-Now"):
            sys.stderr.write("fatal: the host crashed\\n"); sys.exit(3)
        elif script.startswith("Get-Thing"):
            print("O"); print("P " + b64("Thumbprint") + " " + b64("ABC"))
            print("L " + b64("Services") + " " + b64("IIS") + " " + b64("SMTP"))
            print("N " + b64("Issuer")); print("S " + b64("plain"))
        print("@@certkeeper@@ END", flush=True)
"""


def test_local_runner_one_process_many_steps_and_errors(tmp_path: Path) -> None:
    fake = tmp_path / "powershell"
    fake.write_text(f"#!{sys.executable}\n{FAKE}")
    fake.chmod(0o755)
    runner = LocalRunner(exchange=ExchangeVersion.EX2010, executable=str(fake), timeout=20)
    assert runner.invoke(Command("Get-Thing")) == [
        {"Thumbprint": "ABC", "Services": ["IIS", "SMTP"], "Issuer": None},
        "plain",
    ]
    assert runner.invoke(import_command()) == []
    with pytest.raises(PowerShellError, match="Fail-Now failed: Fail-Now : The operation could not be performed"):
        runner.invoke(Command("Fail-Now", (("Password", SecureString(SECRET)),)))
    assert runner.invoke(Command("Get-Thing"))  # still the same process
    runner.close()
    assert (tmp_path / "powershell.starts").read_text() == "start\n"  # one process for all steps
    with pytest.raises(PowerShellError, match="powershell ended: fatal: the host crashed"):
        runner.invoke(Command("Die-Now"))
    with pytest.raises(PowerShellError, match="cannot run"):
        LocalRunner(executable=str(tmp_path / "missing")).invoke(Command("Get-Date"))


def test_answer_parsing() -> None:
    b = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    outputs, errors = parse_answer(["O", f"P {b('A')} {b('1')}", f"L {b('Empty')}", f"E {b('boom')}"])
    assert outputs == [{"A": "1", "Empty": []}] and errors == ["boom"]


# ----------------------------------------------------------------------------- PSRP fake


@dataclass
class FakeStreams:
    error: list[Any] = field(default_factory=list)


@dataclass
class FakeShell:
    """pypsrp.powershell.PowerShell's surface: a pipeline built with add_* and an invoke()."""

    server: FakePsrp
    cmdlet: str = ""
    script: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    streams: FakeStreams = field(default_factory=FakeStreams)
    had_errors: bool = False

    def add_cmdlet(self, name: str) -> FakeShell:
        self.cmdlet = name
        return self

    def add_script(self, script: str) -> FakeShell:
        self.script = script
        return self

    def add_parameter(self, key: str, value: Any = True) -> FakeShell:
        self.parameters[key] = value
        return self

    def invoke(self) -> list[Any]:
        self.server.calls.append((self.cmdlet or "<script>", dict(self.parameters)))
        errors = self.server.error_records.get(self.cmdlet, [])
        # Exchange's way: the pipeline completes, records go to the error stream, had_errors False
        self.streams.error.extend(errors)
        return list(self.server.outputs.get(self.cmdlet, []))


@dataclass
class FakePool:
    server: FakePsrp
    keys: int = 0

    def exchange_keys(self) -> None:
        self.keys += 1

    def close(self) -> None:
        self.server.closed += 1


@dataclass
class FakePsrp:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    error_records: dict[str, list[str]] = field(default_factory=dict)
    opened: int = 0
    closed: int = 0

    def runner(self, server: str, configuration: str) -> RemoteRunner:
        def open_pool(_runner: RemoteRunner) -> FakePool:
            self.opened += 1
            return FakePool(self)

        return RemoteRunner(
            server,
            configuration_name=configuration,
            open_pool=open_pool,
            new_shell=lambda pool: FakeShell(self),
            secure=lambda value: ("SS", "<encrypted>"),
        )


def test_remote_runner_fails_on_an_error_record_whatever_had_errors_says() -> None:
    psrp = FakePsrp(error_records={"Enable-ExchangeCertificate": ["The certificate with thumbprint X was not found."]})
    runner = psrp.runner("ex01.contoso.com", "Microsoft.Exchange")
    with pytest.raises(PowerShellError, match=r"ex01\.contoso\.com: The certificate with thumbprint X was not found"):
        runner.invoke(Command("Enable-ExchangeCertificate", (("Thumbprint", "X"), ("ErrorAction", "Stop"))))
    assert psrp.calls == [("Enable-ExchangeCertificate", {"Thumbprint": "X", "ErrorAction": "Stop"})]
    with pytest.raises(PowerShellError, match="scripts cannot run on the Exchange endpoint"):
        runner.invoke(Command("x", (), script="param()"))
    runner.close()
    assert psrp.opened == 1 and psrp.closed == 1


def test_remote_import_with_an_error_record_fails_the_deploy_leaves_no_marker_keeps_the_old_one(
    test_pki: TestPKI,
) -> None:
    """Must show: a remote import that completes with an error record fails the deploy."""
    old = test_pki.bundle("mail.contoso.com", common_name="mail.contoso.com")
    new = test_pki.bundle("mail.contoso.com", common_name="mail.contoso.com")
    psrp = FakePsrp(
        outputs={"netsh http show sslcert": [], "<script>": ["Ssl"]},
        error_records={"Import-ExchangeCertificate": ["Cannot import certificate. The PFX file is not valid."]},
    )

    def sessions(server: str) -> ServerSession:
        return ServerSession(
            server, psrp.runner(server, "Microsoft.Exchange"), psrp.runner(server, "Microsoft.PowerShell")
        )

    probed: list[str] = []

    def probe(bundle: Bundle, endpoints: Any) -> Verification:
        probed.append(bundle.fingerprint)
        return Verification(
            tuple(EndpointCheck(e, "mail.contoso.com", True, bundle.fingerprint, "") for e in endpoints)
        )

    state = MemoryState()
    binder = ExchangeBinder(
        "oa",
        version=ExchangeVersion.EX2016,
        servers=[ExchangeServer("ex01.contoso.com", ("10.0.0.11:443",))],
        sessions=sessions,
        state=state,
        prober=probe,
    )
    with pytest.raises(BindError) as caught:
        binder.deploy(new, old)
    assert str(caught.value).startswith("oa: ex01.contoso.com: import: Import-ExchangeCertificate failed: ")
    assert "The PFX file is not valid" in str(caught.value) and "nothing was changed on ex01.contoso.com" in str(
        caught.value
    )
    sent = [name for name, _ in psrp.calls]
    assert "Enable-ExchangeCertificate" not in sent  # the previous certificate stays enabled
    assert state.keys() == [] and not binder.markers.has("ex01.contoso.com", thumbprint(new.cert_pem))
    assert probed == []
    imported = next(params for name, params in psrp.calls if name == "Import-ExchangeCertificate")
    assert imported["Password"] == ("SS", "<encrypted>") and imported["ErrorAction"] == "Stop"
    assert psrp.opened == psrp.closed == 2  # both sessions to the server closed


def test_remote_runner_translates_transport_errors_and_refuses_bad_auth() -> None:
    runner = RemoteRunner(
        "127.0.0.1", auth="negotiate", username="u", password=lambda: SECRET, port=free_port(), timeout=5
    )
    with pytest.raises(PowerShellError) as caught:
        runner.invoke(import_command())
    assert "Import-ExchangeCertificate failed: 127.0.0.1:" in str(caught.value) and SECRET not in str(caught.value)
    runner.close()
    with pytest.raises(ConfigError, match="use kerberos, ntlm or negotiate"):
        RemoteRunner("ex01", auth="basic")


def test_kerberos_missing_says_what_to_install() -> None:
    from certkeeper.binders.powershell import kerberos_missing

    try:
        import gssapi  # noqa: F401
    except ImportError:
        missing = kerberos_missing()
        assert missing and "pip install 'certkeeper[kerberos]'" in missing[0]
        runner = RemoteRunner("ex01.contoso.com", auth="kerberos", port=free_port(), timeout=5)
        with pytest.raises(PowerShellError, match="Kerberos is not available: the Python gssapi library"):
            runner.invoke(Command("Get-ExchangeServer"))
    else:  # pragma: no cover - a machine with the kerberos extra installed
        assert kerberos_missing() == []
