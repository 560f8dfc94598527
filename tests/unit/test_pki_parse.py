from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.errors import InputError
from certkeeper.model import KeyType
from certkeeper.pki.keys import generate_private_key, private_key_pem, public_key_der
from certkeeper.pki.parse import cert_info, load_certificates, load_pfx, public_key_matches, split_bundle
from certkeeper.pki.pkcs12.build import build_pfx
from tests.unit.pki_support import Issued, issue, make_ca

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


@pytest.fixture(scope="module")
def issued() -> Issued:
    return issue(make_ca(), NAMES, KeyType.RSA2048)


@pytest.fixture(scope="module")
def stranger() -> Issued:
    """A certificate from another CA."""
    return issue(make_ca(), ["other.contoso.com"])


def test_single_pem_fullchain_der_and_crlf(issued: Issued) -> None:
    assert load_certificates(issued.cert_pem, what="x") == [issued.cert]
    assert load_certificates(issued.cert_pem + issued.chain_pem, what="x") == [
        issued.cert,
        issued.intermediate,
    ]
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    assert load_certificates(der, what="x") == [issued.cert]
    crlf = (issued.cert_pem + issued.chain_pem).replace(b"\n", b"\r\n")
    assert load_certificates(crlf, what="x") == [issued.cert, issued.intermediate]
    # openssl's "Bag Attributes" text and blank lines between blocks are ignored
    noisy = b"Bag Attributes\n    friendlyName: outlook\n" + issued.cert_pem + b"\n\n" + issued.chain_pem
    assert load_certificates(noisy, what="x") == [issued.cert, issued.intermediate]
    # a key block beside the certificate is not a certificate, and not an error either
    assert load_certificates(issued.key_pem + issued.cert_pem, what="x") == [issued.cert]


