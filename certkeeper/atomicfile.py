"""Crash-safe file writes: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never a mix.

    A temp file in the same folder (same filesystem, so the rename is atomic) is created with
    ``mode`` from the start, written, fsynced, renamed over ``path``, and the folder is fsynced
    so the rename survives a crash. The owner of an existing file is kept when we may chown.
    The temp file is removed if anything fails.
    """
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    owner: tuple[int, int] | None = None
    with contextlib.suppress(FileNotFoundError):
        stat = path.stat()
        owner = (stat.st_uid, stat.st_gid)
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".certkeeper-tmp")
    try:
        os.fchmod(fd, mode)
        if owner is not None and hasattr(os, "fchown"):
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
        with os.fdopen(fd, "wb", closefd=True) as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    fsync_dir(folder)




def fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename in it survives a power cut (Windows cannot open a folder: no-op)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
