from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from certkeeper.errors import InputError
from certkeeper.model import KeyType
from certkeeper.pki.keys import (
    describe_key,
    generate_private_key,
    key_type_of,
    load_private_key,
    private_key_pem,
    signature_hash_for,
)

EXPECTED = {
    KeyType.RSA2048: "RSA 2048",
    KeyType.RSA3072: "RSA 3072",
    KeyType.RSA4096: "RSA 4096",
    KeyType.ECDSA_P256: "ECDSA P-256",
    KeyType.ECDSA_P384: "ECDSA P-384",
}


@pytest.mark.parametrize("key_type", list(KeyType))
def test_generate_every_key_type_round_trips(key_type: KeyType) -> None:
    key = generate_private_key(key_type)
    assert key_type_of(key) is key_type
    assert key_type_of(key.public_key()) is key_type
    assert describe_key(key.public_key()) == EXPECTED[key_type]
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.public_key().public_numbers().e == 65537
    pem = private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    loaded = load_private_key(pem)
    assert private_key_pem(loaded) == pem
    assert key_type_of(loaded) is key_type


def test_signature_hash_follows_the_curve() -> None:
    assert signature_hash_for(generate_private_key(KeyType.ECDSA_P384)).name == "sha384"
    assert signature_hash_for(generate_private_key(KeyType.ECDSA_P256)).name == "sha256"
    assert signature_hash_for(generate_private_key(KeyType.RSA2048)).name == "sha256"


def test_key_type_of_unusual_keys_is_none() -> None:
    assert key_type_of(ec.generate_private_key(ec.SECP521R1())) is None
    assert describe_key(ec.generate_private_key(ec.SECP521R1()).public_key()) == "ECDSA P-521"
    assert describe_key(ed25519.Ed25519PrivateKey.generate().public_key()) == "Ed25519"


def test_load_traditional_and_der_and_crlf() -> None:
    key = generate_private_key(KeyType.RSA2048)
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert traditional.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert key_type_of(load_private_key(traditional)) is KeyType.RSA2048
    assert key_type_of(load_private_key(traditional.replace(b"\n", b"\r\n"))) is KeyType.RSA2048
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert key_type_of(load_private_key(der)) is KeyType.RSA2048


def _bad_inputs() -> dict[str, bytes]:
    pem = private_key_pem(generate_private_key(KeyType.ECDSA_P256))
    encrypted = generate_private_key(KeyType.ECDSA_P256).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    return {
        "truncated": pem[: len(pem) // 2],
        "garbage": b"hello, this is not a key at all",
        "empty": b"",
        "wrong-header": pem.replace(b"PRIVATE KEY", b"PUBLIC KEY"),
        "encrypted": encrypted,
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_load_private_key_refuses_with_the_name_and_without_the_bytes(case: str) -> None:
    data = _bad_inputs()[case]
    with pytest.raises(InputError) as info:
        load_private_key(data, what="server.key")
    message = str(info.value)
    assert message.startswith("server.key: ")
    body = [line for line in data.splitlines() if line and not line.startswith(b"-----")]
    for line in body[:3]:
        assert line.decode(errors="replace") not in message
    if case == "encrypted":
        assert "encrypted" in message


def test_load_private_key_refuses_ed25519() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InputError, match=r"k\.pem: Ed25519 keys are not supported"):
        load_private_key(pem, what="k.pem")


def test_a_key_generated_ahead_is_taken_once_and_only_by_its_type() -> None:
    from certkeeper.pki import keys

    keys.generate_ahead(KeyType.RSA2048)
    keys.generate_ahead(KeyType.RSA2048)  # one in flight per type is enough
    other = generate_private_key(KeyType.ECDSA_P256)  # another type does not take it
    assert list(keys._ahead) == [KeyType.RSA2048]
    ahead = generate_private_key(KeyType.RSA2048)
    assert not keys._ahead
    fresh = generate_private_key(KeyType.RSA2048)
    assert key_type_of(other) is KeyType.ECDSA_P256
    assert key_type_of(ahead) is KeyType.RSA2048 and key_type_of(fresh) is KeyType.RSA2048
    public = [key.public_key().public_numbers() for key in (ahead, fresh)]
    assert public[0] != public[1]
