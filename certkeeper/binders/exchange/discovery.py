"""``certkeeper plan --from-exchange SERVER``: read the server's own settings, read-only.

Reads (Microsoft Learn, https://learn.microsoft.com/powershell/module/exchange/<cmdlet>):
``Get-OutlookAnywhere`` (ExternalHostname, InternalHostname, client authentication methods,
SSLOffloading), the virtual directories' URLs with ``-ADPropertiesOnly`` (no IIS metabase read),
the Autodiscover SCP (``Get-ClientAccessServer``, ``Get-ClientAccessService`` from 2016),
``Get-AcceptedDomain``, ``Get-OutlookProvider EXPR`` (CertPrincipalName), ``Get-ImapSettings`` and
``Get-PopSettings``. Internal URLs count too: Outlook checks the SCP, EWS and OAB internal URLs
against the certificate (KB940726, https://support.microsoft.com/kb/940726).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from certkeeper.binders.powershell import Command, ExchangeVersion, Runner
from certkeeper.errors import BindError
from certkeeper.hostnames import covers, is_internal
from certkeeper.outlook.planner import Plan, PlanNote, plan, principal_host

VIRTUAL_DIRECTORIES = (
    ("Get-OwaVirtualDirectory", "Set-OwaVirtualDirectory"),
    ("Get-EcpVirtualDirectory", "Set-EcpVirtualDirectory"),
    ("Get-WebServicesVirtualDirectory", "Set-WebServicesVirtualDirectory"),
    ("Get-ActiveSyncVirtualDirectory", "Set-ActiveSyncVirtualDirectory"),
    ("Get-OabVirtualDirectory", "Set-OabVirtualDirectory"),
    ("Get-MapiVirtualDirectory", "Set-MapiVirtualDirectory"),  # 2013 SP1 and later
)


def reads(version: ExchangeVersion, server: str) -> list[Command]:
    """Every read-only cmdlet ``plan --from-exchange`` sends, in order."""
    commands = [Command("Get-OutlookAnywhere", (("Server", server), ("ADPropertiesOnly", True)))]
    for getter, _ in VIRTUAL_DIRECTORIES:
        if getter == "Get-MapiVirtualDirectory" and not version.is_2013_or_later:
            continue
        commands.append(Command(getter, (("Server", server), ("ADPropertiesOnly", True))))
    scp = "Get-ClientAccessService" if version.is_2016_or_later else "Get-ClientAccessServer"
    commands += [
        Command(scp, (("Identity", server),)),
        Command("Get-AcceptedDomain", ()),
        Command("Get-OutlookProvider", (("Identity", "EXPR"),)),
        Command("Get-ImapSettings", (("Server", server),)),
        Command("Get-PopSettings", (("Server", server),)),
    ]
    return commands


@dataclass(frozen=True)
class Found:
    """One name the server uses, where it was read, and the cmdlet that changes it."""

    host: str
    source: str
    fix: str


@dataclass
class Discovery:
    external_host: str
    internal_host: str | None
    principal: str | None
    domains: list[str] = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    auth: dict[str, str] = field(default_factory=dict)


def _host(url: Any) -> str | None:
    text = str(url or "").strip()
    if not text:
        return None
    return (urlsplit(text if "://" in text else f"https://{text}").hostname or "").lower() or None


def _first(output: Sequence[Any]) -> dict[str, Any]:
    return next((item for item in output if isinstance(item, dict)), {})


def discover(runner: Runner, version: ExchangeVersion, server: str) -> Discovery:
    """Read the settings; raises BindError naming the cmdlet when one cannot be read."""
    answers = {command.name: runner.invoke(command) for command in reads(version, server)}
    oa = _first(answers["Get-OutlookAnywhere"])
    external = _host(oa.get("ExternalHostname"))
    if not external:
        raise BindError(
            f"Get-OutlookAnywhere on {server} has no ExternalHostname: set it first "
            "(Set-OutlookAnywhere -ExternalHostname mail.contoso.com)"
        )
    result = Discovery(external, _host(oa.get("InternalHostname")), None)
    for key in (
        "ClientAuthenticationMethod",
        "ExternalClientAuthenticationMethod",
        "InternalClientAuthenticationMethod",
        "IISAuthenticationMethods",
        "SSLOffloading",
    ):
        if oa.get(key) not in (None, ""):
            result.auth[key] = str(oa.get(key))
    if result.internal_host:
        result.found.append(Found(result.internal_host, "Get-OutlookAnywhere InternalHostname", "Set-OutlookAnywhere"))
    for getter, setter in VIRTUAL_DIRECTORIES:
        for record in answers.get(getter, []):
            if not isinstance(record, dict):
                continue
            for key in ("InternalUrl", "ExternalUrl"):
                host = _host(record.get(key))
                if host:
                    result.found.append(Found(host, f"{getter} {key} {record.get(key)}", f"{setter} -{key}"))
    scp_name = "Get-ClientAccessService" if version.is_2016_or_later else "Get-ClientAccessServer"
    scp = _host(_first(answers[scp_name]).get("AutoDiscoverServiceInternalUri"))
    if scp:
        setter = "Set-ClientAccessService" if version.is_2016_or_later else "Set-ClientAccessServer"
        result.found.append(
            Found(scp, f"{scp_name} AutoDiscoverServiceInternalUri", f"{setter} -AutoDiscoverServiceInternalUri")
        )
    for record in answers["Get-AcceptedDomain"]:
        if isinstance(record, dict) and str(record.get("DomainType", "Authoritative")) == "Authoritative":
            domain = str(record.get("DomainName") or "").lower()
            if domain and not domain.startswith("*"):
                result.domains.append(domain)
    principal = _first(answers["Get-OutlookProvider"]).get("CertPrincipalName")
    result.principal = str(principal) if principal else None
    for getter, setter in (("Get-ImapSettings", "Set-ImapSettings"), ("Get-PopSettings", "Set-PopSettings")):
        record = _first(answers[getter])
        name = str(record.get("X509CertificateName") or "").lower()
        if name:
            result.found.append(Found(name, f"{getter} X509CertificateName", f"{setter} -X509CertificateName"))
    return result


def plan_from(discovery: Discovery, *, public_ca: bool = True) -> Plan:
    """The names the certificate needs and every mismatch, as one planner result."""
    extra = []
    for item in discovery.found:
        if item.host not in extra and not (public_ca and is_internal(item.host)):
            extra.append(item.host)
    result = plan(
        discovery.external_host,
        tuple(discovery.domains),
        principal=discovery.principal,
        public_ca=public_ca,
        extra_names=tuple(extra),
    )
    notes = list(result.notes)
    for item in discovery.found:
        if not any(covers(name, item.host) or name == item.host for name in result.names):
            notes.append(
                PlanNote(
                    "url-not-covered",
                    "error",
                    f"{item.source}: the certificate will not cover {item.host}; point it at a public name with "
                    f"{item.fix} (split DNS)",
                )
            )
    if discovery.principal:
        wanted = principal_host(discovery.principal)
        if not any(covers(name, wanted) or name == wanted for name in result.names):
            notes.append(
                PlanNote(
                    "expr-principal",
                    "error",
                    f"Get-OutlookProvider EXPR CertPrincipalName {discovery.principal} matches no certificate name; "
                    f'Set-OutlookProvider EXPR -CertPrincipalName "msstd:{discovery.external_host}"',
                )
            )
    return Plan(result.common_name, result.names, result.principal, tuple(notes))
