"""certkeeper.hostnames: hostname rules, as tables of (input, expected) pairs."""

from __future__ import annotations

import random
import re

import pytest

from certkeeper.errors import CertkeeperError, InvalidName, InvalidNames
from certkeeper.hostnames import (
    RULES,
    NamePolicy,
    covers,
    is_internal,
    is_wildcard,
    normalize_name,
    normalize_names,
    to_unicode,
)

LABEL_63 = "a" * 63
LABEL_64 = "a" * 64
# 3 x 63 + 4 dots + "com" = 196 octets; a fourth label of 57 or 58 gives exactly 253 or 254.
NAME_253 = ".".join([LABEL_63, LABEL_63, LABEL_63, "a" * 57, "com"])
NAME_254 = ".".join([LABEL_63, LABEL_63, LABEL_63, "a" * 58, "com"])
CYRILLIC_A = "\u0430"
GREEK_OMICRON = "\u03bf"

# --- accepted names: (input, canonical form), the same for both issuer kinds -----------------

ACCEPTED = [
    ("mail.contoso.com", "mail.contoso.com"),
    ("MAIL.Contoso.COM.", "mail.contoso.com"),
    ("  mail.contoso.com \n", "mail.contoso.com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("BÜCHER.De.", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("XN--BCHER-KVA.de", "xn--bcher-kva.de"),
    # UTS #46 non-transitional: sharp s stays a sharp s (IDNA 2003 made it "ss").
    ("straße.de", "xn--strae-oqa.de"),
    # ideographic full stops and full-width letters are mapped like browsers do
    ("mail\u3002contoso\u3002com", "mail.contoso.com"),
    ("\uff4d\uff41\uff49\uff4c.contoso.com", "mail.contoso.com"),
    # whole labels in one non-Latin script are fine
    ("\u03b1\u03b2\u03b3.contoso.com", "xn--mxacd.contoso.com"),
    ("почта.contoso.com", "xn--80a1acny.contoso.com"),
    # "xn--invalid" is, despite its spelling, the valid A-label of five CJK ideographs
    # (U+66CC U+66D3 U+66D0 U+66D2 U+66CC): it round-trips and is NFC, so it is accepted.
    ("xn--invalid.contoso.com", "xn--invalid.contoso.com"),
    ("*.contoso.com", "*.contoso.com"),
    ("*.Contoso.COM.", "*.contoso.com"),
    ("*.contoso.co.uk", "*.contoso.co.uk"),
    ("mail-01.contoso.com", "mail-01.contoso.com"),
    ("3com.com", "3com.com"),
    ("a.b.c.d.e.f.g.h.i.com", "a.b.c.d.e.f.g.h.i.com"),
    (f"{LABEL_63}.contoso.com", f"{LABEL_63}.contoso.com"),
    (NAME_253, NAME_253),
    (NAME_253 + ".", NAME_253),
    # a private-section suffix owner (GitHub) may hold its wildcard; only ICANN suffixes are refused
    ("*.github.io", "*.github.io"),
    # .onion is in the Public Suffix List (ICANN section), but it is a special-use name: refused
    # for a public CA (below), accepted by a private one
]


@pytest.mark.parametrize("policy", list(NamePolicy))
@pytest.mark.parametrize(("raw", "canonical"), ACCEPTED)
def test_accepted_names_are_normalised(raw: str, canonical: str, policy: NamePolicy) -> None:
    assert normalize_name(raw, policy=policy) == canonical


@pytest.mark.parametrize(("raw", "canonical"), ACCEPTED)
def test_normalising_is_idempotent(raw: str, canonical: str) -> None:
    assert normalize_name(canonical, policy=NamePolicy.PUBLIC) == canonical


# --- names refused for every issuer: (input, rule, a phrase the message must contain) --------

REFUSED_ALWAYS = [
    ("", "empty", "empty"),
    ("   ", "empty", "empty"),
    ("\t\n", "empty", "empty"),
    (".", "empty", "no labels"),
    ("mail..contoso.com", "empty-label", "empty label"),
    (".contoso.com", "empty-label", "empty label"),
    ("mail.contoso.com..", "empty-label", "empty label"),
    (f"{LABEL_64}.contoso.com", "label-too-long", "64 octets"),
    (LABEL_64, "label-too-long", "at most 63"),
    # 60 x "ü" is 60 characters but its A-label is 4 + 64 octets
    ("ü" * 60 + ".contoso.com", "label-too-long", "at most 63"),
    (NAME_254, "name-too-long", "254 octets"),
    (NAME_254 + ".", "name-too-long", "at most 253"),
    ("ü" * 2000 + ".com", "name-too-long", "253"),
    ("mail_1.contoso.com", "ldh", "'_'"),
    ("mail contoso.com", "ldh", "' '"),
    ("mail.contoso.com/owa", "ldh", "'/'"),
    ("mail!.contoso.com", "ldh", "letters a-z"),
    ("bü_cher.contoso.com", "ldh", "'_'"),
    ("[mail.contoso.com]", "ldh", "'['"),
    ("-mail.contoso.com", "hyphen", "starts or ends with a hyphen"),
    ("mail-.contoso.com", "hyphen", "'mail-'"),
    ("mail.contoso-.com", "hyphen", "'contoso-'"),
    ("-bücher.contoso.com", "hyphen", "hyphen"),
    ("ab--cd.contoso.com", "r-ldh", "'ab--cd'"),
    ("bü--cher.contoso.com", "r-ldh", "3rd and 4th"),
    ("xn--a.contoso.com", "punycode", "'xn--a'"),
    ("xn--.contoso.com", "hyphen", "'xn--'"),
    # a non-canonical spelling of xn--bbk (RFC 5890 §2.3.2.1 "fake A-label")
    ("xn---bbk.contoso.com", "punycode", "canonical"),
    # decodes to "u" + COMBINING DIAERESIS, which is not NFC
    ("xn--u-ccb.contoso.com", "punycode", "Normalization Form C"),
    ("\U0001f600.contoso.com", "idna", "U+1F600"),
    ("mail\u2665.contoso.com", "idna", "U+2665"),
    (f"ex{CYRILLIC_A}mple.com", "mixed-script", "Cyrillic"),
    (f"ex{CYRILLIC_A}mple.com", "mixed-script", "U+0430"),
    (f"mail.c{GREEK_OMICRON}nt{GREEK_OMICRON}so.com", "mixed-script", "Greek"),
    # the same homograph typed as its A-label is still a homograph
    ("xn--exmple-4nf.com", "mixed-script", "Latin"),
    ("*.*.contoso.com", "wildcard-count", "more than one"),
    ("**.contoso.com", "wildcard-count", "more than one"),
    ("mail.*.contoso.com", "wildcard-position", "left-most"),
    ("m*.contoso.com", "wildcard-position", "left-most"),
    ("*mail.contoso.com", "wildcard-position", "left-most"),
    ("*", "wildcard-position", "followed by a domain"),
    ("*.com", "wildcard-public-suffix", "'com'"),
    ("*.co.uk", "wildcard-public-suffix", "'co.uk'"),
    ("*.COM.", "wildcard-public-suffix", "public suffix"),
    # "*.ck" is an ICANN wildcard rule: every x.ck is itself a public suffix
    ("*.contoso.ck", "wildcard-public-suffix", "'contoso.ck'"),
    ("*.local", "wildcard-public-suffix", "'local'"),
    ("co.uk", "public-suffix", "public suffix"),
    ("10.0.0.1", "ip-literal", "IP address"),
    ("10.0.0.1.", "ip-literal", "IP address"),
    ("192.168.1.20", "ip-literal", "DNS name"),
    ("::1", "ip-literal", "IP address"),
    ("[::1]", "ip-literal", "IP address"),
    ("2001:db8::25", "ip-literal", "2001:db8::25"),
    ("[2001:DB8::25]", "ip-literal", "2001:db8::25"),
    ("fe80::1%eth0", "ip-literal", "IP address"),
    # what browsers and inet_aton read as IPv4 addresses (WHATWG "ends in a number")
    ("10.1", "ip-literal", "number"),
    ("2130706433", "ip-literal", "number"),
    ("010.0.0.1", "ip-literal", "number"),
    ("mail.0x7f", "ip-literal", "number"),
]


@pytest.mark.parametrize("policy", list(NamePolicy))
@pytest.mark.parametrize(("raw", "rule", "phrase"), REFUSED_ALWAYS)
def test_refused_for_every_issuer(raw: str, rule: str, phrase: str, policy: NamePolicy) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=policy)
    error = caught.value
    assert error.rule == rule
    assert error.name == raw
    # every refusal names the offending name, as typed
    assert str(error).startswith(f"{raw!r}: ")
    assert phrase in str(error)


