"""The native Windows service: what ``certkeeper service install`` registers, and how it starts and stops.

Registered with the Service Control Manager through pywin32's ``win32serviceutil`` /
``win32service`` (Microsoft Learn: CreateServiceW, ChangeServiceConfig2W):

- automatic start, delayed (SERVICE_CONFIG_DELAYED_AUTO_START_INFO): it starts after the services
  Windows needs at boot, the network included;
- restart on failure (SERVICE_CONFIG_FAILURE_ACTIONS): after 30 s, 60 s, then every 5 minutes
  (the SCM repeats the last action), the count reset after a day without failure; and
  SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, so a stop with a non-zero exit code counts as a failure,
  not only a crash (Microsoft Learn, "SERVICE_FAILURE_ACTIONS_FLAG");
- the account: LocalSystem by default, or ``--account``: a group managed service account
  (``CONTOSO\\svc-certkeeper$``, no password) or a named account (password asked for). It is
  granted "Log on as a service" (SeServiceLogonRight, LsaAddAccountRights), which CreateService
  does not grant, and full control of the data folder (:mod:`.protection`);
- the command line: this venv's ``python.exe -m certkeeper --config <file> service run``, which
  hands the process to the SCM (servicemanager.StartServiceCtrlDispatcher) in
  :mod:`.winservice_scm`;
- the Event Log source ``certkeeper`` (:mod:`.eventlog`).

The start/stop logic is :class:`ServiceRunner`, which the SCM glue delegates to and Linux tests
drive: a stop from the SCM is :meth:`Daemon.stop`, the same clean stop as SIGTERM; a daemon that
cannot start, or stops with a non-zero code, ends the service with an error so the recovery
actions run. The SCM calls are behind :class:`ServiceControl` (:class:`Win32ServiceControl` with
pywin32, imported on first use; a recording fake in tests).
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from certkeeper.errors import CertkeeperError
from certkeeper.platform.protection import SERVICE_NAME, builtin_account_sid

log = logging.getLogger(__name__)

DISPLAY_NAME = "certkeeper"
DESCRIPTION = "Keeps the Exchange Outlook Anywhere certificates alive: issues, binds, verifies, renews, alerts."
#: SC_ACTION_TYPE values (Microsoft Learn, "SC_ACTION")
SC_ACTION_RESTART = 1
#: milliseconds before each restart; the SCM repeats the last one for further failures
RESTART_DELAYS_MS = (30_000, 60_000, 300_000)
#: seconds without a failure after which the failure count starts again
RESET_PERIOD_SECONDS = 24 * 3600
#: how long ``service stop`` waits for the running step to finish (the systemd unit's TimeoutStopSec)
STOP_WAIT_SECONDS = 120
#: "Log on as a service" (Microsoft Learn, "Log on as a service")
LOGON_RIGHT = "SeServiceLogonRight"


class WindowsServiceError(CertkeeperError):
    """The Service Control Manager refused (the message says which step and why)."""


@dataclass(frozen=True)
class FailureActions:
    reset_period_seconds: int
    #: (SC_ACTION_TYPE, delay in ms) per failure
    actions: tuple[tuple[int, int], ...]
    #: also for a stop with a non-zero exit code (SERVICE_CONFIG_FAILURE_ACTIONS_FLAG)
    on_non_crash_failures: bool = True


def failure_actions() -> FailureActions:
    return FailureActions(RESET_PERIOD_SECONDS, tuple((SC_ACTION_RESTART, delay) for delay in RESTART_DELAYS_MS))


@dataclass(frozen=True)
class ServiceSpec:
    """Everything ``install`` registers."""

    name: str
    display_name: str
    description: str
    executable: str
    arguments: str
    #: None: LocalSystem
    account: str | None
    password: str | None
    delayed_start: bool
    failure: FailureActions

    @property
    def command_line(self) -> str:
        return subprocess.list2cmdline([self.executable]) + " " + self.arguments


def is_managed_service_account(account: str) -> bool:
    """A (group) managed service account: its name ends with ``$`` and Windows keeps its password."""
    return account.rstrip().endswith("$")


def needs_password(account: str | None) -> bool:
    """Whether the SCM needs a password for ``account``: not for LocalSystem and the other built-in
    accounts, virtual accounts (``NT SERVICE\\...``) and managed service accounts."""
    if account is None or builtin_account_sid(account) or is_managed_service_account(account):
        return False
    return not account.strip().lower().startswith("nt service\\")


def needs_logon_right(account: str | None) -> bool:
    """Whether ``account`` must be granted "Log on as a service" (built-in accounts have it)."""
    return account is not None and builtin_account_sid(account) is None


def service_arguments(config_file: str, data_dir: str | None) -> list[str]:
    """The arguments after the interpreter: the config file (and data folder, when set by
    ``$CERTKEEPER_DATA_DIR`` at install) are written into the command line, so the service opens
    the store the installing admin opened, whatever its environment."""
    arguments = ["-m", "certkeeper", "--config", config_file, "service", "run"]
    if data_dir:
        arguments += ["--data-dir", data_dir]
    return arguments


def service_spec(*, python: str, config_file: str, data_dir: str | None = None, account: str | None = None,
                 password: str | None = None) -> ServiceSpec:
    """The service ``certkeeper service install`` registers (see the module docstring)."""
    if needs_password(account) and not password:
        raise WindowsServiceError(f"the account {account} needs its password (a gMSA, name ending with $, does not)")
    return ServiceSpec(
        name=SERVICE_NAME, display_name=DISPLAY_NAME, description=DESCRIPTION, executable=python,
        arguments=subprocess.list2cmdline(service_arguments(config_file, data_dir)),
        account=account, password=password if needs_password(account) else None, delayed_start=True,
        failure=failure_actions())


@dataclass(frozen=True)
class ServiceStatus:
    state: str
    account: str | None
    command_line: str | None
    pid: int | None = None


class ServiceControl(Protocol):
    """The Service Control Manager calls certkeeper makes (real: :class:`Win32ServiceControl`)."""

    def create(self, spec: ServiceSpec) -> None: ...

    def grant_logon_right(self, account: str) -> None: ...

    def register_event_source(self) -> None: ...

    def delete(self, name: str) -> None: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, wait_seconds: int) -> None: ...

    def query(self, name: str) -> ServiceStatus | None: ...


def install(control: ServiceControl, spec: ServiceSpec, *, protect_data: Callable[[str | None], object]) -> list[str]:
    """Register the service, grant its account what it needs, protect the data folder for it.

    ``protect_data`` is given the account and gives the data folder its DACL with that account in
    it. Returns the steps done, in order, for the CLI to print."""
    if control.query(spec.name) is not None:
        raise WindowsServiceError(f"the {spec.name} service is installed already: "
                                  "certkeeper service uninstall first to change it")
    done = []
    control.create(spec)
    done.append(f"registered the {spec.name} service: automatic (delayed) start, restart on failure "
                f"after {', '.join(f'{ms // 1000} s' for _t, ms in spec.failure.actions)}")
    if needs_logon_right(spec.account):
        assert spec.account is not None
        control.grant_logon_right(spec.account)
        done.append(f"granted {spec.account} 'Log on as a service'")
    control.register_event_source()
    done.append(f"registered the Event Log source {spec.name} (Application log)")
    protect_data(spec.account)
    done.append(f"gave SYSTEM, Administrators and {spec.account or 'LocalSystem'} full control of the data folder")
    return done


def uninstall(control: ServiceControl, name: str = SERVICE_NAME) -> None:
    status = control.query(name)
    if status is None:
        raise WindowsServiceError(f"no {name} service is installed")
    if status.state != ServiceState.STOPPED:
        control.stop(name, STOP_WAIT_SECONDS)
    control.delete(name)


class ServiceState(StrEnum):
    START_PENDING = "start pending"
    RUNNING = "running"
    STOP_PENDING = "stop pending"
    STOPPED = "stopped"


class RunnableDaemon(Protocol):
    def run(self, *, handle_signals: bool = True) -> int: ...

    def stop(self) -> None: ...


class ServiceRunner:
    """The service's start and stop, without the SCM: :mod:`.winservice_scm` calls :meth:`run` from
    ServiceMain and :meth:`stop` from the control handler, and reports the states it is given."""

    def __init__(self, make_daemon: Callable[[], RunnableDaemon], report: Callable[[ServiceState], None]) -> None:
        self._make_daemon = make_daemon
        self._report = report
        self._lock = threading.Lock()
        self._daemon: RunnableDaemon | None = None
        self._stop_requested = False

    def run(self) -> int:
        """Start the daemon and run it until stopped; the exit code (non-zero: recovery runs)."""
        self._report(ServiceState.START_PENDING)
        try:
            daemon = self._make_daemon()
        except CertkeeperError as exc:
            log.error("the service cannot start: %s", exc)
            return 1
        except Exception:
            log.exception("the service cannot start")
            return 1
        with self._lock:
            self._daemon = daemon
            stop_now = self._stop_requested
        if stop_now:  # a stop came while starting
            daemon.stop()
        self._report(ServiceState.RUNNING)
        try:
            code = daemon.run(handle_signals=False)  # not the main thread: the SCM owns that
        except CertkeeperError as exc:
            log.error("the service stopped: %s", exc)
            code = 1
        except Exception:
            log.exception("the service stopped on an unexpected error")
            code = 1
        self._report(ServiceState.STOP_PENDING)
        return code

    def stop(self) -> None:
        """The SCM's stop (and shutdown) control: the same clean stop as SIGTERM."""
        self._report(ServiceState.STOP_PENDING)
        with self._lock:
            self._stop_requested = True
            daemon = self._daemon
        if daemon is not None:
            daemon.stop()


