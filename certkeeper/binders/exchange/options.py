"""The ``exchange`` binding's options, validated (pydantic, unknown keys refused)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from certkeeper.binders.powershell import ExchangeVersion
from certkeeper.binders.windows import RunnerOptions

SERVICES = ("IIS", "IMAP", "POP", "SMTP", "UM", "UMCallRouter")
DEFAULT_APP_POOLS = ("MSExchangeOWAAppPool", "MSExchangeECPAppPool")


class ServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    verify: tuple[str, ...] | None = None


class ExchangeOptions(RunnerOptions):
    version: ExchangeVersion
    servers: tuple[ServerOptions | str, ...] = Field(min_length=1)
    services: tuple[str, ...] = ("IIS",)
    smtp_replace_default: bool = False
    hybrid: bool = False
    private_key_exportable: bool = False
    friendly_name: str | None = Field(default=None, max_length=63)
    pfx_encryption: Literal["aes256", "legacy"] | None = None
    restart: Literal["none", "app-pools", "iisreset"] = "app-pools"
    app_pools: tuple[str, ...] = DEFAULT_APP_POOLS
    verify: tuple[str, ...] = ()
    settle_seconds: float = Field(default=60, ge=0)
    probe_timeout: float = Field(default=10, gt=0)
    port: int = 80
    path: str = "PowerShell"
    #: the default WinRM endpoint for Windows steps (remote runner): 5985, or 5986 with ssl
    windows_port: int | None = None

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

    @field_validator("auth")
    @classmethod
    def _kerberos_only(cls, value: str) -> str:
        if value == "ntlm":
            # https://github.com/jborean93/pypsrp/issues/187: "Exchange only really supports Kerberos"
            raise ValueError(
                'the Exchange PowerShell endpoint accepts Kerberos only: use auth = "kerberos" with a UPN '
                "user name (user@CONTOSO.COM) and each server's own FQDN"
            )
        return value
