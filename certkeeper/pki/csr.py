"""Certificate signing requests: build ours, read anyone's."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certkeeper.errors import InputError
from certkeeper.pki.keys import PrivateKey, signature_hash_for

#: X.520 ub-common-name: a longer CN cannot be encoded (RFC 5280 Appendix A)
MAX_COMMON_NAME = 64


def subject_for(names: Sequence[str]) -> x509.Name:
    """Subject with CN = the first name when it fits in 64 characters, else empty.

    Old Outlook clients (and some Exchange checks) still look at the CN, so it is the first name
    whenever possible; the SAN always carries every name.
    """
    if names and len(names[0]) <= MAX_COMMON_NAME:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return x509.Name([])


def build_csr(key: PrivateKey, names: Sequence[str]) -> bytes:
    """A PEM CSR for ``names`` (already validated and normalised), signed with ``key``.

    SAN = every name, in order; subject CN per :func:`subject_for`; SHA-256 (SHA-384 for P-384).
    """
    if not names:
        raise ValueError("a CSR needs at least one name")
    subject = subject_for(names)
    san = x509.SubjectAlternativeName([x509.DNSName(name) for name in names])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(san, critical=len(subject) == 0)
        .sign(key, signature_hash_for(key))
    )
    return csr.public_bytes(Encoding.PEM)


def load_csr(pem: bytes, *, what: str = "CSR") -> x509.CertificateSigningRequest:
    """Load a PEM or DER CSR.

    Raises:
        InputError: naming ``what`` when it cannot be parsed.
    """
    # normalise line endings only for PEM text: DER is binary and may contain any byte
    data = pem.replace(b"\r\n", b"\n").strip() if pem.lstrip().startswith(b"-----BEGIN") else pem
    try:
        if data.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data + b"\n")
        return x509.load_der_x509_csr(data)
    except ValueError:
        raise InputError(f"{what}: not a readable certificate signing request") from None


def csr_names(csr: x509.CertificateSigningRequest) -> tuple[str, ...]:
    """The DNS names in the CSR's SAN extension, in order (empty if it has none)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))
