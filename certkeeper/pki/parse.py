"""Reading certificates, bundles and PFX files given by operators.

Every loader takes ``what`` (usually the file name) and raises
:class:`~certkeeper.errors.InputError` naming it; messages never contain the input's bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certkeeper.errors import InputError
from certkeeper.pki.chain import order_chain
from certkeeper.pki.fingerprint import sha1_thumbprint, sha256_fingerprint
from certkeeper.pki.keys import PrivateKey, describe_key, load_private_key, public_key_der
from certkeeper.pki.pkcs12.structure import iteration_counts

_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\n(.*?)\n?-----END ([A-Z0-9 ]+)-----", re.DOTALL)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}
#: blocks that may sit beside certificates and keys (``openssl ecparam -genkey`` writes EC PARAMETERS)
_HARMLESS_LABELS = {b"EC PARAMETERS"}


@dataclass(frozen=True)
class PemBlock:
    label: str
    pem: bytes  # the whole block, BEGIN to END, LF line endings


def pem_blocks(data: bytes, *, what: str) -> list[PemBlock]:
    """Split PEM text into its blocks (CRLF tolerated; text between blocks ignored).

    Raises:
        InputError: a BEGIN line without its matching END line (truncated file, mismatched labels).
    """
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    blocks = []
    for match in _BLOCK.finditer(text):
        if match.group(1) != match.group(3):
            raise InputError(
                f"{what}: PEM block 'BEGIN {match.group(1).decode()}' ends with "
                f"'END {match.group(3).decode()}'"
            )
        blocks.append(PemBlock(match.group(1).decode(), match.group(0) + b"\n"))
    if len(blocks) != len(_BEGIN.findall(text)):
        raise InputError(f"{what}: truncated PEM (a BEGIN line has no matching END line)")
    return blocks


def is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data[:4096] or data.lstrip()[:11] == b"-----BEGIN "


def load_certificates(data: bytes, *, what: str) -> list[x509.Certificate]:
    """All certificates in ``data``: PEM with one or more CERTIFICATE blocks, or one DER certificate.

    Private key and EC PARAMETERS blocks are skipped here (see :func:`split_bundle`); any other
    label is refused, so a mistyped header never silently drops a certificate from a chain.

    Raises:
        InputError: naming ``what``: empty, truncated, garbage, an unexpected label, no CERTIFICATE
            block, or a block whose content is not a certificate.
    """
    if not data.strip():
        raise InputError(f"{what}: empty file")
    if not is_pem(data):
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise InputError(f"{what}: neither PEM nor a DER certificate") from None
    blocks = pem_blocks(data, what=what)
    certs = []
    for index, block in enumerate(blocks, start=1):
        label = block.label.encode()
        if label in _KEY_LABELS or label in _HARMLESS_LABELS:
            continue
        if label not in _CERT_LABELS:
            raise InputError(f"{what}: PEM block {index} has an unexpected label 'BEGIN {block.label}'")
        try:
            certs.append(x509.load_pem_x509_certificate(block.pem))
        except ValueError:
            raise InputError(
                f"{what}: PEM block {index} (BEGIN {block.label}) is not a valid certificate"
            ) from None
    if not certs:
        labels = ", ".join(sorted({block.label for block in blocks})) or "none"
        raise InputError(f"{what}: no CERTIFICATE block found (PEM blocks: {labels})")
    return certs


@dataclass(frozen=True)
class CertInfo:
    """What an operator (and the store) wants to know about a certificate."""

    names: tuple[str, ...]  # SAN dNSNames, in order
    common_name: str | None
    serial: str  # upper-case hex, no colons
    fingerprint_sha256: str  # lower-case hex, no colons
    thumbprint_sha1: str  # upper-case hex: the Windows "Thumbprint"
    not_before: datetime  # aware UTC
    not_after: datetime  # aware UTC
    issuer: str  # RFC 4514
    subject: str  # RFC 4514
    key: str  # "RSA 2048", "ECDSA P-256"
    signature_hash: str | None  # "sha256"; None for Ed25519 and other hashless schemes
    is_ca: bool


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The SAN dNSNames, in order (empty if there is no SAN)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))


def common_name(cert: x509.Certificate) -> str | None:
    attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def cert_info(cert: x509.Certificate) -> CertInfo:
    hash_algorithm = cert.signature_hash_algorithm
    return CertInfo(
        names=cert_names(cert),
        common_name=common_name(cert),
        serial=f"{cert.serial_number:X}",
        fingerprint_sha256=sha256_fingerprint(cert),
        thumbprint_sha1=sha1_thumbprint(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issuer=cert.issuer.rfc4514_string(),
        subject=cert.subject.rfc4514_string(),
        key=describe_key(cert.public_key()),
        signature_hash=hash_algorithm.name if hash_algorithm is not None else None,
        is_ca=is_ca(cert),
    )


def public_key_matches(private_key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``cert`` certifies the public half of ``private_key``."""
    return public_key_der(private_key) == public_key_der(cert.public_key())


