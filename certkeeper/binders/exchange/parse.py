"""Reading what the server answered: pure functions of cmdlet output, no PowerShell here."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SslBinding:
    """One HTTP.sys binding from ``netsh http show sslcert``."""

    kind: str  # "ip" | "hostname" | "ccs"
    address: str  # 0.0.0.0:443, mail.contoso.com:443, 443 (central certificate store)
    port: int
    certificate_hash: str

    @property
    def hides_exchange(self) -> bool:
        """A host-name (SNI) or central-store binding on 443 wins over 0.0.0.0:443 for SNI clients."""
        return self.port == 443 and self.kind in ("hostname", "ccs")


def _classify(value: str) -> tuple[str, int] | None:
    if value.isdigit():
        return "ccs", int(value)
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "hostname", int(port)
    return "ip", int(port)


def ssl_bindings(lines: Iterable[Any]) -> list[SslBinding]:
    """Parse ``netsh http show sslcert``: blocks of ``label : value`` lines split by blank lines.

    The labels are localised, so the block's first pair is taken as the binding and the hash is
    the pair whose label mentions "hash" (else the second pair).
    """
    blocks: list[list[tuple[str, str]]] = [[]]
    for raw in lines:
        line = str(raw)
        if not line.strip():
            blocks.append([])
            continue
        label, sep, value = line.partition(" : ")
        if sep:
            blocks[-1].append((label.strip(), value.strip()))
    out = []
    for block in blocks:
        if not block:
            continue
        kind_port = _classify(block[0][1])
        if kind_port is None:
            continue
        digest = next((value for label, value in block if "hash" in label.lower()), "")
        if not digest and len(block) > 1:
            digest = block[1][1]
        out.append(SslBinding(kind_port[0], block[0][1], kind_port[1], digest.upper()))
    return out


#: IIS sslFlags bit for "Require SSL" (https://learn.microsoft.com/iis/configuration/system.webserver/security/access)
SSL_FLAG = 8


def requires_ssl(flags: Any) -> bool:
    """Whether an sslFlags value (``"Ssl, Ssl128"`` or a number) has "Require SSL" set."""
    text = str(flags or "").strip()
    if text.isdigit():
        return bool(int(text) & SSL_FLAG)
    return any(token.strip().lower() == "ssl" for token in text.split(","))


def running(records: Sequence[Any]) -> list[str]:
    """Names of the services (Win32_Service records) that are enabled and running."""
    names = []
    for record in records:
        if not isinstance(record, dict):
            continue
        mode = str(record.get("StartMode", "")).lower()
        if mode != "disabled" and str(record.get("State", "")).lower() == "running":
            names.append(str(record.get("Name", "")))
    return [name for name in names if name]


def tls_certificate_name(certificate: dict[str, Any]) -> str:
    """``<I>issuer<S>subject`` from Get-ExchangeCertificate's own (Windows) formatting."""
    return f"<I>{certificate.get('Issuer', '')}<S>{certificate.get('Subject', '')}"


def same_name(left: Any, right: str) -> bool:
    return str(left or "").strip().casefold() == right.strip().casefold()


def first_record(output: Sequence[Any]) -> dict[str, Any] | None:
    return next((item for item in output if isinstance(item, dict)), None)


def identity(record: dict[str, Any]) -> str:
    return str(record.get("Identity") or record.get("Name") or "")
