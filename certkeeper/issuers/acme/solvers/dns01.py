"""dns-01 solvers: RFC 2136 dynamic update with TSIG, or a user script (lego's exec provider).

Both publish ``_acme-challenge.<name>`` TXT = base64url(SHA-256(key authorization)) (RFC 8555
§8.4), optionally following a CNAME from ``_acme-challenge.<name>`` into a zone we can update
(delegation), and wait until every authoritative server answers with the value.

The other dns-01 solvers live beside this module and share :class:`Dns` and the base class:
``dns_lexicon`` (any dns-lexicon provider), ``acme_dns`` (an acme-dns server) and ``windows_dns``
(Active Directory DNS through PowerShell).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update

from certkeeper.errors import IssuanceError

log = logging.getLogger(__name__)

MAX_CNAME_HOPS = 8


def txt_value(key_authorization: str) -> str:
    digest = hashlib.sha256(key_authorization.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def challenge_fqdn(domain: str) -> str:
    """``_acme-challenge.<domain>.`` (a wildcard's ``*.`` is dropped)."""
    return f"_acme-challenge.{domain.removeprefix('*.').rstrip('.')}."


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    """"host", "host:port", "[v6]:port" -> (IP address, port); hostnames are resolved."""
    host, port = value, default_port
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = int(text)
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0]
    except OSError as exc:
        raise IssuanceError(f"dns-01: cannot resolve DNS server {host!r}") from exc
    return str(address), port


