"""Hostname rules for certificates: validate, normalise, display and match names.

Every name that goes into a certificate passes through :func:`normalize_name` (or
:func:`normalize_names` for a whole list) first. The canonical form is what certkeeper stores,
puts in CSRs and compares: stripped, lower-case, without a trailing dot, with every
internationalised label converted to its A-label (``bücher.example`` -> ``xn--bcher-kva.example``)
by IDNA 2008 with the UTS #46 mapping, non-transitional (``ß`` stays ``ß``), as browsers do.

The rules follow what Let's Encrypt's Boulder refuses (``policy/pa.go``) and the CA/Browser Forum
Baseline Requirements, so that a name refused by a public CA is refused here, before any order,
with a message an Exchange administrator can act on. Each refusal is an
:class:`~certkeeper.errors.InvalidName` whose ``rule`` is one of the stable ids in :data:`RULES`.

Name policies. The issuer says which names its CA can sign (:class:`NamePolicy`): a private CA
(the built-in CA, AD CS, an ACME server of your own such as step-ca, or Pebble) signs any valid
DNS name; a public CA only names in the public DNS, so :attr:`NamePolicy.PUBLIC` also refuses

* internal names: a single label (``exch01``), a TLD not in the ICANN section of the Public
  Suffix List (the copy shipped with ``publicsuffixlist``, the TLDs delegated in the DNS root:
  ``.corp``, ``.lan``, ``.home``; data, not a list of private suffixes people invented), ``.arpa``
  (reverse zones, refused by the Baseline Requirements from 2026-03-15); a TLD one typo from a
  common one (``contoso.comm``) is reported as a likely typo;
* special-use domain names (IANA registry, RFC 6761 §5; ``advice.SPECIAL_USE``): ``.test``,
  ``.example``, ``.localhost``, ``.invalid``, ``.local``, ``.onion``, ``.home.arpa``, ``.alt``;
* names of more than 10 labels (Let's Encrypt's limit).

A name a refusal suggests passes the same policy (checked before it is offered). A URL or
``host:port`` (``https://mail.contoso.com``, ``mail.contoso.com:443``) is refused with the part to drop.

Wildcards. ``*`` may only be the whole left-most label, once, and never directly over a public
suffix in the ICANN section of the list (``*.com``, ``*.co.uk``, ``*.contoso.ck`` under the
``*.ck`` rule) or over a single label (``*.local``). Suffixes of the list's private section are not
refused, as Boulder does not refuse them: their operator (``github.io``) may hold the wildcard.

What this module does not do: it does not look names up in DNS, check CAA, or decide whether a
CA will actually validate the name; and a homograph written entirely in one script
(``xn--80ak6aa92e``, "apple" in Cyrillic letters) is not detected, only labels that *mix* Latin,
Cyrillic and Greek letters.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import idna

from certkeeper.errors import InvalidName, InvalidNames
from certkeeper.hostnames.advice import (
    RULES,
    SPECIAL_USE,
    SPLIT_DNS_ADVICE,
    TESTING,
    special_use_zone,
    tld_typo,
    unicode_advice,
    url_parts,
)

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "RULES",
    "NamePolicy",
    "covers",
    "fold",
    "is_internal",
    "is_ip",
    "is_wildcard",
    "normalize_name",
    "normalize_names",
    "to_unicode",
]

class NamePolicy(StrEnum):
    """Which names an issuer's CA can sign (see the module docstring)."""

    #: a publicly-trusted CA (CA/Browser Forum Baseline Requirements): public DNS names only
    PUBLIC = "public"
    #: a private CA (built-in, AD CS, step-ca, Pebble): any valid DNS name, internal ones too
    PRIVATE = "private"

#: Let's Encrypt's limit (Boulder ``maxLabels``); other public CAs are at least this strict in practice.
MAX_LABELS_PUBLIC: Final = 10

_LDH = re.compile(r"[a-z0-9-]+")
# WHATWG URL Standard, "ends in a number": browsers parse such a host as an IPv4 address.
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
_CONFUSABLE_SCRIPTS: Final = ("LATIN", "CYRILLIC", "GREEK")

def _icann_suffixes() -> PublicSuffixList:
    # Loaded on first use, from its compact form in the data folder when there is one
    # (suffixes.py), so importing this module stays cheap for `--help`.
    from certkeeper.hostnames.suffixes import icann

    return icann()


def _refuse(raw: str, rule: str, message: str) -> InvalidName:
    assert rule in RULES, rule
    return InvalidName(raw, rule, message)


