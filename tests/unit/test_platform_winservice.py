"""The Windows service without Windows: the install plan, recovery actions, the ServiceRunner driving
a real Daemon from another thread (as the SCM's ServiceMain does), Win32ServiceControl and the
Event Log handler over recording fakes of pywin32, stop signals per platform, and the CLI on Linux."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from certkeeper.config import parse
from certkeeper.errors import CertkeeperError, ConfigError
from certkeeper.platform.eventlog import (
    EVENTLOG_ERROR_TYPE,
    EVENTLOG_INFORMATION_TYPE,
    EVENTLOG_WARNING_TYPE,
    EventLogHandler,
    event,
    register_source,
)
from certkeeper.platform.signals import stop_signal_names, stop_signals
from certkeeper.platform.winservice import (
    SC_ACTION_RESTART,
    ServiceRunner,
    ServiceSpec,
    ServiceState,
    ServiceStatus,
    Win32ServiceControl,
    WindowsServiceError,
    describe,
    failure_actions,
    install,
    needs_logon_right,
    needs_password,
    service_spec,
    uninstall,
)
from tests.fixtures.core import run_cli

PYTHON = r"C:\Program Files\certkeeper\venv\Scripts\python.exe"
CONFIG = r"C:\ProgramData\certkeeper\certkeeper.toml"
GMSA = "CONTOSO\\svc-certkeeper$"


def test_the_service_command_line_quotes_the_interpreter_and_names_the_config() -> None:
    spec = service_spec(python=PYTHON, config_file=CONFIG, account=GMSA)
    assert spec.command_line == (r'"C:\Program Files\certkeeper\venv\Scripts\python.exe" -m certkeeper --config '
                                 r"C:\ProgramData\certkeeper\certkeeper.toml service run")
    assert spec.password is None and spec.delayed_start and spec.name == "certkeeper"
    elsewhere = service_spec(python=PYTHON, config_file=r"D:\ck config\ck.toml", data_dir=r"D:\ck data")
    assert elsewhere.arguments == r'-m certkeeper --config "D:\ck config\ck.toml" service run --data-dir "D:\ck data"'


def test_recovery_restarts_after_30_s_60_s_then_every_5_minutes_also_after_an_error_exit() -> None:
    actions = failure_actions()
    assert actions.actions == ((SC_ACTION_RESTART, 30_000), (SC_ACTION_RESTART, 60_000), (SC_ACTION_RESTART, 300_000))
    assert actions.reset_period_seconds == 86_400 and actions.on_non_crash_failures
    assert SC_ACTION_RESTART == 1  # SC_ACTION_TYPE


@pytest.mark.parametrize(("account", "password", "logon_right"), [
    (None, False, False), ("LocalSystem", False, False), ("NT AUTHORITY\\NetworkService", False, False),
    ("NT SERVICE\\certkeeper", False, True), (GMSA, False, True), ("CONTOSO\\svc-certkeeper", True, True),
])
def test_which_accounts_need_a_password_and_the_logon_right(account: str | None, password: bool,
                                                            logon_right: bool) -> None:
    assert needs_password(account) is password
    assert needs_logon_right(account) is logon_right


def test_a_named_account_without_its_password_is_refused() -> None:
    with pytest.raises(WindowsServiceError, match="needs its password"):
        service_spec(python=PYTHON, config_file=CONFIG, account="CONTOSO\\svc-certkeeper")
    spec = service_spec(python=PYTHON, config_file=CONFIG, account="CONTOSO\\svc-certkeeper", password="pw")
    assert spec.password == "pw"
    assert service_spec(python=PYTHON, config_file=CONFIG, account=GMSA, password="ignored").password is None


class RecordingControl:
    """A Service Control Manager in memory."""

    def __init__(self, installed: ServiceStatus | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.installed = installed

    def create(self, spec: ServiceSpec) -> None:
        self.calls.append(("create", spec.name, spec.account))
        self.installed = ServiceStatus("stopped", spec.account, spec.command_line)

    def grant_logon_right(self, account: str) -> None:
        self.calls.append(("grant", account))

    def register_event_source(self) -> None:
        self.calls.append(("event source",))

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))
        self.installed = None

    def start(self, name: str) -> None:
        self.calls.append(("start", name))

    def stop(self, name: str, wait_seconds: int) -> None:
        self.calls.append(("stop", name, wait_seconds))

    def query(self, name: str) -> ServiceStatus | None:
        return self.installed


def test_install_registers_grants_logs_and_protects_in_that_order() -> None:
    control = RecordingControl()
    protected: list[str | None] = []
    steps = install(control, service_spec(python=PYTHON, config_file=CONFIG, account=GMSA),
                    protect_data=protected.append)
    assert control.calls == [("create", "certkeeper", GMSA), ("grant", GMSA), ("event source",)]
    assert protected == [GMSA]
    assert "restart on failure after 30 s, 60 s, 300 s" in steps[0]
    local = RecordingControl()
    install(local, service_spec(python=PYTHON, config_file=CONFIG), protect_data=protected.append)
    assert ("grant", None) not in local.calls and [c[0] for c in local.calls] == ["create", "event source"]
    with pytest.raises(WindowsServiceError, match="installed already"):
        install(control, service_spec(python=PYTHON, config_file=CONFIG), protect_data=protected.append)


def test_uninstall_stops_a_running_service_first() -> None:
    control = RecordingControl(ServiceStatus("running", GMSA, None, 4242))
    uninstall(control)
    assert control.calls == [("stop", "certkeeper", 120), ("delete", "certkeeper")]
    with pytest.raises(WindowsServiceError, match="no certkeeper service is installed"):
        uninstall(control)
    assert describe(None) == ["not installed (certkeeper service install)"]
    assert describe(ServiceStatus("running", None, "cmd", 7)) == ["state: running (pid 7)", "account: LocalSystem",
                                                                    "command: cmd"]


# -- the runner with a real daemon --------------------------------------------------------------


def _daemon_factory(tmp_path: Path) -> Any:
    from certkeeper.daemon import Daemon

    def make() -> Daemon:
        config = parse({"daemon": {"metrics_address": None, "node": "cas01", "reconcile_minutes": 60}},
                       path=None, data_dir=tmp_path / "data")
        return Daemon(config, as_service=False)

    return make


def _run_in_thread(runner: ServiceRunner) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(runner.run()), name="ServiceMain")
    thread.start()
    return thread, codes


def _wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_scm_stop_is_the_same_clean_stop_as_sigterm(tmp_path: Path) -> None:
    # run() on a thread that is not the main one, as ServiceMain: the daemon must not touch signals
    reports: list[ServiceState] = []
    runner = ServiceRunner(_daemon_factory(tmp_path), reports.append)
    thread, codes = _run_in_thread(runner)
    _wait_for(lambda: ServiceState.RUNNING in reports)
    runner.stop()
    thread.join(timeout=60)
    assert codes == [0]
    assert reports == [ServiceState.START_PENDING, ServiceState.RUNNING, ServiceState.STOP_PENDING,
                       ServiceState.STOP_PENDING]
    # the daemon let go of its leases: another one starts at once on the same store
    second = ServiceRunner(_daemon_factory(tmp_path), lambda _state: None)
    thread, codes = _run_in_thread(second)
    time.sleep(1)
    second.stop()
    thread.join(timeout=60)
    assert codes == [0]


def test_a_stop_while_starting_stops_the_daemon_as_soon_as_it_exists(tmp_path: Path) -> None:
    reports: list[ServiceState] = []
    make = _daemon_factory(tmp_path)
    runner = ServiceRunner(lambda: (runner.stop(), make())[1], reports.append)  # the stop lands mid-start
    thread, codes = _run_in_thread(runner)
    thread.join(timeout=60)
    assert codes == [0] and reports[:2] == [ServiceState.START_PENDING, ServiceState.STOP_PENDING]


def test_a_daemon_that_cannot_start_ends_the_service_with_an_error(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="certkeeper.platform.winservice")
    def broken() -> Any:
        raise ConfigError("certkeeper.toml: not valid TOML")

    reports: list[ServiceState] = []
    assert ServiceRunner(broken, reports.append).run() == 1
    assert reports == [ServiceState.START_PENDING] and "cannot start: certkeeper.toml: not valid TOML" in caplog.text

    # another daemon (another process) holds the store: run() refuses, exit 1, recovery retries later
    import os
    import subprocess
    import sys

    from tests.fixtures.core import REPO_ROOT

    (tmp_path / "certkeeper.toml").write_text('[daemon]\nmetrics_address = ""\nnode = "cas01"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), CERTKEEPER_DATA_DIR=str(tmp_path / "data"),
               CERTKEEPER_CONFIG=str(tmp_path / "certkeeper.toml"))
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        other = subprocess.Popen([sys.executable, "-m", "certkeeper", "daemon"], env=env, cwd=REPO_ROOT,
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "daemon started" in log_path.read_text())
        assert ServiceRunner(_daemon_factory(tmp_path), lambda _state: None).run() == 1
        assert "another certkeeper daemon" in caplog.text
    finally:
        other.send_signal(signal.SIGTERM)
        assert other.wait(timeout=60) == 0


# -- pywin32 fakes --------------------------------------------------------------------------------


class FakeError(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


class Recorder:
    """Records calls to any method; per-name results or exceptions."""

    def __init__(self, **constants: Any) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.results: dict[str, Any] = {}
        for name, value in constants.items():
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            result = self.results.get(name)
            if isinstance(result, Exception):
                raise result
            return result
        return call


SERVICE_CONSTANTS = {"SERVICE_AUTO_START": 2, "SC_MANAGER_ALL_ACCESS": 0xF003F, "SC_MANAGER_CONNECT": 1,
                     "SERVICE_ALL_ACCESS": 0xF01FF, "SERVICE_CONFIG_FAILURE_ACTIONS": 2,
                     "SERVICE_CONFIG_FAILURE_ACTIONS_FLAG": 4, "SERVICE_QUERY_CONFIG": 1, "SERVICE_QUERY_STATUS": 4,
                     "SERVICE_STOPPED": 1, "SERVICE_START_PENDING": 2, "SERVICE_STOP_PENDING": 3,
                     "SERVICE_RUNNING": 4}


def _control() -> tuple[Win32ServiceControl, Recorder, Recorder, Recorder]:
    serviceutil, service, security = Recorder(), Recorder(**SERVICE_CONSTANTS), Recorder(POLICY_ALL_ACCESS=0xF0FFF)
    evtlog = Recorder()
    evtlog.__file__ = r"C:\venv\Lib\site-packages\win32\win32evtlog.pyd"
    control = Win32ServiceControl(serviceutil=serviceutil, service=service, security=security,
                                  evtlogutil=Recorder(), evtlog=evtlog, error=FakeError)
    return control, serviceutil, service, security


def test_win32_create_uses_install_service_then_sets_the_failure_actions() -> None:
    control, serviceutil, service, _security = _control()
    service.results.update(OpenSCManager="manager", OpenService="handle")
    spec = service_spec(python=PYTHON, config_file=CONFIG, account=GMSA)
    control.create(spec)
    name, args, kwargs = serviceutil.calls[0]
    assert (name, args) == ("InstallService", (None, "certkeeper", "certkeeper"))
    assert kwargs == {"startType": 2, "userName": GMSA, "password": None, "exeName": PYTHON,
                      "exeArgs": spec.arguments, "description": spec.description, "delayedstart": True}
    changes = [call[1] for call in service.calls if call[0] == "ChangeServiceConfig2"]
    assert changes == [("handle", 2, {"ResetPeriod": 86_400, "RebootMsg": None, "Command": None,
                                      "Actions": [(1, 30_000), (1, 60_000), (1, 300_000)]}),
                       ("handle", 4, True)]
    assert [call[1] for call in service.calls if call[0] == "CloseServiceHandle"] == [("handle",), ("manager",)]


def test_win32_logon_right_event_source_and_errors() -> None:
    control, _serviceutil, _service, security = _control()
    security.results.update(LookupAccountName=("sid", "CONTOSO", 1), LsaOpenPolicy="policy")
    control.grant_logon_right(GMSA)
    assert ("LsaAddAccountRights", ("policy", "sid", ("SeServiceLogonRight",)), {}) in security.calls
    assert security.calls[-1] == ("LsaClose", ("policy",), {})
    control.register_event_source()
    assert control.evtlogutil.calls == [("AddSourceToRegistry", ("certkeeper", control.evtlog.__file__,
                                                                  "Application"), {})]
    control.serviceutil.results["StartService"] = FakeError(5, "OpenSCManager", "Access is denied.")
    with pytest.raises(WindowsServiceError, match=r"starting the service: Access is denied\. \(run from an elevated"):
        control.start("certkeeper")


def test_win32_stop_waits_for_stopped_and_query_reads_state_and_account() -> None:
    control, serviceutil, service, _security = _control()
    control.stop("certkeeper", 120)
    assert serviceutil.calls == [("StopService", ("certkeeper",), {}),
                                 ("WaitForServiceStatus", ("certkeeper", 1, 120), {})]
    service.results.update(OpenSCManager="manager", OpenService="handle",
                           QueryServiceStatusEx={"CurrentState": 4, "ProcessId": 4242},
                           QueryServiceConfig=(16, 2, 1, "cmd", "", 0, [], GMSA, "certkeeper"))
    assert control.query("certkeeper") == ServiceStatus("running", GMSA, "cmd", 4242)
    service.results["OpenService"] = FakeError(1060, "OpenService", "The specified service does not exist")
    assert control.query("certkeeper") is None


# -- the Event Log ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "kind", "event_id"), [
    (logging.CRITICAL, EVENTLOG_ERROR_TYPE, 0xC0000001), (logging.ERROR, EVENTLOG_ERROR_TYPE, 0xC0000001),
    (logging.WARNING, EVENTLOG_WARNING_TYPE, 0x80000001), (logging.INFO, EVENTLOG_INFORMATION_TYPE, 0x40000001),
    (logging.DEBUG, EVENTLOG_INFORMATION_TYPE, 0x40000001),
])
def test_levels_map_to_event_types_and_ids_with_matching_severity(level: int, kind: int, event_id: int) -> None:
    assert event(level) == (kind, event_id)
    assert event_id >> 30 == {EVENTLOG_ERROR_TYPE: 3, EVENTLOG_WARNING_TYPE: 2, EVENTLOG_INFORMATION_TYPE: 1}[kind]


def test_the_handler_reports_each_record_under_the_certkeeper_source() -> None:
    evtlogutil = Recorder()
    handler = EventLogHandler(evtlogutil=evtlogutil)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("certkeeper.test_eventlog")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)  # whatever level an earlier test left on the root logger
    try:
        logger.warning("renewal of %s failed: %s", "outlook", "x" * 40_000)
        logger.debug("not emitted: below the logger's level")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    (name, (source, event_id, category, kind, strings), _kwargs), = evtlogutil.calls
    assert (name, source, event_id, category, kind) == ("ReportEvent", "certkeeper", 0x80000001, 0, 2)
    assert strings[0].startswith("certkeeper.test_eventlog: renewal of outlook failed: xxx")
    assert len(strings[0]) == 31_000  # under ReportEvent's limit for one string


def test_register_source_names_win32evtlog_as_the_message_file() -> None:
    evtlogutil, evtlog = Recorder(), Recorder()
    evtlog.__file__ = r"C:\x\win32evtlog.pyd"
    register_source(evtlogutil=evtlogutil, evtlog=evtlog)
    assert evtlogutil.calls == [("AddSourceToRegistry", ("certkeeper", r"C:\x\win32evtlog.pyd", "Application"), {})]


# -- signals and the CLI ----------------------------------------------------------------------------


def test_ctrl_break_stops_the_daemon_on_windows_only() -> None:
    assert stop_signal_names("win32") == ("SIGTERM", "SIGINT", "SIGBREAK")
    assert stop_signal_names("linux") == ("SIGTERM", "SIGINT")
    assert stop_signals("linux") == [signal.SIGTERM, signal.SIGINT]
    assert not hasattr(signal, "SIGBREAK")  # this is Linux: why the name is looked up only on Windows


def test_service_help_lists_the_commands_and_each_is_windows_only_here() -> None:
    shown = run_cli("service", "--help")
    assert shown.returncode == 0
    commands = [line.split()[0] for line in shown.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert commands == ["install", "start", "status", "stop", "uninstall"]
    assert "service" in run_cli("--help").stdout
    for command in ("install", "uninstall", "start", "stop", "status"):
        done = run_cli("service", command)
        assert done.returncode == 2, done
        assert f"certkeeper service {command} is Windows only" in done.stderr
    assert isinstance(CertkeeperError("x"), Exception)
