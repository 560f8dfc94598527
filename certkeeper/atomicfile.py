"""Crash-safe, private file writes: temp file in the same folder, fsync, rename, fsync the folder.

Everything certkeeper writes that may hold a key (exports, binding files, the secrets key file)
goes through :func:`atomic_write`, which keeps a key from ever becoming readable by someone else:

- the new file is created by us, with its final mode from the start (``mkstemp`` is 0600, then
  ``mode`` is set on the open descriptor): it belongs to the user running certkeeper, whoever
  owned the file it replaces, and is never readable by others, not even for a moment;
- the rename replaces whatever is at the path, a symbolic link included, without following it;
  and a path that is a symbolic link or not a regular file (``/dev/stdout``, a FIFO, a device) is
  refused outright, so a pre-planted link cannot redirect a key;
- folders it creates get exactly ``dir_mode`` (0700 by default) whatever the umask;
- the temp file (``.<name>.<random>.certkeeper-tmp``) is removed if anything fails, and
  :func:`remove_stale_temps` removes those a killed process left behind.

The mode and group calls (``fchmod``, ``fchown``, ``chmod``) sit in :class:`PosixModes`, chosen
once for this platform by :func:`modes_for`. On Windows (:class:`NtfsModes`) a POSIX mode would only
set the read-only flag and ``os.fchmod`` does not exist before Python 3.13: there a new file is
protected by the DACL it inherits from its folder (:mod:`certkeeper.platform.protection`), and
groups are refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

#: the suffix of the temp files written beside their target
TEMP_SUFFIX = ".certkeeper-tmp"


class UnsafeTarget(OSError):
    """The path to write is a symbolic link or not a regular file; ``strerror`` says which."""


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, group: int | None = None,
                 dir_mode: int = 0o700) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never a mix.

    Args:
        path: the file to write. Missing folders are created with ``dir_mode``.
        data: the new contents.
        mode: the new file's permission bits (0600 by default).
        group: a group id to own the new file (and the folders created for it); None: ours.
        dir_mode: the permission bits of folders created on the way (0700; 0750 with a group).

    Raises:
        UnsafeTarget: ``path`` is a symbolic link or exists and is not a regular file.
        OSError: the folder cannot be created or written (the message names the cause).
    """
    atomic_write_all({path: data}, mode, group=group, dir_mode=dir_mode)


def atomic_write_all(files: Mapping[Path, bytes], mode: int = 0o600, *, group: int | None = None,
                     dir_mode: int = 0o700) -> None:
    """Replace several files as nearly at once as POSIX allows: every new file is written and
    fsynced beside its target first, then all are renamed into place one right after the other,
    then the folders are fsynced. Nothing slow runs between two renames, but a crash can still
    fall between them: a caller writing a pair (a certificate and its key) checks the pair on its
    next run. If writing fails, no target has changed; if a rename fails, the earlier ones stay.
    """
    for path in files:
        check_target(path)
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            make_dirs(path.parent, dir_mode, group=group)
            staged.append((_stage(path, data, mode, group), path))
        for temp_name, path in staged:
            os.replace(temp_name, path)  # replaces a link planted since check_target, never follows it
    except BaseException:
        for temp_name, _path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
        raise
    for folder in dict.fromkeys(path.parent for path in files):
        fsync_dir(folder)


def _stage(path: Path, data: bytes, mode: int, group: int | None) -> str:
    """Write ``data`` to a new temp file beside ``path`` (ours, ``mode`` from the start), fsynced."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        MODES.set_mode(fd, mode)
        if group is not None:
            MODES.set_group(fd, group)
        with os.fdopen(fd, "wb", closefd=True) as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return temp_name


def check_target(path: Path) -> None:
    """Refuse to write ``path`` if it is a symbolic link or exists and is not a regular file."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeTarget(errno.ELOOP, "it is a symbolic link (certkeeper never writes through a link; "
                                        "give the real path)", str(path))
    if stat.S_ISDIR(info.st_mode):
        raise UnsafeTarget(errno.EISDIR, "it is a folder", str(path))
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeTarget(errno.EINVAL, "it is not a regular file (a device, FIFO or socket)", str(path))


def make_dirs(folder: Path, mode: int = 0o700, *, group: int | None = None) -> None:
    """Create ``folder`` and any missing parents with exactly ``mode`` (whatever the umask) and,
    if given, ``group``; folders that already exist are left as they are."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=mode)
        except FileExistsError:
            if not created.is_dir():
                raise
            continue  # made by someone else meanwhile: theirs, not ours to change
        MODES.chmod_dir(created, mode)
        if group is not None:
            MODES.chown_group(created, group)


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files a killed writer of ``path`` left beside it (they may hold a key).

    Only files named like :func:`atomic_write`'s temp files for this very path are removed;
    returns them. Call it where no other writer of ``path`` can be running (one deploy per
    binding at a time)."""
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{_glob_escape(path.name)}.*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for candidate in candidates:
        with contextlib.suppress(FileNotFoundError):
            if candidate.is_symlink() or candidate.is_file():
                candidate.unlink()
                removed.append(candidate)
    return removed


def fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename in it survives a power cut (Windows cannot open a folder: no-op)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _glob_escape(name: str) -> str:
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


# -- modes and groups, per platform ------------------------------------------------------------


class PosixModes:
    """Permission bits and group ownership, the POSIX way."""

    def set_mode(self, fd: int, mode: int) -> None:
        if sys.platform == "win32":  # never chosen there (see modes_for)
            raise OSError(errno.ENOTSUP, "POSIX modes")
        os.fchmod(fd, mode)

    def set_group(self, fd: int, group: int) -> None:
        if sys.platform == "win32":
            raise OSError(errno.ENOTSUP, "file groups are a POSIX feature")
        os.fchown(fd, -1, group)

    def chmod_dir(self, path: Path, mode: int) -> None:
        os.chmod(path, mode)

    def chown_group(self, path: Path, group: int) -> None:
        if sys.platform == "win32":
            raise OSError(errno.ENOTSUP, "file groups are a POSIX feature")
        os.chown(path, -1, group)


class NtfsModes:
    """Windows: nothing to set; the folder's inherited DACL protects a new file. Groups are refused."""

    def set_mode(self, fd: int, mode: int) -> None:
        return None

    def set_group(self, fd: int, group: int) -> None:
        raise OSError(errno.ENOTSUP, "file groups are a POSIX feature (on Windows the folder's permissions apply)")

    def chmod_dir(self, path: Path, mode: int) -> None:
        return None

    def chown_group(self, path: Path, group: int) -> None:
        raise OSError(errno.ENOTSUP, "file groups are a POSIX feature (on Windows the folder's permissions apply)")


def modes_for(platform: str) -> PosixModes | NtfsModes:
    return NtfsModes() if platform == "win32" else PosixModes()


MODES = modes_for(sys.platform)
