"""Judge an Outlook Anywhere endpoint the way Outlook (and the Remote Connectivity Analyzer) would.

``check("https://mail.contoso.com")`` connects (to ``connect`` if given: one server behind the
load balancer, while the URL's host is still the SNI, the Host header and the name judged) and
returns a checklist:

========================  ==================================================================
``tls``                   a TLS handshake works at all
``chain``                 the served chain leads to a trusted root (``ca_file`` or the system's)
``names``                 the URL host (and any ``names``) is in the SAN list (RFC 6125 wildcards)
``principal``             ``msstd:`` principal: any SAN for Vista+ clients (fail if none), the
                          Subject CN for Windows XP clients (warn if only SAN)
``key``                   RSA >= 2048 (ECDSA: warn, Exchange 2016 CU23 / 2019 CU13+ only)
``signature``             SHA-256 or stronger
``expiry``                days left: >= 60 pass, 30-59 warn, < 30 fail (Exchange HealthChecker)
``rpcproxy``              ``/rpc/rpcproxy.dll`` answers 401 with Negotiate, NTLM or Basic (with
                          ``auth``: with that one); 404 = Outlook Anywhere / RPC proxy not enabled
``mapi``                  ``/mapi/emsmdb`` (MAPI over HTTP) answers 401; 404 is a warning
``autodiscover``          ``/autodiscover/autodiscover.xml`` answers 401 the same way; with
                          ``domain``: ``autodiscover-1..4`` in Outlook's order (http_probes.py)
========================  ==================================================================

Sources: "Certificate planning in Exchange 2013" (Exchange Team blog,
https://techcommunity.microsoft.com/t5/exchange-team-blog/certificate-planning-in-exchange-2013/ba-p/587150);
"All about Set-OutlookProvider" (https://learn.microsoft.com/es-es/archive/blogs/umutg/all-about-set-outlookprovider);
the Remote Connectivity Analyzer's "SSL certificate name mismatch"
(https://learn.microsoft.com/connectivity-analyzer/ssl-certificate-name-mismatch); KB3032024 (CNG keys and
OWA forms logon, https://support.microsoft.com/kb/3032024); the CA/Browser Forum Baseline Requirements §6.1.5
(key sizes); Exchange HealthChecker's certificate checks (https://github.com/microsoft/CSS-Exchange).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certkeeper.binders import probe
from certkeeper.clock import Clock, SystemClock
from certkeeper.errors import InputError
from certkeeper.hostnames import covers
from certkeeper.hostnames import fold as normalize
from certkeeper.outlook import http_probes
from certkeeper.outlook.http_probes import shown
from certkeeper.outlook.planner import principal_host

GREEN_DAYS = 60  # HealthChecker: green from 60 days, yellow 30-59, red below 30
RED_DAYS = 30
AUTH_SCHEMES = ("negotiate", "ntlm", "basic")
PATHS = {"rpcproxy": "/rpc/rpcproxy.dll", "mapi": "/mapi/emsmdb", "autodiscover": "/autodiscover/autodiscover.xml"}
USER_AGENT = "Microsoft Office/16.0 (certkeeper check)"


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a check status, not a password
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckItem:
    id: str
    status: Status
    title: str
    detail: str


@dataclass(frozen=True)
class CheckReport:
    url: str
    connect: str
    items: tuple[CheckItem, ...]
    served_fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        """No item failed (warnings do not fail)."""
        return all(item.status is not Status.FAIL for item in self.items)

    def item(self, item_id: str) -> CheckItem:
        return next(item for item in self.items if item.id == item_id)

    def failures(self) -> list[CheckItem]:
        return [item for item in self.items if item.status is Status.FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "connect": self.connect,
            "ok": self.ok,
            "served_fingerprint": self.served_fingerprint,
            "items": [{"id": i.id, "status": i.status.value, "title": i.title, "detail": i.detail} for i in self.items],
        }


def _target(url: str, connect: str | None) -> tuple[str, str, int]:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme != "https" or not parts.hostname:
        raise InputError(f"{url!r}: give an https:// URL")
    host = normalize(parts.hostname)
    try:
        port = parts.port or 443
    except ValueError:
        raise InputError(f"{url!r}: bad port") from None
    if connect:
        endpoint = probe.parse_endpoint(connect)
        return host, endpoint.host, endpoint.port
    return host, host, port


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [normalize(name) for name in extension.value.get_values_for_type(x509.DNSName)]


def _common_name(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return normalize(str(values[0].value)) if values else None


def _trust(host: str, address: tuple[str, int], ca_file: str | None, timeout: float) -> CheckItem:
    title = "Chain trusted"
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False  # the names are judged separately, so each failure has its own line
    try:
        with socket.create_connection(address, timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=probe.sni_for(host)):
                pass
    except ssl.SSLCertVerificationError as exc:
        where = f" (trust store: {ca_file})" if ca_file else " (system trust store)"
        return CheckItem("chain", Status.FAIL, title, f"{exc.verify_message}{where}")
    except OSError as exc:
        return CheckItem("chain", Status.FAIL, title, f"handshake failed: {exc}")
    return CheckItem("chain", Status.PASS, title, "the served chain leads to a trusted root")


def _names(cert: x509.Certificate, wanted: Sequence[str]) -> CheckItem:
    sans = _san_names(cert)
    missing = [name for name in wanted if not any(covers(san, name) for san in sans)]
    if missing:
        return CheckItem(
            "names",
            Status.FAIL,
            "Names covered",
            f"not in the certificate: {', '.join(missing)} (SAN: {', '.join(sans) or 'none'})",
        )
    return CheckItem("names", Status.PASS, "Names covered", f"{', '.join(wanted)} in SAN")


def _principal(cert: x509.Certificate, principal: str) -> CheckItem:
    host = principal_host(principal)
    shown = f"msstd:{host}"
    sans = _san_names(cert)
    common_name = _common_name(cert)
    # a wildcard principal must equal a wildcard name; a host principal may be covered by one
    in_san = any(san == host or (not host.startswith("*.") and covers(san, host)) for san in sans)
    cn_equal = common_name == host
    title = "Principal name matched"
    if not in_san and not cn_equal:
        return CheckItem(
            "principal",
            Status.FAIL,
            title,
            f"{shown} matches neither the Subject CN ({common_name}) nor any SAN; "
            "Outlook Anywhere mutual authentication fails",
        )
    if not cn_equal:
        return CheckItem(
            "principal",
            Status.WARN,
            title,
            f"{shown} is in the SAN (Vista and later) but the Subject CN is {common_name}: "
            "Outlook on Windows XP would refuse it",
        )
    return CheckItem("principal", Status.PASS, title, f"{shown} equals the Subject CN and is in the SAN")


def _key(cert: x509.Certificate) -> CheckItem:
    key = cert.public_key()
    title = "Key acceptable"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return CheckItem("key", Status.FAIL, title, f"RSA {key.key_size}: below 2048 bits")
        return CheckItem("key", Status.PASS, title, f"RSA {key.key_size}")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return CheckItem(
            "key",
            Status.WARN,
            title,
            f"ECDSA {key.curve.name}: Exchange supports it only on 2016 CU23 / 2019 CU13+ "
            "with the April 2024 hotfix; not on 2010/2013",
        )
    return CheckItem("key", Status.FAIL, title, f"{type(key).__name__}: not RSA or ECDSA")


def _signature(cert: x509.Certificate) -> CheckItem:
    algorithm = cert.signature_hash_algorithm
    title = "Signature acceptable"
    if algorithm is None:
        return CheckItem("signature", Status.WARN, title, "no separate hash (EdDSA): old clients cannot check it")
    if isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        return CheckItem("signature", Status.PASS, title, f"{algorithm.name}")
    return CheckItem("signature", Status.FAIL, title, f"{algorithm.name}: use SHA-256 or stronger")


def _expiry(cert: x509.Certificate, now: datetime) -> CheckItem:
    title = "Days left"
    if now < cert.not_valid_before_utc:
        return CheckItem(
            "expiry", Status.FAIL, title, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    days = (cert.not_valid_after_utc - now).total_seconds() / 86400
    when = f"{cert.not_valid_after_utc:%Y-%m-%d}"
    if days < 0:
        return CheckItem("expiry", Status.FAIL, title, f"expired on {when}")
    if days < RED_DAYS:
        return CheckItem(
            "expiry", Status.FAIL, title, f"{days:.0f} days left (expires {when}; HealthChecker: red < 30)"
        )
    if days < GREEN_DAYS:
        return CheckItem("expiry", Status.WARN, title, f"{days:.0f} days left (expires {when}; HealthChecker: < 60)")
    return CheckItem("expiry", Status.PASS, title, f"{days:.0f} days left (expires {when})")


NOT_ENABLED_404 = (
    "404: Outlook Anywhere is not enabled or the RPC over HTTP proxy is not installed (Exchange 2010: "
    "Install-WindowsFeature RPC-over-HTTP-proxy, then Enable-OutlookAnywhere; 2013+: Get-OutlookAnywhere "
    "should list the server)"
)


def _challenge(
    item_id: str, path: str, host: str, address: tuple[str, int], timeout: float, auth: str | None = None
) -> CheckItem:
    title = f"{path} asks for authentication" + (f" ({shown([auth])})" if auth else "")
    try:
        answer = http_probes.get(host, address, path, timeout)
    except (OSError, http.client.HTTPException) as exc:
        return CheckItem(item_id, Status.FAIL, title, f"no HTTP answer: {exc}")
    if answer.status == 401 and answer.schemes:
        if auth and auth not in answer.schemes:
            return CheckItem(
                item_id,
                Status.FAIL,
                title,
                f"401 offers {shown(answer.schemes)} but not {shown([auth])}: Outlook set to {shown([auth])} "
                "cannot sign in (Set-OutlookAnywhere -ExternalClientAuthenticationMethod / -IISAuthenticationMethods)",
            )
        return CheckItem(item_id, Status.PASS, title, f"401 with {shown(answer.schemes)}")
    if answer.status == 401:
        return CheckItem(item_id, Status.FAIL, title, "401 without Negotiate, NTLM or Basic")
    if answer.status == 404 and item_id == "rpcproxy":
        return CheckItem(item_id, Status.FAIL, title, NOT_ENABLED_404)
    if answer.status == 404 and item_id == "mapi":
        return CheckItem(item_id, Status.WARN, title, "404: MAPI over HTTP is not enabled (Outlook uses RPC over HTTP)")
    if 200 <= answer.status < 300:
        return CheckItem(item_id, Status.FAIL, title, f"{answer.status}: answers without asking for authentication")
    return CheckItem(
        item_id, Status.FAIL, title, f"HTTP {answer.status} instead of 401 with an authentication challenge"
    )


def _autodiscover(
    domain: str,
    *,
    connect: Callable[[str, int], tuple[str, int]],
    connect_http: Callable[[str], tuple[str, int]],
    nameserver: tuple[str, int] | None,
    timeout: float,
) -> list[CheckItem]:
    """Each place Outlook looks, in its order, until one answers 401 (the rest: not needed)."""
    items: list[CheckItem] = []
    found = False
    for index, candidate in enumerate(
        http_probes.candidates(
            domain, connect=connect, connect_http=connect_http, nameserver=nameserver, timeout=timeout
        ),
        1,
    ):
        item_id, title = f"autodiscover-{index}", f"Autodiscover {candidate.label}"
        if found:
            items.append(CheckItem(item_id, Status.PASS, title, "not needed: Outlook stops at the first answer"))
            continue
        if candidate.address is None:
            items.append(CheckItem(item_id, Status.WARN, title, candidate.detail))
            continue
        try:
            answer = http_probes.get(
                candidate.host, candidate.address, http_probes.AUTODISCOVER_PATH, timeout, tls=candidate.tls
            )
        except (OSError, http.client.HTTPException) as exc:
            items.append(CheckItem(item_id, Status.WARN, title, f"no answer: {exc}"))
            continue
        if candidate.tls and answer.status == 401 and answer.schemes:
            found = True
            items.append(CheckItem(item_id, Status.PASS, title, f"401 with {shown(answer.schemes)}"))
        elif (
            not candidate.tls and answer.status in (301, 302, 303, 307, 308) and answer.location.startswith("https://")
        ):
            found = True
            items.append(CheckItem(item_id, Status.PASS, title, f"{answer.status} to {answer.location}"))
        else:
            items.append(CheckItem(item_id, Status.WARN, title, f"HTTP {answer.status}: Outlook moves on"))
    if not found:
        items.append(
            CheckItem(
                "autodiscover", Status.FAIL, "Autodiscover found", f"none of Outlook's four places answers for {domain}"
            )
        )
    return items


def check(
    url: str,
    connect: str | None = None,
    principal: str | None = None,
    ca_file: str | None = None,
    *,
    names: Sequence[str] = (),
    clock: Clock | None = None,
    timeout: float = 10,
    auth: str | None = None,
    domain: str | None = None,
    connect_http: str | None = None,
    nameserver: str | None = None,
) -> CheckReport:
    """Check ``url`` as Outlook would; see the module docstring for the items.

    ``auth`` (ntlm | basic | negotiate): the rpcproxy challenge must offer it. ``domain``: probe
    Autodiscover for that SMTP domain in Outlook's order (``connect``/``connect_http`` stand in
    for every host when given; ``nameserver`` host:port answers the SRV query).

    Raises:
        InputError: the URL or ``connect`` cannot be used.
    """
    host, connect_host, port = _target(url, connect)
    address = (connect_host, port)
    shown_connect = f"{connect_host}:{port}"
    now = (clock or SystemClock()).now()
    try:
        served = probe.fetch(
            probe.Endpoint("tls", connect_host, port, shown_connect), probe.sni_for(host), timeout=timeout
        )
    except OSError as exc:
        item = CheckItem("tls", Status.FAIL, "TLS handshake", f"{shown_connect} (SNI {host}): {exc}")
        return CheckReport(url, shown_connect, (item,))
    cert = x509.load_der_x509_certificate(served.leaf_der)
    items = [
        CheckItem(
            "tls",
            Status.PASS,
            "TLS handshake",
            f"{served.tls_version} with SNI {host}; {1 + len(served.chain_der)} certificate(s) sent",
        ),
        _trust(host, address, ca_file, timeout),
        _names(cert, [host, *(normalize(n) for n in names if normalize(n) != host)]),
        _principal(cert, principal or f"msstd:{host}"),
        _key(cert),
        _signature(cert),
        _expiry(cert, now),
        _challenge("rpcproxy", PATHS["rpcproxy"], host, address, timeout, auth),
        _challenge("mapi", PATHS["mapi"], host, address, timeout),
    ]
    if domain is None:
        items.append(_challenge("autodiscover", PATHS["autodiscover"], host, address, timeout))
    else:
        http_address = probe.parse_endpoint(connect_http) if connect_http else None
        dns_address = probe.parse_endpoint(nameserver) if nameserver else None
        items += _autodiscover(
            normalize(domain),
            connect=lambda name, port: (connect_host, address[1]) if connect else (name, port),
            connect_http=lambda name: (
                (http_address.host, http_address.port) if http_address else (connect_host if connect else name, 80)
            ),
            nameserver=(dns_address.host, dns_address.port) if dns_address else None,
            timeout=timeout,
        )
    return CheckReport(url, shown_connect, tuple(items), served.fingerprint)
