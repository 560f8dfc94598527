"""The PFX for Windows: legacy/AES encryption and the Microsoft CSP Name bag attribute."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.errors import InputError
from certkeeper.pki.pkcs12.build import build_pfx
from certkeeper.pki.pkcs12.structure import SCHANNEL_CSP, set_csp_name
from tests.fixtures.gateways import TestPKI


@pytest.mark.parametrize("encryption", ["aes256", "legacy"])
def test_csp_attribute_is_what_openssl_writes_and_the_mac_still_verifies(
    encryption: str, test_pki: TestPKI, tmp_path: Path
) -> None:
    bundle = test_pki.bundle("mail.contoso.com")
    password = "pä$$wörd"
    pfx = build_pfx(
        bundle.key_pem,
        bundle.cert_pem,
        bundle.chain_pem,
        password=password.encode(),
        encryption=encryption,
        friendly_name=b"certkeeper mail",
    )  # type: ignore[arg-type]
    tagged = set_csp_name(pfx, password.encode())
    # cryptography checks the MAC on load: a wrong recomputation fails here
    loaded = pkcs12.load_pkcs12(tagged, password.encode())
    assert (
        loaded.key is not None and loaded.cert is not None and loaded.cert.friendly_name == b"certkeeper mail"
    )
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(tagged, b"wrong")
    path = tmp_path / "t.pfx"
    path.write_bytes(tagged)
    shown = subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-legacy",
            "-nodes",
            "-nocerts",
            "-in",
            str(path),
            "-passin",
            f"pass:{password}",
        ],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"Microsoft CSP Name: {SCHANNEL_CSP}" in shown.stdout
    # byte-for-byte the attribute OpenSSL's own `pkcs12 -export -CSP` writes
    pem = tmp_path / "all.pem"
    pem.write_bytes(bundle.key_pem + bundle.cert_pem)
    reference = tmp_path / "ref.pfx"
    subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-export",
            "-legacy",
            "-CSP",
            SCHANNEL_CSP,
            "-in",
            str(pem),
            "-passout",
            "pass:x",
            "-out",
            str(reference),
        ],
        check=True,
        capture_output=True,
    )
    attribute = (
        bytes.fromhex("06092b0601040182371101") + b"\x31\x5c\x1e\x5a" + SCHANNEL_CSP.encode("utf-16-be")
    )
    assert attribute in reference.read_bytes() and attribute in tagged
    # tagging twice does not duplicate the attribute
    assert set_csp_name(tagged, password.encode()).count(attribute) == 1


def test_garbage_is_an_input_error() -> None:
    with pytest.raises(InputError):
        set_csp_name(b"\x30\x03\x02\x01\x03", b"x")


def test_a_key_bag_without_attributes_gets_the_csp_name() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption

    # no certificate, no name: the key bag carries no attributes at all
    pfx = pkcs12.serialize_key_and_certificates(
        None, ec.generate_private_key(ec.SECP256R1()), None, None, BestAvailableEncryption(b"pw")
    )
    assert SCHANNEL_CSP.encode("utf-16-be") not in pfx
    tagged = set_csp_name(pfx, b"pw")
    assert pkcs12.load_pkcs12(tagged, b"pw").key is not None  # the MAC was recomputed
    assert tagged.count(SCHANNEL_CSP.encode("utf-16-be")) == 1


def test_a_truncated_pfx_is_named_as_such(test_pki: TestPKI) -> None:
    bundle = test_pki.bundle("mail.contoso.com")
    pfx = build_pfx(bundle.key_pem, bundle.cert_pem, b"", password=b"pw", encryption="aes256", friendly_name=None)
    with pytest.raises(InputError, match=r"^PFX: not a DER-encoded PKCS#12 file$"):
        set_csp_name(pfx[:-20], b"pw")
