"""Stand-in for ``certkeeper.pki.pfx.build_pfx`` until that module lands (same signature).

The lead switches the binders' import to ``certkeeper.pki.pfx`` and deletes :func:`build_pfx`
here; :func:`set_csp_name` (the legacy-CSP bag attribute Exchange needs) stays unless pki.pfx
grows the same ability.
"""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.errors import InputError

PfxEncryption = Literal["aes256", "legacy"]


def build_pfx(
    key_pem: bytes,
    cert_pem: bytes,
    chain_pem: bytes,
    *,
    password: bytes,
    encryption: PfxEncryption = "aes256",
    friendly_name: str | None = None,
) -> bytes:
    """A password-protected PKCS#12 with the key, the leaf and the chain.

    ``aes256`` is PBES2/AES-256-CBC with a SHA-256 MAC (Windows Server 2019 and later);
    ``legacy`` is 3DES with a SHA-1 MAC, the only form Windows Server 2016 imports
    (reference/reliability.md §4.2).
    """
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
        chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem.strip() else []
    except ValueError as exc:
        raise InputError(f"cannot build a PFX: {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise InputError("cannot build a PFX: unsupported key type")
    if encryption == "legacy":
        algorithm: serialization.KeySerializationEncryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - Windows Server 2016 cannot read anything newer
            .build(password)
        )
    elif encryption == "aes256":
        algorithm = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(50000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
    else:
        raise InputError(f"unknown PFX encryption {encryption!r} (aes256 or legacy)")
    name = friendly_name.encode() if friendly_name else None
    return pkcs12.serialize_key_and_certificates(name, key, cert, chain or None, algorithm)
