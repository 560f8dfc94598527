"""What ``certkeeper export`` writes: the current certificate, its chain and its key, as PEM or PFX."""

from __future__ import annotations

from certkeeper.errors import InputError
from certkeeper.model import Bundle
from certkeeper.pki.pkcs12.build import build_pfx


def export_bytes(bundle: Bundle, fmt: str, *, password: bytes | None, encryption: str = "aes256") -> bytes:
    """The bytes of an export: PEM holds the leaf, the chain and the key; a PFX (RFC 7292) is
    encrypted with ``password`` (``encryption`` "legacy" for Windows Server 2016 and older) and
    named after the certificate.

    Raises:
        InputError: a PFX without a password, or an unknown format.
    """
    if fmt == "pem":
        return bundle.cert_pem + bundle.chain_pem + bundle.key_pem
    if fmt == "pfx":
        if password is None:
            raise InputError("a PFX needs a password")
        return build_pfx(
            bundle.key_pem, bundle.cert_pem, bundle.chain_pem, password=password,
            encryption="legacy" if encryption == "legacy" else "aes256",
            friendly_name=bundle.certificate_id.encode(),
        )
    raise InputError(f"unknown export format {fmt!r} (pem or pfx)")
