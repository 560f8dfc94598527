"""How much key derivation opening a PKCS#12 file would cost, read before opening it.

pyca/cryptography opens PKCS#12 through OpenSSL, which runs whatever PBKDF/MAC iteration counts
the file declares: a hostile or odd file with 2^31 iterations ties up a CPU for many minutes.
This module reads the counts (MAC, each encrypted-data and each shrouded-key-bag algorithm)
with cryptography's declarative ASN.1 decoder (``cryptography.hazmat.asn1``, present in cryptography 50)
so the caller can refuse before any derivation runs. It never decrypts anything.

Structures: RFC 7292 §4 (PFX, MacData, AuthenticatedSafe, SafeBag), RFC 8018 §6.1 / A.2-A.3
(PBES1 / PBES2 / PBKDF2 parameters), RFC 7292 Appendix C (pkcs-12PbeParams).
"""

from __future__ import annotations

from typing import Annotated

from cryptography import x509

try:
    from cryptography.hazmat import asn1
except ImportError:  # older cryptography: no declarative ASN.1; the counts cannot be read
    asn1 = None  # type: ignore[assignment]

_DATA = "1.2.840.113549.1.7.1"
_ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"


if asn1 is not None:

    @asn1.sequence
    class _ContentInfo:
        content_type: x509.ObjectIdentifier
        content: Annotated[asn1.TLV, asn1.Explicit(0)]

    @asn1.sequence
    class _MacData:
        mac: asn1.TLV
        mac_salt: bytes
        iterations: Annotated[int, asn1.Default(1)]

    @asn1.sequence
    class _Pfx:
        version: int
        auth_safe: _ContentInfo
        mac_data: _MacData | None

    @asn1.sequence
    class _ContentInfos:
        items: list[_ContentInfo]

    @asn1.sequence
    class _AlgorithmIdentifier:
        algorithm: x509.ObjectIdentifier
        parameters: asn1.TLV

    @asn1.sequence
    class _EncryptedContentInfo:
        content_type: x509.ObjectIdentifier
        algorithm: _AlgorithmIdentifier
        encrypted: Annotated[bytes | None, asn1.Implicit(0)]

    @asn1.sequence
    class _EncryptedData:
        version: int
        info: _EncryptedContentInfo

    @asn1.sequence
    class _Attribute:
        oid: x509.ObjectIdentifier
        values: asn1.SetOf[asn1.TLV]

    @asn1.sequence
    class _SafeBag:
        bag_id: x509.ObjectIdentifier
        value: Annotated[asn1.TLV, asn1.Explicit(0)]
        attributes: asn1.SetOf[_Attribute] | None

    @asn1.sequence
    class _SafeBags:
        items: list[_SafeBag]

    @asn1.sequence
    class _EncryptedPrivateKeyInfo:
        algorithm: _AlgorithmIdentifier
        data: bytes

    @asn1.sequence
    class _PbeParams:  # PBES1 and pkcs-12PbeParams: salt, iterations
        salt: bytes
        iterations: int

    @asn1.sequence
    class _Pbes2Params:
        kdf: _AlgorithmIdentifier
        scheme: _AlgorithmIdentifier

    @asn1.sequence
    class _PrfAlgorithm:
        algorithm: x509.ObjectIdentifier
        parameters: asn1.Null | None

    @asn1.sequence
    class _Pbkdf2Params:
        salt: bytes
        iterations: int
        key_length: int | None
        prf: _PrfAlgorithm | None


def _sequence(body: bytes) -> bytes:
    """DER SEQUENCE around ``body``: the decoder takes a SEQUENCE class, not a bare SEQUENCE OF."""
    size = len(body)
    if size < 0x80:
        return b"\x30" + bytes([size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + body


def _algorithm_iterations(algorithm: _AlgorithmIdentifier) -> int:
    if algorithm.algorithm.dotted_string == _PBES2:
        kdf = algorithm.parameters.parse(_Pbes2Params).kdf
        if kdf.algorithm.dotted_string != _PBKDF2:
            raise ValueError("unknown KDF")
        return int(kdf.parameters.parse(_Pbkdf2Params).iterations)
    return int(algorithm.parameters.parse(_PbeParams).iterations)


def iteration_counts(data: bytes) -> list[int] | None:
    """Every iteration count the file declares (MAC first), or None when they cannot be read
    (older cryptography, or a structure this reader does not know: then OpenSSL decides)."""
    if asn1 is None:
        return None
    try:
        pfx = asn1.decode_der(_Pfx, data)
        counts = [pfx.mac_data.iterations] if pfx.mac_data is not None else []
        if pfx.auth_safe.content_type.dotted_string != _DATA:
            return counts  # public-key integrity mode: no password-based derivation to bound
        infos = asn1.decode_der(_ContentInfos, _sequence(pfx.auth_safe.content.parse(bytes))).items
        for info in infos:
            kind = info.content_type.dotted_string
            if kind == _ENCRYPTED_DATA:
                counts.append(_algorithm_iterations(info.content.parse(_EncryptedData).info.algorithm))
            elif kind == _DATA:
                bags = asn1.decode_der(_SafeBags, _sequence(info.content.parse(bytes))).items
                for bag in bags:
                    if bag.bag_id.dotted_string == _SHROUDED_KEY_BAG:
                        key_info = bag.value.parse(_EncryptedPrivateKeyInfo)
                        counts.append(_algorithm_iterations(key_info.algorithm))
    except (ValueError, TypeError):
        return None
    return counts