# --- internal and special-use names: allowed for private CAs, refused for public CAs ---------

INTERNAL = [
    ("exch01", "exch01", "single-label"),
    ("EXCH01.", "exch01", "single-label"),
    ("localhost", "localhost", "single-label"),
    # a single-label host may carry a TLD's name (".exchange" is a gTLD)
    ("exchange", "exchange", "single-label"),
    ("mail.contoso.local", "mail.contoso.local", "special-use"),
    ("mail.contoso.corp", "mail.contoso.corp", "internal-name"),
    ("mail.contoso.lan", "mail.contoso.lan", "internal-name"),
    ("exch01.ad.contoso.internal", "exch01.ad.contoso.internal", "internal-name"),
    ("mail.contoso.home", "mail.contoso.home", "internal-name"),
    ("mail.contoso.intranet", "mail.contoso.intranet", "internal-name"),
    ("mail.contoso.localdomain", "mail.contoso.localdomain", "internal-name"),
    ("mail.contoso.private", "mail.contoso.private", "internal-name"),
    ("exch01.localhost", "exch01.localhost", "special-use"),
    ("mail.contoso.invalid", "mail.contoso.invalid", "special-use"),
    ("*.contoso.local", "*.contoso.local", "special-use"),
    ("bücher.contoso.local", "xn--bcher-kva.contoso.local", "special-use"),
    ("20.1.168.192.in-addr.arpa", "20.1.168.192.in-addr.arpa", "internal-name"),
    # special-use domain names (IANA registry): no public CA can validate them
    ("mail.contoso.onion", "mail.contoso.onion", "special-use"),
    ("mail.contoso.test", "mail.contoso.test", "special-use"),
    ("autodiscover.contoso.example", "autodiscover.contoso.example", "special-use"),
    ("bücher.example", "xn--bcher-kva.example", "special-use"),
    ("*.contoso.test", "*.contoso.test", "special-use"),
    ("example.com", "example.com", "special-use"),
    ("mail.example.net", "mail.example.net", "special-use"),
    ("www.example.org", "www.example.org", "special-use"),
    ("exch01.home.arpa", "exch01.home.arpa", "special-use"),
    ("mail.contoso.alt", "mail.contoso.alt", "special-use"),
    # a TLD one typo away from a common one
    ("contoso.comm", "contoso.comm", "tld-typo"),
    ("mail.contoso.ocm", "mail.contoso.ocm", "tld-typo"),
    ("*.contoso.nett", "*.contoso.nett", "tld-typo"),
    # beyond Let's Encrypt's 10 labels, but a valid DNS name
    ("a.b.c.d.e.f.g.h.i.j.k.com", "a.b.c.d.e.f.g.h.i.j.k.com", "too-many-labels"),
]


