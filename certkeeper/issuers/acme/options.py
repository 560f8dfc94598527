"""The ``[issuers.X]`` table of an ``acme`` issuer, validated with pydantic.

Errors name the key path (``issuers.letsencrypt.http01.port: ...``) through
:func:`certkeeper.config.validate_options`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: directory shortcuts accepted in ``directory``
DIRECTORY_SHORTCUTS = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}

ChallengeType = Literal["http-01", "dns-01"]

#: Domains (and their subdomains) of ACME directories run by publicly-trusted CAs, which follow the
#: CA/Browser Forum Baseline Requirements: no internal or special-use names. Let's Encrypt's
#: staging directory is here too: it is not trusted, but it refuses what production refuses.
PUBLIC_ACME_DOMAINS = (
    "letsencrypt.org",   # Let's Encrypt (acme-v02, acme-staging-v02)
    "zerossl.com",       # ZeroSSL
    "pki.goog",          # Google Trust Services (dv.acme-v02.api.pki.goog)
    "buypass.com",       # Buypass Go SSL
    "buypass.no",
    "ssl.com",           # SSL.com
    "sectigo.com",       # Sectigo
    "digicert.com",      # DigiCert
    "entrust.net",       # Entrust
    "globalsign.com",    # GlobalSign Atlas
    "harica.gr",         # HARICA
    "actalis.com",       # Actalis
    "actalis.it",
)
#: step-ca's directory path, /acme/<provisioner>/directory: a private CA
_STEP_CA_PATH = re.compile(r"/acme/[^/]+/directory/?")


def directory_is_public(url: str) -> bool:
    """Whether the ACME server at ``url`` is a public CA, judged by its directory URL.

    Public: a directory of a known public CA (:data:`PUBLIC_ACME_DOMAINS`), or any directory on a
    host name in the public DNS that does not look like step-ca's. Private: a directory on an IP
    address that is not global (a loopback Pebble, a CA at 10.0.0.5), on an internal or
    special-use host name (``ca.contoso.local``, ``localhost``, ``pebble.test``), or at step-ca's
    ``/acme/<provisioner>/directory`` path. ``public_names_only`` on the issuer overrides this.
    """
    from certkeeper.errors import InvalidName
    from certkeeper.hostnames import NamePolicy, normalize_name

    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if any(host == domain or host.endswith("." + domain) for domain in PUBLIC_ACME_DOMAINS):
        return True
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    try:
        normalize_name(host, policy=NamePolicy.PUBLIC)
    except InvalidName:
        return False  # a host no public CA could have a certificate for: internal, special-use
    return not _STEP_CA_PATH.fullmatch(parts.path)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Http01Options(_Strict):
    """``[issuers.X.http01]``: how http-01 tokens are served."""

    #: ``standalone``: certkeeper listens on address:port while tokens are pending;
    #: ``webroot``: tokens are written under ``webroot/.well-known/acme-challenge/``
    mode: Literal["standalone", "webroot"] = "standalone"
    address: str = "0.0.0.0"  # noqa: S104 (the CA connects from anywhere)
    port: int = Field(default=80, ge=1, le=65535)
    webroot: Path | None = None
    #: webroot only: also write a web.config so IIS serves the extensionless token files
    iis_web_config: bool = True
    #: standalone only: listen backlog (many parallel orders hit the listener at once)
    backlog: int = Field(default=256, ge=5, le=65535)

    @model_validator(mode="after")
    def _webroot_needs_path(self) -> Http01Options:
        if self.mode == "webroot" and self.webroot is None:
            raise ValueError("webroot: required when mode = 'webroot'")
        return self


SECRET_PREFIXES = ("env:", "file:", "secret:")


class PowerShellOptions(_Strict):
    """``[issuers.X.dns01.powershell]``: where ``mode = "windows"`` runs the DnsServer cmdlets."""

    #: ``local``: powershell.exe on this machine; ``remote``: PSRP (WinRM) to ``host``
    runner: Literal["local", "remote"] = "local"
    host: str = "localhost"
    auth: Literal["kerberos", "ntlm", "negotiate"] = "kerberos"
    username: str | None = None
    #: secret reference (env:VAR, file:PATH, secret:NAME); Kerberos with a ticket needs none
    password: str | None = None
    ssl: bool = False
    cert_validation: bool = True
    #: WinRM port; default 5985 (5986 with ssl)
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: float = Field(default=120, gt=0)

    @model_validator(mode="after")
    def _credentials(self) -> PowerShellOptions:
        if self.password is not None and not self.password.startswith(SECRET_PREFIXES):
            raise ValueError("password: must be a secret reference (env:VAR, file:PATH or secret:NAME)")
        if self.runner == "remote" and self.auth != "kerberos" and not (self.username and self.password):
            raise ValueError(f"auth = '{self.auth}' needs username and password")
        return self


Dns01Mode = Literal["rfc2136", "exec", "lexicon", "acme-dns", "windows"]


class Dns01Options(_Strict):
    """``[issuers.X.dns01]``: how ``_acme-challenge`` TXT records are published."""

    #: ``rfc2136``: dynamic update (TSIG) to ``server``; ``exec``: run ``script``; ``lexicon``: a
    #: dns-lexicon provider; ``acme-dns``: an acme-dns server; ``windows``: Active Directory DNS
    mode: Dns01Mode = "rfc2136"
    #: rfc2136: the primary accepting updates ("192.0.2.53" or a hostname)
    server: str | None = None
    port: int = Field(default=53, ge=1, le=65535)
    #: the zone to update; default: found by SOA lookup of the record's name
    zone: str | None = None
    tsig_key_name: str | None = None
    #: secret reference (env:VAR, file:PATH, secret:NAME) holding the base64 TSIG secret
    tsig_secret: str | None = None
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha1", "hmac-md5"] = (
        "hmac-sha256")
    #: exec: the program run as ``script present|cleanup <fqdn> <value>``
    script: Path | None = None
    script_timeout: float = Field(default=120, gt=0)
    #: how long to wait for the TXT record to be visible on every authoritative server
    propagation_timeout: float = Field(default=120, gt=0)
    #: authoritative servers to check ("host" or "host:port"); default: the zone's NS records
    #: (rfc2136 falls back to ``server``). For exec, checking happens only when this is set.
    nameservers: tuple[str, ...] = ()
    #: recursive resolver for CNAME, SOA and NS lookups ("host" or "host:port"); default: system
    resolver: str | None = None
    #: follow a ``_acme-challenge.<name>`` CNAME and publish the TXT at its target
    cname_delegation: bool = True
    ttl: int = Field(default=60, ge=0)
    #: lexicon: the provider name ("cloudflare", "route53", "azure", "powerdns", ...)
    provider: str | None = None
    #: lexicon: the provider's plain options (e.g. pdns_server = "http://ns1:8081")
    provider_options: dict[str, str | int | bool] = Field(default_factory=dict)
    #: lexicon: the provider's secret options, each a secret reference (auth_token = "secret:cf")
    credentials: dict[str, str] = Field(default_factory=dict)
    #: acme-dns: the server's API base URL ("https://auth.acme-dns.io")
    acme_dns_url: str | None = None
    #: acme-dns: networks allowed to update the record (sent at registration)
    acme_dns_allow_from: tuple[str, ...] = ()
    #: acme-dns: PEM bundle trusted for the API's HTTPS (default: the system store)
    acme_dns_ca_bundle: Path | None = None
    #: windows: the DNS server the cmdlets talk to (-ComputerName); default: where PowerShell runs
    dns_server: str | None = None
    #: windows: where PowerShell runs
    powershell: PowerShellOptions = PowerShellOptions()

    @field_validator("credentials")
    @classmethod
    def _references_only(cls, value: dict[str, str]) -> dict[str, str]:
        for key, reference in value.items():
            if not reference.startswith(SECRET_PREFIXES):
                raise ValueError(f"{key}: must be a secret reference (env:VAR, file:PATH or secret:NAME), "
                                 "not the credential itself")
        return value

    @model_validator(mode="after")
    def _mode_needs(self) -> Dns01Options:
        if self.mode == "rfc2136":
            if not self.server:
                raise ValueError("server: required when mode = 'rfc2136'")
            if bool(self.tsig_key_name) != bool(self.tsig_secret):
                raise ValueError("tsig_key_name and tsig_secret go together")
        if self.mode == "exec" and self.script is None:
            raise ValueError("script: required when mode = 'exec'")
        if self.mode == "lexicon" and not self.provider:
            raise ValueError("provider: required when mode = 'lexicon' (e.g. provider = \"cloudflare\")")
        if self.mode == "acme-dns":
            if not self.acme_dns_url:
                raise ValueError("acme_dns_url: required when mode = 'acme-dns'")
            if not self.acme_dns_url.startswith(("https://", "http://")):
                raise ValueError("acme_dns_url: must be an http(s) URL")
        return self


class SolverRule(_Strict):
    """One entry of ``solvers``: names (exact, or ``*.suffix`` patterns) and the challenge type."""

    names: tuple[str, ...] = Field(min_length=1)
    type: ChallengeType

    def matches(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(name, pattern.lower().rstrip(".")) for pattern in self.names)


class AcmeOptions(_Strict):
    """The whole ``acme`` issuer table (see the README section "ACME")."""

    directory: str = "letsencrypt"
    contact: tuple[str, ...] = ()
    agree_tos: bool = False
    ca_bundle: Path | None = None
    eab_kid: str | None = None
    eab_hmac_key_file: Path | None = None
    #: secret reference (env:, file:, secret:) to the base64url EAB HMAC key, instead of the file
    eab_hmac_key: str | None = None
    profile: str | None = None
    preferred_chain: str | None = None
    #: ACME account key algorithm: ES256 (default, small and fast) or RS256 (RSA 2048)
    account_key: Literal["es256", "rs256"] = "es256"
    #: per-request network timeout, seconds
    timeout: float = Field(default=30, gt=0)
    #: overall deadline for one issuance (order to download), seconds
    deadline: float = Field(default=600, gt=0)
    #: challenge used for names no ``solvers`` rule matches; default: http-01 if ``http01`` is
    #: configured, else dns-01
    challenge: ChallengeType | None = None
    #: refuse names no public CA issues for (internal, special-use) before any order; default:
    #: decided by the directory (:func:`directory_is_public`). False for Pebble, step-ca and any
    #: ACME server of your own.
    public_names_only: bool | None = None
    solvers: tuple[SolverRule, ...] = ()
    http01: Http01Options | None = None
    dns01: Dns01Options | None = None

    @field_validator("directory")
    @classmethod
    def _directory(cls, value: str) -> str:
        value = DIRECTORY_SHORTCUTS.get(value, value)
        if not value.startswith(("https://", "http://")):
            known = ", ".join(sorted(DIRECTORY_SHORTCUTS))
            raise ValueError(f"must be an http(s) URL or one of {known}")
        return value

    @field_validator("contact")
    @classmethod
    def _contact(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not item.startswith("mailto:") or "@" not in item:
                raise ValueError(f"{item!r} is not a mailto: address")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AcmeOptions:
        if self.eab_kid and not (self.eab_hmac_key_file or self.eab_hmac_key):
            raise ValueError("eab_kid needs eab_hmac_key_file or eab_hmac_key")
        if (self.eab_hmac_key_file or self.eab_hmac_key) and not self.eab_kid:
            raise ValueError("eab_hmac_key_file/eab_hmac_key need eab_kid")
        wanted = {rule.type for rule in self.solvers}
        if self.challenge:
            wanted.add(self.challenge)
        if not wanted:
            wanted.add("http-01" if self.http01 is not None or self.dns01 is None else "dns-01")
        if "dns-01" in wanted and self.dns01 is None:
            raise ValueError("dns01: a [dns01] table is required for dns-01 challenges")
        return self

    @property
    def is_public(self) -> bool:
        """Whether this issuer's CA is a public CA (``public_names_only``, else by directory)."""
        if self.public_names_only is not None:
            return self.public_names_only
        return directory_is_public(self.directory)

    def challenge_for(self, name: str) -> ChallengeType:
        """The challenge type for ``name``: the first matching rule, else dns-01 for a wildcard
        (when configured), else the default."""
        for rule in self.solvers:
            if rule.matches(name):
                return rule.type
        if name.startswith("*.") and self.dns01 is not None:
            return "dns-01"  # RFC 8555 §7.1.3: wildcards are validated by dns-01 only
        if self.challenge:
            return self.challenge
        return "http-01" if self.http01 is not None or self.dns01 is None else "dns-01"
