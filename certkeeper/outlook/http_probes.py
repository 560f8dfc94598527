"""The HTTP side of ``certkeeper check``: what Outlook meets at rpcproxy, MAPI and Autodiscover.

* ``/rpc/rpcproxy.dll`` must answer 401 with an authentication challenge, and with the method
  Outlook is set to use (``--auth``; ``Get-OutlookAnywhere``: ``ClientAuthenticationMethod`` on
  2010, ``ExternalClientAuthenticationMethod`` on 2013+,
  https://learn.microsoft.com/powershell/module/exchange/set-outlookanywhere). A 404 there means
  Outlook Anywhere is not enabled or the RPC over HTTP proxy feature is missing.
* ``/mapi/emsmdb`` - MAPI over HTTP, Outlook's default from Exchange 2016 - answers 401 too.
* Autodiscover in Outlook's order (https://learn.microsoft.com/exchange/architecture/client-access/autodiscover):
  ``https://<domain>/autodiscover/autodiscover.xml``, ``https://autodiscover.<domain>/...``, the
  HTTP redirect from ``http://autodiscover.<domain>/...``, then the ``_autodiscover._tcp.<domain>``
  SRV record (RFC 2782).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from certkeeper.binders import probe

AUTH_SCHEMES = ("negotiate", "ntlm", "basic")
USER_AGENT = "Microsoft Office/16.0 (certkeeper check)"
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"


@dataclass(frozen=True)
class Answer:
    status: int
    schemes: tuple[str, ...]
    location: str = ""


def shown(schemes: tuple[str, ...] | list[str]) -> str:
    return ", ".join("NTLM" if s == "ntlm" else s.capitalize() for s in schemes)


def get(host: str, address: tuple[str, int], path: str, timeout: float, *, tls: bool = True) -> Answer:
    """One anonymous GET (TLS with SNI ``host`` unless ``tls`` is False); raises OSError/HTTPException."""
    raw = socket.create_connection(address, timeout=timeout)
    stream: socket.socket = raw
    try:
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # trust is the chain item's job
            stream = context.wrap_socket(raw, server_hostname=probe.sni_for(host))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        stream.sendall(request.encode())
        response = http.client.HTTPResponse(stream)
        response.begin()
        challenges = response.msg.get_all("WWW-Authenticate") or []
        location = response.getheader("Location") or ""
        status = response.status
        response.close()
    finally:
        stream.close()
        raw.close()
    schemes = tuple(
        sorted({c.split()[0].lower() for c in challenges if c.split()} & set(AUTH_SCHEMES), key=AUTH_SCHEMES.index)
    )
    return Answer(status, schemes, location)


@dataclass(frozen=True)
class Candidate:
    """One place Outlook looks for Autodiscover."""

    label: str
    host: str
    address: tuple[str, int] | None  # None: nothing to connect to (no SRV record)
    tls: bool
    detail: str = ""


def srv_lookup(domain: str, nameserver: tuple[str, int] | None, timeout: float) -> tuple[str, int] | None:
    """``_autodiscover._tcp.<domain>`` SRV -> (target, port), lowest priority first; None if none."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=nameserver is None)
    if nameserver is not None:
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
    resolver.lifetime = timeout
    try:
        answer = resolver.resolve(f"_autodiscover._tcp.{domain}", "SRV")
    except (dns.exception.DNSException, OSError):
        return None
    records = sorted(answer, key=lambda r: (r.priority, -r.weight))
    if not records:
        return None
    return str(records[0].target).rstrip("."), int(records[0].port)


def candidates(
    domain: str,
    *,
    connect: Callable[[str, int], tuple[str, int]],
    connect_http: Callable[[str], tuple[str, int]],
    nameserver: tuple[str, int] | None,
    timeout: float,
) -> list[Candidate]:
    """The four places, in Outlook's order; ``connect`` maps (host, port) to where to connect."""
    auto = f"autodiscover.{domain}"
    out = [
        Candidate(f"https://{domain}{AUTODISCOVER_PATH}", domain, connect(domain, 443), True),
        Candidate(f"https://{auto}{AUTODISCOVER_PATH}", auto, connect(auto, 443), True),
        Candidate(f"http://{auto}{AUTODISCOVER_PATH} (redirect)", auto, connect_http(auto), False),
    ]
    target = srv_lookup(domain, nameserver, timeout)
    if target is None:
        out.append(Candidate(f"SRV _autodiscover._tcp.{domain}", domain, None, True, "no SRV record"))
    else:
        host, port = target
        out.append(
            Candidate(
                f"SRV _autodiscover._tcp.{domain} -> {host}:{port}",
                host,
                connect(host, port),
                True,
                f"https://{host}{AUTODISCOVER_PATH}",
            )
        )
    return out