def normalize_name(raw: str, *, policy: NamePolicy) -> str:
    """Return the canonical form of one certificate name, or refuse it.

    Args:
        raw: A host name as the operator typed it: any case, an optional trailing dot,
            Unicode (U-labels) or A-labels, optionally a wildcard ``*.`` as the whole left-most label.
        policy: Which names the issuer's CA can sign (the issuer's ``name_policy``): PUBLIC also
            refuses internal and special-use names and more than 10 labels (module docstring).

    Returns:
        The name stripped, lower-case, without its trailing dot, in A-labels
        (``MAIL.Contoso.COM.`` -> ``mail.contoso.com``; ``Bücher.example`` ->
        ``xn--bcher-kva.example``).

    Raises:
        InvalidName: the name breaks a rule; ``rule`` is one of :data:`RULES` and the message
            names the name and explains the rule.
    """
    if not isinstance(raw, str):
        raise TypeError(f"a host name must be a str, not {type(raw).__name__}")
    rules = NamePolicy(policy)
    text = raw.strip()
    if not text:
        raise _refuse(raw, "empty", "the name is empty; give a host name such as mail.contoso.com.")

    url = url_parts(text)
    if url is not None:
        raise _url_refusal(raw, *url, rules)

    address = _ip_literal(text)
    if address is not None:
        raise _refuse(
            raw,
            "ip-literal",
            f"this is an IP address ({address}), not a host name. Certificates from certkeeper carry "
            "DNS names: Outlook and Exchange clients connect by name, and public CAs never issue "
            "for private (reserved) addresses (CA/B Baseline Requirements §4.2.2). Give the server "
            "a DNS name (an A or AAAA record) and use that name.",
        )

    if text.isascii():
        mapped = text.lower()
    else:
        try:
            # Whole-name UTS #46 mapping: case folding, NFC, and the ideographic full stops
            # (U+3002 ...) that browsers treat as dots. STD3 rules are ours (LDH check below).
            mapped = idna.uts46_remap(text, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise _idna_refusal(raw, exc) from exc

    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise _refuse(raw, "empty", "the name has no labels; give a host name such as mail.contoso.com.")
    labels = mapped.split(".")
    if "" in labels:
        raise _refuse(
            raw,
            "empty-label",
            "the name has an empty label (two dots in a row, a leading dot, or two trailing dots).",
        )

    wildcard = _check_wildcard(raw, mapped, labels)
    base_labels = labels[1:] if wildcard else labels
    a_labels = [_a_label(raw, label) for label in base_labels]
    if wildcard:
        a_labels.insert(0, "*")
    name = ".".join(a_labels)

    if len(name) > 253:
        raise _refuse(
            raw,
            "name-too-long",
            f"the name is {len(name)} octets long (in A-labels); DNS allows at most 253 (RFC 1035).",
        )
    if _NUMBER.fullmatch(a_labels[-1]):
        raise _refuse(
            raw,
            "ip-literal",
            f"its last label {a_labels[-1]!r} is a number, so browsers and Windows read the name "
            "as an IPv4 address (10.1 means 10.0.0.1). Top-level domains are never numeric; use a "
            "DNS name.",
        )

    base = ".".join(a_labels[1:] if wildcard else a_labels)
    suffixes = _icann_suffixes()
    if wildcard:
        if len(base_labels) == 1 or suffixes.publicsuffix(base, accept_unknown=True) == base:
            raise _refuse(
                raw,
                "wildcard-public-suffix",
                f"a wildcard directly over {base!r} would cover names that belong to other people "
                f"({base!r} is a public suffix or top-level domain); no CA issues it and clients "
                f"reject it. Use a wildcard under your own domain, e.g. "
                f"{_passing(rules, f'*.contoso.{base}', '*.contoso.com')}.",
            )
    elif len(a_labels) > 1 and suffixes.publicsuffix(name) == name:
        raise _refuse(
            raw,
            "public-suffix",
            f"{name!r} is a public suffix (like com or co.uk), under which anyone can register "
            "names; it cannot be a host name. Use a name under your own domain.",
        )

    for label in a_labels:
        _check_mixed_script(raw, label)

    if rules is NamePolicy.PUBLIC:
        refusal = _special_use_refusal(raw, name) or _internal_refusal(raw, name)
        if refusal is not None:
            raise refusal
        if len(base_labels) > MAX_LABELS_PUBLIC:
            raise _refuse(
                raw,
                "too-many-labels",
                f"the name has {len(base_labels)} labels; Let's Encrypt refuses more than "
                f"{MAX_LABELS_PUBLIC}. Use a shorter name.",
            )
    return name


def normalize_names(raw: Iterable[str], *, policy: NamePolicy) -> tuple[str, ...]:
    """Normalise every name of one certificate, dropping duplicates, keeping first-seen order.

    Names that differ only in case, trailing dot or U-label/A-label spelling are duplicates
    (``Mail.contoso.com.`` and ``mail.contoso.com``). A wildcard does not absorb the names it
    covers: ``*.contoso.com`` and ``mail.contoso.com`` both stay.

    Raises:
        InvalidName: the list is empty (rule ``no-names``), or exactly one name is refused.
        InvalidNames: several names are refused; its message lists each with its rule, and
            ``errors`` holds them all.
        TypeError: ``raw`` is a single string rather than a collection of names.
    """
    if isinstance(raw, str):
        raise TypeError("normalize_names takes a collection of names, not a single string")
    rules = NamePolicy(policy)
    names: dict[str, None] = {}
    errors: list[InvalidName] = []
    for item in raw:
        try:
            names.setdefault(normalize_name(item, policy=rules))
        except InvalidName as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InvalidNames(errors)
    if not names:
        raise _refuse("", "no-names", "no names given: a certificate needs at least one host name.")
    return tuple(names)


def is_internal(name: str) -> bool:
    """Whether a public CA would refuse ``name`` as internal; never raises.

    True for single-label names, names under a TLD that is not public and ``.arpa`` names (see
    the module docstring; ``.local``, ``.localhost`` and ``.invalid`` too, but not the testing
    zones ``.test`` and ``.example``), and for IP addresses that are not globally routable (``10.0.0.5``); a
    wildcard is judged by its base (``*.contoso.local`` is internal). Operator input that is not a
    valid name is judged by its lenient form (:func:`fold`), so the Outlook planner can warn about
    it instead of failing.
    """
    address = _ip_literal(name.strip())
    if address is not None:
        return not ipaddress.ip_address(address).is_global
    try:
        canonical = normalize_name(name, policy=NamePolicy.PRIVATE)
    except InvalidName:
        canonical = fold(name)
    return _internal_refusal(name, canonical) is not None


def fold(name: str) -> str:
    """The canonical spelling of a name read from a served certificate or typed by an operator,
    without validating it (never raises): lower-case, no trailing dot, A-labels where IDNA can
    convert. Use :func:`normalize_name` for anything that goes into a certificate."""
    value = name.strip().rstrip(".").lower()
    if not value.isascii():
        prefix = "*." if value.startswith("*.") else ""
        try:
            value = prefix + idna.encode(value.removeprefix("*."), uts46=True).decode()
        except idna.IDNAError:
            pass
    return value


def is_ip(name: str) -> bool:
    """Whether ``name`` is an IPv4 or IPv6 literal (bracketed, scoped or with a trailing dot)."""
    return _ip_literal(name.strip()) is not None


def is_wildcard(name: str) -> bool:
    """Whether ``name`` is a wildcard name (``*.contoso.com``)."""
    return name.strip().startswith("*.")


def to_unicode(name: str) -> str:
    """Return ``name`` with its A-labels shown as U-labels, for display only.

    ``xn--bcher-kva.example`` -> ``bücher.example``. A label that does not decode is shown as it
    is, so this never fails; never store or compare the result.
    """
    labels = []
    for label in name.split("."):
        if label[:4].lower() == "xn--":
            try:
                label = idna.ulabel(label)
            except idna.IDNAError:
                pass
        labels.append(label)
    return ".".join(labels)


def covers(pattern: str, host: str) -> bool:
    """Whether a certificate name ``pattern`` covers the host name ``host`` (RFC 6125 §6.4).

    Both are compared in canonical form, so case, trailing dots and U-label/A-label spelling do
    not matter. A wildcard covers exactly one left-most label: ``*.contoso.com`` covers
    ``mail.contoso.com`` but neither ``contoso.com`` nor ``a.mail.contoso.com``. A pattern or
    host that is not a valid name (including a wildcard over a public suffix, which clients
    refuse) covers nothing; internal names are valid here.
    """
    try:
        canonical_pattern = normalize_name(pattern, policy=NamePolicy.PRIVATE)
        canonical_host = normalize_name(host, policy=NamePolicy.PRIVATE)
    except InvalidName:
        return False
    if canonical_pattern == canonical_host:
        return True
    if not canonical_pattern.startswith("*.") or canonical_host.startswith("*."):
        return False
    _, _, host_parent = canonical_host.partition(".")
    return host_parent == canonical_pattern[2:]


def _ip_literal(text: str) -> str | None:
    """The address if ``text`` is an IPv4 or IPv6 literal (bracketed, scoped, trailing dot)."""
    candidate = text
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    elif candidate.endswith(".") and ":" not in candidate:
        candidate = candidate[:-1]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _check_wildcard(raw: str, mapped: str, labels: list[str]) -> bool:
    stars = mapped.count("*")
    if stars == 0:
        return False
    if stars > 1:
        raise _refuse(
            raw,
            "wildcard-count",
            "the name has more than one '*'. A wildcard covers exactly one label, so only "
            "'*.' at the start is allowed (e.g. *.contoso.com).",
        )
    if labels[0] != "*" or len(labels) == 1:
        raise _refuse(
            raw,
            "wildcard-position",
            "'*' is only allowed as the whole left-most label, followed by a domain "
            "(*.contoso.com); not inside a label (m*.contoso.com) nor further right "
            "(mail.*.contoso.com).",
        )
    return True


def _a_label(raw: str, label: str) -> str:
    """Check one lower-case label (U-label or ASCII) and return its A-label."""
    if label.isascii():
        if len(label) > 63:
            raise _label_too_long(raw, label, len(label))
        if not _LDH.fullmatch(label):
            bad = next(char for char in label if not _LDH.fullmatch(char))
            raise _refuse(
                raw,
                "ldh",
                f"the label {label!r} contains {bad!r}; host names may contain only letters a-z, "
                "digits 0-9 and hyphens (no underscores or spaces; CAs stopped accepting "
                "underscores in 2019).",
            )
        _check_hyphens(raw, label)
        if label[2:4] == "--":
            if not label.startswith("xn--"):
                raise _refuse(
                    raw,
                    "r-ldh",
                    f"the label {label!r} has '--' in 3rd and 4th position, which is reserved for "
                    "encoded labels (only 'xn--' is defined, RFC 5891 §4.2.3.1).",
                )
            try:
                idna.ulabel(label)
            except idna.IDNAError as exc:
                raise _refuse(
                    raw,
                    "punycode",
                    f"the label {label!r} starts with 'xn--' but is not a valid internationalised "
                    f"label ({exc}). {unicode_advice(label)}",
                ) from exc
        return label

    _check_hyphens(raw, label)
    if label[2:4] == "--":
        raise _refuse(
            raw,
            "r-ldh",
            f"the label {label!r} has '--' in 3rd and 4th position, which is reserved for encoded "
            "labels (RFC 5891 §4.2.3.1).",
        )
    try:
        encoded = label.encode("punycode")
    except UnicodeError as exc:  # pragma: no cover - punycode encodes any str
        raise _idna_refusal(raw, exc) from exc
    if len(encoded) + 4 > 63:
        raise _label_too_long(raw, label, len(encoded) + 4)
    try:
        return idna.alabel(label).decode("ascii")
    except idna.IDNAError as exc:
        raise _idna_refusal(raw, exc) from exc


def _check_hyphens(raw: str, label: str) -> None:
    if label.startswith("-") or label.endswith("-"):
        raise _refuse(
            raw,
            "hyphen",
            f"the label {label!r} starts or ends with a hyphen, which DNS host names do not allow "
            "(RFC 952, RFC 1123).",
        )


def _label_too_long(raw: str, label: str, octets: int) -> InvalidName:
    return _refuse(
        raw,
        "label-too-long",
        f"the label {label!r} is {octets} octets long (in A-label form); DNS allows at most 63 "
        "per label (RFC 1035).",
    )


def _idna_refusal(raw: str, exc: UnicodeError) -> InvalidName:
    code = getattr(exc, "code", None)
    codepoint = getattr(exc, "codepoint", None)
    if code in ("input_too_long", "domain_too_long"):
        return _refuse(raw, "name-too-long", "the name is far longer than the 253 octets DNS allows.")
    if code == "label_too_long":
        return _refuse(raw, "label-too-long", "a label is longer than the 63 octets DNS allows.")
    if codepoint is not None and codepoint < 0x80:
        return _refuse(
            raw,
            "ldh",
            f"the name contains {chr(codepoint)!r}; host names may contain only letters, digits and hyphens.",
        )
    detail = str(exc)
    if codepoint is not None:
        detail = f"U+{codepoint:04X} {unicodedata.name(chr(codepoint), 'unnamed character')}: {detail}"
    return _refuse(
        raw,
        "idna",
        f"the name is not a valid internationalised host name under IDNA 2008 ({detail}).",
    )


def _check_mixed_script(raw: str, a_label: str) -> None:
    """Refuse a label that mixes Latin, Cyrillic and Greek letters (Latin "ex" + U+0430 Cyrillic a).

    Scripts are told apart by the prefix of the Unicode character name ("LATIN SMALL LETTER E",
    "CYRILLIC SMALL LETTER A"); digits, hyphens and letters of other scripts are neutral.
    """
    if not a_label.startswith("xn--"):
        return  # ASCII letters are all Latin
    label = idna.ulabel(a_label)
    first: dict[str, str] = {}
    for char in label:
        if not unicodedata.category(char).startswith("L"):
            continue
        script = unicodedata.name(char, "").split(" ", 1)[0]
        if script in _CONFUSABLE_SCRIPTS:
            first.setdefault(script, char)
    if len(first) > 1:
        found = ", ".join(f"{script.title()} {char!r} (U+{ord(char):04X})" for script, char in first.items())
        raise _refuse(
            raw,
            "mixed-script",
            f"the label {label!r} ({a_label}) mixes letters of different scripts: {found}. Such a "
            "name looks like another one (a homograph) and is refused; type the name again in a "
            "single script, usually plain Latin letters.",
        )


def _internal_refusal(raw: str, name: str) -> InvalidName | None:
    """Why a public CA refuses the canonical ``name`` as internal, or None if it does not (the
    testing zones are left to :func:`_special_use_refusal`)."""
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) == 1:
        return _refuse(
            raw,
            "single-label",
            f"{name!r} has no dot: it is a server's short name, not a name in the public DNS. "
            + SPLIT_DNS_ADVICE,
        )
    tld = labels[-1]
    if tld == "arpa":
        return _refuse(
            raw,
            "internal-name",
            f"{name!r} is under .arpa, the DNS infrastructure and reverse-lookup zone; public CAs "
            "do not issue for it (CA/B Baseline Requirements, from 15 March 2026). " + SPLIT_DNS_ADVICE,
        )
    if tld in TESTING or _icann_suffixes().publicsuffix(tld) == tld:
        return None
    typo = tld_typo(tld)
    if typo is not None:
        meant = name.removesuffix(tld) + typo
        if _passes(NamePolicy.PUBLIC, meant):
            return _refuse(
                raw,
                "tld-typo",
                f"did you mean {meant!r}? .{tld} is not a public top-level domain, so no public CA "
                f"issues for {name!r}.",
            )
    return _refuse(
        raw,
        "internal-name",
        f".{tld} is not a public top-level domain, so {name!r} is an internal name that only your "
        "own DNS knows. " + SPLIT_DNS_ADVICE,
    )


