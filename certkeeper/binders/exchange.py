"""The ``exchange`` binder: import and enable a certificate on Exchange 2010 - SE, one server at a time.

Example binding::

    [[certificates.bindings]]
    type = "exchange"
    version = "2019"                       # 2010 | 2013 | 2016 | 2019 | se
    servers = ["EX01.contoso.com", { name = "EX02.contoso.com", verify = ["10.0.0.12:443"] }]
    runner = "remote"                      # PSRP to http://SERVER/PowerShell (Kerberos) | local
    services = ["IIS"]                     # add "SMTP" only with smtp_replace_default = true
    verify = ["mail.contoso.com:443"]      # default endpoints for servers without their own

Per server, in order (reference/exchange.md §3.8):

1. ``Get-ExchangeCertificate -Server S -Thumbprint T`` - already there? then no import.
2. ``Import-ExchangeCertificate -Server S -FileData <bytes> -Password <SecureString>
   -PrivateKeyExportable:$false -FriendlyName ...`` - never ``-FileName`` (removed by the 2022 H1
   CUs, never on 2010). The PFX is built in memory with a one-time password and its key bag
   carries the "Microsoft CSP Name" attribute for the legacy SChannel CSP (CNG keys break
   OWA/ECP forms logon, KB3032024). certkeeper records that *it* imported T on S.
3. ``Enable-ExchangeCertificate -Server S -Thumbprint T -Services IIS[,...]``; ``-Force`` only
   with SMTP (it silently replaces the default SMTP certificate, see below);
   ``-DoNotRequireSsl`` when configured (SSL offloading).
4. Optional ``Restart-WebAppPool`` of the OWA/ECP pools or ``iisreset /noforce`` (local runner:
   the Exchange remote endpoint has no such commands).
5. Verify by TLS handshake with a settle time. On failure the previous certificate is enabled
   again on this server (and on the servers already done in this run, so the namespace stays on
   one certificate), the restart repeated, and the error names the server and the step. Later
   servers are not touched.

Removing the old certificate is :meth:`ExchangeBinder.retire`, which the service calls only after
verification: ``Remove-ExchangeCertificate -Server S -Thumbprint P -Confirm:$false`` where P is
the previous revision's thumbprint, only when certkeeper recorded importing P on S, and never when
P is the Auth certificate (``Get-AuthConfig``, 2013+). The binder never names the Back End (444)
site, the internal transport certificate or any certificate it did not import.

SMTP: Exchange asks before replacing the default SMTP certificate; the binder runs unattended and
must pass ``-Force``, which replaces it without asking. That certificate also secures SMTP between
Exchange servers; Microsoft advises keeping the self-signed one (HealthChecker). Hence SMTP needs
``smtp_replace_default = true``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from certkeeper.binders import probe
from certkeeper.binders.powershell import (
    SWITCH,
    Command,
    ExchangeVersion,
    PowerShellError,
    Runner,
    SecureString,
)
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
from certkeeper.model import Bundle, EndpointCheck, Verification
from certkeeper.plugins import MemoryState, PluginContext, StateStore

log = logging.getLogger(__name__)

SERVICES = ("IIS", "IMAP", "POP", "SMTP", "UM", "UMCallRouter")
DEFAULT_APP_POOLS = ("MSExchangeOWAAppPool", "MSExchangeECPAppPool")
IISRESET_SCRIPT = (
    "$output = & iisreset.exe /noforce 2>&1\n"
    'if ($LASTEXITCODE -ne 0) { throw "iisreset exited with $LASTEXITCODE" }'
)


class ServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    verify: tuple[str, ...] | None = None


class ExchangeOptions(RunnerOptions):
    version: ExchangeVersion
    servers: tuple[ServerOptions | str, ...] = Field(min_length=1)
    services: tuple[str, ...] = ("IIS",)
    smtp_replace_default: bool = False
    do_not_require_ssl: bool = False
    private_key_exportable: bool = False
    friendly_name: str | None = Field(default=None, max_length=63)
    pfx_encryption: Literal["aes256", "legacy"] | None = None
    restart: Literal["none", "app-pools", "iisreset"] = "none"
    app_pools: tuple[str, ...] = DEFAULT_APP_POOLS
    verify: tuple[str, ...] = ()
    settle_seconds: float = Field(default=60, ge=0)
    probe_timeout: float = Field(default=10, gt=0)
    port: int = 80
    path: str = "PowerShell"

    @field_validator("services")
    @classmethod
    def _known_services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        canonical = {service.lower(): service for service in SERVICES}
        out = []
        for service in value:
            if service.lower() == "federation":
                raise ValueError("Federation is managed by the federation trust cmdlets, not by certkeeper")
            if service.lower() not in canonical:
                raise ValueError(f"unknown service {service!r} (use {', '.join(SERVICES)})")
            out.append(canonical[service.lower()])
        if not out:
            raise ValueError("name at least one service")
        return tuple(out)


@dataclass(frozen=True)
class ExchangeServer:
    name: str
    verify: tuple[str, ...]


class ExchangeBinder:
    """Imports, enables and (after verification) retires certificates on Exchange servers."""

    def __init__(
        self,
        name: str,
        *,
        version: ExchangeVersion,
        servers: Sequence[ExchangeServer],
        runner_for: Callable[[str], Runner],
        state: StateStore | None = None,
        services: Sequence[str] = ("IIS",),
        smtp_replace_default: bool = False,
        do_not_require_ssl: bool = False,
        private_key_exportable: bool = False,
        friendly_name: str | None = None,
        pfx_encryption: Literal["aes256", "legacy"] | None = None,
        restart: Literal["none", "app-pools", "iisreset"] = "none",
        app_pools: Sequence[str] = DEFAULT_APP_POOLS,
        prober: Prober | None = None,
        settle_seconds: float = 60,
        probe_timeout: float = 10,
    ) -> None:
        self.name = name
        self.version = ExchangeVersion(version)
        if not servers:
            raise ConfigError(f"bindings.{name}.servers: name at least one Exchange server")
        self.servers = tuple(servers)
        for server in self.servers:
            if not server.verify:
                # retire() removes the old certificate once verify() passes; with nothing to
                # probe that would be a vacuous pass, so every server needs endpoints
                raise ConfigError(
                    f"bindings.{name}.verify: {server.name} has no endpoint to verify (give verify = "
                    '["host:443"] for the binding or the server)'
                )
            for endpoint in server.verify:
                probe.parse_endpoint(endpoint)
        self.services = tuple(services)
        if "SMTP" in self.services and not smtp_replace_default:
            raise ConfigError(
                f"bindings.{name}.services: SMTP needs smtp_replace_default = true - enabling SMTP "
                "unattended passes -Force, which replaces the default SMTP certificate (also used "
                "between Exchange servers) without asking"
            )
        if self.version in (ExchangeVersion.EX2019, ExchangeVersion.SE) and {"UM", "UMCallRouter"} & set(
            self.services
        ):
            raise ConfigError(
                f"bindings.{name}.services: Unified Messaging does not exist on Exchange 2019/SE"
            )
        self.do_not_require_ssl = do_not_require_ssl
        self.private_key_exportable = private_key_exportable
        self.friendly_name = friendly_name
        # Windows Server 2016 and older read only 3DES/SHA-1 PFX files; Exchange 2019/SE need 2019+
        self.pfx_encryption = pfx_encryption or (
            "aes256" if self.version in (ExchangeVersion.EX2019, ExchangeVersion.SE) else "legacy"
        )
        self.restart = restart
        self.app_pools = tuple(app_pools)
        self._runner_for = runner_for
        self.markers = InstalledMarkers(state or MemoryState(), f"exchange/{name}")
        self._prober = prober or default_prober(settle_seconds, probe_timeout)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"bindings.{name}"
        opts: ExchangeOptions = validate_options(ExchangeOptions, options, where=where)
        if opts.runner == "remote" and opts.restart != "none":
            raise ConfigError(
                f"{where}.restart: the Exchange remote endpoint cannot recycle app pools or run iisreset; "
                'use runner = "local" or restart = "none"'
            )
        servers = []
        for item in opts.servers:
            server = ServerOptions(name=item) if isinstance(item, str) else item
            endpoints = server.verify if server.verify is not None else opts.verify
            servers.append(ExchangeServer(server.name, tuple(endpoints)))
        try:
            make_runner = runner_factory(
                opts,
                resolve_secret=context.resolve_secret,
                exchange=opts.version,
                port=opts.port,
                path=opts.path,
                configuration_name="Microsoft.Exchange",
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return cls(
            name,
            version=opts.version,
            servers=servers,
            runner_for=make_runner,
            state=context.state,
            services=opts.services,
            smtp_replace_default=opts.smtp_replace_default,
            do_not_require_ssl=opts.do_not_require_ssl,
            private_key_exportable=opts.private_key_exportable,
            friendly_name=opts.friendly_name,
            pfx_encryption=opts.pfx_encryption,
            restart=opts.restart,
            app_pools=opts.app_pools,
            settle_seconds=opts.settle_seconds,
            probe_timeout=opts.probe_timeout,
        )

    # ------------------------------------------------------------------ commands

    def enable_command(self, server: str, thumb: str) -> Command:
        parameters: list[tuple[str, Any]] = [
            ("Server", server),
            ("Thumbprint", thumb),
            ("Services", ",".join(self.services)),
        ]
        if "SMTP" in self.services:
            parameters.append(("Force", SWITCH))
        if self.do_not_require_ssl and "IIS" in self.services:
            parameters.append(("DoNotRequireSsl", SWITCH))
        return Command("Enable-ExchangeCertificate", tuple(parameters))

    def restart_commands(self) -> list[Command]:
        if self.restart == "app-pools":
            return [Command("Restart-WebAppPool", (("Name", pool),)) for pool in self.app_pools]
        if self.restart == "iisreset":
            return [Command("iisreset", (), script=IISRESET_SCRIPT)]
        return []

    # ------------------------------------------------------------------ Binder

    def deploy(self, bundle: Bundle, previous: Bundle | None) -> None:
        new_thumb = thumbprint(bundle.cert_pem)
        old_thumb = thumbprint(previous.cert_pem) if previous is not None else None
        friendly = self.friendly_name or f"certkeeper {bundle.certificate_id} {bundle.not_after:%Y-%m-%d}"
        pfx, password = make_pfx(bundle, encryption=self.pfx_encryption, friendly_name=friendly[:63])
        done: list[ExchangeServer] = []
        for server in self.servers:
            runner = self._runner_for(server.name)
            step = "connect"
            try:
                step = "import"
                found = runner.invoke(
                    Command(
                        "Get-ExchangeCertificate",
                        (
                            ("Server", server.name),
                            ("Thumbprint", new_thumb),
                            ("ErrorAction", "SilentlyContinue"),
                        ),
                    )
                )
                if not found:
                    runner.invoke(
                        Command(
                            "Import-ExchangeCertificate",
                            (
                                ("Server", server.name),
                                ("FileData", pfx),
                                ("Password", SecureString(password)),
                                ("PrivateKeyExportable", self.private_key_exportable),
                                ("FriendlyName", friendly[:63]),
                            ),
                        )
                    )
                    self.markers.add(server.name, new_thumb)
                    log.info("%s: imported %s on %s", self.name, new_thumb, server.name)
                step = "enable"
                runner.invoke(self.enable_command(server.name, new_thumb))
                step = "restart"
                for command in self.restart_commands():
                    runner.invoke(command)
                step = "verify"
                if server.verify:
                    verification = self._prober(bundle, server.verify)
                    if not verification.ok:
                        raise VerifyError(verification.summary())
            except BindError as exc:
                if step == "import":
                    rollback = f"nothing was changed on {server.name}"
                else:
                    rollback = self._roll_back(runner, server, old_thumb)
                earlier = self._roll_back_done(done, old_thumb)
                error_class = VerifyError if isinstance(exc, VerifyError) else BindError
                untouched = [s.name for s in self.servers[len(done) + 1 :]]
                tail = f"; not attempted: {', '.join(untouched)}" if untouched else ""
                raise error_class(
                    f"{self.name}: {server.name}: {step}: {exc}; {rollback}{earlier}{tail}"
                ) from None
            finally:
                runner.close()
            done.append(server)

    def _roll_back(self, runner: Runner, server: ExchangeServer, old_thumb: str | None) -> str:
        if old_thumb is None:
            return "no previous certificate to restore"
        try:
            runner.invoke(self.enable_command(server.name, old_thumb))
            for command in self.restart_commands():
                runner.invoke(command)
        except BindError as exc:
            log.error("%s: rollback on %s failed: %s", self.name, server.name, exc)
            return f"rollback on {server.name} FAILED: {exc}"
        return f"previous certificate {old_thumb} enabled again on {server.name}"

    def _roll_back_done(self, done: Sequence[ExchangeServer], old_thumb: str | None) -> str:
        if not done or old_thumb is None:
            return ""
        notes = []
        for server in reversed(done):
            runner = self._runner_for(server.name)
            try:
                notes.append(self._roll_back(runner, server, old_thumb))
            finally:
                runner.close()
        return "; " + "; ".join(notes)

    def verify(self, bundle: Bundle) -> Verification:
        checks: list[EndpointCheck] = []
        for server in self.servers:
            if server.verify:
                checks.extend(self._prober(bundle, server.verify).checks)
        return Verification(checks=tuple(checks))

    def retire(self, previous: Bundle, current: Bundle) -> None:
        """Remove the previous certificate, by the thumbprint certkeeper recorded importing."""
        old_thumb = thumbprint(previous.cert_pem)
        if old_thumb == thumbprint(current.cert_pem):
            return
        for server in self.servers:
            if not self.markers.has(server.name, old_thumb):
                log.info(
                    "%s: %s on %s was not imported by certkeeper; left in place",
                    self.name,
                    old_thumb,
                    server.name,
                )
                continue
            runner = self._runner_for(server.name)
            try:
                if self.version.is_2013_or_later:
                    auth = runner.invoke(Command("Get-AuthConfig", ()))
                    if not any(
                        isinstance(item, dict) and "CurrentCertificateThumbprint" in item for item in auth
                    ):
                        log.warning(
                            "%s: Get-AuthConfig on %s said nothing usable; %s not removed",
                            self.name,
                            server.name,
                            old_thumb,
                        )
                        continue
                    protected = {
                        str(item.get(key, "")).upper()
                        for item in auth
                        if isinstance(item, dict)
                        for key in ("CurrentCertificateThumbprint", "NextCertificateThumbprint")
                    }
                    if old_thumb in protected:
                        log.warning(
                            "%s: %s is the Exchange Auth certificate; not removed", self.name, old_thumb
                        )
                        continue
                runner.invoke(
                    Command(
                        "Remove-ExchangeCertificate",
                        (
                            ("Server", server.name),
                            ("Thumbprint", old_thumb),
                            ("Confirm", False),
                        ),
                    )
                )
                self.markers.remove(server.name, old_thumb)
                log.info("%s: removed %s from %s", self.name, old_thumb, server.name)
            except PowerShellError as exc:
                raise BindError(f"{self.name}: {server.name}: retire: {exc}") from None
            finally:
                runner.close()
