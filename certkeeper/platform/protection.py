"""Who may open the data folder (the store, ``secret.key``, the logs): nobody but certkeeper's own.

On POSIX the folder is created 0700 and files 0600 (:mod:`certkeeper.atomicfile`). On NTFS a mode
means nothing: a folder created under ``%ProgramData%`` inherits read access for every local user.
So on Windows the data folder gets an explicit DACL, decided here by pure functions:

- full control (FILE_ALL_ACCESS) for ``SYSTEM`` (S-1-5-18), ``BUILTIN\\Administrators``
  (S-1-5-32-544) and the account the service runs as; no other entry;
- every entry inherited by the files and folders inside (OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE);
- protected from inheritance (SE_DACL_PROTECTED), so nothing from ``%ProgramData%`` flows in;
- an owner that is one of those three (the owner of an object may always change its DACL); a
  folder someone else owns is given to Administrators.

Microsoft Learn: "Access Control Lists", "ACE_HEADER" (the inheritance flags), "Well-known SIDs",
"File Security and Access Rights" (FILE_ALL_ACCESS), "SetNamedSecurityInfoW" (which propagates the
inheritable entries to the existing files inside) and "icacls" for the same from a prompt::

    icacls "%ProgramData%\\certkeeper" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F

The Windows calls are behind :class:`AclApi` (:class:`WindowsAcl`, pywin32's ``win32security``
imported on first use); tests drive :func:`protect_folder`, and :class:`WindowsAcl` itself, with
recording fakes. The folder is protected when certkeeper creates
it (:func:`make_private_dir`) and checked, and repaired, each time the daemon starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from certkeeper.atomicfile import make_dirs
from certkeeper.errors import CertkeeperError
from certkeeper.platform import CURRENT

log = logging.getLogger(__name__)

#: well-known SIDs (Microsoft Learn, "Well-known SIDs")
SYSTEM = "S-1-5-18"
LOCAL_SERVICE = "S-1-5-19"
NETWORK_SERVICE = "S-1-5-20"
ADMINISTRATORS = "S-1-5-32-544"
#: the names the Service Control Manager uses for the built-in service accounts
BUILTIN_ACCOUNTS = {"localsystem": SYSTEM, ".\\localsystem": SYSTEM, "nt authority\\system": SYSTEM,
                    "nt authority\\localservice": LOCAL_SERVICE, "nt authority\\local service": LOCAL_SERVICE,
                    "nt authority\\networkservice": NETWORK_SERVICE,
                    "nt authority\\network service": NETWORK_SERVICE}
NAMES = {SYSTEM: "SYSTEM", ADMINISTRATORS: "BUILTIN\\Administrators", "S-1-5-32-545": "BUILTIN\\Users",
         "S-1-1-0": "Everyone", "S-1-5-11": "Authenticated Users", "S-1-3-0": "CREATOR OWNER"}

#: ACE types and flags (Microsoft Learn, "ACE_HEADER")
ACCESS_ALLOWED_ACE_TYPE = 0x0
OBJECT_INHERIT_ACE = 0x1
CONTAINER_INHERIT_ACE = 0x2
INHERITED_ACE = 0x10
#: STANDARD_RIGHTS_REQUIRED | SYNCHRONIZE | 0x1FF: "F" in icacls (Microsoft Learn, "File Security and Access Rights")
FILE_ALL_ACCESS = 0x001F01FF


class FolderProtectionError(CertkeeperError):
    """The data folder cannot be made private (its owner is someone else, or Windows refused)."""


@dataclass(frozen=True)
class Ace:
    """One access control entry: who, what, and how it is inherited."""

    sid: str
    mask: int = FILE_ALL_ACCESS
    flags: int = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE
    kind: int = ACCESS_ALLOWED_ACE_TYPE


@dataclass(frozen=True)
class FolderSecurity:
    """What a folder's security descriptor says: its owner, its DACL, whether that inherits."""

    owner: str
    protected: bool
    aces: tuple[Ace, ...]