@pytest.mark.parametrize(("raw", "canonical", "rule"), INTERNAL)
def test_internal_names_are_allowed_for_internal_issuers(raw: str, canonical: str, rule: str) -> None:
    assert normalize_name(raw, policy=NamePolicy.PRIVATE) == canonical


@pytest.mark.parametrize(("raw", "canonical", "rule"), INTERNAL)
def test_internal_names_are_refused_for_public_issuers(raw: str, canonical: str, rule: str) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=NamePolicy.PUBLIC)
    assert caught.value.rule == rule
    assert str(caught.value).startswith(f"{raw!r}: ")


@pytest.mark.parametrize("raw", ["exch01", "mail.contoso.local", "mail.contoso.corp", "exch01.home.arpa"])
def test_internal_refusal_explains_the_rule_and_the_way_out(raw: str) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=NamePolicy.PUBLIC)
    message = str(caught.value)
    for phrase in ("2015", "Baseline Requirements §4.2.2", "split DNS", "built-in CA or AD CS"):
        assert phrase in message


@pytest.mark.parametrize(("raw", "phrase"), [
    ("mail.contoso.onion", "RFC 7686"),
    ("mail.contoso.test", "RFC 6761 §6.2"),
    ("autodiscover.contoso.example", "RFC 6761 §6.5"),
    ("www.example.org", "RFC 6761 §6.5"),
    ("exch01.localhost", "RFC 6761 §6.3"),
    ("mail.contoso.invalid", "RFC 6761 §6.4"),
    ("mail.contoso.local", "RFC 6762"),
    ("exch01.home.arpa", "RFC 8375"),
])
def test_special_use_refusal_cites_its_rfc(raw: str, phrase: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(phrase)):
        normalize_name(raw, policy=NamePolicy.PUBLIC)


