"""PowerShell commands and runners: masking, the local runner's plumbing, the remote runner's errors."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from certkeeper.binders.powershell import (
    SWITCH,
    Command,
    ExchangeVersion,
    LocalRunner,
    PowerShellError,
    RemoteRunner,
    SecureString,
)
from certkeeper.errors import ConfigError
from tests.fixtures.core import free_port

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


def test_describe_masks_secrets_and_bytes() -> None:
    command = import_command()
    assert command.describe() == (
        "Import-ExchangeCertificate -Server 'EX01' -FileData <10 bytes> -Password <SecureString> "
        "-PrivateKeyExportable:$false -Services 'IIS','SMTP' -Force -Port 443 -FriendlyName 'it''s'"
    )
    assert SECRET not in repr(command) and SECRET not in str(command)


@pytest.mark.parametrize("version", list(ExchangeVersion))
def test_local_runner_command_line_holds_no_values(version: ExchangeVersion) -> None:
    runner = LocalRunner(exchange=version)
    argv = runner.argv(import_command())
    assert argv[:5] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass"]
    script = base64.b64decode(argv[-1]).decode("utf-16-le")
    if version is ExchangeVersion.EX2010:
        assert "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.E2010" in script
        assert "RemoteExchange.ps1" not in script
    else:
        assert "bin\\RemoteExchange.ps1" in script and "Connect-ExchangeServer -Auto" in script
    joined = " ".join(argv) + script
    assert SECRET not in joined and "PFXBYTES" not in joined and "EX01" not in joined
    # values travel on stdin, typed inside PowerShell
    request = json.loads(runner.request(import_command()))
    kinds = {item["name"]: item["kind"] for item in request["parameters"]}
    assert kinds == {
        "Server": "value",
        "FileData": "bytes",
        "Password": "secret",
        "PrivateKeyExportable": "value",
        "Services": "list",
        "Force": "switch",
        "Port": "value",
        "FriendlyName": "value",
    }
    assert "ConvertTo-SecureString" in script and "FromBase64String" in script


FAKE = """\
import json, sys
request = json.loads(sys.stdin.read())
if request["name"] == "Fail-Now":
    sys.stderr.write("Fail-Now : The operation could not be performed.\\n    + more detail\\n")
    sys.exit(1)
if request["name"] == "No-Marker":
    print("Welcome to the Exchange Management Shell!")
    sys.exit(0)
print("Welcome to the Exchange Management Shell!")
print("@@certkeeper-output@@")
if request["name"] != "Get-Nothing":
    print(json.dumps({"Name": request["name"], "Args": len(sys.argv)}))
"""


def test_local_runner_runs_and_reports_errors(tmp_path: Path) -> None:
    fake = tmp_path / "powershell"
    fake.write_text(f"#!{sys.executable}\n{FAKE}")
    fake.chmod(0o755)
    runner = LocalRunner(exchange=ExchangeVersion.EX2019, executable=str(fake))
    assert runner.invoke(import_command()) == [{"Name": "Import-ExchangeCertificate", "Args": 7}]
    assert runner.invoke(Command("Get-Nothing")) == []  # banner text is not mistaken for output
    with pytest.raises(PowerShellError, match="without its output marker"):
        runner.invoke(Command("No-Marker"))
    with pytest.raises(
        PowerShellError, match="Fail-Now failed: Fail-Now : The operation could not"
    ) as caught:
        runner.invoke(Command("Fail-Now", (("Password", SecureString(SECRET)),)))
    assert caught.value.command == "Fail-Now -Password <SecureString>"
    with pytest.raises(PowerShellError, match="cannot run"):
        LocalRunner(executable=str(tmp_path / "missing")).invoke(Command("Get-Date"))


def test_remote_runner_translates_transport_errors() -> None:
    runner = RemoteRunner(
        "127.0.0.1", auth="ntlm", username="u", password=lambda: SECRET, port=free_port(), timeout=5
    )
    with pytest.raises(PowerShellError) as caught:
        runner.invoke(import_command())
    assert "Import-ExchangeCertificate failed: 127.0.0.1:" in str(caught.value)
    assert SECRET not in str(caught.value)
    runner.close()
    with pytest.raises(ConfigError, match="use kerberos, ntlm or negotiate"):
        RemoteRunner("ex01", auth="basic")
