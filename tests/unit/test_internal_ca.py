from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from certkeeper.clock import FrozenClock
from certkeeper.errors import ConfigError, InputError, IssuanceRejected, IssuedCertificateInvalid
from certkeeper.hostnames import NamePolicy
from certkeeper.issuers import Issuer, load_issuer
from certkeeper.issuers.internal_ca import (
    INTERMEDIATE_CERT,
    INTERMEDIATE_KEY,
    ROOT_CERT,
    ROOT_KEY,
    InternalCA,
)
from certkeeper.model import IssueRequest, KeyType
from certkeeper.pki.chain import verify_chain
from certkeeper.pki.csr import build_csr
from certkeeper.pki.keys import generate_private_key, key_type_of, public_key_der
from certkeeper.pki.parse import load_certificates
from certkeeper.plugins import MemoryState, PluginContext
from tests.unit.pki_support import NOW, Issued, issue, make_ca

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


def openssl_verify(issued: Issued, tmp_path: Path, at: int | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "root.pem").write_bytes(issued.root_pem)
    (tmp_path / "intermediate.pem").write_bytes(issued.chain_pem)
    (tmp_path / "leaf.pem").write_bytes(issued.cert_pem)
    at = at if at is not None else int((NOW + timedelta(hours=1)).timestamp())
    return subprocess.run(
        ["openssl", "verify", "-attime", str(at), "-purpose", "sslserver",
         "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "intermediate.pem"),
         str(tmp_path / "leaf.pem")],
        capture_output=True, text=True,
    )  # fmt: skip


def test_is_an_issuer_and_registered() -> None:
    ca = make_ca()
    assert isinstance(ca, Issuer)
    assert ca.name_policy is NamePolicy.PRIVATE
    assert ca.name == "internal"
    assert load_issuer("internal-ca") is InternalCA


def test_default_options_make_an_rsa3072_ca_that_openssl_accepts(tmp_path: Path) -> None:
    state = MemoryState()
    ca = make_ca({"ca_key_type": "rsa3072"}, state=state)
    assert not ca.is_initialized()
    issued = issue(ca, NAMES, KeyType.RSA2048)  # created on first use
    assert ca.is_initialized()
    assert sorted(state.keys()) == sorted([ROOT_CERT, ROOT_KEY, INTERMEDIATE_CERT, INTERMEDIATE_KEY])
    assert key_type_of(issued.root.public_key()) is KeyType.RSA3072
    assert key_type_of(issued.intermediate.public_key()) is KeyType.RSA3072
    result = openssl_verify(issued, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verify_chain(issued.cert, [issued.intermediate], [issued.root], at=NOW)[-1] == issued.root
    # defaults straight from the options model
    defaults = InternalCA.from_options(
        "internal", {}, PluginContext(clock=FrozenClock(NOW), state=MemoryState(), data_dir=tmp_path)
    ).options
    assert defaults.ca_key_type is KeyType.RSA3072
    assert defaults.validity_days == 397
    assert (defaults.root_validity_days, defaults.intermediate_validity_days) == (3650, 1825)


@pytest.mark.parametrize("leaf_type", list(KeyType))
def test_every_leaf_key_type_verifies_with_openssl_and_cryptography(
    leaf_type: KeyType, tmp_path: Path
) -> None:
    issued = issue(_shared_ca(), NAMES, leaf_type)
    assert public_key_der(issued.cert.public_key()) == public_key_der(issued.key)
    result = openssl_verify(issued, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in NAMES:
        verify_chain(issued.cert, [issued.intermediate], [issued.root], at=NOW, name=name)


_CA: list[InternalCA] = []


def _shared_ca() -> InternalCA:
    if not _CA:
        _CA.append(make_ca())
    return _CA[0]


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


@pytest.mark.parametrize("leaf_type", [KeyType.RSA2048, KeyType.ECDSA_P256])
def test_leaf_extensions_exactly(leaf_type: KeyType) -> None:
    issued = issue(_shared_ca(), NAMES, leaf_type)
    cert = issued.cert
    assert {ext.oid for ext in cert.extensions} == {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
    san = _ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == list(NAMES)  # type: ignore[attr-defined]
    assert len(san.value) == len(NAMES)  # type: ignore[arg-type]
    eku = _ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]  # type: ignore[call-overload]
    key_usage = _ext(cert, x509.KeyUsage)
    assert key_usage.critical
    usage = key_usage.value
    assert usage.digital_signature is True  # type: ignore[attr-defined]
    assert usage.key_encipherment is (leaf_type is KeyType.RSA2048)  # type: ignore[attr-defined]
    for flag in ("content_commitment", "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign"):
        assert getattr(usage, flag) is False
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is False  # type: ignore[attr-defined]
    ski = _ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    aki = _ext(cert, x509.AuthorityKeyIdentifier)
    assert not aki.critical
    issuer_ski = _ext(issued.intermediate, x509.SubjectKeyIdentifier).value
    assert aki.value.key_identifier == issuer_ski.digest  # type: ignore[attr-defined]
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])])
    assert cert.issuer == issued.intermediate.subject
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    assert cert.version is x509.Version.v3
    # serial: positive, fits in 20 octets, and random (>= 64 bits of entropy; 2^-95 chance of a flake)
    assert 0 < cert.serial_number < 2**159
    assert cert.serial_number.bit_length() > 64
    assert issue(_shared_ca(), NAMES).cert.serial_number != cert.serial_number
    # validity: 5 minutes of clock skew before now, 397 days after
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=397)


