"""Reading certificates, bundles and PFX files given by operators.

Every loader takes ``what`` (usually the file name) and raises
:class:`~certkeeper.errors.InputError` naming it; messages never contain the input's bytes.
:func:`read_import` is what ``certkeeper import`` runs: it opens any of the accepted forms and
checks that the result can be served, with one line for each way it cannot.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID, NameOID

from certkeeper.errors import InputError
from certkeeper.pki.chain import order_chain
from certkeeper.pki.fingerprint import sha1_thumbprint, sha256_fingerprint
from certkeeper.pki.keys import PrivateKey, describe_key, load_private_key, public_key_der, unsupported_key

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
        except x509.InvalidVersion as exc:
            raise _bad_version(exc, what) from None
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
        except x509.InvalidVersion as exc:
            raise _bad_version(exc, f"{what}: PEM block {index}") from None
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
    # pyasn1 and its RFC modules cost ~60 ms and ~6 MB to import: only for a PFX
    from certkeeper.pki.pkcs12.structure import iteration_counts

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
            if password is None:
                raise InputError(f"{what}: the PFX is protected by a password: give it with "
                                 "--password-file") from None
            raise InputError(f"{what}: wrong PFX password (or the file is damaged inside)") from None
        raise InputError(f"{what}: not a PFX/PKCS#12 file, or it is truncated or corrupt") from None
    except x509.InvalidVersion as exc:
        raise _bad_version(exc, what) from None
    except Exception as exc:  # noqa: BLE001 - UnsupportedAlgorithm (e.g. RC2 without legacy provider)
        raise InputError(f"{what}: cannot open the PFX ({type(exc).__name__}: {exc})") from None
    certs = []
    if loaded.cert is not None:
        certs.append(loaded.cert.certificate)
    certs.extend(extra.certificate for extra in loaded.additional_certs)
    if loaded.key is None:
        if certs:
            raise without_key(certs, what=what)
        raise InputError(f"{what}: the PFX holds neither a private key nor a certificate")
    key = loaded.key
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InputError(f"{what}: {unsupported_key(key)}")
    if not certs:
        raise InputError(f"{what}: the PFX holds a private key without its certificate")
    leaf, chain = _leaf_and_chain(key, certs, what=what)
    return key, leaf, chain



# -- certkeeper import --------------------------------------------------------------------------

#: extension names as openssl and RFC 5280 §4.2 spell them, for messages
_EXTENSION_NAMES = {
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: "subjectAltName",
    ExtensionOID.ISSUER_ALTERNATIVE_NAME: "issuerAltName",
    ExtensionOID.EXTENDED_KEY_USAGE: "extendedKeyUsage",
    ExtensionOID.KEY_USAGE: "keyUsage",
    ExtensionOID.BASIC_CONSTRAINTS: "basicConstraints",
    ExtensionOID.CERTIFICATE_POLICIES: "certificatePolicies",
    ExtensionOID.NAME_CONSTRAINTS: "nameConstraints",
    ExtensionOID.POLICY_CONSTRAINTS: "policyConstraints",
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: "authorityKeyIdentifier",
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: "subjectKeyIdentifier",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: "authorityInfoAccess",
    ExtensionOID.CRL_DISTRIBUTION_POINTS: "cRLDistributionPoints",
}


def read_import(
    data: bytes,
    password: bytes | None,
    *,
    what: str,
    now: datetime,
    allow_expired: bool = False,
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """Open a file given to ``certkeeper import`` and check that it can be served.

    Accepted: a PEM bundle (one private key and certificates, in any order) or a PFX. Refused,
    each with one line naming ``what``: a certificate without its key (PEM or DER), a private key
    without its certificate, a bundle of only CA certificates, a DSA key, a PFX that needs a
    password when none was given, a certificate with a duplicate or malformed extension
    (subjectAltName, issuerAltName, extendedKeyUsage, basicConstraints, certificatePolicies,
    nameConstraints ...) or an unknown X.509 version, one the library calls malformed, a CA
    certificate (basicConstraints CA:TRUE) as the server certificate, and an expired one unless
    ``allow_expired``. Library warnings never reach the terminal: the ones about malformed input
    become the refusal, the others are dropped.

    Returns:
        (private key, leaf certificate, chain ordered towards the root).

    Raises:
        InputError: one line, naming ``what``.
    """
    if not data.strip():
        raise InputError(f"{what}: empty file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        key, leaf, chain = _open_import(data, password, what=what)
        for index, cert in enumerate([leaf, *chain]):
            check_well_formed(cert, what=what if index == 0 else f"{what}: chain certificate {index}")
    for warning in caught:
        if issubclass(warning.category, CryptographyDeprecationWarning):
            # e.g. "Parsed a serial number which wasn't positive ...": malformed per RFC 5280,
            # and a later cryptography refuses to load it at all
            text = str(warning.message).split(". ", 1)[0].rstrip(".")
            raise InputError(f"{what}: malformed certificate: {text}")
    if is_ca(leaf):
        raise InputError(
            f"{what}: the certificate for {common_name(leaf) or leaf.subject.rfc4514_string()} is a CA "
            "certificate (basicConstraints CA:TRUE), not a server certificate; import the server "
            "certificate it issued, with its key"
        )
    if leaf.not_valid_after_utc <= now and not allow_expired:
        raise InputError(
            f"{what}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; pass "
            "--allow-expired to import it anyway (it is then renewed at once)"
        )
    return key, leaf, chain


def check_well_formed(cert: x509.Certificate, *, what: str) -> None:
    """Parse every extension of ``cert`` the library knows; InputError naming the first one that
    appears twice (RFC 5280 §4.2: at most once each) or does not parse."""
    try:
        cert.extensions  # noqa: B018 - parsing is the check
    except x509.DuplicateExtension as exc:
        raise InputError(f"{what}: malformed certificate: the {_extension_name(exc.oid)} extension "
                         "appears twice (RFC 5280 §4.2 allows each extension once)") from None
    except ValueError:
        name = _malformed_extension(cert)
        which = f"its {name} extension" if name else "one of its extensions"
        raise InputError(f"{what}: malformed certificate: {which} cannot be parsed") from None


def without_key(certs: list[x509.Certificate], *, what: str, form: str = "") -> InputError:
    """The refusal for certificates that came without their private key."""
    if all(is_ca(cert) for cert in certs):
        count = f"{len(certs)} CA certificates" if len(certs) > 1 else "a CA certificate"
        return InputError(f"{what}: only {count}, no server certificate and no key: export the server "
                          "certificate with its private key (a PFX from the server that uses it)")
    return InputError(f"{what}: a certificate without its key{form}: export it with its private key "
                      "(a PFX, or PEM with the key)")


def _open_import(
    data: bytes, password: bytes | None, *, what: str
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    if is_pem(data):
        blocks = pem_blocks(data, what=what)
        labels = {block.label for block in blocks}
        if "DSA PRIVATE KEY" in labels:
            raise InputError(f"{what}: DSA is not supported: a server certificate needs an RSA or ECDSA key")
        if not labels & {label.decode() for label in _CERT_LABELS}:
            if labels & {label.decode() for label in _KEY_LABELS}:
                raise InputError(f"{what}: a private key without its certificate")
        if not labels & {label.decode() for label in _KEY_LABELS}:
            raise without_key(load_certificates(data, what=what), what=what)
        key, leaf, chain = split_bundle(data, what=what)
        assert key is not None
        return key, leaf, chain
    try:
        cert = x509.load_der_x509_certificate(data)
    except x509.InvalidVersion as exc:
        raise _bad_version(exc, what) from None
    except ValueError:
        pass
    else:
        raise without_key([cert], what=what, form=" (a DER certificate)")
    try:
        serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        pass
    except Exception:  # noqa: BLE001, S110 - UnsupportedAlgorithm: not a key we read; try PFX
        pass
    else:
        raise InputError(f"{what}: a private key without its certificate")
    if not data.startswith(b"\x30"):  # a PFX and every DER object is an ASN.1 SEQUENCE (X.690 §8.9)
        raise InputError(f"{what}: not a certificate file: neither PEM (no '-----BEGIN' line) nor a PFX "
                         "or DER file")
    return load_pfx(data, password, what=what)


def _bad_version(exc: x509.InvalidVersion, what: str) -> InputError:
    return InputError(f"{what}: malformed certificate: unknown X.509 version (v{exc.parsed_version + 1}; "
                      "RFC 5280 §4.1.2.1 knows v1 to v3)")


def _extension_name(oid: x509.ObjectIdentifier) -> str:
    return _EXTENSION_NAMES.get(oid, oid.dotted_string)


def _malformed_extension(cert: x509.Certificate) -> str | None:
    """Which extension of ``cert`` does not parse: each is tried alone in a copy of the
    certificate (parsing needs no valid signature); None when the DER cannot be taken apart."""
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.error import PyAsn1Error
    from pyasn1_modules import rfc5280

    try:
        der = cert.public_bytes(serialization.Encoding.DER)
        parsed, _ = decoder.decode(der, asn1Spec=rfc5280.Certificate())
        extensions = parsed["tbsCertificate"]["extensions"]
        for extension in list(extensions):
            extensions.clear()
            extensions.append(extension)
            try:
                x509.load_der_x509_certificate(encoder.encode(parsed)).extensions  # noqa: B018
            except ValueError:
                return _extension_name(x509.ObjectIdentifier(str(extension["extnID"])))
    except (PyAsn1Error, ValueError):
        pass
    return None
