"""``certkeeper export`` never hands a key to someone else: the file is ours and 0600 whatever was at
the path, a link or a device there is refused (``/dev/stdout`` included), ``--out -`` writes to
standard output, and a key file mode with group or world access is refused in a binding."""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certkeeper.binders.files import FilesBinder
from certkeeper.binders.haproxy import HaproxyBinder
from certkeeper.clock import SystemClock
from certkeeper.errors import ConfigError
from certkeeper.plugins import MemoryState, PluginContext
from tests.fixtures.core import REPO_ROOT, run_cli

NAMES = ("mail.contoso.com", "autodiscover.contoso.com")


@pytest.fixture
def issued(ck) -> None:  # type: ignore[no-untyped-def]
    result = ck("issue", *NAMES)
    assert result.code == 0, result


def _env(home: Path) -> dict[str, str]:
    return {"CERTKEEPER_DATA_DIR": str(home / "data"), "CERTKEEPER_CONFIG": str(home / "certkeeper.toml")}


def test_export_to_a_file_another_user_created_leaves_our_key_0600(ck, home: Path, issued: None) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user (nobody)")
    nobody = pwd.getpwnam("nobody")
    shared = home / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # a shared temporary folder, like /tmp
    planted = shared / "mail.pem"
    planted.write_bytes(b"")
    planted.chmod(0o644)
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)

    result = ck("export", "mail.contoso.com", "--format", "pem", "--out", str(planted))
    assert result.code == 0, result
    info = planted.lstat()
    assert info.st_uid == os.geteuid() != nobody.pw_uid
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert b"PRIVATE KEY" in planted.read_bytes()


def _look_alike(home: Path, target: str, victim: Path) -> Path:
    """A private copy of what ``target`` is, so a broken export can only ever replace that copy:
    /dev/stdout is a link to /proc/self/fd/1, /dev/null a character device (1, 3)."""
    out = home / target.replace("/", "-").strip("-")
    if target == "/dev/stdout":
        out.symlink_to("/proc/self/fd/1")
    elif target == "/dev/null":
        if os.geteuid() != 0:
            pytest.skip("needs root to make a device node")
        os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    elif target == "fifo":
        os.mkfifo(out)
    else:
        out.symlink_to(victim)
    return out


@pytest.mark.parametrize("target", ["/dev/stdout", "/dev/null", "fifo", "link"])
def test_links_and_devices_are_refused_as_outputs(ck, home: Path, issued: None, target: str) -> None:  # type: ignore[no-untyped-def]
    victim = home / "victim.txt"
    victim.write_text("keep me")
    out = _look_alike(home, target, victim)
    kind = out.lstat().st_mode
    result = ck("export", "mail.contoso.com", "--format", "pem", "--out", str(out))
    assert result.code == 1, result
    assert result.err.startswith(f"error: cannot write {out}:") and len(result.err.strip().splitlines()) == 1
    assert "--out -" in result.err
    assert victim.read_text() == "keep me"
    assert "PRIVATE KEY" not in result.out + result.err
    assert out.lstat().st_mode == kind  # still the link, device or FIFO it was


def test_out_dash_writes_to_standard_output(home: Path, issued: None) -> None:
    done = run_cli("export", "mail.contoso.com", "--format", "pem", "--out", "-", env=_env(home))
    assert done.returncode == 0, done.stderr
    data = done.stdout.encode()
    certs = x509.load_pem_x509_certificates(data)
    key = serialization.load_pem_private_key(data[data.index(b"-----BEGIN PRIVATE KEY"):], password=None)
    assert certs[0].public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert "Wrote" not in done.stdout and not (REPO_ROOT / "-").exists()  # no file named "-"
    pfx = subprocess.run([sys.executable, "-m", "certkeeper", "export", "mail.contoso.com", "--format", "pfx",
                          "--out", "-"], capture_output=True, env=os.environ | _env(home) | {
                              "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT, timeout=120, check=False)
    assert pfx.returncode == 0, pfx.stderr
    password = re.search(rb"PFX password \(shown once, not stored\): (\S+)", pfx.stderr)  # on stderr
    assert password is not None
    key, cert, _chain = pkcs12.load_key_and_certificates(pfx.stdout, password.group(1))
    assert key is not None and cert is not None and cert.subject == certs[0].subject


def test_an_export_removes_the_temp_file_a_killed_export_left(ck, home: Path, issued: None) -> None:  # type: ignore[no-untyped-def]
    from certkeeper.atomicfile import TEMP_SUFFIX

    out = home / "mail.pem"
    stale = home / f".mail.pem.k1ll3d{TEMP_SUFFIX}"
    stale.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    result = ck("export", "mail.contoso.com", "--format", "pem", "--out", str(out))
    assert result.code == 0, result
    assert not stale.exists() and b"PRIVATE KEY" in out.read_bytes()


def test_folders_export_creates_are_0700_whatever_the_umask(ck, home: Path, issued: None) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0)
    try:
        result = ck("export", "mail.contoso.com", "--format", "pem", "--out", str(home / "new" / "sub" / "k.pem"))
    finally:
        os.umask(old)
    assert result.code == 0, result
    assert stat.S_IMODE((home / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "new" / "sub").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "new" / "sub" / "k.pem").stat().st_mode) == 0o600


def _context(tmp_path: Path) -> PluginContext:
    return PluginContext(clock=SystemClock(), state=MemoryState(), data_dir=tmp_path)


@pytest.mark.parametrize("mode", [511, 0o640, 0o604, 0o660])
def test_a_key_file_mode_with_group_or_world_access_is_refused(tmp_path: Path, mode: int) -> None:
    for options in ({"key": str(tmp_path / "k.pem")}, {"combined": str(tmp_path / "c.pem")},
                    {"pfx": str(tmp_path / "c.pfx"), "pfx_password": "env:X"}):
        with pytest.raises(ConfigError, match=r"bindings\.web\.mode: .*access to the private key"):
            FilesBinder.from_options("web", {**options, "mode": mode}, _context(tmp_path))
        with pytest.raises(ConfigError, match=r"bindings\.web\.mode"):
            FilesBinder("web", **{key: Path(value) if key != "pfx_password" else (lambda: "x")  # type: ignore[arg-type]
                                  for key, value in options.items()}, mode=mode)
    with pytest.raises(ConfigError, match=r"bindings\.proxy\.mode: .*access to the private key"):
        HaproxyBinder.from_options("proxy", {"socket": "/run/haproxy.sock", "crt": "/etc/haproxy/x.pem", "mode": mode},
                                   _context(tmp_path))
    # files without the key may be readable by others (a public certificate for a trust store)
    assert FilesBinder.from_options("web", {"fullchain": str(tmp_path / "f.pem"), "mode": 0o644},
                                    _context(tmp_path)).mode == 0o644


def test_a_binding_group_makes_its_new_folders_0750(tmp_path: Path) -> None:
    binder = FilesBinder.from_options("web", {"fullchain": str(tmp_path / "tls" / "f.pem"), "group": os.getgid(),
                                              "mode": 0o640}, _context(tmp_path))
    assert binder.group == os.getgid() and binder.dir_mode == 0o750
    with pytest.raises(ConfigError, match=r"bindings\.web\.group: no group named 'no-such-group-x'"):
        FilesBinder.from_options("web", {"fullchain": str(tmp_path / "f.pem"), "group": "no-such-group-x"},
                                 _context(tmp_path))
