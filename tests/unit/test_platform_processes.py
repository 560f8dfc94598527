"""pid_alive with psutil: a live process, a dead (reaped) one, a zombie, pids that are never ours."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from certkeeper.platform.processes import pid_alive


def test_this_process_and_a_running_child_are_alive() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_a_process_that_exited_and_was_reaped_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


def test_a_killed_child_not_yet_reaped_is_dead() -> None:
    # a zombie holds nothing: a lease it held may be taken over at once
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child.pid)
        assert child.poll() is not None  # it was a zombie until this wait
    finally:
        child.wait()


def test_another_users_process_is_alive_and_nonsense_pids_are_dead() -> None:
    assert pid_alive(1)  # init: alive whoever asks (as a non-root user psutil may be denied: still alive)
    assert not pid_alive(0) and not pid_alive(-5)
    assert not pid_alive(2**22 + 12345)  # above Linux's pid_max limit: never a process
