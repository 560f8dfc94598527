"""Lenient hostname helpers for the Outlook planner and checker.

They read names from served certificates and operator input that may be invalid, so they never
raise; matching itself is :func:`certkeeper.names.covers`.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any


def normalize(name: str) -> str:
    """Lower-case, no trailing dot, IDNA A-labels for non-ASCII names."""
    value = name.strip().rstrip(".").lower()
    if not value.isascii():
        import idna

        prefix = "*." if value.startswith("*.") else ""
        value = prefix + idna.encode(value.removeprefix("*."), uts46=True).decode()
    return value


def covers(pattern: str, host: str) -> bool:
    """Whether certificate name ``pattern`` covers ``host`` (RFC 6125 §6.4.3); see
    :func:`certkeeper.names.covers`, which this calls."""
    from certkeeper import names

    return names.covers(pattern, host)


@lru_cache(maxsize=1)
def _psl() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(accept_unknown=False)


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def is_internal(name: str) -> bool:
    """A name a public CA may not certify (CA/B Forum BR §4.2.2): no registered public TLD
    (``exch01``, ``contoso.local``), a reserved IP address, or a ``.arpa`` name."""
    value = normalize(name).removeprefix("*.")
    if is_ip(value):
        return not ipaddress.ip_address(value.strip("[]")).is_global
    if value.endswith(".arpa") or "." not in value:
        return True
    return _psl().publicsuffix(value) is None
