"""``certkeeper doctor``: the pre-flight an Exchange admin runs before trusting renewal.

One line per check, ok / warn / fail, with what to do. Read-only: Exchange cmdlets that only
read, ``netsh http show sslcert`` and the site's ``sslFlags``.

Sources: Auth certificate (Get-AuthConfig; CSS-Exchange HealthChecker's AuthCertificateCheck,
https://microsoft.github.io/CSS-Exchange/Diagnostics/HealthChecker/AuthCertificateCheck/); Back
End 444 binding and SNI (netsh http, https://learn.microsoft.com/windows-server/administration/windows-commands/netsh-http);
ECC support (CSS-Exchange HealthChecker, Exchange 2016 CU23 / 2019 CU13+ with the April 2024
hotfix update); the account's rights (a cmdlet it cannot run is the proof); certificate Status
(Get-ExchangeCertificate docs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from certkeeper.binders.exchange import parse, scripts
from certkeeper.binders.powershell import Command, ExchangeVersion, kerberos_missing
from certkeeper.binders.windows import ServerSession
from certkeeper.errors import BindError
from certkeeper.hostnames import covers
from certkeeper.outlook.planner import principal_host

WARN_DAYS = 60  # HealthChecker: green from 60 days


@dataclass(frozen=True)
class DoctorLine:
    server: str
    check: str
    status: str  # ok | warn | fail
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"server": self.server, "check": self.check, "status": self.status, "message": self.message}


def _not_after(record: dict[str, object]) -> datetime | None:
    text = str(record.get("NotAfter") or "").strip()
    for pattern in ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


def environment(remote_kerberos: bool) -> list[DoctorLine]:
    """Checks on this machine: Kerberos libraries when the remote runner uses Kerberos."""
    if not remote_kerberos:
        return []
    missing = kerberos_missing()
    if missing:
        return [DoctorLine("-", "kerberos", "fail", "missing: " + "; ".join(missing))]
    return [DoctorLine("-", "kerberos", "ok", "gssapi available; use a UPN user name and each server's own FQDN")]


def run(
    session: ServerSession,
    version: ExchangeVersion,
    *,
    now: datetime,
    key_is_ecdsa: bool = False,
) -> list[DoctorLine]:
    """Every check for one server."""
    server = session.server
    lines: list[DoctorLine] = []

    def add(check: str, status: str, message: str) -> None:
        lines.append(DoctorLine(server, check, status, message))

    def read(command: Command, on: str = "exchange") -> list[object] | None:
        runner = session.exchange if on == "exchange" else session.windows
        try:
            return runner.invoke(command)
        except BindError as exc:
            add(f"read {command.name}", "fail", f"{exc} (does the account have the Exchange role?)")
            return None

    rights = read(Command("Get-ExchangeServer", (("Identity", server),)))
    if rights is None:
        return lines  # nothing else can be read
    add("rights", "ok", "the account can run Exchange cmdlets on this server")
    certificates = read(Command("Get-ExchangeCertificate", (("Server", server),))) or []
    records = [item for item in certificates if isinstance(item, dict)]
    by_thumb = {str(r.get("Thumbprint", "")).upper(): r for r in records}
    if version.is_2013_or_later:
        auth = parse.first_record(read(scripts.get_auth_config()) or [])
        current = str((auth or {}).get("CurrentCertificateThumbprint") or "").upper()
        record = by_thumb.get(current)
        if record is None:
            add(
                "auth-certificate",
                "fail",
                f"the Auth certificate {current or '(none)'} is not on this server: "
                "OWA/ECP and hybrid break (run CSS-Exchange MonitorExchangeAuthCertificate.ps1)",
            )
        else:
            expires = _not_after(record)
            days = (expires - now.replace(tzinfo=None)).days if expires else None
            if days is None:
                add("auth-certificate", "warn", f"cannot read NotAfter of {current}")
            elif days < 0:
                add("auth-certificate", "fail", f"the Auth certificate {current} expired {-days} days ago")
            elif days < WARN_DAYS:
                add(
                    "auth-certificate",
                    "warn",
                    f"the Auth certificate {current} expires in {days} days: renew it "
                    "(New-ExchangeCertificate + Set-AuthConfig)",
                )
            else:
                add("auth-certificate", "ok", f"{current} valid for {days} more days")
    bindings = parse.ssl_bindings(read(scripts.ssl_bindings(), "windows") or [])
    back_end = [b for b in bindings if b.port == 444 and b.kind == "ip"]
    if not back_end:
        add("back-end-444", "fail", "no 0.0.0.0:444 binding: the Exchange Back End site has no certificate")
    elif back_end[0].certificate_hash not in by_thumb:
        add(
            "back-end-444",
            "fail",
            f"0.0.0.0:444 names {back_end[0].certificate_hash}, which is not on this server "
            "(event 15021): bind the Exchange self-signed certificate to the Back End site again",
        )
    else:
        add("back-end-444", "ok", f"0.0.0.0:444 uses {back_end[0].certificate_hash} (certkeeper never touches it)")
    hiding = [b for b in bindings if b.hides_exchange]
    if hiding:
        add(
            "sni-bindings",
            "fail",
            "host-name bindings on 443 hide 0.0.0.0:443 from SNI clients: "
            + ", ".join(b.address for b in hiding)
            + " (netsh http delete sslcert hostnameport=...)",
        )
    else:
        add("sni-bindings", "ok", "no host-name binding on 443 hides Exchange's 0.0.0.0:443")
    flags = read(scripts.ssl_flags(), "windows")
    if flags is not None:
        required = parse.requires_ssl(flags[0] if flags else "")
        add(
            "require-ssl",
            "ok",
            "the Default Web Site root requires SSL; kept"
            if required
            else "the Default Web Site root does not require SSL; certkeeper passes -DoNotRequireSsl to keep it so",
        )
    if key_is_ecdsa:
        if version in (ExchangeVersion.EX2010, ExchangeVersion.EX2013):
            add("ecc", "fail", f"Exchange {version.value} does not support ECDSA certificates: use key_type = rsa2048")
        else:
            add(
                "ecc",
                "warn",
                "ECDSA needs Exchange 2016 CU23 / 2019 CU13+ with the April 2024 hotfix update and "
                "EnableEccCertificateSupport set; RSA 2048 works everywhere",
            )
    else:
        add("ecc", "ok", "RSA key: supported on every version")
    iis = [r for r in records if "IIS" in str(r.get("Services", "")).replace(" ", "").split(",")]
    for record in iis:
        status = str(record.get("Status", ""))
        add(
            "certificate-status",
            "ok" if status == "Valid" else "fail",
            f"{record.get('Thumbprint')} (IIS): Status {status or 'unknown'}",
        )
    oa = parse.first_record(
        read(Command("Get-OutlookAnywhere", (("Server", server), ("ADPropertiesOnly", True)))) or []
    )
    provider = parse.first_record(read(Command("Get-OutlookProvider", (("Identity", "EXPR"),))) or [])
    domains: Sequence[str] = [str(d).lower() for r in iis for d in (r.get("CertificateDomains") or [])]
    external = str((oa or {}).get("ExternalHostname") or "").lower()
    principal = str((provider or {}).get("CertPrincipalName") or "") or (f"msstd:{external}" if external else "")
    if not iis:
        add("names", "fail", "no certificate is enabled for IIS on this server")
    else:
        for label, host in (("outlook-anywhere-host", external), ("expr-principal", principal_host(principal))):
            if not host:
                add(label, "warn", "not set")
            elif any(covers(name, host) or name == host for name in domains):
                add(label, "ok", f"{host} is on the IIS certificate")
            else:
                add(label, "fail", f"{host} is not on the IIS certificate ({', '.join(domains) or 'no names'})")
    return lines


def startup_problems(bindings: Sequence[dict[str, object]]) -> list[str]:
    """At start-up: what this machine lacks for the exchange bindings it will run ([] when nothing).

    A remote runner with Kerberos (the default) needs the Kerberos libraries on Linux; saying so
    when the daemon starts beats a failed renewal weeks later.
    """
    remote_kerberos = [
        str(b.get("name") or "exchange")
        for b in bindings
        if b.get("type") == "exchange"
        and b.get("runner", "remote") == "remote"
        and b.get("auth", "kerberos") == "kerberos"
    ]
    missing = kerberos_missing() if remote_kerberos else []
    if not missing:
        return []
    return [
        f"exchange binding(s) {', '.join(remote_kerberos)} use Kerberos, and this machine lacks {m}" for m in missing
    ]
