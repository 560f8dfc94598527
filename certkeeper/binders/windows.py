"""What the Windows binders (Exchange, IIS) share: runner options, the PFX, thumbprints, markers."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field

from certkeeper.binders import probe
from certkeeper.binders.powershell import ExchangeVersion, LocalRunner, RemoteRunner, Runner
from certkeeper.errors import ConfigError
from certkeeper.model import Bundle, Verification
from certkeeper.pki.fingerprint import sha1_thumbprint
from certkeeper.pki.pkcs12.build import build_pfx
from certkeeper.pki.pkcs12.structure import SCHANNEL_CSP, set_csp_name
from certkeeper.plugins import StateStore

log = logging.getLogger(__name__)

#: (bundle, endpoints) -> what the endpoints serve; the default probes by TLS handshake
Prober = Callable[[Bundle, Sequence[str]], Verification]


class RunnerOptions(BaseModel):
    """How to reach PowerShell: ``local`` (powershell.exe here) or ``remote`` (PSRP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runner: Literal["local", "remote"] = "remote"
    auth: Literal["kerberos", "ntlm", "negotiate"] = "kerberos"
    username: str | None = None
    #: secret reference (env:VAR, file:PATH, secret:NAME); Kerberos with a ticket needs none
    password: str | None = None
    ssl: bool = False
    cert_validation: bool = True
    timeout: float = Field(default=300, gt=0)


def thumbprint(cert_pem: bytes) -> str:
    """Windows' thumbprint of a PEM certificate (how Exchange and IIS name certificates)."""
    return sha1_thumbprint(x509.load_pem_x509_certificate(cert_pem))


def make_pfx(
    bundle: Bundle, *, encryption: Literal["aes256", "legacy"], friendly_name: str
) -> tuple[bytes, str]:
    """A PFX with a one-time random password, its key bag tagged for the legacy SChannel CSP.

    The password only protects the bytes in transit to Import-*; it is never stored or logged.
    """
    password = secrets.token_urlsafe(24)
    pfx = build_pfx(
        bundle.key_pem,
        bundle.cert_pem,
        bundle.chain_pem,
        password=password.encode(),
        encryption=encryption,
        friendly_name=friendly_name.encode(),
    )
    if _is_rsa(bundle.cert_pem):
        # CNG keys break OWA/ECP forms logon (KB3032024); the SChannel CSP is RSA-only.
        pfx = set_csp_name(pfx, password.encode(), SCHANNEL_CSP)
    return pfx, password


def _is_rsa(cert_pem: bytes) -> bool:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return isinstance(x509.load_pem_x509_certificate(cert_pem).public_key(), rsa.RSAPublicKey)


def default_prober(settle_seconds: float, timeout: float) -> Prober:
    def run(bundle: Bundle, endpoints: Sequence[str]) -> Verification:
        return probe.verify_endpoints(
            bundle.fingerprint, endpoints, bundle.names, settle_seconds=settle_seconds, timeout=timeout
        )

    return run


def runner_factory(
    options: RunnerOptions,
    *,
    resolve_secret: Callable[[str], str],
    exchange: ExchangeVersion | None,
    port: int,
    path: str,
    configuration_name: str,
) -> Callable[[str], Runner]:
    """server name -> a Runner for it (local runners ignore the name and use ``-Server``)."""
    if options.runner == "local":
        return lambda _server: LocalRunner(exchange=exchange, timeout=options.timeout)
    ref = options.password
    if options.auth != "kerberos" and not (options.username and ref):
        raise ConfigError(f"auth {options.auth} needs username and password")

    def make(server: str) -> Runner:
        return RemoteRunner(
            server,
            auth=options.auth,
            username=options.username,
            password=(lambda: resolve_secret(ref)) if ref else None,
            port=port,
            path=path,
            ssl=options.ssl,
            configuration_name=configuration_name,
            cert_validation=options.cert_validation,
            timeout=options.timeout,
        )

    return make


class InstalledMarkers:
    """Which thumbprints certkeeper itself imported on which server (plugin state).

    The binders remove a certificate only when its marker is here, so a certificate that was on
    the server before certkeeper (or that someone else imported) is never removed.
    """

    def __init__(self, state: StateStore, prefix: str) -> None:
        self.state = state
        self.prefix = prefix

    def _key(self, server: str, thumb: str) -> str:
        return f"{self.prefix}/installed/{server.lower()}/{thumb.upper()}"

    def add(self, server: str, thumb: str) -> None:
        self.state.put(self._key(server, thumb), b"1")

    def has(self, server: str, thumb: str) -> bool:
        return self.state.get(self._key(server, thumb)) is not None

    def remove(self, server: str, thumb: str) -> None:
        self.state.delete(self._key(server, thumb))


@dataclass
class ServerSession:
    """The runners for one server during one deploy: Exchange cmdlets and Windows scripts.

    With the local runner both are the same ``powershell.exe``; with the remote runner they are
    two PSRP connections (the Exchange endpoint cannot run scripts). :meth:`close` ends both.
    """

    server: str
    exchange: Runner
    windows: Runner

    def close(self) -> None:
        for runner in {id(self.exchange): self.exchange, id(self.windows): self.windows}.values():
            try:
                runner.close()
            except Exception as exc:  # noqa: BLE001 - a cleanup failure is logged, never raised
                log.warning("closing PowerShell on %s failed: %s", self.server, exc)


def session_factory(
    options: RunnerOptions,
    *,
    resolve_secret: Callable[[str], str],
    exchange: ExchangeVersion,
    port: int,
    path: str,
    windows_port: int | None,
) -> Callable[[str], ServerSession]:
    """server name -> its :class:`ServerSession` (Exchange endpoint + default WinRM endpoint)."""
    exchange_runner = runner_factory(
        options,
        resolve_secret=resolve_secret,
        exchange=exchange,
        port=port,
        path=path,
        configuration_name="Microsoft.Exchange",
    )
    if options.runner == "local":
        def local(server: str) -> ServerSession:
            runner = exchange_runner(server)
            return ServerSession(server, runner, runner)

        return local
    windows_runner = runner_factory(
        options,
        resolve_secret=resolve_secret,
        exchange=None,
        port=windows_port or (5986 if options.ssl else 5985),
        path="wsman",
        configuration_name="Microsoft.PowerShell",
    )

    def remote(server: str) -> ServerSession:
        return ServerSession(server, exchange_runner(server), windows_runner(server))

    return remote
