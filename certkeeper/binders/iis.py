"""The ``iis`` binder: import a PFX into LocalMachine\\My and point https bindings at it.

For IIS sites that are not Exchange (Exchange sites: use the ``exchange`` binder, which keeps
Exchange's own metadata right). Example binding::

    [[certificates.bindings]]
    type = "iis"
    server = "web01.contoso.com"          # remote: WinRM (PSRP), default endpoint; or runner = "local"
    site = "Default Web Site"
    bindings = [{ host_header = "mail.contoso.com", port = 443, sni = true }]
    verify = ["web01.contoso.com:443"]

Steps:

0. Refuse a server that runs Exchange (it has an "Exchange Back End" site): Exchange keeps its
   own metadata for its bindings; use the ``exchange`` binder there.
1. ``Get-ChildItem -Path Cert:\\LocalMachine\\My\\<T>`` - already there? then no import.
2. Import into LocalMachine\\My with ``X509Certificate2`` + ``X509Store`` (PowerShell 2.0, the
   bytes in memory); certkeeper records that it imported T once the bindings are verified.
3. For each binding: ``Set-IisSslBinding`` (a fixed script over the WebAdministration module):
   create the https binding if missing, then ``AddSslCertificate(T, 'My')``; it returns the
   thumbprint bound before, kept for rollback.
4. Verify by TLS handshake (settle time: IIS may serve the old certificate briefly). On failure
   every changed binding gets its previous thumbprint back and the error names the step.

``retire`` removes the previous certificate from LocalMachine\\My only if certkeeper imported it.
The Exchange Back End site and port 444 are refused in the options.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from certkeeper.binders import PlannedStep, probe
from certkeeper.binders.exchange.scripts import web_sites
from certkeeper.binders.powershell import Command, PowerShellError, Runner, SecureString, dry_run_text
from certkeeper.binders.windows import (
    InstalledMarkers,
    Prober,
    RunnerOptions,
    default_prober,
    make_pfx,
    runner_factory,
    thumbprint,
)
from certkeeper.config import validate_options
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Bundle, Verification
from certkeeper.plugins import MemoryState, PluginContext, StateStore

log = logging.getLogger(__name__)

STORE = "Cert:\\LocalMachine\\My"

# X509Certificate2 + X509Store instead of Import-PfxCertificate: that cmdlet needs Windows Server
# 2012+ and stores keys in ways that make them unusable in some cases (Posh-ACME.Deploy,
# https://github.com/rmbolger/Posh-ACME.Deploy); this works on PowerShell 2.0 and takes the bytes
# directly, so no PFX file ever lands on the disk.
IMPORT_PFX_SCRIPT = """\
param([byte[]]$FileData, [securestring]$Password, [string]$StoreName, [bool]$Exportable)
$storage = 'MachineKeySet, PersistKeySet'
if ($Exportable) { $storage += ', Exportable' }
$flags = [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]$storage
$type = 'System.Security.Cryptography.X509Certificates.X509Certificate2'
$certificate = New-Object $type -ArgumentList $FileData, $Password, $flags
$store = New-Object System.Security.Cryptography.X509Certificates.X509Store -ArgumentList $StoreName, 'LocalMachine'
$store.Open('ReadWrite')
try { $store.Add($certificate) } finally { $store.Close() }
$certificate.Thumbprint"""

SET_BINDING_SCRIPT = """\
param([string]$Site, [string]$IPAddress, [int]$Port, [string]$HostHeader, [bool]$Sni, [string]$Thumbprint)
Import-Module WebAdministration
$where = @{ Name = $Site; Protocol = 'https'; Port = $Port; HostHeader = $HostHeader; IPAddress = $IPAddress }
$binding = Get-WebBinding @where
if (-not $binding) {
    New-WebBinding @where -SslFlags ([int]$Sni)
    $binding = Get-WebBinding @where
}
$before = [string]$binding.certificateHash
if ($before -ne $Thumbprint) { $binding.AddSslCertificate($Thumbprint, 'My') }
$before"""


class BindingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host_header: str = ""
    port: int = Field(default=443, gt=0, lt=65536)
    ip_address: str = "*"
    sni: bool = False


class IisOptions(RunnerOptions):
    server: str = "localhost"
    site: str = "Default Web Site"
    bindings: tuple[BindingOptions, ...] = (BindingOptions(),)
    exportable: bool = False
    pfx_encryption: Literal["aes256", "legacy"] = "legacy"
    verify: tuple[str, ...] = ()
    settle_seconds: float = Field(default=30, ge=0)
    probe_timeout: float = Field(default=10, gt=0)
    port: int | None = None
    path: str = "wsman"
    configuration_name: str = "Microsoft.PowerShell"


@dataclass(frozen=True)
class IisBinding:
    host_header: str = ""
    port: int = 443
    ip_address: str = "*"
    sni: bool = False

    def describe(self) -> str:
        return f"{self.ip_address}:{self.port}:{self.host_header}"


class IisBinder:
    """Imports a PFX into the machine store and rebinds a site's https bindings."""

    def __init__(
        self,
        name: str,
        *,
        runner_for: Callable[[str], Runner],
        server: str = "localhost",
        site: str = "Default Web Site",
        bindings: Sequence[IisBinding] = (IisBinding(),),
        state: StateStore | None = None,
        exportable: bool = False,
        pfx_encryption: Literal["aes256", "legacy"] = "legacy",
        verify: Sequence[str] = (),
        prober: Prober | None = None,
        settle_seconds: float = 30,
        probe_timeout: float = 10,
    ) -> None:
        self.name = name
        if site.strip().lower() == "exchange back end":
            raise ConfigError(f"bindings.{name}.site: the Exchange Back End site keeps Exchange's own certificate")
        if any(binding.port == 444 for binding in bindings):
            raise ConfigError(f"bindings.{name}.bindings: port 444 is Exchange's back end; certkeeper leaves it alone")
        if not bindings:
            raise ConfigError(f"bindings.{name}.bindings: name at least one https binding")
        self.server = server
        self.site = site
        self.bindings = tuple(bindings)
        self.exportable = exportable
        self.pfx_encryption = pfx_encryption
        self.endpoints = tuple(verify)
        if not self.endpoints:
            # retire() removes the old certificate once verify() passes: that must mean something
            raise ConfigError(f"bindings.{name}.verify: give at least one endpoint to probe (host:443)")
        for endpoint in self.endpoints:
            probe.parse_endpoint(endpoint)
        self._runner_for = runner_for
        self.markers = InstalledMarkers(state or MemoryState(), f"iis/{name}")
        self._prober = prober or default_prober(settle_seconds, probe_timeout)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"bindings.{name}"
        opts: IisOptions = validate_options(IisOptions, options, where=where)
        port = opts.port or (5986 if opts.ssl else 5985)
        try:
            make_runner = runner_factory(
                opts,
                resolve_secret=context.resolve_secret,
                exchange=None,
                port=port,
                path=opts.path,
                configuration_name=opts.configuration_name,
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return cls(
            name,
            runner_for=make_runner,
            server=opts.server,
            site=opts.site,
            bindings=[IisBinding(b.host_header, b.port, b.ip_address, b.sni) for b in opts.bindings],
            state=context.state,
            exportable=opts.exportable,
            pfx_encryption=opts.pfx_encryption,
            verify=opts.verify,
            settle_seconds=opts.settle_seconds,
            probe_timeout=opts.probe_timeout,
        )

    def binding_command(self, binding: IisBinding, thumb: str) -> Command:
        return Command(
            "Set-IisSslBinding",
            (
                ("Site", self.site),
                ("IPAddress", binding.ip_address),
                ("Port", binding.port),
                ("HostHeader", binding.host_header),
                ("Sni", binding.sni),
                ("Thumbprint", thumb),
            ),
            script=SET_BINDING_SCRIPT,
        )

    def find_command(self, thumb: str) -> Command:
        return Command("Get-ChildItem", (("Path", f"{STORE}\\{thumb}"), ("ErrorAction", "SilentlyContinue")))

    def import_command(self, pfx: bytes, password: str) -> Command:
        return Command(
            "Import-Pfx (X509Store)",
            (
                ("FileData", pfx),
                ("Password", SecureString(password)),
                ("StoreName", "My"),
                ("Exportable", self.exportable),
            ),
            script=IMPORT_PFX_SCRIPT,
        )

    def _refuse_exchange(self, runner: Runner) -> None:
        sites = {str(site).strip().lower() for site in runner.invoke(web_sites())}
        if "exchange back end" in sites:
            raise BindError(
                f"{self.server} runs Exchange (it has the 'Exchange Back End' site): Enable-ExchangeCertificate "
                'keeps Exchange\'s metadata right, so use a binding of type = "exchange" there'
            )

    def deploy(self, bundle: Bundle, previous: Bundle | None) -> None:
        new_thumb = thumbprint(bundle.cert_pem)
        runner = self._runner_for(self.server)
        changed: list[tuple[IisBinding, str]] = []  # binding, thumbprint bound before
        step = "pre-flight"
        try:
            self._refuse_exchange(runner)
            step = "import"
            if not runner.invoke(self.find_command(new_thumb)):
                pfx, password = make_pfx(
                    bundle,
                    encryption=self.pfx_encryption,
                    friendly_name=f"certkeeper {bundle.certificate_id}",
                )
                runner.invoke(self.import_command(pfx, password))
                self.markers.add(self.server, new_thumb)
            for binding in self.bindings:
                step = f"bind {binding.describe()}"
                output = runner.invoke(self.binding_command(binding, new_thumb))
                before = str(output[-1]).strip().upper() if output and output[-1] else ""
                changed.append((binding, before))
            step = "verify"
            verification = self._prober(bundle, self.endpoints)
            if not verification.ok:
                raise VerifyError(verification.summary())
        except BindError as exc:
            fallback = thumbprint(previous.cert_pem) if previous is not None else ""
            note = self._roll_back(runner, changed, fallback)
            error_class = VerifyError if isinstance(exc, VerifyError) else BindError
            raise error_class(f"{self.name}: {self.server}: {step}: {exc}; {note}") from None
        finally:
            runner.close()

    def plan(self, bundle: Bundle, previous: Bundle | None) -> list[PlannedStep]:
        """What :meth:`deploy` and :meth:`retire` would run (dry run): runs nothing."""
        new_thumb = thumbprint(bundle.cert_pem)
        steps = [
            ("pre-flight", web_sites(), "refuse when the server has an 'Exchange Back End' site"),
            ("find", self.find_command(new_thumb), ""),
            ("import", self.import_command(b"\x00", "x"), "only when the find step returned nothing"),
        ]
        steps += [(f"bind {b.describe()}", self.binding_command(b, new_thumb), "") for b in self.bindings]
        out = [
            PlannedStep(self.name, self.server, step, dry_run_text(command, note=note), "windows")
            for step, command, note in steps
        ]
        out.append(
            PlannedStep(
                self.name,
                self.server,
                "verify",
                f"# TLS handshake from certkeeper to {', '.join(self.endpoints)}",
                "certkeeper",
            )
        )
        if previous is not None and thumbprint(previous.cert_pem) != new_thumb:
            old = thumbprint(previous.cert_pem)
            out.append(
                PlannedStep(
                    self.name,
                    self.server,
                    "retire",
                    dry_run_text(self.remove_command(old), note="only when certkeeper recorded importing it"),
                    "windows",
                )
            )
        return out

    def remove_command(self, thumb: str) -> Command:
        return Command("Remove-Item", (("Path", f"{STORE}\\{thumb}"), ("ErrorAction", "Stop")))

    def _roll_back(self, runner: Runner, changed: Sequence[tuple[IisBinding, str]], fallback: str) -> str:
        if not changed:
            return "no binding was changed"
        notes = []
        for binding, before in reversed(changed):
            target = before or fallback
            if not target:
                notes.append(f"{binding.describe()} had no certificate before; left on the new one")
                continue
            try:
                runner.invoke(self.binding_command(binding, target))
                notes.append(f"{binding.describe()} back on {target}")
            except BindError as exc:
                notes.append(f"{binding.describe()} rollback FAILED: {exc}")
        return "rolled back: " + "; ".join(notes)

    def verify(self, bundle: Bundle) -> Verification:
        return self._prober(bundle, self.endpoints)

    def retire(self, previous: Bundle, current: Bundle) -> None:
        old_thumb = thumbprint(previous.cert_pem)
        if old_thumb == thumbprint(current.cert_pem) or not self.markers.has(self.server, old_thumb):
            return
        runner = self._runner_for(self.server)
        try:
            runner.invoke(self.remove_command(old_thumb))
            self.markers.remove(self.server, old_thumb)
        except PowerShellError as exc:
            raise BindError(f"{self.name}: {self.server}: retire: {exc}") from None
        finally:
            runner.close()
