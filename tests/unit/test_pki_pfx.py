from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.errors import InputError
from certkeeper.model import KeyType
from certkeeper.pki.keys import public_key_der
from certkeeper.pki.parse import load_certificates, load_pfx
from certkeeper.pki.pkcs12.build import build_pfx, generate_password
from tests.unit.pki_support import Issued, issue, make_ca


@pytest.fixture(scope="module", params=[KeyType.RSA2048, KeyType.ECDSA_P256])
def issued(request: pytest.FixtureRequest) -> Issued:
    return issue(make_ca(), ["mail.contoso.com", "autodiscover.contoso.com"], request.param)


# What `openssl pkcs12 -info` prints for each profile (as in kaikramer/keystore-explorer#318,
# https://github.com/kaikramer/keystore-explorer/issues/318).
PROFILES = {
    "aes256": ("MAC: sha256", "PBES2, PBKDF2, AES-256-CBC", "hmacWithSHA256"),
    "legacy": ("MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC"),
}


@pytest.mark.parametrize("encryption", ["aes256", "legacy"])
def test_pfx_opens_with_openssl_and_cryptography(issued: Issued, encryption: str, tmp_path: Path) -> None:
    password = generate_password()
    pfx = build_pfx(
        issued.key_pem,
        issued.cert_pem,
        issued.chain_pem,
        password=password.encode(),
        encryption=encryption,
        friendly_name=b"outlook 2026",
    )  # type: ignore[arg-type]
    path = tmp_path / "out.pfx"
    path.write_bytes(pfx)
    # OpenSSL 3.0 (Debian 12) reads 3DES with its default provider: no -legacy needed, and the test
    # proves it. (-legacy is needed only for RC2-40 / single DES / RC4.)
    info = subprocess.run(
        ["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", f"pass:{password}"],
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0, info.stderr
    for marker in PROFILES[encryption]:
        assert marker in info.stderr + info.stdout
    if encryption == "legacy":
        assert "AES" not in info.stderr + info.stdout
    extracted = subprocess.run(
        ["openssl", "pkcs12", "-in", str(path), "-passin", f"pass:{password}", "-nodes"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"friendlyName: outlook 2026" in extracted
    certs = load_certificates(extracted, what="openssl output")
    assert certs == [issued.cert, issued.intermediate]
    assert re.search(rb"-----BEGIN PRIVATE KEY-----", extracted)
    wrong = subprocess.run(
        ["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", "pass:wrong"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0

    loaded = pkcs12.load_pkcs12(pfx, password.encode())
    assert loaded.key is not None and public_key_der(loaded.key) == public_key_der(issued.key)
    assert loaded.cert is not None and loaded.cert.certificate == issued.cert
    assert loaded.cert.friendly_name == b"outlook 2026"
    assert [extra.certificate for extra in loaded.additional_certs] == [issued.intermediate]
    key, leaf, chain = load_pfx(pfx, password.encode(), what="out.pfx")
    assert (public_key_der(key), leaf, chain) == (
        public_key_der(issued.key),
        issued.cert,
        [issued.intermediate],
    )


def test_pfx_without_chain_and_name(issued: Issued) -> None:
    pfx = build_pfx(
        issued.key_pem, issued.cert_pem, b"", password=b"pw", encryption="aes256", friendly_name=None
    )
    loaded = pkcs12.load_pkcs12(pfx, b"pw")
    assert loaded.cert is not None and loaded.cert.friendly_name is None
    assert loaded.additional_certs == []


def test_pfx_refuses_mismatch_and_empty_password(issued: Issued) -> None:
    other = issue(make_ca(), ["other.contoso.com"])
    with pytest.raises(InputError, match="does not match the certificate"):
        build_pfx(
            other.key_pem,
            issued.cert_pem,
            issued.chain_pem,
            password=b"pw",
            encryption="aes256",
            friendly_name=None,
        )
    with pytest.raises(InputError, match="non-empty password"):
        build_pfx(
            issued.key_pem,
            issued.cert_pem,
            issued.chain_pem,
            password=b"",
            encryption="legacy",
            friendly_name=None,
        )
    with pytest.raises(InputError, match="unknown PFX encryption"):
        build_pfx(
            issued.key_pem,
            issued.cert_pem,
            b"",
            password=b"pw",
            encryption="rc2",  # type: ignore[arg-type]
            friendly_name=None,
        )


def test_generated_passwords_are_strong_and_typeable() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert re.fullmatch(r"[A-HJ-NP-Z2-9]{5}(-[A-HJ-NP-Z2-9]{5}){5}", password)
    used = set("".join(passwords).replace("-", ""))
    assert len(used) == 32  # every symbol of the 32-symbol alphabet shows up: 5 bits each, 150 in all