def _leaf_and_chain(
    key: PrivateKey | None, certs: list[x509.Certificate], *, what: str
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    unique = list(dict.fromkeys(certs))  # certificates hash by DER: drop exact duplicates
    if key is not None:
        matching = [cert for cert in unique if public_key_matches(key, cert)]
        if not matching:
            raise InputError(f"{what}: the private key does not match any certificate in the file")
        leaf = matching[0]
    else:
        end_entities = [cert for cert in unique if not is_ca(cert)]
        if len(end_entities) != 1:
            raise InputError(
                f"{what}: cannot tell which certificate is the server certificate "
                f"({len(end_entities)} non-CA certificates)"
            )
        leaf = end_entities[0]
    ordered = order_chain([leaf, *[cert for cert in unique if cert != leaf]], what=what)
    return ordered[0], ordered[1:]


def split_bundle(
    data: bytes, *, what: str
) -> tuple[PrivateKey | None, x509.Certificate, list[x509.Certificate]]:
    """Split a PEM holding (optionally) one private key and certificates, in any order.

    The leaf is the certificate whose public key matches the key (or, with no key, the only
    non-CA certificate); the chain is the rest, ordered leaf -> root by issuer/subject.

    Raises:
        InputError: naming ``what``: broken PEM, two keys, an encrypted key, a key matching no
            certificate, certificates that do not form one chain.
    """
    if not is_pem(data):
        return None, *_leaf_and_chain(None, load_certificates(data, what=what), what=what)
    blocks = pem_blocks(data, what=what)
    key_blocks = [block for block in blocks if block.label.encode() in _KEY_LABELS]
    if len(key_blocks) > 1:
        raise InputError(f"{what}: {len(key_blocks)} private keys found; expected at most one")
    key = load_private_key(key_blocks[0].pem, what=what) if key_blocks else None
    certs = load_certificates(data, what=what)
    leaf, chain = _leaf_and_chain(key, certs, what=what)
    return key, leaf, chain


#: refuse a PFX declaring more PBKDF/MAC iterations than this for one derivation ...
MAX_PFX_ITERATIONS = 10_000_000
#: ... or in all (about 0.1 s per million on a 2-core machine; real files use 2,048 to 600,000)
MAX_PFX_TOTAL_ITERATIONS = 30_000_000


def load_pfx(
    data: bytes,
    password: bytes | None,
    *,
    what: str,
    max_iterations: int = MAX_PFX_ITERATIONS,
    max_total_iterations: int = MAX_PFX_TOTAL_ITERATIONS,
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """Open a PKCS#12 (PFX) file holding a key, its certificate and maybe a chain.

    Raises:
        InputError: naming ``what``, distinct for: not a PFX / corrupt, wrong password, no private
            key inside, a key that matches no certificate, an unsupported key type, absurd
            iteration counts.

    The PBKDF/MAC iteration counts are read first (:mod:`certkeeper.pki.pkcs12.structure`) so a file
    declaring billions of iterations is refused before OpenSSL spends minutes deriving keys. On a
    cryptography without ``cryptography.hazmat.asn1`` the counts cannot be read and are not capped.
    """
    if not data:
        raise InputError(f"{what}: empty file")
    counts = iteration_counts(data)
    if counts and (max(counts) > max_iterations or sum(counts) > max_total_iterations):
        raise InputError(
            f"{what}: the PFX asks for {max(counts):,} key-derivation iterations "
            f"(limit {max_iterations:,}); export it again with normal settings"
        )
    try:
        loaded = pkcs12.load_pkcs12(data, password)
    except ValueError as exc:
        # The structure parsed (we read its iteration counts, or cryptography says "Invalid password
        # or PKCS12 data" rather than "Could not deserialize PKCS12 data"): the MAC or the
        # decryption failed, which almost always means the password is wrong.
        if counts is not None or "password" in str(exc).lower():
            raise InputError(f"{what}: wrong PFX password (or the file is damaged inside)") from None
        raise InputError(f"{what}: not a PFX/PKCS#12 file, or it is truncated or corrupt") from None
    except Exception as exc:  # noqa: BLE001 - UnsupportedAlgorithm (e.g. RC2 without legacy provider)
        raise InputError(f"{what}: cannot open the PFX ({type(exc).__name__}: {exc})") from None
    if loaded.key is None:
        raise InputError(f"{what}: the PFX holds no private key (export it again with the key)")
    key = loaded.key
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        kind = describe_key(key.public_key())
        raise InputError(f"{what}: {kind} keys are not supported (RSA or ECDSA only)")
    certs = []
    if loaded.cert is not None:
        certs.append(loaded.cert.certificate)
    certs.extend(extra.certificate for extra in loaded.additional_certs)
    if not certs:
        raise InputError(f"{what}: the PFX holds no certificate")
    leaf, chain = _leaf_and_chain(key, certs, what=what)
    return key, leaf, chain

