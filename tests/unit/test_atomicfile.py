"""atomicfile: a written file is ours and private whatever was at the path; links and special files
are refused; folders we create are exactly 0700 (0750 with a group) whatever the umask; temp files
a killed writer left are found and removed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from certkeeper.atomicfile import (
    TEMP_SUFFIX,
    UnsafeTarget,
    atomic_write,
    atomic_write_all,
    make_dirs,
    modes_for,
    remove_stale_temps,
)

KEY = b"-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000: everything created would be world-writable unless we set modes ourselves."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_symbolic_link_at_the_target_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    link = tmp_path / "key.pem"
    link.symlink_to(victim)
    with pytest.raises(UnsafeTarget, match="symbolic link"):
        atomic_write(link, KEY)
    assert victim.read_bytes() == b"keep me" and link.is_symlink()
    dangling = tmp_path / "dangling.pem"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(UnsafeTarget, match="symbolic link"):
        atomic_write(dangling, KEY)
    assert not (tmp_path / "nowhere").exists()


def test_special_files_and_folders_are_refused(tmp_path: Path) -> None:
    # look-alikes in tmp_path, never the real /dev entries: a broken atomic_write would replace them
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")  # what /dev/stdout is
    targets = [(fifo, "not a regular file"), (stdout, "symbolic link"), (tmp_path, "folder")]
    if os.geteuid() == 0:
        null = tmp_path / "null"
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
        targets.append((null, "not a regular file"))
    for target, message in targets:
        mode = target.lstat().st_mode
        with pytest.raises(UnsafeTarget, match=message):
            atomic_write(target, KEY)
        assert target.lstat().st_mode == mode


def test_modes_are_exact_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    target = tmp_path / "a" / "b" / "key.pem"
    atomic_write(target, KEY)
    assert mode_of(target) == 0o600
    assert mode_of(tmp_path / "a") == 0o700 and mode_of(tmp_path / "a" / "b") == 0o700
    atomic_write(tmp_path / "c" / "cert.pem", b"cert", 0o640, group=os.getgid(), dir_mode=0o750)
    assert mode_of(tmp_path / "c") == 0o750 and mode_of(tmp_path / "c" / "cert.pem") == 0o640
    # a folder that exists is left as it is
    (tmp_path / "open").mkdir(mode=0o755)
    make_dirs(tmp_path / "open", 0o700)
    assert mode_of(tmp_path / "open") == 0o755


def test_a_file_another_user_created_is_replaced_by_ours(tmp_path: Path, open_umask: None) -> None:
    """Another local user pre-creates the target in a shared folder: the key written there must
    belong to us, 0600, not to them (their file is replaced, never reused or re-owned to them)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a file owned by another user")
    import pwd

    nobody = pwd.getpwnam("nobody")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    planted = shared / "export.pem"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    atomic_write(planted, KEY)
    info = planted.lstat()
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())
    assert stat.S_IMODE(info.st_mode) == 0o600 and planted.read_bytes() == KEY


def test_several_files_are_staged_then_renamed(tmp_path: Path) -> None:
    first, second = tmp_path / "cert.pem", tmp_path / "key.pem"
    first.write_bytes(b"old cert")
    second.write_bytes(b"old key")
    second_link = tmp_path / "link.pem"
    second_link.symlink_to(second)
    # one unsafe target: nothing is written at all
    with pytest.raises(UnsafeTarget):
        atomic_write_all({first: b"new cert", second_link: b"new key"})
    assert first.read_bytes() == b"old cert" and second.read_bytes() == b"old key"
    atomic_write_all({first: b"new cert", second: b"new key"})
    assert (first.read_bytes(), second.read_bytes()) == (b"new cert", b"new key")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)] == []


def test_stale_temp_files_of_a_path_are_removed_and_only_those(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    stale = [tmp_path / f".key.pem.{suffix}{TEMP_SUFFIX}" for suffix in ("a1b2c3", "zz_9")]
    others = [tmp_path / f".cert.pem.a1b2c3{TEMP_SUFFIX}", tmp_path / ".key.pem.a1b2c3", tmp_path / "key.pem.bak"]
    for path in stale + others:
        path.write_bytes(KEY)
    assert sorted(remove_stale_temps(target)) == sorted(stale)
    assert all(not path.exists() for path in stale) and all(path.exists() for path in others)
    assert remove_stale_temps(tmp_path / "missing" / "key.pem") == []


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_modes_per_platform_posix_applies_them_windows_leaves_them_to_the_folder(tmp_path: Path, platform: str) -> None:
    """On Windows a mode would only set the read-only flag (and os.fchmod is missing before Python
    3.13): the folder's inherited DACL protects the file, so nothing is set and groups are refused."""
    modes = modes_for(platform)
    path = tmp_path / "f"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    folder = tmp_path / "d"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    fd = os.open(path, os.O_RDONLY)
    try:
        modes.set_mode(fd, 0o600)
        if platform == "win32":
            with pytest.raises(OSError, match="POSIX"):
                modes.set_group(fd, os.getgid())
        else:
            modes.set_group(fd, os.getgid())
    finally:
        os.close(fd)
    modes.chmod_dir(folder, 0o700)
    expected = (0o644, 0o755) if platform == "win32" else (0o600, 0o700)
    assert (mode_of(path), mode_of(folder)) == expected
    if platform == "win32":
        with pytest.raises(OSError, match="POSIX"):
            modes.chown_group(folder, os.getgid())
