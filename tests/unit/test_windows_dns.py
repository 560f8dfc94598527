"""dns-01 on Active Directory DNS at the PowerShell boundary: the exact commands (transcript), the
scripts parsed with tree-sitter-powershell, failures as one line, and the CLI's --dry-run."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Parser

from certkeeper.binders.powershell import SWITCH, LocalRunner, RecordingRunner
from certkeeper.errors import IssuanceError
from certkeeper.issuers.acme.solvers.dns01 import Dns, txt_value
from certkeeper.issuers.acme.solvers.windows_dns import (
    ADD_TXT_SCRIPT,
    REMOVE_TXT_SCRIPT,
    WindowsDns01,
    add_txt_command,
    relative_name,
    remove_txt_command,
)
from tests.fixtures.core import free_port

KEY_AUTHORIZATION = "token-abc.thumbprint-xyz"
VALUE = txt_value(KEY_AUTHORIZATION)
PARSER = Parser(Language(tree_sitter_powershell.language()))


def errors(script: str) -> list[str]:
    """Text of every ERROR or MISSING node of ``script``'s parse tree."""
    found: list[str] = []
    stack = [PARSER.parse(script.encode()).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append(f"{node.start_point}: {node.text!r}")
        stack.extend(node.children)
    return found


def solver(recorder: RecordingRunner, **extra: object) -> WindowsDns01:
    # a resolver nobody answers: no CNAME, no NS lookups reach anything (nothing to wait for)
    tools = Dns(f"127.0.0.1:{free_port()}", timeout=0.2)
    return WindowsDns01(runner=lambda: recorder, dns_server="dc01.contoso.com", zone="contoso.com", ttl=60,
                        dns_tools=tools, cname_delegation=False, **extra)  # type: ignore[arg-type]


def test_present_and_cleanup_run_the_dnsserver_cmdlets() -> None:
    recorder = RecordingRunner()
    windows = solver(recorder)
    windows.present("mail.contoso.com", "t", KEY_AUTHORIZATION)
    windows.cleanup("mail.contoso.com", "t", KEY_AUTHORIZATION)
    windows.present("*.contoso.com", "t", KEY_AUTHORIZATION)
    dc, zone = ("ComputerName", "dc01.contoso.com"), ("ZoneName", "contoso.com")
    assert [(command.name, command.parameters) for command in recorder.calls] == [
        ("Add-DnsServerResourceRecord",
         (dc, zone, ("Name", "_acme-challenge.mail"), ("Txt", SWITCH), ("DescriptiveText", VALUE), ("TimeToLive", 60))),
        ("Remove-DnsServerResourceRecord",
         (dc, zone, ("Name", "_acme-challenge.mail"), ("RRType", "Txt"), ("RecordData", VALUE), ("Force", SWITCH))),
        ("Add-DnsServerResourceRecord",
         (dc, zone, ("Name", "_acme-challenge"), ("Txt", SWITCH), ("DescriptiveText", VALUE), ("TimeToLive", 60))),
    ]
    assert [command.script for command in recorder.calls] == [ADD_TXT_SCRIPT, REMOVE_TXT_SCRIPT, ADD_TXT_SCRIPT]
    assert recorder.closed == 3  # one runner per change, always closed


def test_a_refused_change_is_one_issuance_error_line() -> None:
    recorder = RecordingRunner(fail={"Add-DnsServerResourceRecord": "Failed to create resource record "
                                     "_acme-challenge.mail in zone contoso.com: Access denied."})
    with pytest.raises(IssuanceError) as caught:
        solver(recorder).present("mail.contoso.com", "t", KEY_AUTHORIZATION)
    assert str(caught.value) == ("dns-01: Add-DnsServerResourceRecord failed: Failed to create resource record "
                                 "_acme-challenge.mail in zone contoso.com: Access denied.")


@pytest.mark.parametrize(("fqdn", "zone", "name"), [
    ("_acme-challenge.mail.contoso.com.", "contoso.com.", "_acme-challenge.mail"),
    ("_acme-challenge.contoso.com.", "contoso.com.", "_acme-challenge"),
    ("contoso.com.", "contoso.com.", "@"),
])
def test_relative_name(fqdn: str, zone: str, name: str) -> None:
    assert relative_name(fqdn, zone) == name


def test_relative_name_outside_the_zone_is_refused() -> None:
    with pytest.raises(IssuanceError, match="is not in zone"):
        relative_name("_acme-challenge.mail.fabrikam.com.", "contoso.com.")


@pytest.mark.parametrize("command", [
    add_txt_command("dc01", "contoso.com", "_acme-challenge.mail", VALUE, 60),
    remove_txt_command(None, "contoso.com", "_acme-challenge.mail", VALUE),
], ids=["add", "remove"])
def test_scripts_parse_as_powershell(command: object) -> None:
    script = command.script  # type: ignore[attr-defined]
    assert errors(script) == []
    # and as the local runner sends them: a bootstrap on the command line, the step on stdin
    runner = LocalRunner()
    bootstrap = base64.b64decode(runner.argv()[-1]).decode("utf-16-le")
    assert errors(bootstrap) == []
    assert VALUE not in bootstrap  # the value never appears on the command line
    [script_line] = [line for line in LocalRunner.request(command).decode().splitlines()  # type: ignore[arg-type]
                     if line.startswith("SCRIPT ")]
    sent = base64.b64decode(script_line.removeprefix("SCRIPT ")).decode()
    assert errors(sent) == []


def test_the_parser_catches_a_broken_script() -> None:
    assert errors(ADD_TXT_SCRIPT.replace("if ($present.Count -eq 0) {", "if ($present.Count -eq 0 {")) != []


def test_cli_dry_run_prints_the_commands_and_runs_nothing(ck, home: Path) -> None:  # type: ignore[no-untyped-def]
    (home / "certkeeper.toml").write_text(f"""
[issuers.ad]
type = "acme"
directory = "https://acme.contoso.com/directory"
challenge = "dns-01"
[issuers.ad.dns01]
mode = "windows"
zone = "contoso.com"
dns_server = "dc01.contoso.com"
cname_delegation = false
nameservers = ["127.0.0.1:{free_port()}"]
[issuers.ad.dns01.powershell]
runner = "remote"
host = "dc01.contoso.com"
""")
    result = ck("dns", "test", "--issuer", "ad", "mail.contoso.com", "--dry-run", "--show-script")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == "mail.contoso.com: would"
    assert lines[1].startswith("  Add-DnsServerResourceRecord -ComputerName 'dc01.contoso.com' -ZoneName "
                               "'contoso.com' -Name '_acme-challenge.mail' -Txt -DescriptiveText '")
    assert lines[3].startswith("  Remove-DnsServerResourceRecord -ComputerName 'dc01.contoso.com'")
    assert "Import-Module DnsServer -ErrorAction Stop" in result.out
