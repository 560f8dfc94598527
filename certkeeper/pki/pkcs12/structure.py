"""The PFX's DER structure, read and written with pyasn1 and pyasn1-modules' RFC 7292 types.

Two uses, one reader:

- :func:`iteration_counts`: how much key derivation opening a file would cost, read before
  opening it. cryptography opens PKCS#12 through OpenSSL, which runs whatever PBKDF/MAC iteration
  counts the file declares: a hostile or odd file with 2^31 iterations would tie up a CPU for
  many minutes. Nothing is decrypted.
- :func:`set_csp_name`: the legacy-CSP bag attribute (``1.3.6.1.4.1.311.17.1``) Exchange needs on
  an imported key, with the MAC recomputed (RFC 7292 §4, key derivation of Appendix B.2).

Structures: RFC 7292 §4 (PFX, MacData, AuthenticatedSafe, SafeBag), RFC 5652 §8 (EncryptedData),
RFC 8018 §6.1, A.2-A.4 (PBES1, PBES2, PBKDF2 parameters), RFC 7292 Appendix C (pkcs-12PbeParams).
PFX files are built by :func:`certkeeper.pki.pkcs12.build.build_pfx`.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, univ
from pyasn1.type.base import Asn1Type
from pyasn1_modules import rfc5652, rfc7292, rfc8018

from certkeeper.errors import InputError

MS_CSP_NAME_OID = "1.3.6.1.4.1.311.17.1"
SCHANNEL_CSP = "Microsoft RSA SChannel Cryptographic Provider"

_CSP_OID = univ.ObjectIdentifier(MS_CSP_NAME_OID)
_KEY_BAGS = (rfc7292.id_keyBag, rfc7292.id_pkcs8ShroudedKeyBag)
_HASHES: dict[str, tuple[hashes.HashAlgorithm, int]] = {
    "1.3.14.3.2.26": (hashes.SHA1(), 64),  # noqa: S303 - legacy PFX MAC
    "2.16.840.1.101.3.4.2.1": (hashes.SHA256(), 64),
    "2.16.840.1.101.3.4.2.2": (hashes.SHA384(), 128),
    "2.16.840.1.101.3.4.2.3": (hashes.SHA512(), 128),
}


def pkcs12_kdf(
    password: bytes,
    salt: bytes,
    iterations: int,
    purpose: int,
    size: int,
    algorithm: hashes.HashAlgorithm,
    block: int,
) -> bytes:
    """RFC 7292 Appendix B.2 key derivation (``purpose`` 3 = MAC key); ``password`` is UTF-8."""
    bmp = password.decode().encode("utf-16-be") + b"\x00\x00" if password else b""
    d = bytes([purpose]) * block

    def stretch(value: bytes) -> bytes:
        if not value:
            return b""
        total = block * ((len(value) + block - 1) // block)
        return (value * (total // len(value) + 1))[:total]

    i = bytearray(stretch(salt) + stretch(bmp))
    out = b""
    while len(out) < size:
        digest = d + bytes(i)
        for _ in range(iterations):
            h = hashes.Hash(algorithm)
            h.update(digest)
            digest = h.finalize()
        out += digest
        b = int.from_bytes(stretch(digest)[:block], "big")
        for start in range(0, len(i), block):
            chunk = int.from_bytes(i[start : start + block], "big")
            i[start : start + block] = ((chunk + b + 1) % (1 << (block * 8))).to_bytes(block, "big")
    return out[:size]


def set_csp_name(pfx_der: bytes, password: bytes, csp_name: str = SCHANNEL_CSP) -> bytes:
    """Tag every private-key bag of ``pfx_der`` with the Microsoft CSP name and re-MAC it.

    The DER is read and written with pyasn1 and the RFC 7292 structures of pyasn1-modules; the
    PFX's other parts (the encrypted certificate bag, the shrouded key) pass through untouched.

    Raises:
        InputError: the PFX is not in the layout cryptography and OpenSSL write (key bags in a
            plain ``data`` content info, a MAC present).
    """
    try:
        return _set_csp_name(pfx_der, password, csp_name)
    except PyAsn1Error:
        raise InputError("PFX: not a DER-encoded PKCS#12 file") from None
    except (ValueError, IndexError, TypeError, UnicodeError) as exc:
        raise InputError(f"PFX: unexpected structure ({type(exc).__name__})") from None


def iteration_counts(data: bytes) -> list[int] | None:
    """Every iteration count ``data`` declares (the MAC's first), or None when the structure is
    not one this reader knows (OpenSSL then decides, and refuses what it cannot read)."""
    try:
        pfx = _decode(data, rfc7292.PFX())
        counts = [int(pfx["macData"]["iterations"])] if pfx["macData"].isValue else []
        auth_safe = pfx["authSafe"]
        if auth_safe["contentType"] != rfc5652.id_data:
            return counts  # public-key integrity mode: no password-based derivation to bound
        for info in _decode(_data_octets(auth_safe), rfc7292.AuthenticatedSafe()):
            if info["contentType"] == rfc5652.id_encryptedData:
                encrypted = _decode(bytes(info["content"]), rfc5652.EncryptedData())
                counts.append(_algorithm_iterations(encrypted["encryptedContentInfo"]["contentEncryptionAlgorithm"]))
            elif info["contentType"] == rfc5652.id_data:
                for bag in _decode(_data_octets(info), rfc7292.SafeContents()):
                    if bag["bagId"] == rfc7292.id_pkcs8ShroudedKeyBag:
                        shrouded = _decode(bytes(bag["bagValue"]), rfc7292.EncryptedPrivateKeyInfo())
                        counts.append(_algorithm_iterations(shrouded["encryptionAlgorithm"]))
    except (PyAsn1Error, InputError, ValueError, TypeError, KeyError):
        return None
    return counts


def _algorithm_iterations(algorithm: Any) -> int:
    """The iteration count of a PBES2 (PBKDF2) or PBES1 / pkcs-12PbeParams algorithm identifier."""
    parameters = bytes(algorithm["parameters"])
    if algorithm["algorithm"] == rfc8018.id_PBES2:
        kdf = _decode(parameters, rfc8018.PBES2_params())["keyDerivationFunc"]
        if kdf["algorithm"] != rfc8018.id_PBKDF2:
            raise ValueError("unknown key derivation function")
        return int(_decode(bytes(kdf["parameters"]), rfc8018.PBKDF2_params())["iterationCount"])
    return int(_decode(parameters, rfc7292.Pkcs_12PbeParams())["iterations"])


def _decode(data: bytes, spec: Asn1Type) -> Any:
    value, rest = decoder.decode(data, asn1Spec=spec)
    if rest:
        raise InputError("PFX: trailing bytes after DER")
    return value


def _data_octets(info: Any) -> bytes:
    """The octets inside a ``data`` ContentInfo (RFC 5652 §4)."""
    return bytes(_decode(bytes(info["content"]), univ.OctetString()))


def _as_data(octets: bytes) -> univ.Any:
    return univ.Any(encoder.encode(univ.OctetString(octets)))


def _csp_attribute(csp_name: str) -> rfc5652.Attribute:
    attribute = rfc5652.Attribute()
    attribute["attrType"] = _CSP_OID
    attribute["attrValues"].append(univ.Any(encoder.encode(char.BMPString(csp_name))))
    return attribute


def _set_csp_name(pfx_der: bytes, password: bytes, csp_name: str) -> bytes:
    pfx = _decode(pfx_der, rfc7292.PFX())
    auth_safe = pfx["authSafe"]
    if auth_safe["contentType"] != rfc5652.id_data:
        raise InputError("PFX: public-key integrity mode is not supported")
    if not pfx["macData"].isValue:
        raise InputError("PFX: no MAC to recompute")
    contents = _decode(_data_octets(auth_safe), rfc7292.AuthenticatedSafe())
    tagged = 0
    for info in contents:
        if info["contentType"] != rfc5652.id_data:
            continue  # encrypted data holds the certificates
        bags = _decode(_data_octets(info), rfc7292.SafeContents())
        tagged_before = tagged
        for bag in bags:
            if bag["bagId"] not in _KEY_BAGS:
                continue
            kept = [a for a in bag["bagAttributes"] if a["attrType"] != _CSP_OID]
            attributes = bag["bagAttributes"].clone()  # an empty SET OF; the DER encoder sorts it
            for attribute in [*kept, _csp_attribute(csp_name)]:
                attributes.append(attribute)
            bag["bagAttributes"] = attributes
            tagged += 1
        if tagged > tagged_before:
            info["content"] = _as_data(encoder.encode(bags))
    if not tagged:
        raise InputError("PFX: no private key bag found")
    auth_octets = encoder.encode(contents)
    auth_safe["content"] = _as_data(auth_octets)
    # recompute the MAC over the new AuthenticatedSafe (RFC 7292 §4: HMAC with a B.2-derived key)
    mac_data = pfx["macData"]
    algorithm_oid = str(mac_data["mac"]["digestAlgorithm"]["algorithm"])
    if algorithm_oid not in _HASHES:
        raise InputError(f"PFX: unsupported MAC hash {algorithm_oid}")
    algorithm, block = _HASHES[algorithm_oid]
    iterations = int(mac_data["iterations"])
    key = pkcs12_kdf(password, bytes(mac_data["macSalt"]), iterations, 3, algorithm.digest_size, algorithm, block)
    mac = hmac.HMAC(key, algorithm)
    mac.update(auth_octets)
    mac_data["mac"]["digest"] = univ.OctetString(mac.finalize())
    return bytes(encoder.encode(pfx))
