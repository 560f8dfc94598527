"""The Linux service: the systemd unit for a given config, and whether stderr is the journal.

:func:`render_unit` fills ``certkeeper/data/certkeeper.service`` from a :class:`UnitSpec`, which
:func:`unit_spec` derives from the config it is given:

- ``Type=notify`` with ``WatchdogSec=`` three heartbeats long (:mod:`.sdnotify`; the daemon pings
  at least every half of whatever interval systemd gives it);
- ``ProtectSystem=strict`` with ``ReadWritePaths=`` for the data folder, the key file's and a
  SQLite store's folders, and the folder of every file a ``files`` or ``haproxy`` binding writes
  (``-`` prefixed: a folder that does not exist is skipped rather than failing the start;
  systemd.exec(5), "ReadWritePaths=");
- ``User=certkeeper`` unless ``--user root``; ``NoNewPrivileges=false`` only when a binding
  reloads through sudo (sudo is setuid, which NoNewPrivileges=true forbids).

Log lines carry syslog priorities when stderr is the journal: :mod:`.journal`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from certkeeper.config import Config

#: the folder systemd creates for StateDirectory=certkeeper
STATE_DIRECTORY = PurePosixPath("/var/lib/certkeeper")
#: the file options of the binders that write files (a test checks these against the binders' options)
WRITTEN_FILE_OPTIONS: dict[str, tuple[str, ...]] = {
    "files": ("cert", "chain", "fullchain", "key", "combined", "pfx"),
    "haproxy": ("crt",),
}
#: ProtectHome=true hides these; a config or folder under them needs ProtectHome=read-only
HOME_FOLDERS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))
#: where sudo keeps its timestamps (written even with NOPASSWD)
SUDO_STATE = (PurePosixPath("/run/sudo"), PurePosixPath("/var/lib/sudo"))


def watchdog_seconds(lease_ttl_seconds: float) -> int:
    """WatchdogSec= for a lease TTL: three heartbeats (the daemon beats every TTL/3, at least every 2 s)."""
    beat = max(2.0, lease_ttl_seconds / 3)
    return math.ceil(3 * beat)


@dataclass(frozen=True)
class UnitSpec:
    binary: str
    config_file: PurePosixPath
    data_dir: PurePosixPath
    watchdog_seconds: int
    user: str = "certkeeper"
    writable: tuple[PurePosixPath, ...] = ()
    sudo: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def protect_home(self) -> str:
        paths = (self.config_file, self.data_dir, *self.writable)
        under_home = any(path.is_relative_to(home) for path in paths for home in HOME_FOLDERS)
        return "read-only" if under_home else "true"


def _reload_uses_sudo(options: Mapping[str, Any]) -> bool:
    reload = options.get("reload")
    if isinstance(reload, str):
        words = reload.split()
    elif isinstance(reload, list):
        words = [str(word) for word in reload]
    else:
        return False
    return bool(words) and PurePosixPath(words[0]).name == "sudo"


def written_folders(config: Config) -> list[PurePosixPath]:
    """The folders certkeeper writes to for ``config``: data, key file, SQLite store, bindings."""
    from certkeeper.store.db import sqlite_path

    folders = [PurePosixPath(config.data_dir), PurePosixPath(config.secret_key_file).parent]
    database = sqlite_path(config.store_url)
    if database is not None:
        folders.append(PurePosixPath(database).parent)
    for cert in config.settings.certificates:
        for binding in cert.bindings:
            options = binding.options()
            for name in WRITTEN_FILE_OPTIONS.get(binding.type, ()):
                if options.get(name):
                    folders.append(PurePosixPath(str(options[name])).parent)
    return sorted(set(folders))


def unit_spec(config: Config, *, binary: str, user: str = "certkeeper") -> UnitSpec:
    """What the unit for ``config`` needs (see the module docstring)."""
    sudo = any(_reload_uses_sudo(binding.options()) for cert in config.settings.certificates
               for binding in cert.bindings if binding.type == "files")
    writable = [folder for folder in written_folders(config) if folder != STATE_DIRECTORY]
    if sudo:
        writable.extend(SUDO_STATE)
    notes = []
    config_file = config.locations.config_file if config.locations else config.path
    if config.path is None:
        notes.append(f"{config_file} does not exist yet: no binding is known; generate the unit again once it does")
    return UnitSpec(
        binary=binary, config_file=PurePosixPath(str(config_file)), data_dir=PurePosixPath(config.data_dir),
        watchdog_seconds=watchdog_seconds(config.settings.daemon.lease_ttl_seconds), user=user,
        writable=tuple(writable), sudo=sudo, notes=tuple(notes))


def _value(text: str) -> str:
    """A unit-file value: ``%`` doubled (specifiers, systemd.unit(5)), quoted if it has spaces."""
    text = text.replace("%", "%%")
    if any(char.isspace() or char in "\"'\\" for char in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def render_unit(template: str, spec: UnitSpec) -> str:
    """The unit text: ``@NAME@`` placeholders replaced; a line that is only a placeholder becomes
    zero or more lines."""
    blocks: dict[str, list[str]] = {
        "@NOTES@": [f"# NOTE: {note}" for note in spec.notes],
        "@USER@": [f"User={spec.user}", f"Group={spec.user}"] if spec.user != "root" else
                  ["# runs as root (--user root): it may reload a root-owned nginx directly"],
        "@STATE_DIRECTORY@": (["StateDirectory=certkeeper", "StateDirectoryMode=0700"]
                              if spec.data_dir == STATE_DIRECTORY else []),
        "@READ_WRITE_PATHS@": [f"ReadWritePaths={_value('-' + str(path))}" for path in spec.writable],
    }
    words = {
        "@BIN@": spec.binary,
        "@CONFIG@": _value(f"CERTKEEPER_CONFIG={spec.config_file}"),
        "@DATA_DIR@": _value(f"CERTKEEPER_DATA_DIR={spec.data_dir}"),
        "@CONFIG_FILE@": str(spec.config_file),
        "@WATCHDOG@": f"{spec.watchdog_seconds}s",
        "@NO_NEW_PRIVILEGES@": "false" if spec.sudo else "true",
        "@SERVICE_USER@": spec.user,
        "@PROTECT_HOME@": spec.protect_home,
    }
    out: list[str] = []
    for line in template.splitlines():
        if line.strip() in blocks:
            out.extend(blocks[line.strip()])
            continue
        for key, value in words.items():
            line = line.replace(key, value)
        out.append(line)
    return "\n".join(out) + "\n"
