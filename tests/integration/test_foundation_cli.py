"""Issue 2 end to end through the CLI: issue on defaults, list, export, import, refusals, secrets at rest."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.fixtures.core import run_cli

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


def _issue(ck, *extra: str):  # type: ignore[no-untyped-def]
    result = ck("issue", *NAMES, *extra)
    assert result.code == 0, result
    return result


def _db_counts(home: Path) -> dict[str, int]:
    db = home / "data" / "certkeeper.db"
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("certificates", "revisions")}


def test_issue_on_defaults_then_list_show_and_openssl_verify(ck, home: Path, tmp_path: Path) -> None:
    # the real console script, in a subprocess, on a fresh home: no config at all
    env = {"CERTKEEPER_DATA_DIR": str(home / "data"), "CERTKEEPER_CONFIG": str(home / "none.toml")}
    env_no_config = dict(env)
    env_no_config.pop("CERTKEEPER_CONFIG")
    os.environ.pop("CERTKEEPER_CONFIG", None)
    done = run_cli("issue", *NAMES, env=env_no_config | {"XDG_CONFIG_HOME": str(home / "xdg")})
    assert done.returncode == 0, done.stderr
    assert "mail.contoso.com" in done.stdout and "autodiscover.contoso.com" in done.stdout
    assert "serial" in done.stdout and "renews after" in done.stdout

    data = home / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600

    listed = ck("list", "--json")
    assert listed.code == 0, listed
    rows = json.loads(listed.out)
    assert [r["id"] for r in rows] == ["mail.contoso.com"]
    assert rows[0]["names"] == list(NAMES)
    assert rows[0]["health"] == "Ready"
    assert 390 < rows[0]["days_left"] <= 397
    table = ck("list")
    assert "mail.contoso.com" in table.out and "Ready" in table.out

    shown = json.loads(ck("show", "mail.contoso.com", "--json").out)
    assert shown["current"]["serial"] == rows[0]["serial"]
    pem_out = ck("show", "mail.contoso.com", "--pem").out
    assert "BEGIN CERTIFICATE" in pem_out and "PRIVATE KEY" not in pem_out

    pem_path, root_path = tmp_path / "out.pem", tmp_path / "root.pem"
    assert ck("export", "mail.contoso.com", "--format", "pem", "--out", str(pem_path)).code == 0
    assert stat.S_IMODE(pem_path.stat().st_mode) == 0o600
    assert ck("ca", "export", "--out", str(root_path)).code == 0
    blocks = pem_path.read_text().split("-----END CERTIFICATE-----")
    leaf = tmp_path / "leaf.pem"
    chain = tmp_path / "chain.pem"
    leaf.write_text(blocks[0] + "-----END CERTIFICATE-----\n")
    chain.write_text(blocks[1].strip() + "\n-----END CERTIFICATE-----\n")
    assert "PRIVATE KEY" in pem_path.read_text()
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root_path), "-untrusted", str(chain), "-purpose", "sslserver",
         str(leaf)], capture_output=True, text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    cert = x509.load_pem_x509_certificate(leaf.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(NAMES)
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"


@pytest.mark.parametrize("encryption", ["aes256", "legacy"])
def test_pfx_export_opens_with_openssl(ck, tmp_path: Path, encryption: str) -> None:
    _issue(ck)
    out = tmp_path / f"{encryption}.pfx"
    pw = tmp_path / "pw"
    pw.write_text("Sup3r-secret\n")
    result = ck("export", "mail.contoso.com", "--format", "pfx", "--out", str(out), "--pfx-encryption", encryption,
                "--password-file", str(pw))
    assert result.code == 0, result
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    args = ["openssl", "pkcs12", "-in", str(out), "-passin", "pass:Sup3r-secret", "-nodes", "-info"]
    opened = subprocess.run(args, capture_output=True, text=True)
    if opened.returncode != 0 and encryption == "legacy":
        opened = subprocess.run([*args, "-legacy"], capture_output=True, text=True)
    assert opened.returncode == 0, opened.stderr
    assert "BEGIN PRIVATE KEY" in opened.stdout and "BEGIN CERTIFICATE" in opened.stdout
    expected = "AES-256-CBC" if encryption == "aes256" else "pbeWithSHA1And3-KeyTripleDES-CBC"
    assert expected in opened.stderr or expected in opened.stdout


def test_pfx_export_without_password_file_prints_a_generated_password_once(ck, tmp_path: Path) -> None:
    _issue(ck)
    out = tmp_path / "gen.pfx"
    result = ck("export", "mail.contoso.com", "--format", "pfx", "--out", str(out))
    assert result.code == 0, result
    password = result.out.split("not stored):")[1].split()[0]
    key, cert, _chain = pkcs12.load_key_and_certificates(out.read_bytes(), password.encode())
    assert key is not None and cert is not None


HOSTILE = {
    "a" * 64 + ".contoso.com": "label",
    ".".join(["a" * 63] * 4): "253",
    "*.*.contoso.com": "wildcard",
    "mail.*.contoso.com": "wildcard",
    "*.com": "public suffix",
    "192.168.1.10": "IP",
    "": "empty",
    "m\u0430il.contoso.com": "script",  # Cyrillic a (U+0430) among Latin letters
}


@pytest.mark.parametrize("bad", list(HOSTILE))
def test_hostile_names_are_refused_and_nothing_is_stored(ck, home: Path, bad: str) -> None:
    result = ck("issue", "autodiscover.contoso.com", bad)
    assert result.code == 1, result
    assert "error:" in result.err
    assert repr(bad)[1:-1][:20] in result.err or bad[:20] in result.err
    assert HOSTILE[bad].lower() in result.err.lower()
    assert _db_counts(home).get("certificates", 0) == 0
    assert "Traceback" not in result.err


def test_internal_names_allowed_for_the_built_in_ca(ck) -> None:
    result = ck("issue", "exch01.contoso.local", "exch01", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["names"] == ["exch01.contoso.local", "exch01"]


def _key_pair(tmp_path: Path) -> tuple[Path, bytes]:
    """A foreign (non-certkeeper) certificate with its key, as an admin would export from Exchange."""
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "mail.fabrikam.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mail.fabrikam.com")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return tmp_path, cert_pem + key_pem


def test_import_pem_and_pfx_and_refusals_leave_the_store_unchanged(ck, home: Path, tmp_path: Path) -> None:
    _issue(ck)
    before = _db_counts(home)
    folder, good_pem = _key_pair(tmp_path)

    broken = folder / "broken.pem"
    broken.write_bytes(good_pem[:200])
    result = ck("import", str(broken))
    assert result.code == 1 and "broken.pem" in result.err, result

    mismatched = folder / "mismatch.pem"
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    mismatched.write_bytes(good_pem.split(b"-----BEGIN PRIVATE KEY-----")[0] + other_key)
    result = ck("import", str(mismatched))
    assert result.code == 1 and "does not match" in result.err, result

    pfx_path, pw = folder / "good.pfx", folder / "pw"
    pw.write_text("right")
    key = serialization.load_pem_private_key(good_pem.split(b"-----END CERTIFICATE-----\n")[1], None)
    cert = x509.load_pem_x509_certificate(good_pem)
    pfx_path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"x", key, cert, None, serialization.BestAvailableEncryption(b"right")))  # type: ignore[arg-type]
    wrong = folder / "wrong"
    wrong.write_text("wrong")
    result = ck("import", str(pfx_path), "--password-file", str(wrong))
    assert result.code == 1 and "password" in result.err.lower(), result
    assert _db_counts(home) == before

    ok = ck("import", str(pfx_path), "--password-file", str(pw), "--json")
    assert ok.code == 0, ok
    assert json.loads(ok.out)["certificate_id"] == "mail.fabrikam.com"
    good = folder / "good.pem"
    good.write_bytes(good_pem)
    again = ck("import", str(good), "--id", "fabrikam-pem")
    assert again.code == 0, again


def test_no_private_key_is_readable_in_clear_on_disk(ck, home: Path, tmp_path: Path) -> None:
    _issue(ck)
    out = tmp_path / "export.pem"
    ck("export", "mail.contoso.com", "--format", "pem", "--out", str(out))
    key_pem = out.read_text().split("-----BEGIN PRIVATE KEY-----")[1].split("-----END PRIVATE KEY-----")[0]
    key_der = base64.b64decode("".join(key_pem.split()))
    needles = [key_der, key_der[-64:], "".join(key_pem.split())[:64].encode(), b"BEGIN PRIVATE KEY",
               b"BEGIN RSA PRIVATE KEY", b"BEGIN EC PRIVATE KEY"]
    scanned = 0
    for path in (home / "data").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle not in data, f"private key material in clear in {path}"
    assert scanned >= 2


def test_keys_rotate_loses_nothing_and_retires_the_old_key(ck, home: Path, tmp_path: Path) -> None:
    _issue(ck)
    key_file = home / "data" / "secret.key"
    old = [line for line in key_file.read_text().splitlines() if line and not line.startswith("#")]
    stale = key_file.parent / ".secret.key.k1ll3d.certkeeper-tmp"  # a rotation killed while writing
    stale.write_text(old[0] + "\n")
    result = ck("keys", "rotate")
    assert result.code == 0, result
    new = [line for line in key_file.read_text().splitlines() if line and not line.startswith("#")]
    assert len(new) == 1 and new != old
    assert not stale.exists()  # a copy of the keys is not left lying around
    assert ck("export", "mail.contoso.com", "--format", "pem", "--out", str(tmp_path / "after.pem")).code == 0
    assert ck("issue", "second.contoso.com").code == 0  # the CA key (issuer state) still opens
    key_file.write_text(old[0] + "\n")
    refused = ck("export", "mail.contoso.com", "--format", "pem", "--out", str(tmp_path / "x.pem"))
    assert refused.code == 1 and "secret key" in refused.err


def test_init_writes_config_data_dir_and_key(ck, home: Path) -> None:
    result = ck("init")
    assert result.code == 0, result
    config = home / "certkeeper.toml"
    assert "[outlook_anywhere]" in config.read_text()
    assert stat.S_IMODE((home / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "data" / "secret.key").stat().st_mode) == 0o600
    # the example config is valid and its certificate can be issued as written
    assert ck("renew", "--dry-run").code == 0
    issued = ck("issue", "--json")
    assert issued.code == 0, issued
    assert json.loads(issued.out)["names"] == ["mail.contoso.com", "autodiscover.contoso.com"]


def test_config_errors_name_the_key_path(ck, home: Path) -> None:
    (home / "certkeeper.toml").write_text(
        '[[certificates]]\nid = "outlook"\nnames = ["mail.contoso.com", "ok.contoso.com", "*.*.contoso.com"]\n'
    )
    result = ck("list")
    assert result.code == 1
    assert "certificates[0].names[2]" in result.err, result
    (home / "certkeeper.toml").write_text('[[certificates]]\nid = "outlook"\nkey_type = "dsa"\n')
    result = ck("list")
    assert result.code == 1 and "certificates[0].key_type" in result.err, result
    (home / "certkeeper.toml").write_text('[store]\nurl = 5\n')
    result = ck("list")
    assert result.code == 1 and "store.url" in result.err, result


def test_usage_errors_exit_2_and_debug_shows_traceback(ck) -> None:
    assert ck("export").code == 2
    assert ck("no-such-command").code == 2
    assert ck("show", "nope").code == 1


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "a b", "", "-starts-with-dash", "x" * 65])
def test_hostile_certificate_ids_are_refused(ck, home: Path, bad_id: str) -> None:
    result = ck("issue", "mail.contoso.com", "--id", bad_id)
    assert result.code == 1 and "certificate id" in result.err, result
    assert _db_counts(home).get("certificates", 0) == 0
