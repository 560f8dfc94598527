"""dns-01 through dns-lexicon: Cloudflare, Route 53, Azure DNS, PowerDNS and every other provider
lexicon knows (https://dns-lexicon.github.io/dns-lexicon/).

certkeeper keeps what it does for every dns-01 mode around the provider: the CNAME following
(delegation), the zone (``zone``, else found by SOA through ``resolver``) and the wait until the
authoritative servers answer with the value. Lexicon only adds and deletes the TXT record.

Why the provider is built here rather than through ``lexicon.client.Client``: the client always
guesses the zone itself, with tldextract (which downloads the Public Suffix List and writes
``~/.lexicon_tld_set``) or with the system resolver, and either guess is wrong for a delegated or
internal zone. certkeeper already knows the zone, so it does what ``Client.__enter__``/``__exit__``
do - ``Provider(config)``, ``authenticate()``, the operation, ``cleanup()`` - with the provider
module loaded by lexicon's own discovery. That is the one private lexicon import; the dependency
is pinned below lexicon 4 for it.

Credentials are secret references (``env:``, ``file:``, ``secret:``) resolved at each use and
never logged; errors never quote the provider's exception text for HTTP failures (some
providers put tokens in URLs), and mask every credential value in any other text.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from certkeeper import netreason
from certkeeper.errors import ConfigError, IssuanceError

from .dns01 import Dns, _Dns01Base, txt_value

log = logging.getLogger(__name__)

#: one lock per (provider, zone): several providers (PowerDNS, many REST APIs) replace a whole
#: RRset on write, so two concurrent writes to one zone from this process could drop a value
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(provider: str, zone: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((provider, zone), threading.Lock())


def lexicon_installed() -> bool:
    return importlib.util.find_spec("lexicon") is not None


def available_providers() -> dict[str, bool]:
    """Lexicon's providers and whether their extra dependencies are installed."""
    from lexicon._private.discovery import find_providers

    return dict(find_providers())