def data_folder_dacl(service_sid: str | None) -> tuple[Ace, ...]:
    """The DACL of the data folder: SYSTEM, Administrators and the service account, full control,
    inherited by everything inside; the service account is left out when it is one of the other
    two (LocalSystem) or unknown (no service installed yet)."""
    sids = [SYSTEM, ADMINISTRATORS]
    if service_sid and service_sid not in sids:
        sids.append(service_sid)
    return tuple(Ace(sid) for sid in sids)


def allowed_owners(service_sid: str | None) -> frozenset[str]:
    return frozenset(ace.sid for ace in data_folder_dacl(service_sid))


def name_of(sid: str) -> str:
    return NAMES.get(sid, sid)


def dacl_problems(current: FolderSecurity, wanted: Sequence[Ace]) -> list[str]:
    """What is wrong with ``current`` against ``wanted``, one phrase each; empty when it is right.

    Entries are compared as sets (Windows may order them differently); an entry inherited from the
    parent is a problem (the DACL must be protected)."""
    problems: list[str] = []
    if not current.protected:
        problems.append("it inherits permissions from its parent folder")
    have = set(current.aces)
    for ace in wanted:
        if ace not in have:
            problems.append(f"{name_of(ace.sid)} lacks full control inherited by the files inside")
    wanted_set = set(wanted)
    for ace in current.aces:
        if ace in wanted_set:
            continue
        how = "inherited from the parent" if ace.flags & INHERITED_ACE else "explicit"
        verb = "has" if ace.kind == ACCESS_ALLOWED_ACE_TYPE else f"has an entry of type {ace.kind} for"
        problems.append(f"{name_of(ace.sid)} {verb} access {ace.mask:#x} ({how})")
    return list(dict.fromkeys(problems))


def owner_problem(current: FolderSecurity, service_sid: str | None) -> str | None:
    """Why the folder's owner is a risk, or None. The owner of an object can always rewrite its
    DACL, and ``%ProgramData%`` lets any user create a folder first; such a folder is given to
    Administrators (which an elevated admin may do) along with the DACL."""
    if current.owner in allowed_owners(service_sid):
        return None
    return f"it is owned by {name_of(current.owner)}, who could grant themselves access again"


class AclApi(Protocol):
    """The Windows security calls certkeeper needs (real: :class:`certkeeper.platform.ntfs.WindowsAcl`)."""

    def read(self, path: str) -> FolderSecurity: ...

    def write_protected_dacl(self, path: str, aces: Sequence[Ace], *, owner: str | None = None) -> None:
        """Replace the DACL with ``aces``, protected from inheritance (propagates to the files
        inside); with ``owner``, make that SID the owner too."""
        ...

    def account_sid(self, account: str) -> str:
        """The SID of an account name (``CONTOSO\\svc-certkeeper$``, ``NT AUTHORITY\\SYSTEM``)."""
        ...

    def process_sid(self) -> str:
        """The SID of the user this process runs as."""
        ...


def protect_folder(path: Path, api: AclApi, *, service_sid: str | None) -> list[str]:
    """Give ``path`` the data folder's DACL (and owner) unless it has them already; returns what
    was wrong.

    Raises:
        FolderProtectionError: Windows refused to read or change it (the message says what to do).
    """
    try:
        current = api.read(str(path))
    except OSError as exc:
        raise FolderProtectionError(f"cannot read the permissions of {path}: {exc}") from exc
    wanted = data_folder_dacl(service_sid)
    problems = dacl_problems(current, wanted)
    owner_wrong = owner_problem(current, service_sid)
    if owner_wrong:
        problems.insert(0, owner_wrong)
    if problems:
        try:
            api.write_protected_dacl(str(path), wanted, owner=ADMINISTRATORS if owner_wrong else None)
        except OSError as exc:
            raise FolderProtectionError(
                f"{path} is not safe for secrets ({'; '.join(problems)}) and cannot be fixed from here: {exc}; "
                f'from an elevated prompt: takeown /F "{path}" /A /R, then run certkeeper again') from exc
    return problems


