from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certkeeper.errors import InputError
from certkeeper.model import KeyType
from certkeeper.pki.csr import build_csr, csr_names, load_csr
from certkeeper.pki.keys import generate_private_key, public_key_der

NAMES = ("mail.contoso.com", "autodiscover.contoso.com", "legacy.contoso.com")


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.ECDSA_P256, KeyType.ECDSA_P384])
def test_csr_carries_every_name_in_order_and_the_first_as_cn(key_type: KeyType) -> None:
    key = generate_private_key(key_type)
    pem = build_csr(key, NAMES)
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    csr = load_csr(pem)
    assert csr.is_signature_valid
    assert csr_names(csr) == NAMES
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [NAMES[0]]
    assert public_key_der(csr.public_key()) == public_key_der(key)
    expected_hash = "sha384" if key_type is KeyType.ECDSA_P384 else "sha256"
    assert csr.signature_hash_algorithm is not None
    assert csr.signature_hash_algorithm.name == expected_hash
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical


def test_first_name_longer_than_64_characters_leaves_cn_out() -> None:
    long_name = "a" * 30 + "." + "b" * 30 + ".contoso.com"  # 73 characters
    assert len(long_name) > 64
    csr = load_csr(build_csr(generate_private_key(KeyType.ECDSA_P256), [long_name, "mail.contoso.com"]))
    assert len(csr.subject) == 0
    assert csr_names(csr) == (long_name, "mail.contoso.com")
    # RFC 5280 §4.2.1.6: an empty subject makes the SAN critical
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_exactly_64_characters_is_still_the_cn() -> None:
    name = "a" * 52 + ".contoso.com"
    assert len(name) == 64
    csr = load_csr(build_csr(generate_private_key(KeyType.ECDSA_P256), [name]))
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name


def test_load_csr_accepts_der_and_crlf_and_refuses_garbage() -> None:
    pem = build_csr(generate_private_key(KeyType.ECDSA_P256), ["mail.contoso.com"])
    der = load_csr(pem).public_bytes(Encoding.DER)
    assert csr_names(load_csr(der)) == ("mail.contoso.com",)
    assert csr_names(load_csr(pem.replace(b"\n", b"\r\n"))) == ("mail.contoso.com",)
    with pytest.raises(InputError, match=r"^req\.csr: not a readable certificate signing request"):
        load_csr(pem[:80], what="req.csr")


def test_csr_without_san_has_no_names() -> None:
    key = generate_private_key(KeyType.ECDSA_P256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.contoso.com")]))
        .sign(key, hashes.SHA256())
    )
    assert csr_names(csr) == ()


def test_build_csr_needs_a_name() -> None:
    with pytest.raises(ValueError, match="at least one name"):
        build_csr(generate_private_key(KeyType.ECDSA_P256), [])
