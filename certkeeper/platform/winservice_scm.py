"""The Service Control Manager glue: Windows only, imported by ``certkeeper service run`` alone.

The SCM starts ``python.exe -m certkeeper --config ... service run``; :func:`dispatch` hands the
process to the SCM (servicemanager.PrepareToHostSingle and StartServiceCtrlDispatcher, as a frozen
pywin32 service does), which calls :meth:`CertkeeperService.SvcRun` in its ServiceMain thread and
:meth:`CertkeeperService.SvcStop` from its control handler. Both delegate to
:class:`~certkeeper.platform.winservice.ServiceRunner`, where the logic is and the tests are; this
module only maps states to SCM constants. A non-zero exit code is raised out of SvcRun, so
pywin32 reports SERVICE_STOPPED with an error and the recovery actions run.

This module is checked by ``mypy --platform win32`` against pywin32's stubs; it never runs on Linux.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

import servicemanager
import win32evtlog
import win32service
import win32serviceutil

from certkeeper.platform.protection import SERVICE_NAME
from certkeeper.platform.winservice import DISPLAY_NAME, RunnableDaemon, ServiceRunner, ServiceState

_STATES = {
    ServiceState.START_PENDING: win32service.SERVICE_START_PENDING,
    ServiceState.RUNNING: win32service.SERVICE_RUNNING,
    ServiceState.STOP_PENDING: win32service.SERVICE_STOP_PENDING,
    ServiceState.STOPPED: win32service.SERVICE_STOPPED,
}
#: how long the SCM should wait before the next report (ms): starting may create the store's
#: tables; stopping lets the running step finish (``service stop`` waits 120 s)
_WAIT_HINTS = {ServiceState.START_PENDING: 120_000, ServiceState.STOP_PENDING: 150_000}


class ServiceFailed(Exception):
    """Raised out of SvcRun so pywin32 reports a stop with an error (the recovery actions run)."""


class CertkeeperService(win32serviceutil.ServiceFramework):
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = DISPLAY_NAME
    #: set by :func:`dispatch` before the SCM creates the instance
    make_daemon: ClassVar[Callable[[], RunnableDaemon] | None] = None

    def __init__(self, args: Iterable[str]) -> None:
        super().__init__(args)
        factory = type(self).make_daemon
        if factory is None:
            raise ServiceFailed("certkeeper service run: no daemon factory (dispatch was not called)")
        self.runner = ServiceRunner(factory, self._report)

    def _report(self, state: ServiceState) -> None:
        self.ReportServiceStatus(_STATES[state], waitHint=_WAIT_HINTS.get(state, 0))

    def SvcRun(self) -> None:  # pywin32's method names
        code = self.runner.run()
        if code != 0:
            raise ServiceFailed(f"the certkeeper daemon stopped with exit code {code} (see its log)")

    def SvcStop(self) -> None:
        self.runner.stop()

    def SvcShutdown(self) -> None:  # Windows is shutting down: the same clean stop
        self.runner.stop()


def dispatch(make_daemon: Callable[[], RunnableDaemon]) -> None:
    """Serve the SCM in this process until the service stops. Raises pywintypes.error 1063
    (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) when not started by the SCM."""
    CertkeeperService.make_daemon = make_daemon
    servicemanager.Initialize(SERVICE_NAME, win32evtlog.__file__)
    servicemanager.PrepareToHostSingle(CertkeeperService)
    # types-pywin32 leaves this one unannotated (it returns None)
    servicemanager.StartServiceCtrlDispatcher()  # type: ignore[no-untyped-call]
