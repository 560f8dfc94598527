"""dns-01 on Active Directory DNS: ``Add-DnsServerResourceRecord -Txt`` and
``Remove-DnsServerResourceRecord`` through the PowerShell runner.

AD-integrated zones are usually set to accept only *secure* dynamic updates (GSS-TSIG, Kerberos),
which RFC 2136 with a TSIG key cannot do. The DnsServer module's cmdlets run as the account that
runs PowerShell (the certkeeper service account, or the PSRP user), which needs the right to
create records in the zone (a member of DnsAdmins, or a delegated permission on the zone).

Both commands are fixed scripts standing for the cmdlet they call, with the cmdlet's own
parameter names, so the transcript (``Command.summary``) reads as the real command and the
scripts are idempotent: the add skips a value already there, the removal deletes only the record
whose text is the value (a wildcard and its base name share one name with two values).
The scripts are checked by parsing them with tree-sitter-powershell in the tests; they were not
run against a Windows DNS server here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dns.name

from certkeeper.binders.powershell import SWITCH, Command, PowerShellError, RecordingRunner, Runner
from certkeeper.errors import IssuanceError

from .dns01 import Dns, _Dns01Base, txt_value

log = logging.getLogger(__name__)

ADD_TXT_SCRIPT = """\
param([string]$ComputerName, [string]$ZoneName, [string]$Name, [switch]$Txt, [string]$DescriptiveText,
      [int]$TimeToLive)
Import-Module DnsServer -ErrorAction Stop
$zone = @{ ZoneName = $ZoneName }
if ($ComputerName) { $zone['ComputerName'] = $ComputerName }
$present = @(Get-DnsServerResourceRecord @zone -Name $Name -RRType Txt -ErrorAction SilentlyContinue |
    Where-Object { $_.RecordData.DescriptiveText -ceq $DescriptiveText })
if ($present.Count -eq 0) {
    $ttl = New-TimeSpan -Seconds $TimeToLive
    Add-DnsServerResourceRecord @zone -Name $Name -Txt -DescriptiveText $DescriptiveText -TimeToLive $ttl
}
$present.Count"""

REMOVE_TXT_SCRIPT = """\
param([string]$ComputerName, [string]$ZoneName, [string]$Name, [string]$RRType, [string]$RecordData,
      [switch]$Force)
Import-Module DnsServer -ErrorAction Stop
$zone = @{ ZoneName = $ZoneName }
if ($ComputerName) { $zone['ComputerName'] = $ComputerName }
$records = @(Get-DnsServerResourceRecord @zone -Name $Name -RRType $RRType -ErrorAction SilentlyContinue |
    Where-Object { $_.RecordData.DescriptiveText -ceq $RecordData })
foreach ($record in $records) {
    Remove-DnsServerResourceRecord @zone -InputObject $record -Force
}
$records.Count"""


def relative_name(fqdn: str, zone: str) -> str:
    """``_acme-challenge.mail`` for ``_acme-challenge.mail.contoso.com.`` in ``contoso.com.``
    (``@`` for the apex), as the DnsServer cmdlets want ``-Name``."""
    name, origin = dns.name.from_text(fqdn), dns.name.from_text(zone)
    if not name.is_subdomain(origin):
        raise IssuanceError(f"dns-01: {fqdn} is not in zone {zone}")
    relative = name.relativize(origin)
    return "@" if relative == dns.name.empty else relative.to_text()


def add_txt_command(dns_server: str | None, zone: str, name: str, value: str, ttl: int) -> Command:
    return Command(
        "Add-DnsServerResourceRecord",
        (("ComputerName", dns_server or ""), ("ZoneName", zone.rstrip(".")), ("Name", name), ("Txt", SWITCH),
         ("DescriptiveText", value), ("TimeToLive", ttl)),
        script=ADD_TXT_SCRIPT,
    )


def remove_txt_command(dns_server: str | None, zone: str, name: str, value: str) -> Command:
    return Command(
        "Remove-DnsServerResourceRecord",
        (("ComputerName", dns_server or ""), ("ZoneName", zone.rstrip(".")), ("Name", name), ("RRType", "Txt"),
         ("RecordData", value), ("Force", SWITCH)),
        script=REMOVE_TXT_SCRIPT,
    )


class WindowsDns01(_Dns01Base):
    """Publishes the TXT record in a Windows DNS zone with the DnsServer PowerShell module."""

    def __init__(self, *, runner: Callable[[], Runner], dns_server: str | None = None, zone: str | None = None,
                 ttl: int = 60, dns_tools: Dns | None = None, cname_delegation: bool = True,
                 propagation_timeout: float = 120, nameservers: tuple[str, ...] = ()) -> None:
        super().__init__(dns_tools or Dns(), cname_delegation, propagation_timeout, nameservers)
        self.runner = runner
        self.dns_server = dns_server
        self.zone = zone.rstrip(".") + "." if zone else None
        self.ttl = ttl

    def _zone_for(self, fqdn: str) -> str:
        if self.zone and dns.name.from_text(fqdn).is_subdomain(dns.name.from_text(self.zone)):
            return self.zone
        return self.dns.zone_of(fqdn)

    def _commands(self, domain: str, key_authorization: str) -> tuple[str, str, str, Command, Command]:
        fqdn, value = self.target(domain), txt_value(key_authorization)
        zone = self._zone_for(fqdn)
        name = relative_name(fqdn, zone)
        return (fqdn, value, zone, add_txt_command(self.dns_server, zone, name, value, self.ttl),
                remove_txt_command(self.dns_server, zone, name, value))

    def _run(self, command: Command, runner: Runner | None = None) -> None:
        own = runner is None
        active = runner or self.runner()
        try:
            active.invoke(command)
        except PowerShellError as exc:
            raise IssuanceError(f"dns-01: {exc}") from None
        finally:
            if own:
                active.close()

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        fqdn, value, zone, add, _remove = self._commands(domain, key_authorization)
        self._run(add)
        log.info("dns-01: Windows DNS: added TXT %s in zone %s", fqdn, zone)
        self.wait_published(fqdn, value, zone)

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        fqdn, _value, zone, _add, remove = self._commands(domain, key_authorization)
        self._run(remove)
        log.info("dns-01: Windows DNS: removed TXT %s from zone %s", fqdn, zone)

    def plan(self, domain: str, key_authorization: str) -> list[str]:
        """The PowerShell commands present and cleanup run, recorded (nothing runs)."""
        fqdn, _value, zone, add, remove = self._commands(domain, key_authorization)
        recorder = RecordingRunner()
        self._run(add, recorder)
        self._run(remove, recorder)
        lines = [command.summary() for command in recorder.calls]
        servers = self.nameservers or self.dns.zone_nameservers(zone)
        where = ", ".join(f"{host}:{port}" for host, port in servers) or f"(no name servers found for {zone})"
        return [lines[0], f"wait until {where} answer for {fqdn} (up to {self.propagation_timeout:g} s)", lines[1]]

    def scripts(self, domain: str, key_authorization: str) -> list[Command]:
        """The two commands with their scripts, for ``certkeeper dns test --dry-run --show-script``."""
        _fqdn, _value, _zone, add, remove = self._commands(domain, key_authorization)
        return [add, remove]