class FolderGuard(Protocol):
    """Makes certkeeper's private folders private, the way this platform does it."""

    def protect(self, path: Path, *, repair: bool, as_service: bool = False) -> list[str]: ...


class PosixGuard:
    """POSIX: :func:`~certkeeper.atomicfile.make_dirs` creates the folder 0700; nothing more to do."""

    def protect(self, path: Path, *, repair: bool, as_service: bool = False) -> list[str]:
        return []


class NtfsGuard:
    """Windows: the data folder's DACL. The service account is the account this process runs as
    when it is the service; otherwise the account the installed service is configured with
    (``configured``, asked only when needed), or none when no service is installed yet."""

    def __init__(self, api: AclApi, configured: Callable[[], str | None]) -> None:
        self.api = api
        self._configured = configured

    def protect(self, path: Path, *, repair: bool, as_service: bool = False) -> list[str]:
        service_sid = self.api.process_sid() if as_service else self._configured()
        problems = protect_folder(path, self.api, service_sid=service_sid)
        if problems and repair:
            log.warning("%s had unsafe permissions, repaired: %s", path, "; ".join(problems))
        return problems


def guard_for(platform: str) -> FolderGuard:
    """The guard of ``platform`` (pywin32 is imported only when a Windows guard is used)."""
    if platform == "win32":
        api = WindowsAcl()
        return NtfsGuard(api, lambda: configured_service_sid(api))
    return PosixGuard()


def make_private_dir(path: Path, *, platform: str = CURRENT, guard: FolderGuard | None = None) -> None:
    """Create ``path`` (0700; on Windows with the data folder's DACL) if it does not exist yet.

    A folder that exists is left as it is here; the daemon checks it at start
    (:func:`check_private_dir`)."""
    existed = path.is_dir()
    make_dirs(path, 0o700)
    if not existed:
        (guard or guard_for(platform)).protect(path, repair=False)


def check_private_dir(path: Path, *, as_service: bool = False, platform: str = CURRENT,
                      guard: FolderGuard | None = None) -> list[str]:
    """At daemon start: make sure ``path`` is private, repairing it (logged) if it is not."""
    make_dirs(path, 0o700)
    return (guard or guard_for(platform)).protect(path, repair=True, as_service=as_service)


def builtin_account_sid(account: str) -> str | None:
    """The SID of a built-in service account name (``LocalSystem``...), None for other accounts."""
    return BUILTIN_ACCOUNTS.get(account.strip().lower())


# -- Windows ----------------------------------------------------------------------------------


