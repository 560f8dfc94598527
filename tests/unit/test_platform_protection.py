"""The data folder's DACL on NTFS: the pure decision, protect_folder through the AclApi seam, and
WindowsAcl itself driven by a recording fake of pywin32's win32security (values from Microsoft Learn)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from certkeeper.platform.protection import (
    ADMINISTRATORS,
    CONTAINER_INHERIT_ACE,
    FILE_ALL_ACCESS,
    INHERITED_ACE,
    OBJECT_INHERIT_ACE,
    SYSTEM,
    Ace,
    FolderProtectionError,
    FolderSecurity,
    NtfsGuard,
    PosixGuard,
    WindowsAcl,
    builtin_account_sid,
    check_private_dir,
    configured_account,
    dacl_problems,
    data_folder_dacl,
    guard_for,
    make_private_dir,
    protect_folder,
)

SERVICE = "S-1-5-21-1004336348-1177238915-682003330-1605"  # a gMSA's SID (made up, domain-shaped)
USERS = "S-1-5-32-545"
CREATOR_OWNER = "S-1-3-0"
ALICE = "S-1-5-21-1004336348-1177238915-682003330-1103"
BOTH = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE
READ_EXECUTE = 0x1200A9

# what a folder created under %ProgramData% inherits (its default ACL, as icacls shows it)
PROGRAM_DATA_CHILD = FolderSecurity(ADMINISTRATORS, False, (
    Ace(SYSTEM, FILE_ALL_ACCESS, BOTH | INHERITED_ACE),
    Ace(ADMINISTRATORS, FILE_ALL_ACCESS, BOTH | INHERITED_ACE),
    Ace(CREATOR_OWNER, 0x10000000, BOTH | 0x8 | INHERITED_ACE),
    Ace(USERS, READ_EXECUTE, BOTH | INHERITED_ACE),
    Ace(USERS, 0x116, CONTAINER_INHERIT_ACE | INHERITED_ACE),
))


def test_the_dacl_is_system_administrators_and_the_service_account_inherited_by_everything_inside() -> None:
    assert data_folder_dacl(None) == (Ace(SYSTEM, FILE_ALL_ACCESS, BOTH), Ace(ADMINISTRATORS, FILE_ALL_ACCESS, BOTH))
    assert data_folder_dacl(SERVICE) == (*data_folder_dacl(None), Ace(SERVICE, FILE_ALL_ACCESS, BOTH))
    assert data_folder_dacl(SYSTEM) == data_folder_dacl(None)  # LocalSystem: no second entry
    assert FILE_ALL_ACCESS == 0x1F01FF and BOTH == 0x3  # "F" and "(OI)(CI)" in icacls


def test_a_folder_fresh_under_program_data_has_every_problem_named() -> None:
    problems = dacl_problems(PROGRAM_DATA_CHILD, data_folder_dacl(SERVICE))
    assert problems[0] == "it inherits permissions from its parent folder"
    assert "BUILTIN\\Users has access 0x1200a9 (inherited from the parent)" in problems
    assert any(p.startswith("CREATOR OWNER has access") for p in problems)
    assert f"{SERVICE} lacks full control inherited by the files inside" in problems
    right = FolderSecurity(ADMINISTRATORS, True, tuple(reversed(data_folder_dacl(SERVICE))))
    assert dacl_problems(right, data_folder_dacl(SERVICE)) == []  # order does not matter
    one_more = FolderSecurity(ADMINISTRATORS, True, (*data_folder_dacl(SERVICE), Ace(ALICE)))
    assert dacl_problems(one_more, data_folder_dacl(SERVICE)) == [f"{ALICE} has access 0x1f01ff (explicit)"]
    not_inherited = FolderSecurity(ADMINISTRATORS, True, (Ace(SYSTEM, flags=0), Ace(ADMINISTRATORS)))
    assert "SYSTEM lacks full control inherited by the files inside" in dacl_problems(not_inherited,
                                                                                        data_folder_dacl(None))


class RecordingAcl:
    """AclApi over an in-memory table of folders; records every write."""

    def __init__(self, folders: dict[str, FolderSecurity], process: str = SERVICE) -> None:
        self.folders = folders
        self.writes: list[tuple[str, tuple[Ace, ...]]] = []
        self.owners: list[str | None] = []
        self.process = process
        self.refuse = False

    def read(self, path: str) -> FolderSecurity:
        if path not in self.folders:
            raise FileNotFoundError(2, "The system cannot find the file specified", path)
        return self.folders[path]

    def write_protected_dacl(self, path: str, aces: Any, *, owner: str | None = None) -> None:
        if self.refuse:
            raise PermissionError(5, "Access is denied")
        self.writes.append((path, tuple(aces)))
        self.owners.append(owner)
        self.folders[path] = FolderSecurity(owner or self.folders[path].owner, True, tuple(aces))

    def account_sid(self, account: str) -> str:
        return {"CONTOSO\\svc-certkeeper$": SERVICE}[account]

    def process_sid(self) -> str:
        return self.process


def test_protect_folder_writes_once_then_finds_it_right() -> None:
    api = RecordingAcl({"C:\\ProgramData\\certkeeper": PROGRAM_DATA_CHILD})
    problems = protect_folder(Path("C:\\ProgramData\\certkeeper"), api, service_sid=SERVICE)
    assert problems and api.writes == [("C:\\ProgramData\\certkeeper", data_folder_dacl(SERVICE))]
    assert protect_folder(Path("C:\\ProgramData\\certkeeper"), api, service_sid=SERVICE) == []
    assert len(api.writes) == 1


def test_a_folder_someone_else_created_first_is_given_to_administrators() -> None:
    # %ProgramData% lets any user create a folder; its owner could always rewrite the DACL
    squatted = FolderSecurity(ALICE, True, data_folder_dacl(SERVICE))
    api = RecordingAcl({"d": squatted})
    problems = protect_folder(Path("d"), api, service_sid=SERVICE)
    assert problems == [f"it is owned by {ALICE}, who could grant themselves access again"]
    assert api.owners == [ADMINISTRATORS] and api.folders["d"].owner == ADMINISTRATORS
    for owner in (SYSTEM, ADMINISTRATORS, SERVICE):  # these may own it
        api = RecordingAcl({"d": FolderSecurity(owner, False, ())})
        protect_folder(Path("d"), api, service_sid=SERVICE)
        assert api.owners == [None]
    api = RecordingAcl({"d": squatted})
    api.refuse = True  # the service account may not take ownership: an admin must
    with pytest.raises(FolderProtectionError, match=r'owned by S-1-5-21-.*-1103.*Access is denied.*takeown /F "d" /A'):
        protect_folder(Path("d"), api, service_sid=SERVICE)


def test_unreadable_folder_is_a_certkeeper_error() -> None:
    with pytest.raises(FolderProtectionError, match="cannot read the permissions"):
        protect_folder(Path("missing"), RecordingAcl({}), service_sid=None)


def test_the_guard_uses_the_process_account_as_the_service_and_the_configured_one_otherwise(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="certkeeper.platform.protection")
    asked: list[str] = []

    def configured() -> str | None:
        asked.append("scm")
        return None

    api = RecordingAcl({"d": FolderSecurity(ADMINISTRATORS, False, ())}, process=SERVICE)
    guard = NtfsGuard(api, configured)
    assert guard.protect(Path("d"), repair=True, as_service=True)
    assert api.writes[-1][1] == data_folder_dacl(SERVICE) and asked == []
    assert "had unsafe permissions, repaired" in caplog.text
    guard.protect(Path("d"), repair=False)
    assert asked == ["scm"] and api.writes[-1][1] == data_folder_dacl(None)


class RecordingGuard:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, bool, bool]] = []

    def protect(self, path: Path, *, repair: bool, as_service: bool = False) -> list[str]:
        self.calls.append((path, repair, as_service))
        return []


def test_a_private_dir_is_protected_when_created_and_checked_at_daemon_start(tmp_path: Path) -> None:
    guard = RecordingGuard()
    folder = tmp_path / "ProgramData" / "certkeeper"
    make_private_dir(folder, guard=guard)
    assert folder.is_dir() and guard.calls == [(folder, False, False)]
    make_private_dir(folder, guard=guard)  # exists: left alone
    assert len(guard.calls) == 1
    check_private_dir(folder, as_service=True, guard=guard)
    assert guard.calls[-1] == (folder, True, True)


def test_the_guard_is_chosen_by_platform_and_pywin32_is_not_imported_to_build_it() -> None:
    assert isinstance(guard_for("linux"), PosixGuard)
    assert isinstance(guard_for("win32"), NtfsGuard)
    assert "win32security" not in sys.modules
    assert PosixGuard().protect(Path("/nowhere"), repair=True) == []


def test_builtin_service_accounts() -> None:
    assert builtin_account_sid("LocalSystem") == SYSTEM
    assert builtin_account_sid("NT AUTHORITY\\NetworkService") == "S-1-5-20"
    assert builtin_account_sid("nt authority\\local service") == "S-1-5-19"
    assert builtin_account_sid("CONTOSO\\svc-certkeeper$") is None


# -- WindowsAcl against a recording fake of win32security ---------------------------------------


class FakeError(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


class FakeSid:
    def __init__(self, text: str) -> None:
        self.text = text


class FakeAcl:
    def __init__(self, entries: list[Any] | None = None) -> None:
        self.entries = entries or []

    def AddAccessAllowedAceEx(self, revision: int, flags: int, mask: int, sid: FakeSid) -> None:
        assert revision == FakeSecurity.ACL_REVISION
        self.entries.append(((0, flags), mask, sid))

    def GetAceCount(self) -> int:
        return len(self.entries)

    def GetAce(self, index: int) -> Any:
        return self.entries[index]


class FakeDescriptor:
    def __init__(self, owner: str, control: int, dacl: FakeAcl | None) -> None:
        self.owner, self.control, self.dacl = owner, control, dacl

    def GetSecurityDescriptorOwner(self) -> FakeSid:
        return FakeSid(self.owner)

    def GetSecurityDescriptorControl(self) -> tuple[int, int]:
        return self.control, 1

    def GetSecurityDescriptorDacl(self) -> FakeAcl | None:
        return self.dacl


class FakeSecurity:
    """The part of win32security WindowsAcl uses, with Windows' constant values."""

    SE_FILE_OBJECT = 1
    OWNER_SECURITY_INFORMATION = 0x1
    DACL_SECURITY_INFORMATION = 0x4
    PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
    SE_DACL_PROTECTED = 0x1000
    ACL_REVISION = 2
    TOKEN_QUERY = 0x8
    TokenUser = 1

    def __init__(self, descriptors: dict[str, FakeDescriptor]) -> None:
        self.descriptors = descriptors
        self.calls: list[tuple[Any, ...]] = []

    def GetNamedSecurityInfo(self, path: str, kind: int, info: int) -> FakeDescriptor:
        self.calls.append(("GetNamedSecurityInfo", path, kind, info))
        if path not in self.descriptors:
            raise FakeError(2, "GetNamedSecurityInfo", "The system cannot find the file specified.")
        return self.descriptors[path]

    def SetNamedSecurityInfo(self, path: str, kind: int, info: int, owner: Any, group: Any, dacl: FakeAcl,
                             sacl: Any) -> None:
        self.calls.append(("SetNamedSecurityInfo", path, kind, info, owner, group, sacl))
        new_owner = owner.text if owner is not None else self.descriptors[path].owner
        self.descriptors[path] = FakeDescriptor(new_owner, self.SE_DACL_PROTECTED, dacl)

    def ACL(self) -> FakeAcl:
        return FakeAcl()

    def ConvertSidToStringSid(self, sid: FakeSid) -> str:
        return sid.text

    def ConvertStringSidToSid(self, text: str) -> FakeSid:
        return FakeSid(text)

    def LookupAccountName(self, system: None, name: str) -> tuple[FakeSid, str, int]:
        if name != "CONTOSO\\svc-certkeeper$":
            raise FakeError(1332, "LookupAccountName", "No mapping between account names and security IDs was done.")
        return FakeSid(SERVICE), "CONTOSO", 1

    def OpenProcessToken(self, process: str, access: int) -> str:
        assert (process, access) == ("current process", self.TOKEN_QUERY)
        return "token"

    def GetTokenInformation(self, token: str, kind: int) -> tuple[FakeSid, int]:
        assert (token, kind) == ("token", self.TokenUser)
        return FakeSid(ALICE), 0


