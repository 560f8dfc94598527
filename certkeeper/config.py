"""``certkeeper.toml`` -> validated, frozen settings. Every setting has a default.

Where the file is: ``--config``, then ``$CERTKEEPER_CONFIG``, then the default location
(:mod:`certkeeper.platform.locations`: ``%ProgramData%\\certkeeper`` on Windows,
``/etc/certkeeper`` as root on Linux, the per-user folder otherwise). Errors name the key path
(``certificates[0].names[2]: ...``).
Plugin tables (``[issuers.X]``, ``[notifiers.X]``, ``[[certificates.bindings]]``) are checked here
for their ``type`` only; each plugin's ``from_options`` validates the rest and its errors are
prefixed with the table's path.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

# certkeeper uses no pydantic plugins; without this pydantic scans every installed distribution's
# entry points when the first model is built (about 25 ms on every command)
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from certkeeper.errors import ConfigError
from certkeeper.model import DEFAULT_KEY_TYPE, KeyType
from certkeeper.platform.locations import Resolved

APP_NAME = "certkeeper"
CONFIG_ENV = "CERTKEEPER_CONFIG"
DATA_DIR_ENV = "CERTKEEPER_DATA_DIR"
SECRET_KEY_ENV = "CERTKEEPER_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
DEFAULT_ISSUER = "internal"


def default_config_path() -> Path:
    """``$CERTKEEPER_CONFIG``, else the platform's config file."""
    from certkeeper.platform import locations

    return locations.current().config_file


