"""Which signals stop the daemon, per platform: the same clean stop for each.

SIGTERM (systemd, ``kill``, a container runtime) and SIGINT (Ctrl-C) everywhere; on Windows also
SIGBREAK, which Python raises for CTRL_BREAK_EVENT (Python docs, "signal": "SIGBREAK ...
Availability: Windows"; Microsoft Learn, "CTRL_C and CTRL_BREAK signals"), what service wrappers
and ``GenerateConsoleCtrlEvent`` send. Windows never delivers SIGTERM from outside; the native
service stops the daemon through the Service Control Manager instead (:mod:`.winservice`).
"""

from __future__ import annotations

import signal

from certkeeper.platform import CURRENT


def stop_signal_names(platform: str = CURRENT) -> tuple[str, ...]:
    """The names of the signals that stop the daemon on ``platform``."""
    names = ("SIGTERM", "SIGINT")
    return (*names, "SIGBREAK") if platform == "win32" else names


def stop_signals(platform: str = CURRENT) -> list[signal.Signals]:
    """The signals themselves, for the platform this process runs on (``signal.SIGBREAK`` exists
    only on Windows, so it is looked up by name)."""
    return [getattr(signal.Signals, name) for name in stop_signal_names(platform)]