# -- pywin32 ----------------------------------------------------------------------------------


def _pywin32(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


class Win32ServiceControl:
    """:class:`ServiceControl` with pywin32. ``serviceutil`` (win32serviceutil), ``service``
    (win32service), ``security`` (win32security), ``eventlog`` (:mod:`.eventlog`'s register
    function's modules) and ``error`` (pywintypes.error) are imported on first use."""

    def __init__(self, *, serviceutil: Any = None, service: Any = None, security: Any = None,
                 evtlogutil: Any = None, evtlog: Any = None, error: type[Exception] | None = None) -> None:
        self.serviceutil = serviceutil or _pywin32("win32serviceutil")
        self.service = service or _pywin32("win32service")
        self.security = security or _pywin32("win32security")
        self.evtlogutil = evtlogutil or _pywin32("win32evtlogutil")
        self.evtlog = evtlog or _pywin32("win32evtlog")
        self.error: type[Exception] = error or _pywin32("pywintypes").error

    def _fail(self, step: str, exc: Exception) -> WindowsServiceError:
        return WindowsServiceError(f"{step}: {getattr(exc, 'strerror', exc)} (run from an elevated prompt)")

    def create(self, spec: ServiceSpec) -> None:
        svc = self.service
        try:
            # no Python class string: the process registers its own class (servicemanager.PrepareToHostSingle)
            self.serviceutil.InstallService(
                None, spec.name, spec.display_name, startType=svc.SERVICE_AUTO_START,
                userName=spec.account, password=spec.password, exeName=spec.executable, exeArgs=spec.arguments,
                description=spec.description, delayedstart=spec.delayed_start)
            manager = svc.OpenSCManager(None, None, svc.SC_MANAGER_ALL_ACCESS)
            try:
                handle = svc.OpenService(manager, spec.name, svc.SERVICE_ALL_ACCESS)
                try:
                    svc.ChangeServiceConfig2(handle, svc.SERVICE_CONFIG_FAILURE_ACTIONS, {
                        "ResetPeriod": spec.failure.reset_period_seconds, "RebootMsg": None, "Command": None,
                        "Actions": list(spec.failure.actions)})
                    svc.ChangeServiceConfig2(handle, svc.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG,
                                             spec.failure.on_non_crash_failures)
                finally:
                    svc.CloseServiceHandle(handle)
            finally:
                svc.CloseServiceHandle(manager)
        except self.error as exc:
            raise self._fail("registering the service", exc) from exc

    def grant_logon_right(self, account: str) -> None:
        sec = self.security
        try:
            sid = sec.LookupAccountName(None, account)[0]
            policy = sec.LsaOpenPolicy(None, sec.POLICY_ALL_ACCESS)
            try:
                sec.LsaAddAccountRights(policy, sid, (LOGON_RIGHT,))
            finally:
                sec.LsaClose(policy)
        except self.error as exc:
            raise self._fail(f"granting {account} 'Log on as a service'", exc) from exc

    def register_event_source(self) -> None:
        from certkeeper.platform.eventlog import register_source

        try:
            register_source(evtlogutil=self.evtlogutil, evtlog=self.evtlog)
        except self.error as exc:
            raise self._fail("registering the Event Log source", exc) from exc

    def delete(self, name: str) -> None:
        try:
            self.serviceutil.RemoveService(name)  # also removes the Event Log source of that name
        except self.error as exc:
            raise self._fail("removing the service", exc) from exc

    def start(self, name: str) -> None:
        try:
            self.serviceutil.StartService(name)
        except self.error as exc:
            raise self._fail("starting the service", exc) from exc

    def stop(self, name: str, wait_seconds: int) -> None:
        try:
            self.serviceutil.StopService(name)
            self.serviceutil.WaitForServiceStatus(name, self.service.SERVICE_STOPPED, wait_seconds)
        except self.error as exc:
            raise self._fail("stopping the service", exc) from exc

    def query(self, name: str) -> ServiceStatus | None:
        svc = self.service
        states = {svc.SERVICE_STOPPED: ServiceState.STOPPED, svc.SERVICE_START_PENDING: ServiceState.START_PENDING,
                  svc.SERVICE_STOP_PENDING: ServiceState.STOP_PENDING, svc.SERVICE_RUNNING: ServiceState.RUNNING}
        try:
            manager = svc.OpenSCManager(None, None, svc.SC_MANAGER_CONNECT)
        except self.error as exc:
            raise self._fail("asking the Service Control Manager", exc) from exc
        try:
            try:
                handle = svc.OpenService(manager, name, svc.SERVICE_QUERY_CONFIG | svc.SERVICE_QUERY_STATUS)
            except self.error:
                return None  # not installed
            try:
                status = svc.QueryServiceStatusEx(handle)
                config = svc.QueryServiceConfig(handle)
            finally:
                svc.CloseServiceHandle(handle)
        finally:
            svc.CloseServiceHandle(manager)
        state = states.get(status["CurrentState"], f"state {status['CurrentState']}")
        return ServiceStatus(str(state), config[7] or None, config[3] or None, status.get("ProcessId") or None)


def describe(status: ServiceStatus | None) -> Sequence[str]:
    """``certkeeper service status`` as lines."""
    if status is None:
        return ["not installed (certkeeper service install)"]
    lines = [f"state: {status.state}" + (f" (pid {status.pid})" if status.pid else ""),
             f"account: {status.account or 'LocalSystem'}"]
    if status.command_line:
        lines.append(f"command: {status.command_line}")
    return lines
