"""Private keys: generate, serialise (PKCS#8, in memory only), load, describe."""

from __future__ import annotations

import threading
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from certkeeper.errors import InputError
from certkeeper.model import KeyType

#: the private keys certkeeper can use for TLS server certificates
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_RSA_BITS = {KeyType.RSA2048: 2048, KeyType.RSA3072: 3072, KeyType.RSA4096: 4096}
_CURVES: dict[KeyType, type[ec.EllipticCurve]] = {
    KeyType.ECDSA_P256: ec.SECP256R1,
    KeyType.ECDSA_P384: ec.SECP384R1,
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class _Ahead(threading.Thread):
    """One key being generated ahead of need (see :func:`generate_ahead`)."""

    def __init__(self, key_type: KeyType) -> None:
        super().__init__(name=f"keygen-{key_type.value}", daemon=True)
        self.key_type = key_type
        self.key: PrivateKey | None = None

    def run(self) -> None:
        try:
            self.key = _generate(self.key_type)
        except Exception:  # noqa: BLE001 - the caller generates its own key instead
            self.key = None


_ahead: dict[KeyType, _Ahead] = {}
_ahead_lock = threading.Lock()


def generate_ahead(key_type: KeyType) -> None:
    """Start generating one ``key_type`` key on a background thread for the next
    :func:`generate_private_key` of that type in this process.

    OpenSSL releases the GIL while it searches for primes, so with a second core free an RSA key
    (50-300 ms, at random) is made while the command imports its libraries and reads the store,
    instead of after. ``certkeeper issue`` calls it first thing; a key never taken (the request
    resumed a pending one, or the certificate wants another key type) dies with the process.
    """
    with _ahead_lock:
        if key_type not in _ahead:
            _ahead[key_type] = thread = _Ahead(key_type)
            thread.start()


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """A fresh key of ``key_type`` (RSA with e=65537, or ECDSA on a NIST curve): the one
    :func:`generate_ahead` started, if any, else one made now."""
    with _ahead_lock:
        ahead = _ahead.pop(key_type, None)
    if ahead is not None:
        ahead.join()
        if ahead.key is not None:
            return ahead.key
    return _generate(key_type)


def _generate(key_type: KeyType) -> PrivateKey:
    if key_type in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    return ec.generate_private_key(_CURVES[key_type]())


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM. Keep it in memory; the store encrypts it before it reaches disk."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes, *, what: str = "private key") -> PrivateKey:
    """Load an unencrypted RSA or EC private key (PKCS#8, PKCS#1 or SEC1 PEM, or DER).

    Raises:
        InputError: naming ``what``, when the bytes are not such a key, the key is encrypted, or it
            is of a kind a TLS server certificate cannot use. The message never includes the bytes.
    """
    # normalise line endings only for PEM text: DER is binary and may contain any byte
    data = pem.replace(b"\r\n", b"\n").strip() if pem.lstrip().startswith(b"-----BEGIN") else pem
    if b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data:
        raise InputError(f"{what}: the private key is encrypted; decrypt it first (or import a PFX)")
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data + b"\n", password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InputError(f"{what}: not a readable private key (truncated or malformed PEM/DER)") from None
    except Exception as exc:  # noqa: BLE001 - cryptography raises UnsupportedAlgorithm and others
        raise InputError(f"{what}: cannot load the private key ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InputError(f"{what}: {unsupported_key(key)}")
    return key


def unsupported_key(key: PrivateKeyTypes) -> str:
    """Why a private key that is not RSA or ECDSA cannot be used, in words (no key material)."""
    if isinstance(key, dsa.DSAPrivateKey):
        # DSA cannot sign in TLS 1.3 (RFC 8446 §4.2.3) and no CA issues for it any more
        return "DSA is not supported: a server certificate needs an RSA or ECDSA key"
    return f"{describe_key(key.public_key())} keys are not supported (RSA or ECDSA only)"


def key_type_of(key: PrivateKey | PublicKeyTypes) -> KeyType | None:
    """The :class:`KeyType` of a private or public key, or None if certkeeper does not generate it."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    if isinstance(public, rsa.RSAPublicKey):
        for key_type, bits in _RSA_BITS.items():
            if public.key_size == bits:
                return key_type
        return None
    if isinstance(public, ec.EllipticCurvePublicKey):
        for key_type, curve in _CURVES.items():
            if isinstance(public.curve, curve):
                return key_type
    return None


def describe_key(public_key: PublicKeyTypes) -> str:
    """A short human description: ``"RSA 2048"``, ``"ECDSA P-256"``, ``"Ed25519"``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        return f"ECDSA {_CURVE_NAMES.get(curve, curve)}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(public_key, dsa.DSAPublicKey):
        return f"DSA {public_key.key_size}"
    return type(public_key).__name__.removesuffix("PublicKey").removeprefix("_")


def public_key_der(key: PrivateKey | PublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER of a key, for comparing keys."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def signature_hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The hash to sign with: SHA-384 for a P-384 (or larger) EC key, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()