def test_a_testing_name_says_how_to_issue_it_from_a_test_ca() -> None:
    with pytest.raises(InvalidName, match="public_names_only = false"):
        normalize_name("mail.contoso.test", policy=NamePolicy.PUBLIC)


@pytest.mark.parametrize(("raw", "meant"), [
    ("contoso.comm", "contoso.com"),
    ("mail.contoso.ocm", "mail.contoso.com"),
    ("mail.contoso.con", "mail.contoso.com"),
    ("*.contoso.nett", "*.contoso.net"),
    ("mail.contoso.ogr", "mail.contoso.org"),
    ("mail.contoso.dee", "mail.contoso.de"),
])
def test_a_likely_tld_typo_says_so(raw: str, meant: str) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=NamePolicy.PUBLIC)
    assert caught.value.rule == "tld-typo"
    assert f"did you mean {meant!r}?" in str(caught.value)


@pytest.mark.parametrize("raw", ["mail.contoso.lan", "mail.contoso.corp", "mail.contoso.home",
                                 "mail.contoso.intranet", "exch01.ad.contoso.internal"])
def test_internal_tlds_are_not_taken_for_typos(raw: str) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=NamePolicy.PUBLIC)
    assert caught.value.rule == "internal-name" and "did you mean" not in str(caught.value)


@pytest.mark.parametrize(("raw", "drop", "name"), [
    ("https://mail.contoso.com", "'https://'", "mail.contoso.com"),
    ("HTTPS://Mail.Contoso.com/owa", "'HTTPS://' and '/owa'", "mail.contoso.com"),
    ("mail.contoso.com:443", "':443'", "mail.contoso.com"),
    ("https://admin@mail.contoso.com:8443/ecp?x=1", "'https://' and 'admin@' and ':8443' and '/ecp?x=1'",
     "mail.contoso.com"),
    ("ldaps://dc01.contoso.com", "'ldaps://'", "dc01.contoso.com"),
])
@pytest.mark.parametrize("policy", list(NamePolicy))
def test_a_url_or_port_says_what_to_drop(raw: str, drop: str, name: str, policy: NamePolicy) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=policy)
    assert caught.value.rule == "url"
    assert f"drop {drop} and give {name!r}" in str(caught.value)


def test_a_url_whose_host_is_refused_too_gives_the_hosts_reason() -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name("https://mail.contoso.local/owa", policy=NamePolicy.PUBLIC)
    assert caught.value.rule == "special-use"
    assert "drop 'https://' and '/owa'" in str(caught.value) and "RFC 6762" in str(caught.value)
    assert normalize_name("mail.contoso.local", policy=NamePolicy.PRIVATE) == "mail.contoso.local"


