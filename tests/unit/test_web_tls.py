"""Which client certificates the daemon's HTTPS accepts (:mod:`certkeeper.web.tls`), and the
settings that turn it on: pure functions over certificates built here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certkeeper.config import parse
from certkeeper.errors import ConfigError
from certkeeper.web import tls

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def utf8string(text: str) -> bytes:
    """DER UTF8String (X.690 §8.21, §8.1.3 lengths), written out independently of the code under test."""
    data = text.encode("utf-8")
    if len(data) < 0x80:
        return bytes([0x0C, len(data)]) + data
    size = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + data


def certificate(common_name: str | None, *alt: x509.GeneralName) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "Contoso users CA")]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=30)))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(alt)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


WINDOWS_USER = certificate(
    "Alice Example",
    x509.OtherName(tls.UPN_OID, utf8string("alice@corp.contoso.com")),
    x509.RFC822Name("alice@contoso.com"),
)
MONITORING_HOST = certificate("prometheus", x509.DNSName("prom01.contoso.com"))


def test_identities_are_the_common_name_dns_names_emails_and_the_windows_upn() -> None:
    assert tls.client_identities(WINDOWS_USER) == ["Alice Example", "alice@contoso.com", "alice@corp.contoso.com"]
    assert tls.client_identities(MONITORING_HOST) == ["prometheus", "prom01.contoso.com"]
    assert tls.client_identities(certificate("only-cn")) == ["only-cn"]
    # an otherName that is not a UPN, and a UPN that is not a UTF8String, name nobody
    odd = certificate(None, x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), utf8string("x@y")),
                      x509.OtherName(tls.UPN_OID, b"\x16\x03x@y"))
    assert tls.client_identities(odd) == []


@pytest.mark.parametrize(("der", "allowed", "refused"), [
    (WINDOWS_USER, (), False),  # no list: any certificate from the client CAs
    (WINDOWS_USER, ("ALICE@corp.contoso.com",), False),  # the UPN, any case
    (WINDOWS_USER, ("alice@contoso.com",), False),  # the e-mail address
    (WINDOWS_USER, ("alice example",), False),  # the common name
    (WINDOWS_USER, ("bob@contoso.com",), True),
    (MONITORING_HOST, ("prom01.contoso.com", "bob@contoso.com"), False),
    (MONITORING_HOST, ("prom02.contoso.com",), True),
    (None, ("prom01.contoso.com",), True),
])
def test_client_names_accept_a_certificate_naming_one_of_them(der: bytes | None, allowed: tuple[str, ...],
                                                              refused: bool) -> None:
    reason = tls.client_refusal(der, allowed)
    assert (reason is not None) == refused
    if reason is not None:
        assert "\n" not in reason and ("client_names" in reason or "no client certificate" in reason)


def test_a_refusal_names_what_the_certificate_says() -> None:
    reason = tls.client_refusal(MONITORING_HOST, ("prom02.contoso.com",))
    assert reason == "the client certificate (prometheus, prom01.contoso.com) is not one of [daemon] client_names"


@pytest.mark.parametrize(("data", "text"), [
    (utf8string("a@b"), "a@b"),
    (utf8string("u" * 200 + "@contoso.com"), "u" * 200 + "@contoso.com"),  # long-form length
    (utf8string("ü@contoso.com"), "ü@contoso.com"),
    (b"\x0c\x05a@b", None),  # length beyond the data
    (b"\x0c\x01a@b", None),  # data beyond the length
    (b"\x0c\x80", None),  # indefinite length is not DER
    (b"\x0c\x02\xff\xfe", None),  # not UTF-8
    (b"\x16\x03a@b", None),  # IA5String, not UTF8String
    (b"", None),
])
def test_der_utf8string(data: bytes, text: str | None) -> None:
    assert tls._der_utf8(data) == text


def test_settings_need_their_parts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client_ca_file needs tls_certificate"):
        parse({"daemon": {"client_ca_file": "users.pem"}}, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="client_names needs client_ca_file"):
        parse({"daemon": {"tls_certificate": "status", "client_names": ["alice@contoso.com"]}}, data_dir=tmp_path)
    daemon = parse({"daemon": {"tls_certificate": "status", "client_ca_file": "users.pem",
                               "client_names": ["alice@contoso.com"]}}, data_dir=tmp_path).settings.daemon
    assert (daemon.tls_certificate, daemon.client_names) == ("status", ("alice@contoso.com",))
