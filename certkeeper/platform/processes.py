"""Whether a process is alive: the one process check certkeeper makes (a lease holder that died).

psutil answers the same question on both systems without side effects: on Windows ``os.kill(pid,
0)`` would *terminate* the process (TerminateProcess), so the old check could only answer "alive",
and a crashed service was refused a restart until its lease expired. A zombie (exited, not yet
reaped by its parent) counts as dead: it holds nothing any more.

A pid that Windows has already given to another process reads as alive: the lease then waits for
its TTL, the safe side.
"""

from __future__ import annotations


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    if pid <= 0:
        return False  # 0 is the System Idle Process on Windows (psutil: "process group" on POSIX)
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists: another user's process