class FakeApi:
    def GetCurrentProcess(self) -> str:
        return "current process"


def test_windows_acl_reads_writes_and_looks_up_through_win32security() -> None:
    inherited = FakeAcl([((0, BOTH | INHERITED_ACE), FILE_ALL_ACCESS, FakeSid(SYSTEM)),
                         ((0, BOTH | INHERITED_ACE), -1610612736, FakeSid(USERS)),  # GENERIC_READ|EXECUTE, signed
                         ((5, BOTH), 0x1, "object guid", FakeSid(ALICE))])  # an object ACE: SID last
    security = FakeSecurity({"C:\\ProgramData\\certkeeper": FakeDescriptor(ADMINISTRATORS, 0x8004, inherited)})
    acl = WindowsAcl(security=security, api=FakeApi(), error=FakeError)
    read = acl.read("C:\\ProgramData\\certkeeper")
    assert read == FolderSecurity(ADMINISTRATORS, False, (
        Ace(SYSTEM, FILE_ALL_ACCESS, BOTH | INHERITED_ACE), Ace(USERS, 0xA0000000, BOTH | INHERITED_ACE),
        Ace(ALICE, 0x1, BOTH, 5)))
    assert security.calls[0] == ("GetNamedSecurityInfo", "C:\\ProgramData\\certkeeper", 1, 0x1 | 0x4)

    problems = protect_folder(Path("C:\\ProgramData\\certkeeper"), acl, service_sid=acl.account_sid(
        "CONTOSO\\svc-certkeeper$"))
    assert problems
    assert security.calls[-1] == ("SetNamedSecurityInfo", "C:\\ProgramData\\certkeeper", 1,
                                  0x4 | 0x80000000, None, None, None)
    acl.write_protected_dacl("C:\\ProgramData\\certkeeper", data_folder_dacl(SERVICE), owner=ADMINISTRATORS)
    call = security.calls[-1]
    assert call[3] == 0x4 | 0x80000000 | 0x1 and call[4].text == ADMINISTRATORS
    written = security.descriptors["C:\\ProgramData\\certkeeper"].dacl
    assert written is not None
    assert [(flags, mask, sid.text) for (_kind, flags), mask, sid in written.entries] == [
        (BOTH, FILE_ALL_ACCESS, SYSTEM), (BOTH, FILE_ALL_ACCESS, ADMINISTRATORS), (BOTH, FILE_ALL_ACCESS, SERVICE)]
    assert acl.read("C:\\ProgramData\\certkeeper").protected
    assert protect_folder(Path("C:\\ProgramData\\certkeeper"), acl, service_sid=SERVICE) == []

    assert acl.process_sid() == ALICE
    assert acl.account_sid("LocalSystem") == SYSTEM  # never asked of LookupAccountName
    with pytest.raises(OSError, match="LookupAccountName: No mapping") as raised:
        acl.account_sid("CONTOSO\\nobody")
    assert raised.value.errno == 1332
    with pytest.raises(OSError, match="cannot find"):
        acl.read("C:\\nowhere")