def test_internal_name_message_says_which_tld_is_not_public() -> None:
    with pytest.raises(InvalidName, match=r"\.corp is not a public top-level domain"):
        normalize_name("mail.contoso.corp", policy=NamePolicy.PUBLIC)


def test_arpa_refusal_mentions_reverse_zones() -> None:
    with pytest.raises(InvalidName, match="reverse-lookup"):
        normalize_name("20.1.168.192.in-addr.arpa", policy=NamePolicy.PUBLIC)


def test_invalid_name_is_a_certkeeper_error() -> None:
    with pytest.raises(CertkeeperError):
        normalize_name("*.com", policy=NamePolicy.PRIVATE)


def test_length_fixtures_are_what_they_claim() -> None:
    assert (len(LABEL_64), len(NAME_253), len(NAME_254)) == (64, 253, 254)


def test_every_rule_has_a_summary() -> None:
    rules = {rule for _, rule, _ in REFUSED_ALWAYS} | {rule for _, _, rule in INTERNAL} | {"no-names", "url"}
    assert rules == set(RULES)


def test_a_non_string_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        normalize_name(None, policy=NamePolicy.PRIVATE)  # type: ignore[arg-type]


# --- lists -----------------------------------------------------------------------------------


def test_duplicates_collapse_in_first_seen_order() -> None:
    names = normalize_names(
        [
            "Mail.Contoso.com.",
            "autodiscover.contoso.com",
            "mail.contoso.com",
            "MAIL.CONTOSO.COM",
            "bücher.de",
            "xn--bcher-kva.de",
            "*.contoso.com",
        ],
        policy=NamePolicy.PUBLIC,
    )
    assert names == ("mail.contoso.com", "autodiscover.contoso.com", "xn--bcher-kva.de", "*.contoso.com")


def test_names_are_taken_from_any_iterable() -> None:
    assert normalize_names(iter(["b.contoso.com", "a.contoso.com"]), policy=NamePolicy.PUBLIC) == (
        "b.contoso.com",
        "a.contoso.com",
    )


@pytest.mark.parametrize("empty", [[], ()])
def test_an_empty_list_is_refused(empty: list[str]) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_names(empty, policy=NamePolicy.PRIVATE)
    assert caught.value.rule == "no-names"


def test_a_single_string_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        normalize_names("mail.contoso.com", policy=NamePolicy.PRIVATE)


def test_one_bad_name_raises_its_own_error() -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_names(["mail.contoso.com", "*.com"], policy=NamePolicy.PUBLIC)
    assert type(caught.value) is InvalidName
    assert caught.value.rule == "wildcard-public-suffix"
    assert caught.value.name == "*.com"


def test_several_bad_names_are_all_listed() -> None:
    bad = ["*.*.contoso.com", "exch01", "10.0.0.1", f"ex{CYRILLIC_A}mple.com"]
    with pytest.raises(InvalidNames) as caught:
        normalize_names(["mail.contoso.com", *bad, "autodiscover.contoso.com"], policy=NamePolicy.PUBLIC)
    error = caught.value
    assert [(e.name, e.rule) for e in error.errors] == [
        ("*.*.contoso.com", "wildcard-count"),
        ("exch01", "single-label"),
        ("10.0.0.1", "ip-literal"),
        (f"ex{CYRILLIC_A}mple.com", "mixed-script"),
    ]
    message = str(error)
    assert message.startswith("4 names refused:")
    for name, rule in [(e.name, e.rule) for e in error.errors]:
        assert f"- {name!r}: " in message
        assert f"[rule: {rule}]" in message
    # still an InvalidName, carrying the first refusal
    assert isinstance(error, InvalidName)
    assert (error.name, error.rule) == ("*.*.contoso.com", "wildcard-count")


