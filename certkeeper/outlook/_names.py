"""Small hostname helpers for the Outlook planner and checker.

Stand-in for ``certkeeper.names`` (``covers(pattern, host)`` and the internal-name rule) until
that module lands; the lead points the imports there and deletes this file.
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
    """Whether certificate name ``pattern`` covers ``host`` (RFC 6125 §6.4.3: a wildcard only as
    the whole left-most label, covering exactly one label)."""
    pattern, host = normalize(pattern), normalize(host)
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and first != "*" and rest == pattern[2:] and "." in pattern[2:]
    return pattern == host


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
