"""Every PowerShell step the Exchange binder runs, one function per step, grouped by concern.

Exchange cmdlets (``Command`` without a script) go to the Exchange endpoint; Windows steps (a
``param()`` script) go to the default WinRM endpoint, or run in the local ``powershell.exe``.
Every cmdlet that changes state carries ``-ErrorAction Stop``; every script is PowerShell 2.0
(no JSON cmdlets, no ``[ordered]``/``[pscustomobject]``, no ``-in``, no ``::new()``, no
``$PSItem``; ``Import-Module WebAdministration`` where IIS cmdlets are used - 2.0 does not load
modules by itself).

Sources (Microsoft Learn, https://learn.microsoft.com/powershell/module/exchange/<cmdlet>):
Import-, Enable-, Get-, Remove-ExchangeCertificate; Get-AuthConfig; Get-/Set-SendConnector,
Get-/Set-ReceiveConnector, Get-/Set-HybridConfiguration; netsh http
(https://learn.microsoft.com/windows-server/administration/windows-commands/netsh-http);
Restart-WebAppPool and Get-WebConfigurationProperty (WebAdministration module).
"""

from __future__ import annotations

from collections.abc import Sequence

from certkeeper.binders.powershell import SWITCH, Command, ExchangeVersion, Placeholder, SecureString

STOP = ("ErrorAction", "Stop")

# --------------------------------------------------------------------------------- certificates


def get_certificate(server: str, thumb: str) -> Command:
    """Is ``thumb`` on ``server``? (a missing one answers nothing, so SilentlyContinue)."""
    return Command(
        "Get-ExchangeCertificate",
        (("Server", server), ("Thumbprint", thumb), ("ErrorAction", "SilentlyContinue")),
    )


def import_certificate(
    server: str, pfx: bytes, password: str, *, exportable: bool, friendly_name: str
) -> Command:
    """``-FileData`` bytes on every version: ``-FileName`` never existed on 2010 and the 2022 H1
    CUs removed it from 2016/2019 (Import-ExchangeCertificate docs)."""
    return Command(
        "Import-ExchangeCertificate",
        (
            ("Server", server),
            ("FileData", pfx),
            ("Password", SecureString(password)),
            ("PrivateKeyExportable", exportable),
            ("FriendlyName", friendly_name),
            STOP,
        ),
    )


def enable_certificate(
    server: str, thumb: str, services: Sequence[str], *, do_not_require_ssl: bool | Placeholder
) -> Command:
    """Enable-ExchangeCertificate. ``-Force`` only with SMTP (it replaces the default SMTP
    certificate without asking); ``-DoNotRequireSsl`` keeps "Require SSL" off on the Default Web
    Site root when it was off - the cmdlet turns it on otherwise."""
    parameters: list[tuple[str, object]] = [
        ("Server", server),
        ("Thumbprint", thumb),
        ("Services", ",".join(services)),
    ]
    if "SMTP" in services:
        parameters.append(("Force", SWITCH))
    if "IIS" in services:
        parameters.append(("DoNotRequireSsl", do_not_require_ssl))
    parameters.append(STOP)
    return Command("Enable-ExchangeCertificate", tuple(parameters))


def remove_certificate(server: str, thumb: str) -> Command:
    return Command(
        "Remove-ExchangeCertificate",
        (("Server", server), ("Thumbprint", thumb), ("Confirm", False), STOP),
    )


def get_auth_config() -> Command:
    """The OAuth (Auth) certificate's thumbprints, 2013+; certkeeper never removes it."""
    return Command("Get-AuthConfig", ())


# --------------------------------------------------------------------------------- hybrid


def get_send_connectors() -> Command:
    return Command("Get-SendConnector", ())


def get_receive_connectors(server: str) -> Command:
    return Command("Get-ReceiveConnector", (("Server", server),))


def set_send_connector(identity: str | Placeholder, name: str | Placeholder) -> Command:
    return Command("Set-SendConnector", (("Identity", identity), ("TlsCertificateName", name), STOP))


def set_receive_connector(identity: str | Placeholder, name: str | Placeholder) -> Command:
    return Command("Set-ReceiveConnector", (("Identity", identity), ("TlsCertificateName", name), STOP))


def get_hybrid_configuration() -> Command:
    return Command("Get-HybridConfiguration", ())


