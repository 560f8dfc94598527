"""The ``exchange`` binder: import and enable a certificate on Exchange 2010 - SE, server by server.

Example binding::

    [[certificates.bindings]]
    type = "exchange"
    version = "2019"                       # 2010 | 2013 | 2016 | 2019 | se
    servers = [{ name = "ex01.contoso.com", verify = ["10.0.0.11:443"] },
               { name = "ex02.contoso.com", verify = ["10.0.0.12:443"] }]
    runner = "remote"                      # PSRP, Kerberos | local (this server only)
    username = "svc-certkeeper@CONTOSO.COM"
    services = ["IIS"]                     # "SMTP" only with smtp_replace_default = true
    hybrid = false                         # true: update connectors + hybrid configuration

One deploy, in order:

1. Pre-flight on every server before anything changes: ``netsh http show sslcert`` (refuse when a
   host-name/central-store binding on 443 would hide Exchange's ``0.0.0.0:443`` from SNI
   clients), the Default Web Site root's ``sslFlags`` (so "Require SSL" stays as it was), which
   IMAP/POP services run; on 2010 with ``hybrid``, the TLS connectors' FQDNs.
2. Per server: ``Get-ExchangeCertificate`` (already there?) -> ``Import-ExchangeCertificate
   -FileData`` -> ``Enable-ExchangeCertificate [-Force] -DoNotRequireSsl:$x`` -> restart the
   running IMAP/POP services -> recycle the OWA/ECP pools -> TLS probe of that server's own
   address. A failure puts the previous certificate back on this server and on the servers done
   in this run, removes the new one where this run imported it, and names the step.
3. ``hybrid``: connectors and the hybrid configuration move to the new certificate (hybrid.py).
4. The service verifies, then calls :meth:`ExchangeBinder.retire`, which removes the previous
   certificate - only where certkeeper recorded importing it, never the Auth certificate.

A "certkeeper imported it" marker is written only after a server's steps all passed, so a failed
import or enable leaves none. The runners open once per server per deploy and close at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from certkeeper.binders import PlannedStep, probe
from certkeeper.binders.exchange import hybrid, parse, scripts
from certkeeper.binders.exchange.options import DEFAULT_APP_POOLS, ExchangeOptions, ServerOptions
from certkeeper.binders.powershell import Command, ExchangeVersion, Placeholder, dry_run_text
from certkeeper.binders.windows import (
    InstalledMarkers,
    Prober,
    ServerSession,
    default_prober,
    make_pfx,
    session_factory,
    thumbprint,
)
from certkeeper.config import validate_options
from certkeeper.errors import BindError, ConfigError, VerifyError
from certkeeper.model import Bundle, EndpointCheck, Verification
from certkeeper.plugins import MemoryState, PluginContext, StateStore

log = logging.getLogger(__name__)

DO_NOT_REQUIRE_SSL = Placeholder(
    "DoNotRequireSsl", "$true when the sslFlags read above do not require SSL (keeps it as it was)", switch=True
)
RUNNING_SERVICES = Placeholder("RunningServices", "the services the state read above found running")


@dataclass(frozen=True)
class ExchangeServer:
    name: str
    verify: tuple[str, ...]


@dataclass(frozen=True)
class ServerFacts:
    """What the pre-flight read on one server."""

    do_not_require_ssl: bool
    running_services: tuple[str, ...]


class ExchangeBinder:
    """Imports, enables and (after verification) retires certificates on Exchange servers."""

    def __init__(
        self,
        name: str,
        *,
        version: ExchangeVersion,
        servers: Sequence[ExchangeServer],
        sessions: Callable[[str], ServerSession],
        state: StateStore | None = None,
        services: Sequence[str] = ("IIS",),
        smtp_replace_default: bool = False,
        hybrid: bool = False,
        private_key_exportable: bool = False,
        friendly_name: str | None = None,
        pfx_encryption: Literal["aes256", "legacy"] | None = None,
        restart: Literal["none", "app-pools", "iisreset"] = "app-pools",
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
                # retire() removes the old certificate once verify() passes: that must mean something
                raise ConfigError(
                    f"bindings.{name}.verify: {server.name} has no endpoint to verify (give verify = "
                    '["host:443"] for the binding or the server)'
                )
            for endpoint in server.verify:
                probe.parse_endpoint(endpoint)
        if len(self.servers) > 1:
            seen: dict[str, str] = {}
            for server in self.servers:
                for endpoint in server.verify:
                    if endpoint in seen:
                        # a load balancer proves nothing per server: round robin reaches the updated one
                        raise ConfigError(
                            f"bindings.{name}.servers: {server.name} and {seen[endpoint]} share the verify "
                            f"endpoint {endpoint}; give each server its own address (servers = [{{ name = "
                            f'"{server.name}", verify = ["<its IP>:443"] }}, ...])'
                        )
                    seen[endpoint] = server.name
        self.services = tuple(services)
        if "SMTP" in self.services and not smtp_replace_default:
            raise ConfigError(
                f"bindings.{name}.services: SMTP needs smtp_replace_default = true - enabling SMTP unattended "
                "passes -Force, which replaces the default SMTP certificate (also used between Exchange servers) "
                "without asking; on a Mailbox server with an Edge Subscription, the subscription must be "
                "recreated afterwards (New-EdgeSubscription)"
            )
        if self.version in (ExchangeVersion.EX2019, ExchangeVersion.SE) and {"UM", "UMCallRouter"} & set(self.services):
            raise ConfigError(f"bindings.{name}.services: Unified Messaging does not exist on Exchange 2019/SE")
        if hybrid and "SMTP" not in self.services:
            raise ConfigError(
                f'bindings.{name}.hybrid: hybrid mail flow uses the SMTP certificate; add "SMTP" to services '
                "(with smtp_replace_default = true)"
            )
        self.hybrid = hybrid
        self.private_key_exportable = private_key_exportable
        self.friendly_name = friendly_name
        # Windows Server 2016 and older read only 3DES/SHA-1 PFX files; Exchange 2019/SE need 2019+
        self.pfx_encryption = pfx_encryption or (
            "aes256" if self.version in (ExchangeVersion.EX2019, ExchangeVersion.SE) else "legacy"
        )
        self.restart = restart
        self.app_pools = tuple(app_pools)
        self._sessions = sessions
        #: whether the remote runner with Kerberos is used (doctor checks the libraries then)
        self.remote_kerberos = False
        self.markers = InstalledMarkers(state or MemoryState(), f"exchange/{name}")
        self._prober = prober or default_prober(settle_seconds, probe_timeout)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: PluginContext) -> Self:
        where = f"bindings.{name}"
        opts: ExchangeOptions = validate_options(ExchangeOptions, options, where=where)
        if opts.runner == "local" and len(opts.servers) > 1:
            raise ConfigError(
                f"{where}.servers: the local runner manages the server certkeeper runs on; give one binding "
                'per node (node = "...", servers = ["<this server>"]) or use runner = "remote"'
            )
        servers = []
        for item in opts.servers:
            server = ServerOptions(name=item) if isinstance(item, str) else item
            if opts.runner == "remote" and opts.auth == "kerberos" and "." not in server.name:
                raise ConfigError(
                    f"{where}.servers: {server.name!r}: Kerberos needs each server's own FQDN "
                    "(ex01.contoso.com), never a load-balanced name"
                )
            endpoints = server.verify if server.verify is not None else opts.verify
            servers.append(ExchangeServer(server.name, tuple(endpoints)))
        if opts.runner == "remote" and opts.username and "@" not in opts.username:
            raise ConfigError(f"{where}.username: use the UPN form (user@CONTOSO.COM) for Kerberos")
        try:
            sessions = session_factory(
                opts,
                resolve_secret=context.resolve_secret,
                exchange=opts.version,
                port=opts.port,
                path=opts.path,
                windows_port=opts.windows_port,
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        binder = cls(
            name,
            version=opts.version,
            servers=servers,
            sessions=sessions,
            state=context.state,
            services=opts.services,
            smtp_replace_default=opts.smtp_replace_default,
            hybrid=opts.hybrid,
            private_key_exportable=opts.private_key_exportable,
            friendly_name=opts.friendly_name,
            pfx_encryption=opts.pfx_encryption,
            restart=opts.restart,
            app_pools=opts.app_pools,
            settle_seconds=opts.settle_seconds,
            probe_timeout=opts.probe_timeout,
        )
        binder.remote_kerberos = opts.runner == "remote" and opts.auth == "kerberos"
        return binder

    def open_session(self, server: str) -> ServerSession:
        """The runners for ``server`` (doctor, discovery); the caller closes them."""
        return self._sessions(server)

    # ------------------------------------------------------------------ steps

    def _friendly(self, bundle: Bundle) -> str:
        return (self.friendly_name or f"certkeeper {bundle.certificate_id} {bundle.not_after:%Y-%m-%d}")[:63]

    def _enable(self, server: str, thumb: str, do_not_require_ssl: bool | Placeholder) -> Command:
        return scripts.enable_certificate(server, thumb, self.services, do_not_require_ssl=do_not_require_ssl)

    def _restart_commands(self, running: Sequence[str] | Placeholder) -> list[Command]:
        commands = []
        if running:
            commands.append(
                scripts.restart_services(running)
                if not isinstance(running, Placeholder)
                else Command("Restart-Service", (("Names", running),), script=scripts.RESTART_SERVICES_SCRIPT)
            )
        if "IIS" in self.services and self.restart == "app-pools":
            commands.append(scripts.recycle_app_pools(self.app_pools))
        elif "IIS" in self.services and self.restart == "iisreset":
            commands.append(scripts.iisreset())
        return commands

    def _preflight(self, session: ServerSession, server: ExchangeServer, bundle: Bundle) -> ServerFacts:
        if "IIS" in self.services:
            hiding = [b for b in parse.ssl_bindings(session.windows.invoke(scripts.ssl_bindings())) if b.hides_exchange]
            if hiding:
                shown = ", ".join(f"{b.address} ({b.certificate_hash[:12] or 'no hash'})" for b in hiding)
                raise BindError(
                    f"netsh http show sslcert lists {shown}: SNI clients get that binding instead of Exchange's "
                    "0.0.0.0:443; remove it (netsh http delete sslcert hostnameport=<name>:443) first"
                )
        do_not_require_ssl = False
        if "IIS" in self.services:
            flags = session.windows.invoke(scripts.ssl_flags())
            do_not_require_ssl = not parse.requires_ssl(flags[0] if flags else "")
        running: list[str] = []
        names = scripts.mail_services(self.version, self.services)
        if names:
            running = parse.running(session.windows.invoke(scripts.service_state(names)))
        if self.hybrid and not self.version.is_2013_or_later:
            hybrid.check_connectors_2010(session.exchange, server.name, bundle.names)
        return ServerFacts(do_not_require_ssl, tuple(running))

    # ------------------------------------------------------------------ Binder

    def deploy(self, bundle: Bundle, previous: Bundle | None) -> None:
        new_thumb = thumbprint(bundle.cert_pem)
        old_thumb = thumbprint(previous.cert_pem) if previous is not None else None
        if old_thumb == new_thumb:
            old_thumb = None
        pfx, password = make_pfx(bundle, encryption=self.pfx_encryption, friendly_name=self._friendly(bundle))
        opened: dict[str, ServerSession] = {}

        def session(server: str) -> ServerSession:
            if server not in opened:
                opened[server] = self._sessions(server)
            return opened[server]

        try:
            facts: dict[str, ServerFacts] = {}
            for server in self.servers:
                try:
                    facts[server.name] = self._preflight(session(server.name), server, bundle)
                except BindError as exc:
                    raise BindError(f"{self.name}: {server.name}: pre-flight: {exc}; nothing was changed") from None
            done: list[tuple[ExchangeServer, bool]] = []
            for index, server in enumerate(self.servers):
                current, fact = session(server.name), facts[server.name]
                imported, step = False, "import"
                try:
                    if not current.exchange.invoke(scripts.get_certificate(server.name, new_thumb)):
                        current.exchange.invoke(
                            scripts.import_certificate(
                                server.name,
                                pfx,
                                password,
                                exportable=self.private_key_exportable,
                                friendly_name=self._friendly(bundle),
                            )
                        )
                        imported = True
                        log.info("%s: imported %s on %s", self.name, new_thumb, server.name)
                    step = "enable"
                    current.exchange.invoke(self._enable(server.name, new_thumb, fact.do_not_require_ssl))
                    step = "restart"
                    for command in self._restart_commands(fact.running_services):
                        current.windows.invoke(command)
                    step = "verify"
                    verification = self._prober(bundle, server.verify)
                    if not verification.ok:
                        raise VerifyError(verification.summary())
                except BindError as exc:
                    here = self._undo(current, fact, old_thumb, new_thumb, imported=imported, changed=step != "import")
                    earlier = self._undo_done(session, facts, done, old_thumb, new_thumb)
                    untouched = [s.name for s in self.servers[index + 1 :]]
                    tail = f"; not attempted: {', '.join(untouched)}" if untouched else ""
                    error_class = VerifyError if isinstance(exc, VerifyError) else BindError
                    raise error_class(f"{self.name}: {server.name}: {step}: {exc}; {here}{earlier}{tail}") from None
                if imported:
                    self.markers.add(server.name, new_thumb)
                done.append((server, imported))
            if self.hybrid and old_thumb is not None:
                first = session(self.servers[0].name)
                try:
                    notes = hybrid.update(
                        self.version, first.exchange, first.server, [s.name for s in self.servers], old_thumb, new_thumb
                    )
                except BindError as exc:
                    earlier = self._undo_done(session, facts, done, old_thumb, new_thumb)
                    raise BindError(
                        f"{self.name}: hybrid: {exc}; the previous certificate {old_thumb} is kept{earlier}"
                    ) from None
                for note in notes:
                    log.info("%s: hybrid: %s", self.name, note)
        finally:
            for opened_session in opened.values():
                opened_session.close()

    def _undo(
        self,
        session: ServerSession,
        fact: ServerFacts,
        old_thumb: str | None,
        new_thumb: str,
        *,
        imported: bool,
        changed: bool,
    ) -> str:
        server = session.server
        if not changed:
            return f"nothing was changed on {server}"
        if old_thumb is None:
            if imported:
                self.markers.add(server, new_thumb)  # ours, enabled, nothing to go back to
            return "no previous certificate to restore"
        try:
            session.exchange.invoke(self._enable(server, old_thumb, fact.do_not_require_ssl))
            for command in self._restart_commands(fact.running_services):
                session.windows.invoke(command)
        except BindError as exc:
            log.error("%s: rollback on %s failed: %s", self.name, server, exc)
            if imported:
                self.markers.add(server, new_thumb)
            return f"rollback on {server} FAILED: {exc}"
        note = f"previous certificate {old_thumb} enabled again on {server}"
        if imported:
            try:
                session.exchange.invoke(scripts.remove_certificate(server, new_thumb))
                self.markers.remove(server, new_thumb)
                note += f", {new_thumb} removed again"
            except BindError as exc:
                self.markers.add(server, new_thumb)  # retire may remove it later
                note += f", {new_thumb} stays there ({exc})"
        return note

    def _undo_done(
        self,
        session: Callable[[str], ServerSession],
        facts: Mapping[str, ServerFacts],
        done: Sequence[tuple[ExchangeServer, bool]],
        old_thumb: str | None,
        new_thumb: str,
    ) -> str:
        if not done or old_thumb is None:
            return ""
        notes = [
            self._undo(session(server.name), facts[server.name], old_thumb, new_thumb, imported=imported, changed=True)
            for server, imported in reversed(done)
        ]
        return "; " + "; ".join(notes)

    def verify(self, bundle: Bundle) -> Verification:
        checks: list[EndpointCheck] = []
        for server in self.servers:
            checks.extend(self._prober(bundle, server.verify).checks)
        return Verification(checks=tuple(checks))

    def retire(self, previous: Bundle, current: Bundle) -> None:
        """Remove the previous certificate where certkeeper recorded importing it.

        Raises:
            BindError: a server refused the removal (e.g. a connector still names it); the marker
                stays, so the next retire tries again. Other servers are still attempted.
        """
        old_thumb = thumbprint(previous.cert_pem)
        if old_thumb == thumbprint(current.cert_pem):
            return
        refused = []
        for server in self.servers:
            if not self.markers.has(server.name, old_thumb):
                log.info(
                    "%s: %s on %s was not imported by certkeeper; left in place", self.name, old_thumb, server.name
                )
                continue
            session = self._sessions(server.name)
            try:
                if self.version.is_2013_or_later:
                    auth = session.exchange.invoke(scripts.get_auth_config())
                    if not any(isinstance(item, dict) and "CurrentCertificateThumbprint" in item for item in auth):
                        refused.append(f"{server.name}: Get-AuthConfig said nothing usable, {old_thumb} kept")
                        continue
                    protected = {
                        str(item.get(key) or "").upper()
                        for item in auth
                        if isinstance(item, dict)
                        for key in ("CurrentCertificateThumbprint", "NextCertificateThumbprint")
                    }
                    if old_thumb in protected:
                        log.warning("%s: %s is the Exchange Auth certificate; not removed", self.name, old_thumb)
                        continue
                session.exchange.invoke(scripts.remove_certificate(server.name, old_thumb))
                self.markers.remove(server.name, old_thumb)
                log.info("%s: removed %s from %s", self.name, old_thumb, server.name)
            except BindError as exc:
                refused.append(f"{server.name}: {exc}")
            finally:
                session.close()
        if refused:
            raise BindError(f"{self.name}: retire: the previous certificate stays: {'; '.join(refused)}")

    # ------------------------------------------------------------------ dry run

    def plan(self, bundle: Bundle, previous: Bundle | None) -> list[PlannedStep]:
        """Every step :meth:`deploy` and :meth:`retire` would run, in order, running nothing."""
        new_thumb = thumbprint(bundle.cert_pem)
        old_thumb = thumbprint(previous.cert_pem) if previous is not None else None
        if old_thumb == new_thumb:
            old_thumb = None
        steps: list[PlannedStep] = []

        def add(server: str, step: str, command: Command, endpoint: str, note: str = "") -> None:
            steps.append(PlannedStep(self.name, server, step, dry_run_text(command, note=note), endpoint))

        for server in self.servers:
            if "IIS" in self.services:
                add(
                    server.name,
                    "ssl-bindings",
                    scripts.ssl_bindings(),
                    "windows",
                    "refuse when a host-name (SNI) binding on 443 would hide 0.0.0.0:443",
                )
                add(server.name, "ssl-flags", scripts.ssl_flags(), "windows")
            names = scripts.mail_services(self.version, self.services)
            if names:
                add(server.name, "service-state", scripts.service_state(names), "windows")
            if self.hybrid and not self.version.is_2013_or_later:
                add(
                    server.name,
                    "connector-check",
                    scripts.get_send_connectors(),
                    "exchange",
                    "Exchange 2010 picks the STARTTLS certificate by FQDN: each TLS connector's Fqdn must be covered",
                )
                add(server.name, "connector-check", scripts.get_receive_connectors(server.name), "exchange")
        pfx_placeholder = b"\x00"
        for server in self.servers:
            add(server.name, "find", scripts.get_certificate(server.name, new_thumb), "exchange")
            add(
                server.name,
                "import",
                scripts.import_certificate(
                    server.name,
                    pfx_placeholder,
                    "x",
                    exportable=self.private_key_exportable,
                    friendly_name=self._friendly(bundle),
                ),
                "exchange",
                "only when the find step returned nothing; a one-time PFX password",
            )
            add(server.name, "enable", self._enable(server.name, new_thumb, DO_NOT_REQUIRE_SSL), "exchange")
            for command in self._restart_commands(
                RUNNING_SERVICES if scripts.mail_services(self.version, self.services) else ()
            ):
                add(server.name, "restart", command, "windows")
            steps.append(
                PlannedStep(
                    self.name,
                    server.name,
                    "verify",
                    f"# TLS handshake from certkeeper to {', '.join(server.verify)}: the new certificate must be "
                    "served; on failure the previous one is enabled again",
                    "certkeeper",
                )
            )
        if self.hybrid and old_thumb is not None:
            first = self.servers[0].name
            for step, command, note in hybrid.planned(
                self.version, first, [s.name for s in self.servers], old_thumb, new_thumb
            ):
                add(first, step, command, "exchange", note)
        if old_thumb is not None:
            for server in self.servers:
                if self.version.is_2013_or_later:
                    add(
                        server.name,
                        "retire",
                        scripts.get_auth_config(),
                        "exchange",
                        "after verification: never remove the Auth certificate",
                    )
                add(
                    server.name,
                    "retire",
                    scripts.remove_certificate(server.name, old_thumb),
                    "exchange",
                    "only when certkeeper recorded importing it on this server",
                )
        return steps