def test_the_same_list_passes_for_an_internal_issuer() -> None:
    names = ["mail.contoso.com", "exch01", "exch01.contoso.corp", "exch01.contoso.local"]
    assert normalize_names(names, policy=NamePolicy.PRIVATE) == tuple(names)
    with pytest.raises(InvalidNames) as caught:
        normalize_names(names, policy=NamePolicy.PUBLIC)
    assert [e.rule for e in caught.value.errors] == ["single-label", "internal-name", "special-use"]


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("exch01", True),
        ("mail.contoso.local", True),
        ("*.contoso.local", True),
        ("MAIL.CONTOSO.CORP.", True),
        ("localhost", True),
        ("20.1.168.192.in-addr.arpa", True),
        ("mail.contoso.com", False),
        ("*.contoso.com", False),
        ("mail.contoso.test", False),
        ("mail.contoso.example", False),
        ("bücher.example", False),
    ],
)
def test_is_internal(name: str, expected: bool) -> None:
    assert is_internal(name) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("10.0.0.1", True), ("[fd00::1]", True), ("8.8.8.8", False), ("MAIL.Contoso.LOCAL.", True), ("a..b.corp", True)],
)
def test_is_internal_judges_addresses_and_invalid_input_without_raising(name: str, expected: bool) -> None:
    # the Outlook planner asks about operator input that may not be a valid name at all
    assert is_internal(name) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("*.contoso.com", True),
        (" *.contoso.com", True),
        ("mail.contoso.com", False),
        ("m*.contoso.com", False),
    ],
)
def test_is_wildcard(name: str, expected: bool) -> None:
    assert is_wildcard(name) is expected


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("xn--bcher-kva.example", "bücher.example"),
        ("*.xn--bcher-kva.example", "*.bücher.example"),
        ("mail.contoso.com", "mail.contoso.com"),
        ("xn--80a1acny.contoso.com", "почта.contoso.com"),
        # shown as it is rather than failing: display must never raise
        ("xn--a.contoso.com", "xn--a.contoso.com"),
    ],
)
def test_to_unicode(name: str, shown: str) -> None:
    assert to_unicode(name) == shown


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mail.contoso.com", "mail.contoso.com", True),
        ("mail.contoso.com", "MAIL.Contoso.com.", True),
        ("mail.contoso.com", "autodiscover.contoso.com", False),
        ("*.contoso.com", "mail.contoso.com", True),
        ("*.contoso.com", "Autodiscover.CONTOSO.com.", True),
        # a wildcard covers exactly one label (RFC 6125 §6.4.3)
        ("*.contoso.com", "contoso.com", False),
        ("*.contoso.com", "a.mail.contoso.com", False),
        ("*.contoso.com", "mail.contoso.net", False),
        ("*.contoso.com", "mail.fabrikam.com", False),
        ("*.example", "bücher.example", False),  # wildcard over a TLD covers nothing
        ("*.contoso.example", "bücher.contoso.example", True),
        ("*.xn--bcher-kva.example", "mail.bücher.example", True),
        ("*.contoso.local", "exch01.contoso.local", True),
        ("*.com", "contoso.com", False),
        ("m*.contoso.com", "mail.contoso.com", False),
        ("*.contoso.com", "*.contoso.com", True),
        ("mail.contoso.com", "*.contoso.com", False),
        ("*.contoso.com", "10.0.0.1", False),
        ("", "mail.contoso.com", False),
    ],
)
def test_covers(pattern: str, host: str, expected: bool) -> None:
    assert covers(pattern, host) is expected


# --- properties over generated names (seeded, no extra dependency) --------------------------

_CHAOS = "abcXYZ019-_.*ü\u0430\u03bf\u3002 "
_LABEL = "abcdmxyzABCZ0189-üßö\u03b1\u0430"
_SUFFIXES = ["com", "co.uk", "test", "example", "local", "corp", "de", "xn--p1ai", "arpa", ""]


def _generated_names(count: int) -> list[str]:
    """Half chaos (mostly refused), half built from labels and suffixes (mostly accepted)."""
    generator = random.Random(20261130)
    names = []
    for index in range(count):
        if index % 2:
            names.append("".join(generator.choices(_CHAOS, k=generator.randint(0, 24))))
            continue
        labels = [
            "".join(generator.choices(_LABEL, k=generator.randint(1, 12)))
            for _ in range(generator.randint(1, 3))
        ]
        suffix = generator.choice(_SUFFIXES)
        name = ".".join([*labels, suffix] if suffix else labels)
        if generator.random() < 0.2:
            name = "*." + name
        if generator.random() < 0.2:
            name += "."
        names.append(name)
    return names