def set_hybrid_configuration(version: ExchangeVersion, value: str | Placeholder) -> Command:
    """2013+ name the certificate by ``<I>issuer<S>subject`` (``-TlsCertificateName``); Exchange
    2010 SP2/SP3 by thumbprint (``-SecureMailCertificateThumbprint``)."""
    key = "TlsCertificateName" if version.is_2013_or_later else "SecureMailCertificateThumbprint"
    return Command("Set-HybridConfiguration", ((key, value), STOP))


# --------------------------------------------------------------------------------- Windows steps

SSL_BINDINGS_SCRIPT = """\
param()
$lines = @(& netsh.exe http show sslcert)
if ($LASTEXITCODE -ne 0) { throw ('netsh http show sslcert exited with ' + $LASTEXITCODE) }
$lines"""

SSL_FLAGS_SCRIPT = """\
param([string]$Site)
Import-Module WebAdministration
$filter = 'system.webServer/security/access'
$value = Get-WebConfigurationProperty -PSPath 'IIS:\\' -Location $Site -Filter $filter -Name 'sslFlags'
[string]$value"""

RECYCLE_APP_POOLS_SCRIPT = """\
param([string[]]$Names)
Import-Module WebAdministration
foreach ($name in $Names) { Restart-WebAppPool -Name $name -ErrorAction Stop }"""

IISRESET_SCRIPT = """\
param()
$output = & iisreset.exe /noforce 2>&1
if ($LASTEXITCODE -ne 0) { throw ('iisreset exited with ' + $LASTEXITCODE) }"""

SERVICE_STATE_SCRIPT = """\
param([string[]]$Names)
foreach ($name in $Names) {
    $service = Get-WmiObject -Class Win32_Service -Filter ("Name='" + $name + "'")
    if ($null -ne $service) {
        New-Object PSObject -Property @{ Name = $service.Name; StartMode = $service.StartMode; State = $service.State }
    }
}"""

RESTART_SERVICES_SCRIPT = """\
param([string[]]$Names)
foreach ($name in $Names) { Restart-Service -Name $name -ErrorAction Stop }"""

WEB_SITES_SCRIPT = """\
param()
Import-Module WebAdministration
foreach ($site in @(Get-Website)) { [string]$site.Name }"""


def ssl_bindings() -> Command:
    """``netsh http show sslcert``: every HTTP.sys binding, to find SNI bindings hiding 0.0.0.0:443."""
    return Command("netsh http show sslcert", (), script=SSL_BINDINGS_SCRIPT)


def ssl_flags(site: str = "Default Web Site") -> Command:
    """The site root's sslFlags, to keep "Require SSL" as it was."""
    return Command("Get-WebConfigurationProperty sslFlags", (("Site", site),), script=SSL_FLAGS_SCRIPT)


def recycle_app_pools(pools: Sequence[str]) -> Command:
    """OWA may keep the previous certificate for its logon cookies until its pool recycles
    (Enable-ExchangeCertificate docs)."""
    return Command("Restart-WebAppPool", (("Names", tuple(pools)),), script=RECYCLE_APP_POOLS_SCRIPT)


def iisreset() -> Command:
    return Command("iisreset", (), script=IISRESET_SCRIPT)


def service_state(names: Sequence[str]) -> Command:
    """Win32_Service (PowerShell 2.0's Get-Service has no start mode): which services run."""
    return Command("Get-WmiObject Win32_Service", (("Names", tuple(names)),), script=SERVICE_STATE_SCRIPT)


def restart_services(names: Sequence[str]) -> Command:
    """IMAP4/POP3 read their certificate when they start (configure-imap4 docs)."""
    return Command("Restart-Service", (("Names", tuple(names)),), script=RESTART_SERVICES_SCRIPT)


def web_sites() -> Command:
    return Command("Get-Website", (), script=WEB_SITES_SCRIPT)


def mail_services(version: ExchangeVersion, services: Sequence[str]) -> list[str]:
    """The Windows services behind the IMAP/POP protocols enabled on the certificate.

    2013 and later split each into a front-end (Client Access) and a back-end (Mailbox) service;
    2010 has one service each.
    """
    names = []
    if "IMAP" in services:
        names.append("MSExchangeIMAP4")
        if version.is_2013_or_later:
            names.append("MSExchangeIMAP4BE")
    if "POP" in services:
        names.append("MSExchangePOP3")
        if version.is_2013_or_later:
            names.append("MSExchangePOP3BE")
    return names