class LexiconDns01(_Dns01Base):
    """Adds and deletes the TXT record through a lexicon provider."""

    def __init__(self, *, provider: str, options: Mapping[str, Any] | None = None,
                 credentials: Mapping[str, str] | None = None,
                 resolve_secret: Callable[[str], str] | None = None, zone: str | None = None,
                 ttl: int = 60, dns_tools: Dns | None = None, cname_delegation: bool = True,
                 propagation_timeout: float = 120, nameservers: tuple[str, ...] = (),
                 where: str = "dns01") -> None:
        super().__init__(dns_tools or Dns(), cname_delegation, propagation_timeout, nameservers)
        if not lexicon_installed():
            raise ConfigError(f"{where}.mode = 'lexicon' needs dns-lexicon: pip install 'certkeeper[lexicon]' "
                              "(and the provider's extra, e.g. 'dns-lexicon[route53]')")
        self.provider = provider
        self.options = dict(options or {})
        self.credentials = dict(credentials or {})
        self.resolve_secret = resolve_secret
        self.zone = zone.rstrip(".") + "." if zone else None
        self.ttl = ttl
        self.where = where

    # -- plumbing ---------------------------------------------------------------------------

    def _zone_for(self, fqdn: str) -> str:
        import dns.name

        if self.zone and dns.name.from_text(fqdn).is_subdomain(dns.name.from_text(self.zone)):
            return self.zone
        return self.dns.zone_of(fqdn)

    def _secrets(self) -> dict[str, str]:
        if self.credentials and self.resolve_secret is None:
            raise ConfigError(f"{self.where}.credentials: secret references cannot be resolved here")
        resolved = {}
        for key, reference in self.credentials.items():
            assert self.resolve_secret is not None
            resolved[key] = self.resolve_secret(reference)
        return resolved

    def check_provider(self) -> None:
        """ConfigError unless lexicon has the provider and its extra dependencies."""
        providers = available_providers()
        if self.provider not in providers:
            raise ConfigError(f"{self.where}.provider: lexicon has no provider {self.provider!r} "
                              "(see https://dns-lexicon.github.io/dns-lexicon/providers_options.html)")
        if not providers[self.provider]:
            raise ConfigError(f"{self.where}.provider: lexicon's {self.provider} provider needs its extra "
                              f"dependencies: pip install 'dns-lexicon[{self.provider}]'")

    @contextmanager
    def _session(self, zone: str, what: str) -> Iterator[Any]:
        """An authenticated provider for ``zone``; every failure becomes one IssuanceError line."""
        from lexicon._private.discovery import load_provider_module
        from lexicon.config import ConfigResolver

        self.check_provider()
        secrets = self._secrets()
        domain = zone.rstrip(".")
        config = ConfigResolver().with_dict({  # type: ignore[no-untyped-call]
            "provider_name": self.provider, "domain": domain, "ttl": self.ttl,
            self.provider: {**self.options, **secrets},
        })
        provider = None
        try:
            provider = load_provider_module(self.provider).Provider(config)
            provider.authenticate()
            yield provider
        except IssuanceError:
            raise
        except Exception as exc:  # noqa: BLE001 - providers raise anything; translate once, here
            raise self._translate(exc, domain, what, secrets.values()) from None
        finally:
            if provider is not None:
                try:
                    provider.cleanup()
                except Exception:  # noqa: BLE001 - a cleanup failure never hides the outcome
                    log.warning("dns-01: lexicon %s cleanup failed", self.provider)

    def _translate(self, exc: Exception, zone: str, what: str, secrets: Any) -> IssuanceError:
        import requests

        name = f"the {self.provider} DNS API"
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                return IssuanceError(f"dns-01: {name} refused the credentials (HTTP {status}) while trying to "
                                     f"{what} in zone {zone}: check {self.where}.credentials")
            if status == 404:
                return IssuanceError(f"dns-01: {name} does not know zone {zone} (HTTP 404) while trying to "
                                     f"{what}: set {self.where}.zone, or check the account's zones")
            return IssuanceError(f"dns-01: {name} answered HTTP {status} while trying to {what} in zone {zone}")
        if isinstance(exc, requests.RequestException):
            return IssuanceError(f"dns-01: cannot reach {name} to {what} in zone {zone}: {netreason.reason(exc)}")
        text = " ".join(str(exc).split())[:300]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return IssuanceError(f"dns-01: lexicon's {self.provider} provider failed to {what} in zone {zone}: "
                             f"{type(exc).__name__}: {text}")

    # -- the solver -------------------------------------------------------------------------

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        fqdn, value = self.target(domain), txt_value(key_authorization)
        zone = self._zone_for(fqdn)
        with _lock(self.provider, zone), self._session(zone, f"create TXT {fqdn}") as provider:
            provider.create_record("TXT", fqdn.rstrip("."), value)
        log.info("dns-01: lexicon %s created TXT %s in zone %s", self.provider, fqdn, zone)
        self.wait_published(fqdn, value, zone)

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        fqdn, value = self.target(domain), txt_value(key_authorization)
        zone = self._zone_for(fqdn)
        with _lock(self.provider, zone), self._session(zone, f"delete TXT {fqdn}") as provider:
            provider.delete_record(None, "TXT", fqdn.rstrip("."), value)
        log.info("dns-01: lexicon %s deleted TXT %s in zone %s", self.provider, fqdn, zone)

    def plan(self, domain: str, key_authorization: str) -> list[str]:
        """What present and cleanup would do, changing nothing (DNS lookups only)."""
        fqdn, value = self.target(domain), txt_value(key_authorization)
        zone = self._zone_for(fqdn)
        keys = ", ".join(sorted({*self.options, *self.credentials})) or "none"
        return [
            f"lexicon {self.provider} (options: {keys}): create TXT {fqdn} = \"{value}\" in zone {zone}, "
            f"ttl {self.ttl}",
            f"wait until {self._servers_text(zone)} answer with it (up to {self.propagation_timeout:g} s)",
            f"lexicon {self.provider}: delete that TXT value after validation",
        ]

    def _servers_text(self, zone: str) -> str:
        servers = self.nameservers or self.dns.zone_nameservers(zone)
        return ", ".join(f"{host}:{port}" for host, port in servers) or f"(no name servers found for {zone})"