def test_ca_certificates_shape() -> None:
    issued = issue(make_ca({"organization": "Contoso Ltd"}), NAMES)
    root, intermediate = issued.root, issued.intermediate
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "certkeeper Root CA"
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Contoso Ltd"
    assert (
        intermediate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "certkeeper Issuing CA 1"
    )
    for cert, path_length in ((root, None), (intermediate, 0)):
        basic = _ext(cert, x509.BasicConstraints)
        assert basic.critical and basic.value.ca is True  # type: ignore[attr-defined]
        assert basic.value.path_length == path_length  # type: ignore[attr-defined]
        usage = _ext(cert, x509.KeyUsage)
        assert usage.critical
        assert usage.value.key_cert_sign and usage.value.crl_sign  # type: ignore[attr-defined]
    assert root.not_valid_after_utc == NOW + timedelta(days=3650)
    assert intermediate.not_valid_after_utc == NOW + timedelta(days=1825)
    assert ExtensionOID.NAME_CONSTRAINTS not in {ext.oid for ext in intermediate.extensions}


def test_p384_ca_signs_with_sha384() -> None:
    issued = issue(make_ca({"ca_key_type": "ecdsa-p384"}), NAMES)
    assert issued.cert.signature_hash_algorithm is not None
    assert issued.cert.signature_hash_algorithm.name == "sha384"
    verify_chain(issued.cert, [issued.intermediate], [issued.root], at=NOW)


def test_long_first_name_leaves_cn_out_and_makes_san_critical(tmp_path: Path) -> None:
    long_name = "outlook-anywhere-external-gateway-primary." + "datacenter-west.contoso.com"
    assert len(long_name) > 64
    issued = issue(_shared_ca(), [long_name, "mail.contoso.com"])
    assert len(issued.cert.subject) == 0
    assert _ext(issued.cert, x509.SubjectAlternativeName).critical
    assert openssl_verify(issued, tmp_path).returncode == 0


def test_internal_names_are_signed(tmp_path: Path) -> None:
    issued = issue(_shared_ca(), ["mail.contoso.local", "exchange01"])
    assert openssl_verify(issued, tmp_path).returncode == 0


def test_fractional_validity() -> None:
    issued = issue(make_ca({"validity_days": 0.01}), NAMES)
    assert issued.cert.not_valid_after_utc == NOW + timedelta(seconds=864)
    issued = issue(make_ca({"validity_days": 9}), NAMES)
    assert issued.cert.not_valid_after_utc - issued.cert.not_valid_before_utc == timedelta(days=9, minutes=5)


