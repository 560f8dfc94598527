"""Where the config file and the data folder are: every branch of the rule, the platform passed in."""

from __future__ import annotations

from pathlib import PurePath, PurePosixPath, PureWindowsPath

import pytest

from certkeeper.platform.locations import (
    FROM_CONFIG_ENV,
    FROM_DATA_ENV,
    FROM_MACHINE,
    FROM_OPTION,
    FROM_USER,
    Host,
    resolve,
)

USER_CONFIG = PurePosixPath("/home/alice/.config/certkeeper")
USER_DATA = PurePosixPath("/home/alice/.local/share/certkeeper")


class UserFolders:
    """Records whether the per-user folders were asked for (they must not be, for machine defaults)."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self) -> tuple[PurePath, PurePath]:
        self.asked += 1
        return USER_CONFIG, USER_DATA


WINDOWS = {"ProgramData": "C:\\ProgramData", "USERPROFILE": "C:\\Users\\alice"}


@pytest.mark.parametrize("admin", [True, False])
def test_windows_always_uses_program_data_whoever_runs_it(admin: bool) -> None:
    folders = UserFolders()
    found = resolve(Host("win32", admin, WINDOWS), user_folders=folders)
    assert found.config_file == PureWindowsPath(r"C:\ProgramData\certkeeper\certkeeper.toml")
    assert found.data_dir == PureWindowsPath(r"C:\ProgramData\certkeeper")
    assert (found.config_from, found.data_from) == (FROM_MACHINE, FROM_MACHINE)
    assert folders.asked == 0


def test_windows_program_data_elsewhere_and_names_in_any_case() -> None:
    # Windows variable names ignore case (os.environ upper-cases them there)
    found = resolve(Host("win32", False, {"PROGRAMDATA": "D:\\Shared"}), user_folders=UserFolders())
    assert found.data_dir == PureWindowsPath(r"D:\Shared\certkeeper")
    env = {"programdata": "D:\\Shared", "certkeeper_data_dir": "E:\\ck", "Certkeeper_Config": "E:\\ck.toml"}
    found = resolve(Host("win32", False, env), user_folders=UserFolders())
    assert found.data_dir == PureWindowsPath(r"E:\ck") and found.config_file == PureWindowsPath(r"E:\ck.toml")


def test_windows_without_program_data_falls_back_to_the_usual_folder() -> None:
    found = resolve(Host("win32", True, {}), user_folders=UserFolders())
    assert found.data_dir == PureWindowsPath(r"C:\ProgramData\certkeeper")


def test_linux_as_root_uses_etc_and_var_lib() -> None:
    folders = UserFolders()
    found = resolve(Host("linux", True, {"HOME": "/root"}), user_folders=folders)
    assert found.config_file == PurePosixPath("/etc/certkeeper/certkeeper.toml")
    assert found.data_dir == PurePosixPath("/var/lib/certkeeper")
    assert (found.config_from, found.data_from) == (FROM_MACHINE, FROM_MACHINE)
    assert folders.asked == 0


@pytest.mark.parametrize(("platform", "admin"), [("linux", False), ("darwin", False), ("darwin", True),
                                                 ("freebsd14", True)])
def test_otherwise_the_per_user_folders(platform: str, admin: bool) -> None:
    folders = UserFolders()
    found = resolve(Host(platform, admin, {"HOME": "/home/alice"}), user_folders=folders)
    assert found.config_file == USER_CONFIG / "certkeeper.toml"
    assert found.data_dir == USER_DATA
    assert (found.config_from, found.data_from) == (FROM_USER, FROM_USER)
    assert folders.asked == 1


@pytest.mark.parametrize(("platform", "admin"), [("win32", True), ("linux", True), ("linux", False)])
def test_the_option_and_the_environment_win_everywhere(platform: str, admin: bool) -> None:
    env = {"CERTKEEPER_CONFIG": "/srv/ck/ck.toml", "CERTKEEPER_DATA_DIR": "/srv/ck/data"}
    found = resolve(Host(platform, admin, env), user_folders=UserFolders())
    assert (str(found.config_file).replace("\\", "/"), found.config_from) == ("/srv/ck/ck.toml", FROM_CONFIG_ENV)
    assert (str(found.data_dir).replace("\\", "/"), found.data_from) == ("/srv/ck/data", FROM_DATA_ENV)
    found = resolve(Host(platform, admin, env), explicit_config="/opt/other.toml", user_folders=UserFolders())
    assert (str(found.config_file).replace("\\", "/"), found.config_from) == ("/opt/other.toml", FROM_OPTION)
    assert found.data_from == FROM_DATA_ENV  # --config names a file only


def test_an_empty_variable_counts_as_unset() -> None:
    found = resolve(Host("linux", True, {"CERTKEEPER_CONFIG": "", "CERTKEEPER_DATA_DIR": ""}),
                    user_folders=UserFolders())
    assert found.config_file == PurePosixPath("/etc/certkeeper/certkeeper.toml")
    assert found.data_dir == PurePosixPath("/var/lib/certkeeper")


def test_linux_variable_names_are_case_sensitive() -> None:
    found = resolve(Host("linux", True, {"certkeeper_data_dir": "/elsewhere"}), user_folders=UserFolders())
    assert found.data_dir == PurePosixPath("/var/lib/certkeeper")