def _special_use_refusal(raw: str, name: str) -> InvalidName | None:
    """Why no public CA issues for the canonical ``name``, a special-use domain name, or None."""
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2:
        return None  # "localhost", "test": single-label names, refused as such
    zone = special_use_zone(labels)
    if zone is None:
        return None
    if zone in TESTING:
        advice = ("Use a name under a domain you own (e.g. mail.contoso.com); to issue it from a test "
                  "or private ACME server (Pebble, step-ca), set public_names_only = false on that issuer.")
    elif zone == "onion":
        advice = "Use a name under a domain you own (e.g. mail.contoso.com)."
    else:
        advice = SPLIT_DNS_ADVICE
    return _refuse(
        raw,
        "special-use",
        f"{name!r} is a special-use domain name that no public CA issues for: {SPECIAL_USE[zone]}. "
        + advice,
    )


def _url_refusal(raw: str, host: str, dropped: list[str], policy: NamePolicy) -> InvalidName:
    parts = " and ".join(repr(part) for part in dropped)
    try:
        name = normalize_name(host, policy=policy)
    except InvalidName as inner:
        return _refuse(raw, inner.rule, f"a certificate holds bare host names: drop {parts}; "
                                        f"then {inner.detail}")
    return _refuse(raw, "url", f"a certificate holds bare host names, not URLs or ports: drop {parts} "
                               f"and give {name!r}.")


def _passes(policy: NamePolicy, name: str) -> bool:
    try:
        normalize_name(name, policy=policy)
    except InvalidName:
        return False
    return True


def _passing(policy: NamePolicy, suggestion: str, fallback: str) -> str:
    """``suggestion`` if it passes ``policy``, else ``fallback`` (advice must lead to a name that passes)."""
    return suggestion if _passes(policy, suggestion) else fallback
