"""Where certkeeper finds its config file and keeps its data: one store for the service and the admin.

The rule, a pure function of the platform, whether the process is an administrator and the
environment (:func:`resolve`):

- the config file: ``--config``, then ``$CERTKEEPER_CONFIG``, then the default;
- the data folder: ``$CERTKEEPER_DATA_DIR``, then the default;
- the defaults: on Windows always ``%ProgramData%\\certkeeper\\`` (``certkeeper.toml`` and the
  data), whoever runs certkeeper, so the service account and the admin's shell open the same
  store; on Linux as root ``/etc/certkeeper/certkeeper.toml`` and ``/var/lib/certkeeper``, as
  systemd units and the FHS expect; otherwise the per-user folders (``~/.config/certkeeper`` and
  ``~/.local/share/certkeeper`` on Linux), for a user trying certkeeper out.

``%ProgramData%`` is the folder Windows keeps for data shared by all users and services
(FOLDERID_ProgramData; Microsoft Learn, "KNOWNFOLDERID"). It lets every user create folders, so
certkeeper protects its own with an explicit DACL (:mod:`certkeeper.platform.protection`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from certkeeper.platform import CURRENT

APP_NAME = "certkeeper"
CONFIG_NAME = "certkeeper.toml"
CONFIG_ENV = "CERTKEEPER_CONFIG"
DATA_DIR_ENV = "CERTKEEPER_DATA_DIR"

#: Linux, as root
SYSTEM_CONFIG_FILE = PurePosixPath("/etc/certkeeper/certkeeper.toml")
SYSTEM_DATA_DIR = PurePosixPath("/var/lib/certkeeper")
#: Windows, when %ProgramData% is not set (it always is, for services too)
DEFAULT_PROGRAM_DATA = PureWindowsPath("C:/ProgramData")

#: where a setting came from, as ``certkeeper status`` names it
FROM_OPTION = "--config"
FROM_CONFIG_ENV = f"${CONFIG_ENV}"
FROM_DATA_ENV = f"${DATA_DIR_ENV}"
FROM_MACHINE = "machine default"
FROM_USER = "user default"


@dataclass(frozen=True)
class Host:
    """The facts the rule depends on."""

    #: a ``sys.platform`` value: "win32", "linux", "darwin"...
    platform: str
    #: root (effective uid 0) on POSIX; not used on Windows, where the defaults are machine-wide anyway
    admin: bool
    environ: Mapping[str, str]

    def env(self, name: str) -> str | None:
        """A variable's value, None when unset or empty (Windows names ignore case)."""
        if self.platform == "win32":
            wanted = name.upper()
            value = next((v for k, v in self.environ.items() if k.upper() == wanted), None)
        else:
            value = self.environ.get(name)
        return value or None


@dataclass(frozen=True)
class Locations:
    """The config file and data folder in use, and why these."""

    config_file: PurePath
    config_from: str
    data_dir: PurePath
    data_from: str


#: (config folder, data folder) of the user running certkeeper; only asked for when the rule needs them
UserFolders = Callable[[], tuple[PurePath, PurePath]]


def resolve(host: Host, *, explicit_config: str | os.PathLike[str] | None = None,
            user_folders: UserFolders | None = None) -> Locations:
    """Where the config file and the data folder are for ``host`` (see the module docstring)."""
    flavour: type[PurePath] = PureWindowsPath if host.platform == "win32" else PurePosixPath
    if host.platform == "win32":
        root = flavour(host.env("ProgramData") or DEFAULT_PROGRAM_DATA) / APP_NAME
        default_config, default_data, scope = root / CONFIG_NAME, root, FROM_MACHINE
    elif host.platform.startswith("linux") and host.admin:
        default_config, default_data, scope = SYSTEM_CONFIG_FILE, SYSTEM_DATA_DIR, FROM_MACHINE
    else:
        config_dir, data_dir = (user_folders or platformdirs_user_folders)()
        default_config, default_data, scope = flavour(config_dir) / CONFIG_NAME, flavour(data_dir), FROM_USER

    if explicit_config:
        config_file, config_from = flavour(explicit_config), FROM_OPTION
    elif env_config := host.env(CONFIG_ENV):
        config_file, config_from = flavour(env_config), FROM_CONFIG_ENV
    else:
        config_file, config_from = default_config, scope
    if env_data := host.env(DATA_DIR_ENV):
        data_dir_path, data_from = flavour(env_data), FROM_DATA_ENV
    else:
        data_dir_path, data_from = default_data, scope
    return Locations(config_file, config_from, data_dir_path, data_from)


def platformdirs_user_folders() -> tuple[PurePath, PurePath]:
    """The per-user config and data folders of this platform (XDG folders on Linux)."""
    import platformdirs

    return (platformdirs.user_config_path(APP_NAME, appauthor=False),
            platformdirs.user_data_path(APP_NAME, appauthor=False))


def this_host(environ: Mapping[str, str] | None = None) -> Host:
    """The facts of the running process."""
    admin = False
    if sys.platform != "win32":  # os.geteuid is POSIX only
        admin = os.geteuid() == 0
    return Host(CURRENT, admin, os.environ if environ is None else environ)


@dataclass(frozen=True)
class Resolved:
    """:class:`Locations` of the running process, as concrete paths."""

    config_file: Path
    config_from: str
    data_dir: Path
    data_from: str


def current(explicit_config: str | os.PathLike[str] | None = None, *, host: Host | None = None) -> Resolved:
    """Where this process finds its config file and data folder."""
    found = resolve(host or this_host(), explicit_config=explicit_config)
    return Resolved(Path(found.config_file), found.config_from, Path(found.data_dir), found.data_from)