def _broken(issued: Issued) -> dict[str, tuple[bytes, str]]:
    pem = issued.cert_pem
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    key_der = base64.encodebytes(
        generate_private_key(KeyType.ECDSA_P256).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {
        "truncated-body": (pem[: len(pem) // 2], "truncated PEM"),
        "truncated-end": (pem.replace(b"-----END CERTIFICATE-----", b"-----END CERT"), "truncated PEM"),
        "truncated-der": (der[:-40], "neither PEM nor a DER certificate"),
        "garbage": (b"\x00\x01garbage\xff" * 20, "neither PEM nor a DER certificate"),
        "text": (b"this is a certificate, honest\n", "neither PEM nor a DER certificate"),
        "empty": (b"  \n", "empty file"),
        "wrong-header": (
            pem.replace(b"BEGIN CERTIFICATE", b"BEGIN CERTIFICAT").replace(
                b"END CERTIFICATE", b"END CERTIFICAT"
            ),
            "PEM block 1 has an unexpected label 'BEGIN CERTIFICAT'",
        ),
        "mismatched-end": (
            pem.replace(b"END CERTIFICATE", b"END PRIVATE KEY"),
            "ends with 'END PRIVATE KEY'",
        ),
        "der-labelled-pem": (
            b"-----BEGIN CERTIFICATE-----\n" + der + b"\n-----END CERTIFICATE-----\n",
            "PEM block 1 (BEGIN CERTIFICATE) is not a valid certificate",
        ),
        "key-labelled-certificate": (
            b"-----BEGIN CERTIFICATE-----\n" + key_der + b"-----END CERTIFICATE-----\n",
            "PEM block 1 (BEGIN CERTIFICATE) is not a valid certificate",
        ),
        "bad-base64": (pem.replace(b"M", b"!", 3), "is not a valid certificate"),
        "only-a-key": (issued.key_pem, "no CERTIFICATE block found (PEM blocks: PRIVATE KEY)"),
        "second-block-broken": (
            pem
            + issued.chain_pem[:100]
            + issued.chain_pem[100:-60].replace(b"A", b"B")
            + issued.chain_pem[-60:],
            "PEM block 2 (BEGIN CERTIFICATE) is not a valid certificate",
        ),
        "second-block-mislabelled": (
            pem + issued.chain_pem.replace(b"CERTIFICATE-----", b"CERTIFICATES-----"),
            "PEM block 2 has an unexpected label 'BEGIN CERTIFICATES'",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated-body",
        "truncated-end",
        "truncated-der",
        "garbage",
        "text",
        "empty",
        "wrong-header",
        "mismatched-end",
        "der-labelled-pem",
        "key-labelled-certificate",
        "bad-base64",
        "only-a-key",
        "second-block-broken",
        "second-block-mislabelled",
    ],
)
def test_broken_input_is_refused_naming_the_file(issued: Issued, case: str) -> None:
    data, expected = _broken(issued)[case]
    with pytest.raises(InputError) as info:
        load_certificates(data, what="exchange.pem")
    assert str(info.value).startswith("exchange.pem: ")
    assert expected in str(info.value)
    with pytest.raises(InputError, match=r"^exchange\.pem: "):
        split_bundle(data + (issued.key_pem if case != "only-a-key" else b""), what="exchange.pem")


def test_cert_info_matches_openssl(issued: Issued, tmp_path: Path) -> None:
    info = cert_info(issued.cert)
    path = tmp_path / "leaf.pem"
    path.write_bytes(issued.cert_pem)

    def openssl(*args: str) -> str:
        return subprocess.run(
            ["openssl", "x509", "-in", str(path), "-noout", *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    assert info.serial == openssl("-serial").removeprefix("serial=").lstrip("0")
    assert (
        info.fingerprint_sha256 == openssl("-fingerprint", "-sha256").split("=")[1].replace(":", "").lower()
    )
    assert info.thumbprint_sha1 == openssl("-fingerprint", "-sha1").split("=")[1].replace(":", "")
    assert info.names == NAMES
    assert info.common_name == NAMES[0]
    assert info.subject == "CN=mail.contoso.com"
    assert info.issuer == "CN=certkeeper Issuing CA 1,O=certkeeper"
    assert info.key == "RSA 2048"
    assert info.signature_hash == "sha256"
    assert info.is_ca is False
    assert info.not_before.tzinfo is not None and info.not_before.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert info.not_after > info.not_before
    assert cert_info(issued.intermediate).is_ca is True
    assert cert_info(issued.intermediate).names == ()
    assert cert_info(issued.intermediate).key == "ECDSA P-256"


def test_public_key_matches(issued: Issued, stranger: Issued) -> None:
    assert public_key_matches(issued.key, issued.cert)
    assert not public_key_matches(stranger.key, issued.cert)
    assert not public_key_matches(issued.key, issued.intermediate)


@pytest.mark.parametrize(
    "order", ["key-leaf-chain", "chain-key-leaf", "leaf-chain-key", "root-chain-leaf-key"]
)
def test_split_bundle_in_any_order(issued: Issued, order: str) -> None:
    parts = {
        "key": issued.key_pem,
        "leaf": issued.cert_pem,
        "chain": issued.chain_pem,
        "root": issued.root_pem,
    }
    data = b"".join(parts[part] for part in order.split("-"))
    key, leaf, chain = split_bundle(data, what="bundle.pem")
    assert key is not None and public_key_der(key) == public_key_der(issued.key)
    assert leaf == issued.cert
    expected = [issued.intermediate, issued.root] if "root" in order else [issued.intermediate]
    assert chain == expected


def test_split_bundle_without_key_picks_the_non_ca_certificate(issued: Issued) -> None:
    key, leaf, chain = split_bundle(issued.chain_pem + issued.root_pem + issued.cert_pem, what="b.pem")
    assert key is None
    assert leaf == issued.cert
    assert chain == [issued.intermediate, issued.root]
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    assert split_bundle(der, what="b.der") == (None, issued.cert, [])


def test_split_bundle_refusals(issued: Issued, stranger: Issued) -> None:
    with pytest.raises(InputError, match=r"^b\.pem: 2 private keys found"):
        split_bundle(issued.key_pem + issued.cert_pem + stranger.key_pem, what="b.pem")
    with pytest.raises(InputError, match=r"^b\.pem: the private key does not match any certificate"):
        split_bundle(stranger.key_pem + issued.cert_pem + issued.chain_pem, what="b.pem")
    with pytest.raises(InputError, match=r"^b\.pem: certificate\(s\) not part of the chain: .*Issuing CA"):
        split_bundle(issued.key_pem + issued.cert_pem + stranger.chain_pem, what="b.pem")
    with pytest.raises(InputError, match=r"^b\.pem: cannot tell which certificate"):
        split_bundle(issued.cert_pem + stranger.cert_pem, what="b.pem")


@pytest.mark.parametrize("encryption", ["aes256", "legacy"])
def test_load_pfx_round_trip(issued: Issued, encryption: str) -> None:
    pfx = build_pfx(
        issued.key_pem,
        issued.cert_pem,
        issued.chain_pem,
        password=b"pw",
        encryption=encryption,
        friendly_name=b"outlook",
    )  # type: ignore[arg-type]
    key, leaf, chain = load_pfx(pfx, b"pw", what="exchange.pfx")
    assert public_key_der(key) == public_key_der(issued.key)
    assert leaf == issued.cert
    assert chain == [issued.intermediate]


def test_load_pfx_made_by_openssl(issued: Issued, tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    (tmp_path / "full.pem").write_bytes(issued.cert_pem + issued.chain_pem)
    subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-export",
            "-inkey",
            str(tmp_path / "key.pem"),
            "-in",
            str(tmp_path / "full.pem"),
            "-out",
            str(tmp_path / "o.pfx"),
            "-passout",
            "pass:s3cret",
        ],
        check=True,
        capture_output=True,
    )
    _key, leaf, chain = load_pfx((tmp_path / "o.pfx").read_bytes(), b"s3cret", what="o.pfx")
    assert leaf == issued.cert
    assert chain == [issued.intermediate]


def test_load_pfx_errors_are_distinct(issued: Issued) -> None:
    pfx = build_pfx(
        issued.key_pem,
        issued.cert_pem,
        issued.chain_pem,
        password=b"right",
        encryption="aes256",
        friendly_name=None,
    )
    with pytest.raises(InputError, match=r"^exchange\.pfx: wrong PFX password"):
        load_pfx(pfx, b"wrong", what="exchange.pfx")
    with pytest.raises(InputError, match=r"^exchange\.pfx: the PFX is protected by a password: give it with "
                                         r"--password-file"):
        load_pfx(pfx, None, what="exchange.pfx")
    for corrupt in (pfx[: len(pfx) // 2], b"\x30\x03\x02\x01\x03", b"not a pfx" * 10, issued.cert_pem):
        with pytest.raises(InputError, match=r"^exchange\.pfx: not a PFX/PKCS#12 file, or it is truncated"):
            load_pfx(corrupt, b"right", what="exchange.pfx")
    with pytest.raises(InputError, match=r"^exchange\.pfx: empty file"):
        load_pfx(b"", b"right", what="exchange.pfx")
    no_key = pkcs12.serialize_key_and_certificates(
        None, None, issued.cert, [issued.intermediate], serialization.BestAvailableEncryption(b"right")
    )
    with pytest.raises(InputError, match=r"^exchange\.pfx: a certificate without its key"):
        load_pfx(no_key, b"right", what="exchange.pfx")


def test_read_import_judges_expiry_at_the_given_time(issued: Issued) -> None:
    from datetime import timedelta

    from certkeeper.pki.parse import read_import

    bundle = issued.key_pem + issued.cert_pem + issued.chain_pem
    after = issued.cert.not_valid_after_utc + timedelta(seconds=1)
    key, leaf, chain = read_import(bundle, None, what="x.pem", now=issued.cert.not_valid_before_utc)
    assert leaf == issued.cert and chain == [issued.intermediate] and public_key_matches(key, leaf)
    with pytest.raises(InputError, match=r"^x\.pem: the certificate expired on .* pass --allow-expired"):
        read_import(bundle, None, what="x.pem", now=after)
    assert read_import(bundle, None, what="x.pem", now=after, allow_expired=True)[1] == issued.cert
    # the chain alone: a CA certificate, no server certificate and no key
    with pytest.raises(InputError, match=r"only a CA certificate"):
        read_import(issued.chain_pem, None, what="x.pem", now=after)


def test_load_pfx_refuses_key_not_matching_its_certificate(issued: Issued, stranger: Issued) -> None:
    mismatched = pkcs12.serialize_key_and_certificates(
        None, stranger.key, None, [issued.cert], serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(InputError, match=r"^m\.pfx: the private key does not match any certificate"):
        load_pfx(mismatched, b"pw", what="m.pfx")


def test_messages_never_contain_key_material(issued: Issued, stranger: Issued) -> None:
    body = issued.key_pem.splitlines()[1].decode()
    for data in (issued.key_pem + stranger.key_pem + issued.cert_pem, issued.key_pem[:-30]):
        with pytest.raises(InputError) as info:
            split_bundle(data, what="b.pem")
        assert body not in str(info.value)
    assert private_key_pem(issued.key) == issued.key_pem


def test_load_pfx_refuses_absurd_iteration_counts_before_deriving(issued: Issued) -> None:
    from pyasn1.codec.der import decoder, encoder
    from pyasn1_modules import rfc7292

    from certkeeper.pki.pkcs12.structure import iteration_counts

    pfx = build_pfx(
        issued.key_pem, issued.cert_pem, b"", password=b"pw", encryption="aes256", friendly_name=None
    )
    assert iteration_counts(pfx) == [2048, 20000, 20000]
    parsed, _ = decoder.decode(pfx, asn1Spec=rfc7292.PFX())
    parsed["macData"]["iterations"] = 2**31 - 1
    hostile = encoder.encode(parsed)
    started = time.monotonic()
    with pytest.raises(
        InputError, match=r"^h\.pfx: the PFX asks for 2,147,483,647 key-derivation iterations"
    ):
        load_pfx(hostile, b"pw", what="h.pfx")
    assert time.monotonic() - started < 1  # OpenSSL would need minutes
    # the limits are parameters; the same file within them opens
    with pytest.raises(InputError, match="key-derivation iterations"):
        load_pfx(pfx, b"pw", what="p.pfx", max_iterations=10_000)
    with pytest.raises(InputError, match="key-derivation iterations"):
        load_pfx(pfx, b"pw", what="p.pfx", max_total_iterations=40_000)
    assert load_pfx(pfx, b"pw", what="p.pfx", max_iterations=20_000)[1] == issued.cert


def test_iteration_counts_of_legacy_and_openssl_files(issued: Issued, tmp_path: Path) -> None:
    from certkeeper.pki.pkcs12.structure import iteration_counts

    legacy = build_pfx(
        issued.key_pem, issued.cert_pem, b"", password=b"pw", encryption="legacy", friendly_name=None
    )
    assert iteration_counts(legacy) == [2048, 20000, 20000]
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    (tmp_path / "cert.pem").write_bytes(issued.cert_pem)
    subprocess.run(
        ["openssl", "pkcs12", "-export", "-inkey", str(tmp_path / "key.pem"),
         "-in", str(tmp_path / "cert.pem"), "-out", str(tmp_path / "o.pfx"), "-passout", "pass:x",
         "-iter", "4096"],
        check=True, capture_output=True,
    )  # fmt: skip
    # -iter sets the MAC count too
    assert iteration_counts((tmp_path / "o.pfx").read_bytes()) == [4096, 4096, 4096]
    assert iteration_counts(b"garbage") is None
