"""dns-01 through acme-dns (https://github.com/joohoi/acme-dns), the delegation win-acme,
Posh-ACME and lego support.

acme-dns is a small DNS server with an HTTP API that serves only ACME challenge records. A name is
registered once (``POST /register``), which returns credentials and a ``fulldomain``; the zone
owner then creates, once and by hand, ``_acme-challenge.<name> CNAME <fulldomain>``. From then on
each challenge is one ``POST /update`` with ``X-Api-User``/``X-Api-Key``: the main zone never
needs an API key or dynamic updates.

certkeeper registers on first use (or with ``certkeeper dns register``) and keeps the
credentials in the issuer's sealed plugin state (encrypted in the store like account keys). Before
answering a challenge it checks that the CNAME is in place, so a missing CNAME is a clear
"create this record" error instead of a failed validation, which the CA would count against the
account and certkeeper would not retry. acme-dns keeps the two most recent values per name (a
wildcard and its base name share one record), and has no delete: cleanup does nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from certkeeper import netreason
from certkeeper.errors import IssuanceError
from certkeeper.plugins import StateStore

from .dns01 import Dns, _Dns01Base, challenge_fqdn, txt_value

log = logging.getLogger(__name__)

STATE_PREFIX = "acme-dns/"


@dataclass(frozen=True)
class Registration:
    """What ``/register`` returned for one name. ``password`` never appears in ``repr``."""

    server: str
    username: str
    password: str = field(repr=False)
    subdomain: str
    fulldomain: str

    def cname(self, domain: str) -> str:
        """The record the zone owner creates, in zone-file form."""
        return f"{challenge_fqdn(domain)} CNAME {self.fulldomain.rstrip('.')}."


def base_name(domain: str) -> str:
    return domain.removeprefix("*.").rstrip(".").lower()


class AcmeDnsClient:
    """acme-dns's HTTP API: ``/register`` and ``/update`` (its README, "API")."""

    def __init__(self, server: str, *, ca_bundle: Path | None = None, timeout: float = 30) -> None:
        self.server = server.rstrip("/")
        self.verify: bool | str = str(ca_bundle) if ca_bundle else True
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        import requests

        try:
            response = requests.post(f"{self.server}{path}", json=body, headers=headers or {},
                                     timeout=self.timeout, verify=self.verify, allow_redirects=False)
        except requests.RequestException as exc:
            raise IssuanceError(f"acme-dns: cannot reach {self.server}: {netreason.reason(exc)}") from None
        if response.status_code in (401, 403):
            raise IssuanceError(f"acme-dns: {self.server} refused the stored credentials (HTTP "
                                f"{response.status_code}); register again with 'certkeeper dns register --again'")
        if not 200 <= response.status_code < 300:
            reason = _error_word(response)
            raise IssuanceError(f"acme-dns: {self.server}{path} answered HTTP {response.status_code}"
                                + (f" ({reason})" if reason else ""))
        try:
            return response.json()
        except ValueError:
            raise IssuanceError(f"acme-dns: {self.server}{path} did not answer JSON") from None

    def register(self, allow_from: Sequence[str] = ()) -> Registration:
        body: dict[str, Any] = {"allowfrom": list(allow_from)} if allow_from else {}
        data = self._post("/register", body)
        try:
            return Registration(server=self.server, username=str(data["username"]),
                                password=str(data["password"]), subdomain=str(data["subdomain"]),
                                fulldomain=str(data["fulldomain"]).rstrip("."))
        except (KeyError, TypeError):
            raise IssuanceError(f"acme-dns: {self.server}/register answered without credentials") from None

    def update(self, registration: Registration, value: str) -> None:
        self._post("/update", {"subdomain": registration.subdomain, "txt": value},
                   headers={"X-Api-User": registration.username, "X-Api-Key": registration.password})


def _error_word(response: Any) -> str:
    """acme-dns answers errors as {"error": "bad_txt"}: a word, safe to show."""
    try:
        word = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        return ""
    return word if word.replace("_", "").isalnum() and len(word) < 40 else ""