class Dns:
    """Lookups for CNAME delegation, zone discovery and propagation checks."""

    def __init__(self, resolver: str | None = None, timeout: float = 3.0) -> None:
        self.timeout = timeout
        if resolver:
            address, port = split_hostport(resolver, 53)
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [address]
            self.resolver.port = port
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = timeout

    def follow_cname(self, fqdn: str) -> str:
        """Where ``fqdn`` finally points (itself when there is no CNAME)."""
        name = fqdn
        for _ in range(MAX_CNAME_HOPS):
            try:
                answer = self.resolver.resolve(name, "CNAME", raise_on_no_answer=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout):
                return name
            if answer.rrset is None:
                return name
            target = str(answer.rrset[0].target)
            log.info("dns-01: %s is delegated by CNAME to %s", name, target)
            name = target
        raise IssuanceError(f"dns-01: more than {MAX_CNAME_HOPS} CNAMEs from {fqdn}")

    def zone_of(self, fqdn: str) -> str:
        """The zone apex containing ``fqdn``, found by SOA queries through the resolver."""
        try:
            return str(dns.resolver.zone_for_name(fqdn, resolver=self.resolver).to_text())
        except (dns.exception.DNSException, OSError) as exc:
            raise IssuanceError(f"dns-01: cannot find the zone of {fqdn} ({type(exc).__name__}); "
                                "set zone = \"...\" in the [dns01] table") from exc

    def zone_nameservers(self, zone: str, port: int = 53) -> list[tuple[str, int]]:
        """Addresses of the zone's NS hosts, through the resolver; may be empty."""
        servers: list[tuple[str, int]] = []
        try:
            answer = self.resolver.resolve(zone, "NS")
        except (dns.exception.DNSException, OSError):
            return servers
        for record in answer:
            host = str(record.target)
            try:
                servers.extend((str(address), port) for address in self.resolver.resolve(host, "A"))
            except (dns.exception.DNSException, OSError):
                log.debug("dns-01: cannot resolve name server %s", host)
        return servers

    def ask(self, server: tuple[str, int], qname: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(qname, rdtype)
        query.flags &= ~dns.flags.RD
        response, _ = dns.query.udp_with_fallback(query, server[0], port=server[1], timeout=self.timeout)
        return response

    def zone_at(self, server: tuple[str, int], fqdn: str) -> str:
        """The zone apex containing ``fqdn``, asked of an authoritative ``server``."""
        name = dns.name.from_text(fqdn)
        while True:
            try:
                response = self.ask(server, name.to_text(), "SOA")
            except (dns.exception.DNSException, OSError) as exc:
                where = f"{server[0]}:{server[1]}"
                raise IssuanceError(f"dns-01: cannot ask {where} for the zone of {fqdn}: {exc}") from exc
            for rrset in response.answer:
                if rrset.rdtype == dns.rdatatype.SOA and rrset.name == name:
                    return name.to_text()
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA:
                    return rrset.name.to_text()
            if name == dns.name.root:
                raise IssuanceError(f"dns-01: no zone found for {fqdn}")
            name = name.parent()

    def nameservers(self, zone: str, ask: tuple[str, int], port: int) -> list[tuple[str, int]]:
        """Addresses of the zone's NS hosts (asked of ``ask``), on ``port``; may be empty."""
        try:
            response = self.ask(ask, zone, "NS")
        except (dns.exception.DNSException, OSError):
            return []
        servers: list[tuple[str, int]] = []
        for rrset in response.answer:
            if rrset.rdtype != dns.rdatatype.NS:
                continue
            for record in rrset:
                host = str(record.target)
                try:
                    for answer in self.resolver.resolve(host, "A"):
                        servers.append((str(answer), port))
                except dns.exception.DNSException:
                    log.debug("dns-01: cannot resolve name server %s", host)
        return servers

    def has_txt(self, server: tuple[str, int], fqdn: str, value: str) -> bool:
        try:
            response = self.ask(server, fqdn, "TXT")
        except (dns.exception.DNSException, OSError):
            return False
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for record in rrset:
                    if b"".join(record.strings).decode(errors="replace") == value:
                        return True
        return False

    def wait_visible(self, fqdn: str, value: str, servers: list[tuple[str, int]], timeout: float) -> None:
        """Return once every server answers ``fqdn`` TXT with ``value``, polling from 50 ms."""
        end = time.monotonic() + timeout
        delay = 0.05
        waiting = list(dict.fromkeys(servers))
        while True:
            waiting = [server for server in waiting if not self.has_txt(server, fqdn, value)]
            if not waiting:
                return
            if time.monotonic() + delay > end:
                where = ", ".join(f"{host}:{port}" for host, port in waiting)
                raise IssuanceError(f"dns-01: TXT {fqdn} not visible on {where} after {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.6, 2.0)


class _Dns01Base:
    challenge_type: ClassVar[str] = "dns-01"

    def __init__(self, dns_tools: Dns, cname_delegation: bool, propagation_timeout: float,
                 nameservers: tuple[str, ...]) -> None:
        self.dns = dns_tools
        self.cname_delegation = cname_delegation
        self.propagation_timeout = propagation_timeout
        self.nameservers = [split_hostport(server, 53) for server in nameservers]

    def target(self, domain: str) -> str:
        fqdn = challenge_fqdn(domain)
        return self.dns.follow_cname(fqdn) if self.cname_delegation else fqdn

    def wait_published(self, fqdn: str, value: str, zone: str) -> None:
        """Wait until the configured ``nameservers`` (else the zone's NS hosts) answer with the value.

        With neither, there is nothing to ask: a warning says so and the CA is asked at once.
        """
        servers = self.nameservers or self.dns.zone_nameservers(zone)
        if not servers:
            log.warning("dns-01: no name servers found for zone %s; not waiting for %s to propagate "
                        "(set nameservers = [...] in the [dns01] table)", zone, fqdn)
            return
        self.dns.wait_visible(fqdn, value, servers, self.propagation_timeout)


class Rfc2136Dns01(_Dns01Base):
    """Adds and deletes the TXT record by RFC 2136 UPDATE, signed with TSIG (RFC 8945)."""

    def __init__(self, *, server: str, port: int = 53, zone: str | None = None,
                 tsig_key_name: str | None = None, tsig_secret: Callable[[], str] | None = None,
                 tsig_algorithm: str = "hmac-sha256", ttl: int = 60, dns_tools: Dns | None = None,
                 cname_delegation: bool = True, propagation_timeout: float = 120,
                 nameservers: tuple[str, ...] = ()) -> None:
        super().__init__(dns_tools or Dns(), cname_delegation, propagation_timeout, nameservers)
        self.server = split_hostport(server, port)
        self.zone = zone.rstrip(".") + "." if zone else None
        self.tsig_key_name = tsig_key_name
        self.tsig_secret = tsig_secret
        self.tsig_algorithm = tsig_algorithm
        self.ttl = ttl

    def _zone_for(self, fqdn: str) -> str:
        if self.zone and dns.name.from_text(fqdn).is_subdomain(dns.name.from_text(self.zone)):
            return self.zone
        return self.dns.zone_at(self.server, fqdn)

    def _send(self, zone: str, change: Callable[[dns.update.UpdateMessage], None], what: str) -> None:
        keyring = None
        if self.tsig_key_name and self.tsig_secret:
            keyring = dns.tsigkeyring.from_text({self.tsig_key_name: self.tsig_secret()})
        keyname = dns.name.from_text(self.tsig_key_name) if self.tsig_key_name else None
        update = dns.update.UpdateMessage(zone, keyring=keyring, keyname=keyname,
                                          keyalgorithm=self.tsig_algorithm)
        change(update)
        host, port = self.server
        try:
            response = dns.query.tcp(update, host, port=port, timeout=self.dns.timeout)
        except dns.tsig.PeerError as exc:
            raise IssuanceError(f"dns-01: {host}:{port} rejected the TSIG key for {what} "
                                f"({type(exc).__name__})") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise IssuanceError(f"dns-01: update of {what} at {host}:{port} failed: {exc}") from exc
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            raise IssuanceError(f"dns-01: {host}:{port} answered {dns.rcode.to_text(rcode)} to the update "
                                f"of {what} in zone {zone} (check allow-update / the TSIG key)")

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        fqdn, value = self.target(domain), txt_value(key_authorization)
        zone = self._zone_for(fqdn)
        self._send(zone, lambda update: update.add(fqdn, self.ttl, "TXT", f'"{value}"'), fqdn)
        servers = self.nameservers or [self.server, *self.dns.nameservers(zone, self.server, self.server[1])]
        self.dns.wait_visible(fqdn, value, servers, self.propagation_timeout)

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        fqdn, value = self.target(domain), txt_value(key_authorization)
        zone = self._zone_for(fqdn)
        self._send(zone, lambda update: update.delete(fqdn, "TXT", f'"{value}"'), fqdn)


class ExecDns01(_Dns01Base):
    """Runs ``script present|cleanup <fqdn> <value>`` (lego's exec provider contract).

    Environment: ``CERTKEEPER_ACME_ACTION``, ``CERTKEEPER_ACME_DOMAIN`` (the certificate name),
    ``CERTKEEPER_ACME_FQDN`` (the record, trailing dot, after CNAME delegation),
    ``CERTKEEPER_ACME_VALUE``, ``CERTKEEPER_ACME_TOKEN``, ``CERTKEEPER_ACME_KEY_AUTHORIZATION``,
    ``CERTKEEPER_ACME_TTL``. Exit 0 means done; ``present`` should return once the record is
    published. With ``nameservers`` set, certkeeper also waits until they answer with the value.
    """

    def __init__(self, *, script: Path, timeout: float = 120, ttl: int = 60,
                 dns_tools: Dns | None = None, cname_delegation: bool = True,
                 propagation_timeout: float = 120, nameservers: tuple[str, ...] = ()) -> None:
        super().__init__(dns_tools or Dns(), cname_delegation, propagation_timeout, nameservers)
        self.script = script
        self.timeout = timeout
        self.ttl = ttl

    def _run(self, action: str, domain: str, token: str, key_authorization: str) -> None:
        fqdn, value = self.target(domain), txt_value(key_authorization)
        env = dict(os.environ)
        env.update({
            "CERTKEEPER_ACME_ACTION": action,
            "CERTKEEPER_ACME_DOMAIN": domain,
            "CERTKEEPER_ACME_FQDN": fqdn,
            "CERTKEEPER_ACME_VALUE": value,
            "CERTKEEPER_ACME_TOKEN": token,
            "CERTKEEPER_ACME_KEY_AUTHORIZATION": key_authorization,
            "CERTKEEPER_ACME_TTL": str(self.ttl),
        })
        try:
            result = subprocess.run([str(self.script), action, fqdn, value], env=env, capture_output=True,
                                    text=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise IssuanceError(f"dns-01: cannot run {self.script} {action} for {domain}: {exc}") from exc
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise IssuanceError(f"dns-01: {self.script} {action} {fqdn} exited {result.returncode}: "
                                + " | ".join(tail)[:400])
        if action == "present" and self.nameservers:
            self.dns.wait_visible(fqdn, value, self.nameservers, self.propagation_timeout)

    def present(self, domain: str, token: str, key_authorization: str) -> None:
        self._run("present", domain, token, key_authorization)

    def cleanup(self, domain: str, token: str, key_authorization: str) -> None:
        self._run("cleanup", domain, token, key_authorization)
