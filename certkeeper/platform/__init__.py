"""What differs between the CAS host (Windows Server) and the Linux gateways, one module per concern.

- :mod:`.locations`: where the config file and the data folder are (one store for the service
  and the admin);
- :mod:`.protection`: who may open the data folder (a DACL on NTFS; POSIX modes elsewhere), the
  Windows calls in its :class:`~.protection.WindowsAcl`;
- :mod:`.dpapi`: the secret key sealed to the machine with DPAPI (Windows only);
- :mod:`.processes`: whether a process is alive;
- :mod:`.signals`: which signals stop the daemon;
- :mod:`.eventlog`: the Windows Event Log handler;
- :mod:`.winservice`: the Windows service (install plan, start/stop logic), with the Service
  Control Manager glue in :mod:`.winservice_scm`;
- :mod:`.sdnotify`, :mod:`.systemd` and :mod:`.journal`: the systemd side (readiness and
  watchdog, the unit, priorities on journal lines).

The decisions are pure functions that take the platform (a ``sys.platform`` value) or the facts
they need as arguments, so a Linux test runs every branch. The OS calls sit behind small seams:
the pywin32 modules are imported lazily, only on Windows, and a test hands in a recording fake.
"""

from __future__ import annotations

import sys

#: the platform this process runs on, read once (``sys.platform``: "win32", "linux", "darwin")
CURRENT = sys.platform


def is_windows(platform: str = CURRENT) -> bool:
    return platform == "win32"
