"""Whether stderr is the journal, and the syslog priority prefixes it reads.

systemd.exec(5), "$JOURNAL_STREAM": when stdout or stderr is connected to the journal, the
variable holds that stream's ``device:inode`` (decimal); a program compares it with ``fstat`` of
its stderr. The journal reads a ``<N>`` prefix on each line as the entry's syslog priority
(sd-daemon(3): SD_ERR is ``<3>``; severities as in RFC 5424 section 6.2.1), so ``journalctl -p
err`` filters what certkeeper logs. Kept apart from :mod:`.systemd` because every command sets up
logging: this module imports nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

#: logging level -> syslog severity (RFC 5424 section 6.2.1; SD_ERR and friends in sd-daemon(3))
SYSLOG_PRIORITIES: Sequence[tuple[int, int]] = ((50, 2), (40, 3), (30, 4), (20, 6))


def syslog_priority(levelno: int) -> int:
    """CRITICAL 2 (crit), ERROR 3 (err), WARNING 4 (warning), INFO 6 (info), below 7 (debug)."""
    return next((priority for level, priority in SYSLOG_PRIORITIES if levelno >= level), 7)


def with_priority(text: str, levelno: int) -> str:
    """Every line of ``text`` prefixed with ``<N>``: the journal reads each line as one entry."""
    prefix = f"<{syslog_priority(levelno)}>"
    return "\n".join(prefix + line for line in (text.splitlines() or [""]))


def stream_is_journal(journal_stream: str | None, st_dev: int, st_ino: int) -> bool:
    """Whether ``$JOURNAL_STREAM`` ("device:inode") names the stream with this device and inode."""
    if not journal_stream:
        return False
    device, sep, inode = journal_stream.partition(":")
    return bool(sep) and device.isdigit() and inode.isdigit() and (int(device), int(inode)) == (st_dev, st_ino)


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    environ = os.environ if environ is None else environ
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return stream_is_journal(environ.get("JOURNAL_STREAM"), info.st_dev, info.st_ino)