def _pywin32(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


class WindowsAcl:
    """:class:`AclApi` with pywin32's ``win32security`` (Microsoft Learn: GetNamedSecurityInfoW,
    SetNamedSecurityInfoW, AddAccessAllowedAceEx, LookupAccountNameW, GetTokenInformation).

    The modules are imported on first use, so this class can be built anywhere; a test passes
    recording fakes for ``security`` (win32security), ``api`` (win32api) and ``error``
    (pywintypes.error)."""

    def __init__(self, security: Any = None, api: Any = None, error: type[Exception] | None = None) -> None:
        self._security = security
        self._api = api
        self._error = error

    def _modules(self) -> tuple[Any, type[Exception]]:
        if self._security is None:
            self._security = _pywin32("win32security")
        if self._error is None:
            self._error = _pywin32("pywintypes").error
        assert self._error is not None
        return self._security, self._error

    def read(self, path: str) -> FolderSecurity:
        security, error = self._modules()
        try:
            descriptor = security.GetNamedSecurityInfo(
                path, security.SE_FILE_OBJECT,
                security.OWNER_SECURITY_INFORMATION | security.DACL_SECURITY_INFORMATION)
            owner = security.ConvertSidToStringSid(descriptor.GetSecurityDescriptorOwner())
            control, _revision = descriptor.GetSecurityDescriptorControl()
            dacl = descriptor.GetSecurityDescriptorDacl()
            entries: list[Ace] = []
            if dacl is None:
                # a NULL DACL grants everyone everything (Microsoft Learn, "Null DACLs and Empty DACLs")
                entries.append(Ace("S-1-1-0", FILE_ALL_ACCESS, 0))
            else:
                for index in range(dacl.GetAceCount()):
                    entry = dacl.GetAce(index)  # ((type, flags), mask, sid); object ACEs carry more
                    (kind, flags), mask, sid = entry[0], entry[1], entry[-1]
                    entries.append(Ace(security.ConvertSidToStringSid(sid), int(mask) & 0xFFFFFFFF, flags, kind))
        except error as exc:
            raise _os_error(exc) from exc
        return FolderSecurity(owner, bool(control & security.SE_DACL_PROTECTED), tuple(entries))

    def write_protected_dacl(self, path: str, aces: Sequence[Ace], *, owner: str | None = None) -> None:
        security, error = self._modules()
        try:
            dacl = security.ACL()
            for ace in aces:
                if ace.kind != ACCESS_ALLOWED_ACE_TYPE:
                    raise ValueError("only access-allowed entries are written")
                dacl.AddAccessAllowedAceEx(security.ACL_REVISION, ace.flags, ace.mask,
                                           security.ConvertStringSidToSid(ace.sid))
            info = security.DACL_SECURITY_INFORMATION | security.PROTECTED_DACL_SECURITY_INFORMATION
            owner_sid = None
            if owner is not None:
                info |= security.OWNER_SECURITY_INFORMATION
                owner_sid = security.ConvertStringSidToSid(owner)
            security.SetNamedSecurityInfo(path, security.SE_FILE_OBJECT, info, owner_sid, None, dacl, None)
        except error as exc:
            raise _os_error(exc) from exc

    def account_sid(self, account: str) -> str:
        builtin = builtin_account_sid(account)
        if builtin:
            return builtin
        security, error = self._modules()
        try:
            sid, _domain, _kind = security.LookupAccountName(None, account)
            return str(security.ConvertSidToStringSid(sid))
        except error as exc:
            raise _os_error(exc) from exc

    def process_sid(self) -> str:
        security, error = self._modules()
        if self._api is None:
            self._api = _pywin32("win32api")
        try:
            token = security.OpenProcessToken(self._api.GetCurrentProcess(), security.TOKEN_QUERY)
            sid, _attributes = security.GetTokenInformation(token, security.TokenUser)
            return str(security.ConvertSidToStringSid(sid))
        except error as exc:
            raise _os_error(exc) from exc


def _os_error(exc: Exception) -> OSError:
    """pywintypes.error (winerror, funcname, strerror) as an OSError with the same code and text."""
    return OSError(getattr(exc, "winerror", 0), f"{getattr(exc, 'funcname', '')}: {getattr(exc, 'strerror', exc)}")


#: the service's name in the Service Control Manager
SERVICE_NAME = "certkeeper"


def configured_account(service: Any = None, error: type[Exception] | None = None,
                       name: str = SERVICE_NAME) -> str | None:
    """The account the installed certkeeper service runs as (QueryServiceConfig's
    lpServiceStartName), or None when it is not installed or cannot be asked."""
    service = service if service is not None else _pywin32("win32service")
    error = error or _pywin32("pywintypes").error
    try:
        manager = service.OpenSCManager(None, None, service.SC_MANAGER_CONNECT)
        try:
            handle = service.OpenService(manager, name, service.SERVICE_QUERY_CONFIG)
            try:
                config = service.QueryServiceConfig(handle)
            finally:
                service.CloseServiceHandle(handle)
        finally:
            service.CloseServiceHandle(manager)
    except error as exc:
        log.debug("no installed %s service to take the account from: %s", name, exc)
        return None
    return str(config[7]) if config[7] else None


def configured_service_sid(api: AclApi, service: Any = None, error: type[Exception] | None = None) -> str | None:
    account = configured_account(service, error)
    if account is None:
        return None
    try:
        return api.account_sid(account)
    except OSError as exc:
        log.warning("the service account %s cannot be looked up (%s): the data folder is kept to SYSTEM "
                    "and Administrators", account, exc)
        return None
