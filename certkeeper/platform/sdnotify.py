"""A small sd_notify client: tell systemd the daemon is ready, alive, and stopping.

The protocol (sd_notify(3), "Notes"): one datagram of newline-separated ``VARIABLE=value``
assignments sent to the AF_UNIX datagram socket named in ``$NOTIFY_SOCKET``; a name starting with
``@`` is in the abstract namespace (the ``@`` becomes a NUL byte). With ``Type=notify`` systemd
waits for ``READY=1``; with ``WatchdogSec=`` it sets ``$WATCHDOG_USEC`` and expects ``WATCHDOG=1``
at least that often (sd_watchdog_enabled(3) advises half the interval), and kills and restarts
the service otherwise; ``STOPPING=1`` says a stop began. ``$WATCHDOG_PID``, when set, names the
process meant.

Like ``sd_notify(unset_environment=1)``, :meth:`Notifier.from_environment` removes the variables,
so the commands the daemon runs (a reload, a child ``certkeeper``) do not inherit them. Sending
never raises: a missing or gone socket is logged once at debug level.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(name: str) -> str | bytes | None:
    """The address to send to for a ``$NOTIFY_SOCKET`` value; None when it is not a unix socket
    certkeeper can use (empty, relative, or another transport such as ``vsock:``)."""
    if name.startswith("@") and len(name) > 1:
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between the watchdog's deadlines, or None when it is off or meant for another pid."""
    usec = environ.get(WATCHDOG_USEC, "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get(WATCHDOG_PID, "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Sends notifications to systemd, or nothing when not started by it (``address`` None)."""

    def __init__(self, address: str | bytes | None, watchdog_seconds: float | None = None) -> None:
        self.address = address
        #: the watchdog interval; ping at least every half of it
        self.watchdog_seconds = watchdog_seconds
        self._failed = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, *, pid: int | None = None,
                         unset: bool = True) -> Notifier:
        environ = os.environ if environ is None else environ
        address = socket_address(environ.get(NOTIFY_SOCKET, ""))
        interval = watchdog_interval(environ, os.getpid() if pid is None else pid) if address else None
        if unset:
            for name in (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID):
                environ.pop(name, None)
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``VARIABLE=value`` lines in one datagram; True if it was sent."""
        if self.address is None or not assignments:
            return False
        if sys.platform == "win32":  # no systemd, and no AF_UNIX in Python, on Windows
            return False
        data = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:
                log.debug("cannot notify systemd at %r: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
