"""Building PKCS#12 (PFX) files for Windows, IIS and Exchange."""

from __future__ import annotations

import secrets
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from certkeeper.errors import InputError
from certkeeper.pki.keys import load_private_key
from certkeeper.pki.parse import load_certificates, public_key_matches

PfxEncryption = Literal["aes256", "legacy"]

_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - 32 symbols: no I/1, O/0 to misread


def build_pfx(
    key_pem: bytes,
    cert_pem: bytes,
    chain_pem: bytes,
    *,
    password: bytes,
    encryption: PfxEncryption,
    friendly_name: bytes | None = None,
) -> bytes:
    """A password-protected PFX holding the key, the leaf and the chain (leaf's issuer first).

    ``encryption``:
      * ``"aes256"``: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for keys and certificates and an
        HMAC-SHA256 MAC. Windows Server 2019 and later.
      * ``"legacy"``: pbeWithSHA1And3-KeyTripleDES-CBC and a SHA-1 MAC. Windows Server 2016 and
        older cannot import AES PFX files and report a misleading "password is not correct"
        (https://learn.microsoft.com/troubleshoot/windows-server/certificates-and-public-key-infrastructure-pki/cannot-import-aes256-sha256-encrypted-pfx-certificate;
        https://github.com/acmesh-official/acme.sh/issues/6805).

    Raises:
        InputError: empty password, unreadable PEM, or a key that does not match the certificate.
    """
    if not password:
        raise InputError("a PFX needs a non-empty password")
    key = load_private_key(key_pem, what="private key")
    leaf = load_certificates(cert_pem, what="certificate")[0]
    chain = load_certificates(chain_pem, what="chain") if chain_pem.strip() else []
    if not public_key_matches(key, leaf):
        raise InputError("the private key does not match the certificate")
    builder = PrivateFormat.PKCS12.encryption_builder()
    if encryption == "aes256":
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        builder = builder.hmac_hash(hashes.SHA256())
    elif encryption == "legacy":
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        builder = builder.hmac_hash(hashes.SHA1())  # noqa: S303 - what Windows Server 2016 can read
    else:
        raise InputError(f"unknown PFX encryption {encryption!r} (use aes256 or legacy)")
    return pkcs12.serialize_key_and_certificates(friendly_name, key, leaf, chain, builder.build(password))


def generate_password() -> str:
    """A strong, easy-to-type password: 6 groups of 5 characters from a 32-symbol alphabet
    (150 bits), e.g. ``K7QM2-XW9PD-...``."""
    return "-".join("".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(5)) for _ in range(6))
