"""The knowledge behind :mod:`certkeeper.hostnames`' refusal messages: special-use domain names,
the advice for internal names, likely typos of a top-level domain, the parts of a URL to drop, and
when writing a label in Unicode helps. Pure; the refusals themselves are built in the package."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

import idna

#: Every rule id a refusal can carry, with a one-line summary (for docs and ``--help`` texts).
RULES: Final[dict[str, str]] = {
    "empty": "the name is empty or only whitespace",
    "no-names": "a certificate needs at least one name",
    "empty-label": "two dots in a row, or a leading dot",
    "label-too-long": "a label (the part between dots) is longer than 63 octets",
    "name-too-long": "the whole name is longer than 253 octets",
    "too-many-labels": "more than 10 labels (Let's Encrypt's limit; public CAs only)",
    "ldh": "a character other than a-z, 0-9 and hyphen",
    "hyphen": "a label starts or ends with a hyphen",
    "r-ldh": "a label has '--' in 3rd and 4th position but is not an 'xn--' IDN label",
    "punycode": "an 'xn--' label that is not valid, canonical, NFC punycode",
    "idna": "a character that IDNA 2008 does not allow in host names",
    "mixed-script": "a label mixes Latin, Cyrillic or Greek letters (homograph)",
    "wildcard-count": "more than one '*'",
    "wildcard-position": "'*' is not the whole left-most label",
    "wildcard-public-suffix": "a wildcard directly over a public suffix (*.com, *.co.uk)",
    "public-suffix": "the name is itself a public suffix (co.uk)",
    "ip-literal": "an IP address, or a name that clients read as one",
    "single-label": "a name without a dot (exch01, localhost): internal, public CAs refuse it",
    "internal-name": "a name under a TLD that is not public (.corp, .lan, .arpa): public CAs refuse it",
    "special-use": "a special-use domain (.test, .example, .local, .onion, .home.arpa ...): public CAs refuse it",
    "tld-typo": "a top-level domain one typo away from a common one (.comm for .com): public CAs refuse it",
    "url": "a URL or a port (https://..., :443) instead of a bare host name",
}

#: Special-use domain names (IANA "Special-Use Domain Names" registry, RFC 6761 §5) that no public
#: CA issues for, with why. The reverse-DNS zones of RFC 6761 §6.1 are .arpa names, refused as such.
SPECIAL_USE: Final[dict[str, str]] = {
    "test": "RFC 6761 §6.2 reserves .test for testing",
    "example": "RFC 6761 §6.5 reserves .example for documentation",
    "example.com": "RFC 6761 §6.5 reserves example.com for documentation",
    "example.net": "RFC 6761 §6.5 reserves example.net for documentation",
    "example.org": "RFC 6761 §6.5 reserves example.org for documentation",
    "localhost": "RFC 6761 §6.3: a .localhost name is always this very machine (loopback)",
    "invalid": "RFC 6761 §6.4: a .invalid name is guaranteed never to exist",
    "local": "RFC 6762: a .local name is a multicast DNS name, known only on one network link",
    "onion": "RFC 7686: a .onion name is a Tor onion service, reachable only through Tor "
             "(certkeeper does not implement RFC 9799's onion-csr-01 challenge)",
    "home.arpa": "RFC 8375: a .home.arpa name belongs to one home network",
    "alt": "RFC 9476: .alt is for names outside the DNS",
}
#: zones reserved for testing: a test ACME server (Pebble) issues for them once the issuer says it is
#: not a public CA (``public_names_only = false``)
TESTING: Final = frozenset({"test", "example", "example.com", "example.net", "example.org"})
#: top-level domains a likely typo is compared with, most used first (the first match is offered)
COMMON_TLDS: Final = (
    "com", "net", "org", "de", "uk", "nl", "fr", "ch", "at", "be", "eu", "it", "es", "se", "no", "dk",
    "fi", "pl", "cz", "ie", "pt", "us", "ca", "au", "nz", "jp", "in", "br", "info", "biz", "edu", "gov",
    "io", "co", "cloud", "online",
)

SPLIT_DNS_ADVICE: Final = (
    "Public CAs may not issue for internal names since 1 November 2015 (CA/Browser Forum Baseline "
    "Requirements §4.2.2). Use a public name you own instead (e.g. mail.contoso.com) for both "
    "outside and inside, with split DNS: an internal DNS zone for the public name that points at "
    "the Exchange servers, and the internal URLs (InternalUrl, InternalHostname, the Autodiscover "
    "SCP) set to that name. Server names need not be on the certificate. If you really need this "
    "name, issue from the built-in CA or AD CS, which allow internal names, or from an ACME server "
    "of your own (public_names_only = false on its issuer)."
)


def special_use_zone(labels: list[str]) -> str | None:
    """The special-use zone (a key of :data:`SPECIAL_USE`) a name of ``labels`` (no wildcard, two
    labels or more) is under, or None."""
    return next((zone for zone in (".".join(labels[-2:]), labels[-1]) if zone in SPECIAL_USE), None)


def tld_typo(tld: str) -> str | None:
    """The common TLD one edit away from ``tld`` (an insertion, deletion, substitution or swap of
    two neighbours), most used first; None if there is none."""
    for common in COMMON_TLDS:
        if one_edit_apart(tld, common):
            return common
    return None


def one_edit_apart(a: str, b: str) -> bool:
    """Whether one insertion, deletion, substitution or swap of neighbours turns ``a`` into ``b``."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        differ = [index for index in range(len(a)) if a[index] != b[index]]
        if len(differ) == 1:
            return True
        first = differ[0]
        return len(differ) == 2 and differ[1] == first + 1 and a[first] == b[first + 1] and a[first + 1] == b[first]
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    return any(longer[:index] + longer[index + 1:] == shorter for index in range(len(longer)))


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_PORT = re.compile(r"(?P<host>[^:\[\]]+):(?P<port>[0-9]{1,5})")


def url_parts(text: str) -> tuple[str, list[str]] | None:
    """``(host, parts to drop)`` when ``text`` is a URL or ``host:port``, else None."""
    rest, dropped, tail = text, [], ""
    scheme = _SCHEME.match(rest)
    if scheme is not None:
        dropped.append(scheme.group(0))
        rest = rest[scheme.end():]
        cut = min((rest.index(mark) for mark in "/?#" if mark in rest), default=len(rest))
        rest, tail = rest[:cut], rest[cut:]
        user, at, host = rest.rpartition("@")
        if at:
            dropped.append(user + at)
            rest = host
    port = _PORT.fullmatch(rest)
    if port is not None:
        dropped.append(":" + port.group("port"))
        rest = port.group("host")
    if tail:
        dropped.append(tail)
    return (rest, dropped) if dropped else None


def unicode_advice(a_label: str) -> str:
    """What to do about an invalid 'xn--' label: write it in Unicode only when its Unicode form
    is itself a valid label (a non-canonical or non-NFC spelling of a good one)."""
    try:
        decoded = a_label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        decoded = ""
    if decoded:
        try:
            canonical = idna.alabel(unicodedata.normalize("NFC", decoded)).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            canonical = ""
        if canonical:
            return (f"Write the label in Unicode ({unicodedata.normalize('NFC', decoded)!r}) and certkeeper "
                    f"converts it (to {canonical!r}).")
    return ("It does not stand for any valid Unicode label either: check where the name came from "
            "and type it again.")