class Registrations:
    """The sealed store of registrations, one per (server, name)."""

    def __init__(self, state: StateStore, server: str) -> None:
        self.state = state
        self.server = server.rstrip("/")

    def _key(self, domain: str) -> str:
        return f"{STATE_PREFIX}{self.server}/{base_name(domain)}"

    def get(self, domain: str) -> Registration | None:
        raw = self.state.get(self._key(domain))
        if raw is None:
            return None
        return Registration(**json.loads(raw))

    def put(self, domain: str, registration: Registration) -> None:
        self.state.put(self._key(domain), json.dumps(asdict(registration)).encode())

    def delete(self, domain: str) -> None:
        self.state.delete(self._key(domain))


class AcmeDnsDns01(_Dns01Base):
    """Updates the name's acme-dns record; registers the name first when it has no credentials."""

    _register_lock = threading.Lock()

    def __init__(self, *, server: str, state: StateStore, allow_from: tuple[str, ...] = (),
                 ca_bundle: Path | None = None, timeout: float = 30, dns_tools: Dns | None = None,
                 propagation_timeout: float = 120, nameservers: tuple[str, ...] = (),
                 check_cname: bool = True) -> None:
        super().__init__(dns_tools or Dns(), False, propagation_timeout, nameservers)
        self.client = AcmeDnsClient(server, ca_bundle=ca_bundle, timeout=timeout)
        self.registrations = Registrations(state, server)
        self.allow_from = allow_from
        self.check_cname = check_cname

    def register(self, domain: str, *, again: bool = False) -> tuple[Registration, bool]:
        """The name's registration, registering it now if there is none (or ``again``).

        Returns (registration, whether it was registered by this call).
        """
        with self._register_lock:
            existing = None if again else self.registrations.get(domain)
            if existing is not None:
                return existing, False
            registration = self.client.register(self.allow_from)
            self.registrations.put(domain, registration)
        log.warning("acme-dns: registered %s at %s; the zone needs: %s", base_name(domain), self.client.server,
                    registration.cname(domain))
        return registration, True

    def cname_in_place(self, domain: str, registration: Registration) -> bool:
        target = self.dns.follow_cname(challenge_fqdn(domain))
        return target.rstrip(".").lower() == registration.fulldomain.rstrip(".").lower()

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        registration, created = self.register(domain)
        if self.check_cname and not self.cname_in_place(domain, registration):
            first = "registered it just now; " if created else ""
            raise IssuanceError(f"acme-dns: {first}{challenge_fqdn(domain)} does not point to acme-dns yet: "
                                f"create the record  {registration.cname(domain)}  and retry", name=domain)
        value = txt_value(key_authorization)
        self.client.update(registration, value)
        log.info("acme-dns: updated %s for %s", registration.fulldomain, domain)
        fqdn = registration.fulldomain.rstrip(".") + "."
        servers = self.nameservers or self.dns.zone_nameservers(self.dns.zone_of(fqdn))
        if servers:
            self.dns.wait_visible(fqdn, value, servers, self.propagation_timeout)

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        """acme-dns has no delete; it keeps only the two latest values of a name anyway."""

    def plan(self, domain: str, key_authorization: str) -> list[str]:
        registration = self.registrations.get(domain)
        value = txt_value(key_authorization)
        if registration is None:
            return [f"POST {self.client.server}/register (no credentials stored for {base_name(domain)} yet), "
                    "store them sealed, print the CNAME to create",
                    "stop until the CNAME is in place"]
        state = "in place" if self.cname_in_place(domain, registration) else "MISSING"
        return [f"CNAME {registration.cname(domain)}: {state}",
                f"POST {self.client.server}/update subdomain={registration.subdomain} txt=\"{value}\"",
                f"wait until {registration.fulldomain}. TXT answers with it (up to {self.propagation_timeout:g} s)",
                "nothing to clean up (acme-dns keeps the two latest values)"]
