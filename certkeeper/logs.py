"""Logging setup: human text for the CLI, JSON lines for the daemon, secrets redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

# Defence in depth: code never logs secrets, and this filter masks anything that looks like one.
_SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"https://hooks\.slack\.com/\S+"),
    re.compile(r"(?i)(password|passwd|secret|token|hmac[_-]?key)(\s*[=:]\s*)\S+"),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
        else:
            text = pattern.sub("***", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("cert", "node", "binding", "notifier"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data)


class JournalFormatter(logging.Formatter):
    """Wraps a formatter: every line gets the record's syslog priority (``<3>`` for errors), which
    the journal reads and strips, so ``journalctl -p err`` filters (sd-daemon(3))."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        from certkeeper.platform.journal import with_priority

        return with_priority(self.inner.format(record), record.levelno)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _formatter(json_lines: bool) -> logging.Formatter:
    return JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT)


def setup_logging(level: int = logging.INFO, *, json_lines: bool = False, stderr: bool = True,
                  log_file: Path | None = None, event_log: bool = False) -> None:
    """Log to stderr (with syslog priorities when it is the journal), and optionally to a rotating
    ``log_file`` and the Windows Event Log (the Windows service uses both)."""
    handlers: list[logging.Handler] = []
    if stderr:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        formatter = _formatter(json_lines)
        if sys.platform != "win32":
            from certkeeper.platform.journal import stderr_is_journal

            if stderr_is_journal():
                formatter = JournalFormatter(formatter)
        handler.setFormatter(formatter)
        handlers.append(handler)
    if log_file is not None:
        from logging.handlers import RotatingFileHandler

        from certkeeper.platform.protection import make_private_dir

        make_private_dir(log_file.parent)
        handler = RotatingFileHandler(log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
        handler.setFormatter(_formatter(json_lines))
        handlers.append(handler)
    if event_log:
        from certkeeper.platform.eventlog import EventLogHandler

        handler = EventLogHandler()
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handlers.append(handler)
    for handler in handlers:
        handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    # protocol chatter from libraries stays at WARNING unless --debug
    for noisy in ("urllib3", "acme", "alembic", "apscheduler", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level > logging.DEBUG else logging.INFO)