def default_data_dir() -> Path:
    """``$CERTKEEPER_DATA_DIR``, else the platform's data folder."""
    from certkeeper.platform import locations

    return locations.current().data_dir


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Plugin(BaseModel):
    """A plugin table: ``type`` plus the plugin's own options (validated by the plugin)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StoreSettings(_Strict):
    url: str | None = None
    secret_key_file: Path | None = None
    #: "file": the keys as text (mode 0600; on Windows the data folder's DACL); "dpapi" (Windows
    #: only): sealed with DPAPI for this machine as well
    secret_key_protection: Literal["file", "dpapi"] = "file"  # noqa: S105 - a protection, not a secret
    #: revisions expired (or failed) longer ago than this are deleted with their sealed keys;
    #: the current revision and what a node last served are always kept; 0 keeps everything
    revision_retention_days: float = Field(default=90, ge=0, le=36500)
    #: SQLite: how long a write waits for another process's write to finish before failing
    busy_timeout_seconds: float = Field(default=15, gt=0, le=600)


class BindingSettings(_Plugin):
    name: str | None = None
    #: endpoints to probe after deploying, "host:port"; SNI is each certificate name
    verify: tuple[str, ...] = ()
    #: which node deploys this binding: a node name, or "all" (every node)
    node: str = "all"


class CertificateSettings(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    names: tuple[str, ...] = ()
    issuer: str = DEFAULT_ISSUER
    key_type: KeyType = DEFAULT_KEY_TYPE
    #: at most 10 years: longer than any certificate lives, and within what dates can hold
    renew_before_days: float | None = Field(default=None, gt=0, le=3650)
    bindings: tuple[BindingSettings, ...] = ()


class AlertSettings(_Strict):
    #: alert when this fraction of the lifetime remains (cert-manager-like 1/3, 1/6, 1/15)
    expiring_fractions: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = (1 / 3, 1 / 6, 1 / 15)
    #: and when this many days remain
    expiring_days: tuple[Annotated[float, Field(gt=0, le=3650)], ...] = (7, 3, 1)
    #: hour (UTC) of the daily digest
    digest_hour: int = Field(default=7, ge=0, le=23)
    #: notifiers that receive alerts; empty = all configured
    notifiers: tuple[str, ...] = ()


class DaemonSettings(_Strict):
    node: str | None = None
    reconcile_minutes: float = Field(default=5, gt=0, le=1440)
    metrics_address: str | None = "127.0.0.1:9464"
    #: the read-only status page at / and /certificates/ID on metrics_address
    status_page: bool = True
    #: the status page's access token, a secret reference (secret:NAME, env:VAR, file:PATH):
    #: required when metrics_address is not loopback, and enforced everywhere once set
    status_token: str | None = None
    #: serve HTTPS on metrics_address with the current revision of this managed certificate
    tls_certificate: str | None = None
    #: with tls_certificate: require a client certificate issued by a CA in this PEM file
    client_ca_file: str | None = None
    #: with client_ca_file: accept only certificates naming one of these (CN, DNS, e-mail, UPN)
    client_names: tuple[str, ...] = ()
    lease_ttl_seconds: int = Field(default=120, ge=10, le=86400)
    rollout_order: tuple[str, ...] = ()
    canary: str | None = None
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _tls_needs_its_parts(self) -> DaemonSettings:
        if self.client_ca_file and not self.tls_certificate:
            raise ValueError("client_ca_file needs tls_certificate (client certificates are asked for over HTTPS)")
        if self.client_names and not self.client_ca_file:
            raise ValueError("client_names needs client_ca_file (the CAs that issue the client certificates)")
        return self


class OutlookAnywhereSettings(_Strict):
    external_host: str
    domains: tuple[str, ...] = ()
    principal: str | None = None
    legacy_host: str | None = None
    extra_names: tuple[str, ...] = ()


class Settings(_Strict):
    store: StoreSettings = StoreSettings()
    issuers: dict[str, _Plugin] = Field(default_factory=dict)
    certificates: tuple[CertificateSettings, ...] = ()
    notifiers: dict[str, _Plugin] = Field(default_factory=dict)
    alerts: AlertSettings = AlertSettings()
    daemon: DaemonSettings = DaemonSettings()
    outlook_anywhere: OutlookAnywhereSettings | None = None

    @field_validator("certificates")
    @classmethod
    def _unique_ids(cls, value: tuple[CertificateSettings, ...]) -> tuple[CertificateSettings, ...]:
        seen: set[str] = set()
        for cert in value:
            if cert.id in seen:
                raise ValueError(f"certificate id {cert.id!r} appears twice")
            seen.add(cert.id)
        return value


@dataclass(frozen=True)
class Config:
    """Loaded settings plus where they came from and the resolved paths."""

    settings: Settings
    path: Path | None
    data_dir: Path
    #: where the config file was looked for (it may not exist) and the data folder chosen, and why
    #: (``certkeeper status`` shows them); None for a config built from a mapping
    locations: Resolved | None = None

    @property
    def store_url(self) -> str:
        if self.settings.store.url:
            return self.settings.store.url
        return f"sqlite:///{self.data_dir / 'certkeeper.db'}"

    @property
    def secret_key_file(self) -> Path:
        return self.settings.store.secret_key_file or (self.data_dir / "secret.key")

    def issuer_table(self, name: str) -> tuple[str, dict[str, Any]]:
        """(type, options) of issuer ``name``; ``internal`` exists even when not configured."""
        table = self.settings.issuers.get(name)
        if table is None:
            if name == DEFAULT_ISSUER:
                return "internal-ca", {}
            known = ", ".join(sorted({DEFAULT_ISSUER, *self.settings.issuers}))
            raise ConfigError(f"issuer {name!r} is not configured (configured: {known})")
        return table.type, table.options()

    def issuer_names(self) -> list[str]:
        return sorted({DEFAULT_ISSUER, *self.settings.issuers})

    def certificate(self, cert_id: str) -> CertificateSettings | None:
        for cert in self.settings.certificates:
            if cert.id == cert_id:
                return cert
        return None


def format_location(loc: tuple[int | str, ...]) -> str:
    """('certificates', 0, 'names', 2) -> 'certificates[0].names[2]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _validation_message(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part not in ("function-after",))
        where = format_location(loc)
        if prefix:
            where = f"{prefix}.{where}" if where != "(top level)" else prefix
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse(data: Mapping[str, Any], *, path: Path | None = None, data_dir: Path | None = None,
          locations: Resolved | None = None) -> Config:
    """Validate a parsed TOML document."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(where + _validation_message(exc)) from None
    if data_dir is None:
        data_dir = locations.data_dir if locations is not None else default_data_dir()
    return Config(settings=settings, path=path, data_dir=data_dir, locations=locations)


def validate_options(model: type[BaseModel], options: Mapping[str, Any], where: str) -> Any:
    """Validate a plugin's options with a pydantic model; errors name ``where.key``."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, prefix=where)) from None


def load(path: Path | str | None = None, *, found: Resolved | None = None) -> Config:
    """Find and load the config; no file at the default place means all defaults.

    ``found`` gives the locations to use instead of this process's (the systemd unit is written
    for the machine's locations whoever asks for it)."""
    from certkeeper.platform import locations

    found = found or locations.current(path or None)
    config_path = found.config_file
    if not config_path.exists():
        if path:
            raise ConfigError(f"config file {config_path} does not exist")
        # $CERTKEEPER_CONFIG or the platform path may name a file not written yet (certkeeper init)
        return parse({}, path=None, locations=found)
    try:
        with config_path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{config_path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position {exc.start}): "
            "save it as UTF-8 (Notepad: Save As, Encoding UTF-8)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {config_path}: {exc.strerror}") from None
    return parse(data, path=config_path, locations=found)
