"""File snapshots for rollback, and the reload commands that follow a write; shared by the files
and HAProxy binders.

Atomic writes are :func:`certkeeper.atomicfile.atomic_write_all`."""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from certkeeper.atomicfile import atomic_write_all
from certkeeper.errors import BindError

log = logging.getLogger(__name__)

#: path -> previous bytes, or None when the file did not exist
Snapshot = dict[Path, bytes | None]


def take_snapshot(paths: Iterable[Path]) -> Snapshot:
    """The current bytes of each path (None if absent), to restore on rollback."""
    snapshot: Snapshot = {}
    for path in paths:
        try:
            snapshot[path] = path.read_bytes()
        except FileNotFoundError:
            snapshot[path] = None
    return snapshot


def restore_snapshot(snapshot: Mapping[Path, bytes | None], mode: int = 0o600, *, group: int | None = None,
                     dir_mode: int = 0o700) -> list[str]:
    """Put every file back as it was (the ones that existed together, as in
    :func:`~certkeeper.atomicfile.atomic_write_all`); returns the problems (logged, never raised
    over the original error)."""
    problems: list[str] = []
    present = {path: data for path, data in snapshot.items() if data is not None}
    try:
        atomic_write_all(present, mode, group=group, dir_mode=dir_mode)
    except OSError as exc:
        problems.append(f"{exc.filename or ''}: {exc.strerror or exc}")
        log.error("could not restore %s: %s", ", ".join(str(path) for path in present), exc)
    for path, data in snapshot.items():
        if data is None:
            try:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
                log.error("could not remove %s: %s", path, exc)
    return problems


def command_argv(command: str | Sequence[str], *, shell: bool) -> list[str]:
    """The argv of a reload command: a list is used as is; a string is split like a shell would
    (no shell runs) unless ``shell`` is set, in which case ``/bin/sh -c`` runs it."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command] if shell else shlex.split(command)
    return list(command)


def run_command(argv: Sequence[str], *, timeout: float, step: str) -> None:
    """Run a reload command; BindError naming ``step`` when it fails, times out or is missing.

    Output is kept out of the message beyond a short tail of stderr (reload commands print
    paths, not secrets, but we stay short).
    """
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BindError(f"{step}: {argv[0]} did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise BindError(f"{step}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise BindError(f"{step}: {argv[0]} exited with {done.returncode}: {tail[0][:200]}")
