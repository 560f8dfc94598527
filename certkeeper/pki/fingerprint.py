"""Certificate fingerprints in the two spellings operators meet."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, lower-case hex without colons (what certkeeper stores and compares)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def sha1_thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER, upper-case hex: the ``Thumbprint`` Windows, IIS and Exchange show."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an identifier, not security