def test_a_null_dacl_reads_as_everyone_full_control() -> None:
    security = FakeSecurity({"d": FakeDescriptor(ADMINISTRATORS, 0, None)})
    read = WindowsAcl(security=security, error=FakeError).read("d")
    assert read.aces == (Ace("S-1-1-0", FILE_ALL_ACCESS, 0),)
    assert "Everyone has access 0x1f01ff (explicit)" in dacl_problems(read, data_folder_dacl(None))


class FakeService:
    SC_MANAGER_CONNECT = 0x1
    SERVICE_QUERY_CONFIG = 0x1

    def __init__(self, account: str | None) -> None:
        self.account = account
        self.closed: list[str] = []

    def OpenSCManager(self, machine: None, database: None, access: int) -> str:
        return "manager"

    def OpenService(self, manager: str, name: str, access: int) -> str:
        if self.account is None:
            raise FakeError(1060, "OpenService", "The specified service does not exist as an installed service.")
        assert name == "certkeeper"
        return "service"

    def QueryServiceConfig(self, handle: str) -> tuple[Any, ...]:
        return (16, 2, 1, '"python.exe" -m certkeeper service run', "", 0, [], self.account, "certkeeper")

    def CloseServiceHandle(self, handle: str) -> None:
        self.closed.append(handle)


def test_the_configured_account_comes_from_the_service_control_manager() -> None:
    service = FakeService("CONTOSO\\svc-certkeeper$")
    assert configured_account(service, FakeError) == "CONTOSO\\svc-certkeeper$"
    assert service.closed == ["service", "manager"]
    assert configured_account(FakeService(None), FakeError) is None
