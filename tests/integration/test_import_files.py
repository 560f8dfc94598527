"""``certkeeper import`` over a table of good, odd and malformed files, built here with cryptography,
pyasn1 (for what cryptography refuses to build: duplicate extensions, X.509 v4) and the openssl
CLI (PFX files, DSA keys, a negative serial number). Each runs the real console script in a
subprocess, so a library warning printed raw would show: every file ends with exit 0, or exit 1
and exactly one line on stderr, never a traceback."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280

from tests.fixtures.core import run_cli

NOW = dt.datetime.now(dt.UTC)
NAME = "mail.fabrikam.com"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    """A root, an intermediate and leaves for mail.fabrikam.com, as a foreign CA would make them."""

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca(_name("Fabrikam Root"), self.root_key, self.root_key, _name("Fabrikam Root"))
        self.issuing_key = ec.generate_private_key(ec.SECP256R1())
        self.issuing = self._ca(_name("Fabrikam Issuing"), self.issuing_key, self.root_key, _name("Fabrikam Root"))
        self.key = ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def _ca(subject: x509.Name, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
            issuer: x509.Name) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(NOW - dt.timedelta(days=30)).not_valid_after(NOW + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    def leaf(self, *extensions: tuple[x509.ExtensionType, bool], expired: bool = False,
             san: bool = True) -> x509.Certificate:
        after = NOW - dt.timedelta(days=1) if expired else NOW + dt.timedelta(days=90)
        builder = (x509.CertificateBuilder().subject_name(_name(NAME)).issuer_name(self.issuing.subject)
                   .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW - dt.timedelta(days=100)).not_valid_after(after))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self.issuing_key, hashes.SHA256())

    def resign(self, cert: x509.Certificate, change: Callable[[rfc5280.TBSCertificate], None]) -> bytes:
        """``cert`` changed in ways cryptography will not build, signed again by the issuing CA (DER)."""
        parsed, _ = decoder.decode(cert.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.Certificate())
        tbs = parsed["tbsCertificate"]
        change(tbs)
        signature = self.issuing_key.sign(encoder.encode(tbs), ec.ECDSA(hashes.SHA256()))
        parsed["signature"] = univ.BitString.fromOctetString(signature)
        return bytes(encoder.encode(parsed))

    def bundle(self, cert_pem: bytes) -> bytes:
        return _key_pem(self.key) + cert_pem + _pem(self.issuing)


def _duplicate(oid: x509.ObjectIdentifier) -> Callable[[rfc5280.TBSCertificate], None]:
    def change(tbs: rfc5280.TBSCertificate) -> None:
        extensions = tbs["extensions"]
        extensions.append(next(ext for ext in extensions if str(ext["extnID"]) == oid.dotted_string))
    return change


def _version_4(tbs: rfc5280.TBSCertificate) -> None:
    tbs["version"] = 3  # v1 is 0, v3 is 2: 3 is no version RFC 5280 §4.1.2.1 knows


def _der_pem(der: bytes) -> bytes:
    """PEM around DER that cryptography would refuse to load (so it cannot convert it)."""
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _garbage_extension(oid: x509.ObjectIdentifier, value: bytes, critical: bool = False
                       ) -> tuple[x509.ExtensionType, bool]:
    return x509.UnrecognizedExtension(oid, value), critical


def build_files(folder: Path) -> dict[str, tuple[list[str], int, str]]:
    """file name -> (extra CLI arguments, exit code, phrase the output must hold)."""
    pki = Pki()
    good = pki.leaf((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False))
    (folder / "password.txt").write_text("s3cret\n")
    (folder / "wrong.txt").write_text("not-it\n")
    files: dict[str, tuple[bytes, list[str], int, str]] = {}

    def add(name: str, data: bytes, code: int, phrase: str, *extra: str) -> None:
        files[name] = (data, list(extra), code, phrase)

    # good files
    add("good.pem", pki.bundle(_pem(good)), 0, "Imported")
    add("good-any-order.pem", _pem(pki.issuing) + _pem(good) + _key_pem(pki.key), 0, "Imported")
    expired = pki.leaf(expired=True)
    add("expired.pem", pki.bundle(_pem(expired)), 1, "expired on")
    add("expired-allowed.pem", pki.bundle(_pem(expired)), 0, "Imported", "--allow-expired")
    # what is not a server certificate with its key
    add("ca-with-key.pem", _pem(pki.issuing) + _key_pem(pki.issuing_key) + _pem(pki.root), 1,
        "is a CA certificate (basicConstraints CA:TRUE)")
    add("cert-only.pem", _pem(good), 1, "a certificate without its key")
    add("cert-only.der", good.public_bytes(serialization.Encoding.DER), 1,
        "a certificate without its key (a DER certificate)")
    add("ca-bundle.pem", _pem(pki.issuing, pki.root), 1, "only 2 CA certificates")
    add("key-only.pem", _key_pem(pki.key), 1, "a private key without its certificate")
    add("key-only.der", pki.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), 1, "a private key without its certificate")
    add("mismatch.pem", _key_pem(ec.generate_private_key(ec.SECP256R1())) + _pem(good), 1, "does not match")
    add("empty.pem", b"", 1, "empty file")
    add("garbage.bin", b"\x00\x01garbage" * 50, 1, "neither PEM (no '-----BEGIN' line) nor a PFX or DER file")
    add("etc-passwd", b"root:x:0:0:root:/root:/bin/bash\n" * 20, 1, "not a certificate file")
    add("damaged.pfx", b"\x30\x82\x01\x00" + b"\x00" * 100, 1, "not a PFX/PKCS#12 file, or it is truncated")
    add("truncated.pem", pki.bundle(_pem(good))[:-200], 1, "truncated PEM")
    # malformed certificates
    add("duplicate-san.pem", pki.bundle(_der_pem(pki.resign(good, _duplicate(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)))),
        1, "the subjectAltName extension appears twice")
    add("duplicate-eku.pem", pki.bundle(_der_pem(pki.resign(good, _duplicate(ExtensionOID.EXTENDED_KEY_USAGE)))),
        1, "the extendedKeyUsage extension appears twice")
    add("version-4.pem", pki.bundle(_der_pem(pki.resign(good, _version_4))), 1, "unknown X.509 version (v4")
    add("version-4.der", pki.resign(good, _version_4), 1, "unknown X.509 version (v4")
    broken = {
        "san": (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05a", "subjectAltName"),
        "ian": (ExtensionOID.ISSUER_ALTERNATIVE_NAME, b"\x30\x03\x82\x05a", "issuerAltName"),
        "eku": (ExtensionOID.EXTENDED_KEY_USAGE, b"\x04\x00", "extendedKeyUsage"),
        "basic-constraints": (ExtensionOID.BASIC_CONSTRAINTS, b"\x30\x03\x01\x01\x05", "basicConstraints"),
        "policies": (ExtensionOID.CERTIFICATE_POLICIES, b"\x30\x02\x05\x00", "certificatePolicies"),
        "name-constraints": (ExtensionOID.NAME_CONSTRAINTS, b"\x30\x02\x02\x00", "nameConstraints"),
    }
    for label, (oid, value, shown) in broken.items():
        cert = pki.leaf(_garbage_extension(oid, value), san=oid != ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        add(f"malformed-{label}.pem", pki.bundle(_pem(cert)), 1, f"its {shown} extension cannot be parsed")

    # files made by the openssl CLI
    (folder / "leaf.pem").write_bytes(_pem(good))
    (folder / "leaf.key").write_bytes(_key_pem(pki.key))
    (folder / "chain.pem").write_bytes(_pem(pki.issuing))
    (folder / "cas.pem").write_bytes(_pem(pki.issuing, pki.root))
    (folder / "bad-san.pem").write_bytes(_pem(pki.leaf(_garbage_extension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05a"), san=False)))
    _openssl("pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-certfile", "chain.pem",
             "-passout", "pass:s3cret", "-out", "good.pfx", cwd=folder)
    _openssl("pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-passout", "pass:",
             "-out", "no-password.pfx", cwd=folder)
    _openssl("pkcs12", "-export", "-nokeys", "-in", "cas.pem", "-passout", "pass:s3cret", "-out", "cas.pfx",
             cwd=folder)
    _openssl("pkcs12", "-export", "-inkey", "leaf.key", "-in", "bad-san.pem", "-passout", "pass:s3cret",
             "-out", "bad-san.pfx", cwd=folder)
    _openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048", "-out",
             "dsa-params.pem", cwd=folder)
    _openssl("genpkey", "-paramfile", "dsa-params.pem", "-out", "dsa.key", cwd=folder)
    _openssl("pkey", "-in", "dsa.key", "-traditional", "-out", "dsa-traditional.key", cwd=folder)
    _openssl("req", "-x509", "-key", "dsa.key", "-out", "dsa.pem", "-subj", f"/CN={NAME}", "-days", "30",
             "-addext", f"subjectAltName=DNS:{NAME}", cwd=folder)
    _openssl("pkcs12", "-export", "-inkey", "dsa.key", "-in", "dsa.pem", "-passout", "pass:s3cret",
             "-out", "dsa.pfx", cwd=folder)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             "negative.key", "-out", "negative.pem", "-subj", f"/CN={NAME}", "-days", "30", "-set_serial", "-5",
             "-addext", f"subjectAltName=DNS:{NAME}", cwd=folder)
    add("openssl-good.pfx", (folder / "good.pfx").read_bytes(), 0, "Imported", "--password-file", "password.txt")
    add("openssl-no-password.pfx", (folder / "no-password.pfx").read_bytes(), 0, "Imported")
    add("openssl-needs-password.pfx", (folder / "good.pfx").read_bytes(), 1, "protected by a password")
    add("openssl-wrong-password.pfx", (folder / "good.pfx").read_bytes(), 1, "wrong PFX password",
        "--password-file", "wrong.txt")
    add("openssl-cas-only.pfx", (folder / "cas.pfx").read_bytes(), 1, "only 2 CA certificates",
        "--password-file", "password.txt")
    add("openssl-bad-san.pfx", (folder / "bad-san.pfx").read_bytes(), 1,
        "its subjectAltName extension cannot be parsed", "--password-file", "password.txt")
    add("openssl-dsa.pfx", (folder / "dsa.pfx").read_bytes(), 1, "DSA is not supported",
        "--password-file", "password.txt")
    add("openssl-dsa-pkcs8.pem", (folder / "dsa.key").read_bytes() + (folder / "dsa.pem").read_bytes(), 1,
        "DSA is not supported")
    add("openssl-dsa-traditional.pem", (folder / "dsa-traditional.key").read_bytes()
        + (folder / "dsa.pem").read_bytes(), 1, "DSA is not supported")
    add("openssl-negative-serial.pem", (folder / "negative.key").read_bytes() + (folder / "negative.pem").read_bytes(),
        1, "serial number which wasn't positive")

    table: dict[str, tuple[list[str], int, str]] = {}
    for name, (data, extra, code, phrase) in files.items():
        (folder / name).write_bytes(data)
        table[name] = (extra, code, phrase)
    return table


@pytest.fixture(scope="module")
def import_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[list[str], int, str]]]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    folder = tmp_path_factory.mktemp("import-files")
    return folder, build_files(folder)


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One store for the whole table (created once): refusals store nothing, and every accepted
    file is the same certificate, imported again as a new revision."""
    home = tmp_path_factory.mktemp("import-home")
    return {"CERTKEEPER_DATA_DIR": str(home / "data"), "CERTKEEPER_CONFIG": str(home / "none.toml")}