def test_not_after_is_capped_by_the_intermediate() -> None:
    clock = FrozenClock(NOW)
    ca = make_ca({"intermediate_validity_days": 30, "validity_days": 397}, clock=clock)
    issued = issue(ca, NAMES)
    assert (
        issued.cert.not_valid_after_utc == issued.intermediate.not_valid_after_utc == NOW + timedelta(days=30)
    )
    clock.advance(timedelta(days=20))
    later = issue(ca, NAMES)
    assert later.cert.not_valid_after_utc == NOW + timedelta(days=30)
    clock.advance(timedelta(days=11))
    with pytest.raises(IssuanceRejected, match="the issuing CA expired on"):
        issue(ca, NAMES)
    ca.rotate_intermediate()
    renewed = issue(ca, NAMES)
    assert renewed.cert.not_valid_after_utc == clock.now() + timedelta(days=30)
    verify_chain(renewed.cert, [renewed.intermediate], [issued.root], at=clock.now())  # same root


def test_intermediate_is_capped_by_the_root() -> None:
    issued = issue(make_ca({"root_validity_days": 10, "intermediate_validity_days": 1825}), NAMES)
    assert issued.intermediate.not_valid_after_utc == issued.root.not_valid_after_utc


def test_name_constraints_are_in_the_intermediate_and_enforced(tmp_path: Path) -> None:
    ca = make_ca({"name_constraints": ["contoso.com", ".Fabrikam.NET."]})
    inside = issue(ca, ["mail.contoso.com", "contoso.com", "*.owa.fabrikam.net"])
    constraints = _ext(inside.intermediate, x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [  # type: ignore[attr-defined]
        x509.DNSName("contoso.com"),
        x509.DNSName("fabrikam.net"),
    ]
    assert constraints.value.excluded_subtrees is None  # type: ignore[attr-defined]
    assert openssl_verify(inside, tmp_path).returncode == 0
    verify_chain(inside.cert, [inside.intermediate], [inside.root], at=NOW)

    # the CA refuses names outside up front ...
    with pytest.raises(
        IssuanceRejected, match=r"mail\.northwind\.com outside the CA's name constraints"
    ) as info:
        issue(ca, ["mail.contoso.com", "mail.northwind.com"])
    assert info.value.name == "mail.northwind.com"
    assert info.value.retryable is False
    with pytest.raises(IssuanceRejected):
        issue(ca, ["notcontoso.com"])

    # ... and a certificate signed for them anyway fails every path validator
    key = generate_private_key(KeyType.ECDSA_P256)
    intermediate, intermediate_key = ca._intermediate()
    outside_cert = ca._sign_leaf(
        ["mail.northwind.com"], key.public_key(), intermediate, intermediate_key, NOW, NOW + timedelta(days=1)
    )
    outside = Issued(
        key=key,
        cert=outside_cert,
        cert_pem=outside_cert.public_bytes(Encoding.PEM),
        chain_pem=inside.chain_pem,
        root_pem=inside.root_pem,
    )
    result = openssl_verify(outside, tmp_path)
    assert result.returncode != 0
    assert "permitted subtree violation" in result.stdout + result.stderr
    with pytest.raises(IssuedCertificateInvalid, match="chain does not verify"):
        verify_chain(outside.cert, [outside.intermediate], [outside.root], at=NOW)


def test_csr_checks() -> None:
    ca = _shared_ca()
    key = generate_private_key(KeyType.ECDSA_P256)

    def request(csr_pem: bytes, names: tuple[str, ...] = NAMES) -> IssueRequest:
        return IssueRequest(certificate_id="t", names=names, csr_pem=csr_pem)

    with pytest.raises(IssuanceRejected, match="differ from the requested names") as info:
        ca.issue(request(build_csr(key, ["mail.contoso.com"])))
    assert info.value.problem == "badCSR"
    with pytest.raises(IssuanceRejected, match="differ from the requested names"):
        ca.issue(request(build_csr(key, [*NAMES, "extra.contoso.com"])))
    # same set in another order is fine
    ca.issue(request(build_csr(key, list(reversed(NAMES)))))
    with pytest.raises(IssuanceRejected, match="not a readable certificate signing request"):
        ca.issue(request(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in NAMES]), critical=True)
        .sign(weak, hashes.SHA256())
    )
    with pytest.raises(IssuanceRejected, match="not RSA >= 2048"):
        ca.issue(request(weak_csr.public_bytes(Encoding.PEM)))
    # a CSR whose signature does not match its content (one byte of the signature flipped)
    # (RSA: the signature is raw bytes, so the CSR still parses)
    good = load_csr_der(build_csr(generate_private_key(KeyType.RSA2048), NAMES))
    tampered = good[:-3] + bytes([good[-3] ^ 0x01]) + good[-2:]
    with pytest.raises(IssuanceRejected, match="the CSR signature is invalid"):
        ca.issue(request(tampered))