def suggested_names(message: str) -> list[str]:
    """Every whole name a refusal offers ("e.g. X", "did you mean 'X'?", "give 'X'")."""
    found = re.findall(r"e\.g\. (\*?[a-z0-9.-]+[a-z0-9])", message)
    found += re.findall(r"did you mean '([^']+)'\?", message)
    found += re.findall(r"and give '([^']+)'", message)
    return found


SUGGESTING = [
    "*.local", "*.com", "*.co.uk", "*.contoso.ck", "*.test", "exch01", "mail.contoso.local", "mail.contoso.corp",
    "contoso.comm", "*.contoso.nett", "https://mail.contoso.com/owa", "mail.contoso.com:443", "mail.contoso.onion",
    "mail.contoso.test", "co.uk", "", "exch01.home.arpa",
]


@pytest.mark.parametrize("policy", list(NamePolicy))
@pytest.mark.parametrize("raw", SUGGESTING)
def test_every_suggested_name_passes_the_same_policy(raw: str, policy: NamePolicy) -> None:
    try:
        normalize_name(raw, policy=policy)
    except InvalidName as error:
        for suggestion in suggested_names(str(error)):
            assert normalize_name(suggestion, policy=policy), suggestion


def test_a_wildcard_over_an_internal_name_suggests_a_public_one_for_a_public_ca() -> None:
    with pytest.raises(InvalidName) as public:
        normalize_name("*.local", policy=NamePolicy.PUBLIC)
    assert "*.contoso.local" not in str(public.value) and "e.g. *.contoso.com." in str(public.value)
    with pytest.raises(InvalidName) as private:
        normalize_name("*.local", policy=NamePolicy.PRIVATE)
    assert "e.g. *.contoso.local." in str(private.value)


@pytest.mark.parametrize(("raw", "unicode"), [
    ("xn---bbk.contoso.com", "'\u307e'"),  # a non-canonical spelling of xn--bbk: Unicode helps
    ("xn--u-ccb.contoso.com", "'\u00fc'"),  # u + combining diaeresis: its NFC form is fine
])
def test_unicode_is_suggested_only_when_the_unicode_form_passes(raw: str, unicode: str) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=NamePolicy.PUBLIC)
    assert f"Write the label in Unicode ({unicode})" in str(caught.value)


@pytest.mark.parametrize("raw", ["xn--a.contoso.com", "xn--zz-zzzz.contoso.com"])
def test_no_unicode_advice_when_unicode_refuses_the_label_too(raw: str) -> None:
    with pytest.raises(InvalidName) as caught:
        normalize_name(raw, policy=NamePolicy.PUBLIC)
    assert caught.value.rule == "punycode"
    assert "Unicode and certkeeper converts" not in str(caught.value)
    assert "does not stand for any valid Unicode label" in str(caught.value)


@pytest.mark.parametrize("policy", list(NamePolicy))
def test_properties_of_generated_names(policy: NamePolicy) -> None:
    accepted = 0
    for raw in _generated_names(3000):
        try:
            name = normalize_name(raw, policy=policy)
        except InvalidName as error:
            assert error.rule in RULES
            assert str(error).startswith(f"{raw!r}: ")
            for suggestion in suggested_names(str(error)):
                normalize_name(suggestion, policy=policy)  # advice leads to a name that passes
            continue
        accepted += 1
        assert name == normalize_name(name, policy=policy)
        assert name == normalize_name(to_unicode(name), policy=policy)
        assert name.isascii() and name == name.lower()
        assert len(name) <= 253 and all(0 < len(label) <= 63 for label in name.split("."))
        assert covers(name, name)
        if policy is NamePolicy.PUBLIC:
            assert not is_internal(name)
    assert accepted > (150 if policy is NamePolicy.PUBLIC else 200)