CASES = [
    "good.pem", "good-any-order.pem", "expired.pem", "expired-allowed.pem", "ca-with-key.pem", "cert-only.pem",
    "cert-only.der", "ca-bundle.pem", "key-only.pem", "key-only.der", "mismatch.pem", "empty.pem", "garbage.bin",
    "etc-passwd", "damaged.pfx", "truncated.pem", "duplicate-san.pem", "duplicate-eku.pem", "version-4.pem",
    "version-4.der",
    "malformed-san.pem", "malformed-ian.pem", "malformed-eku.pem", "malformed-basic-constraints.pem",
    "malformed-policies.pem", "malformed-name-constraints.pem", "openssl-good.pfx", "openssl-no-password.pfx",
    "openssl-needs-password.pfx", "openssl-wrong-password.pfx", "openssl-cas-only.pfx", "openssl-bad-san.pfx",
    "openssl-dsa.pfx", "openssl-dsa-pkcs8.pem", "openssl-dsa-traditional.pem", "openssl-negative-serial.pem",
]


@pytest.mark.parametrize("name", CASES)
def test_import_exits_0_or_1_with_one_line(import_files: tuple[Path, dict[str, tuple[list[str], int, str]]],
                                           shared_home: dict[str, str], name: str) -> None:
    folder, table = import_files
    extra, code, phrase = table[name]
    arguments = [str(folder / arg) if arg.endswith(".txt") else arg for arg in extra]
    done = run_cli("import", str(folder / name), "--id", "fabrikam", *arguments, env=shared_home)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr  # no library warning printed raw
    if code == 0:
        assert phrase in done.stdout and done.stderr == "", (done.stdout, done.stderr)
        return
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and done.stdout == "", (done.stdout, done.stderr)
    assert phrase in lines[0] and str(folder / name) in lines[0], lines[0]


def test_the_table_covers_every_file(import_files: tuple[Path, dict[str, tuple[list[str], int, str]]]) -> None:
    assert sorted(CASES) == sorted(import_files[1])