def load_csr_der(pem: bytes) -> bytes:
    return x509.load_pem_x509_csr(pem).public_bytes(Encoding.DER)


def test_reinitialize_refused_without_force() -> None:
    state = MemoryState()
    ca = make_ca(state=state)
    ca.initialize()
    root = ca.root_pem()
    with pytest.raises(InputError, match="the CA already exists"):
        ca.initialize()
    assert ca.root_pem() == root
    ca.initialize(force=True)
    assert ca.root_pem() != root
    assert ca.trust_anchors_pem() == ca.root_pem()
    assert (
        load_certificates(ca.chain_pem(), what="chain")[0].issuer
        == load_certificates(root, what="r")[0].subject
    )


def test_state_round_trips_through_a_second_instance(tmp_path: Path) -> None:
    state = MemoryState()
    first = make_ca(state=state)
    issued_first = issue(first, NAMES)
    snapshot = dict(state.data)
    second = make_ca(state=state)
    assert second.is_initialized()
    issued_second = issue(second, ["owa.contoso.com"])
    assert state.data == snapshot  # nothing re-created
    assert issued_second.root_pem == issued_first.root_pem
    assert issued_second.chain_pem == issued_first.chain_pem
    verify_chain(issued_second.cert, [issued_first.intermediate], [issued_first.root], at=NOW)
    assert openssl_verify(issued_second, tmp_path).returncode == 0
    # PEM keys in state (the store encrypts them at rest), loadable
    assert state.data[ROOT_KEY].startswith(b"-----BEGIN PRIVATE KEY-----")
    assert state.data[INTERMEDIATE_KEY].startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bogus": 1}, "issuers.internal.bogus"),
        ({"validity_days": 0}, "issuers.internal.validity_days"),
        ({"ca_key_type": "rsa1024"}, "issuers.internal.ca_key_type"),
        ({"name_constraints": ["bad name.com"]}, "issuers.internal.name_constraints"),
        ({"name_constraints": [""]}, "issuers.internal.name_constraints"),
        ({"common_name": "x" * 65}, "issuers.internal.common_name"),
    ],
)
def test_options_are_validated_with_the_key_path(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_ca(options)


def test_a_missing_intermediate_is_recreated_under_the_same_root() -> None:
    state = MemoryState()
    ca = make_ca(state=state)
    first = issue(ca, NAMES)
    state.delete(INTERMEDIATE_CERT)
    state.delete(INTERMEDIATE_KEY)
    assert not ca.is_initialized()
    with pytest.raises(InputError, match="the CA already exists"):
        ca.initialize()  # the root is still there
    second = issue(ca, NAMES)
    assert second.root_pem == first.root_pem
    assert second.chain_pem != first.chain_pem
    verify_chain(second.cert, [second.intermediate], [first.root], at=NOW)
