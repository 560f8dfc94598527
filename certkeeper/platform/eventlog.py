"""The Windows Event Log: what the daemon logs, also in the Application log under source ``certkeeper``.

Levels map to event types (Microsoft Learn, "Event Types"; ReportEventW's wType): ERROR and
CRITICAL -> EVENTLOG_ERROR_TYPE, WARNING -> EVENTLOG_WARNING_TYPE, INFO and DEBUG ->
EVENTLOG_INFORMATION_TYPE. The source is registered by ``certkeeper service install`` (it writes
under HKLM, which needs an administrator) with pywin32's win32evtlog module as its message file:
that file holds one "%1" message per severity, so the event ID carries the matching severity bits
(Microsoft Learn, "Event Identifiers": bits 30-31) and Event Viewer shows the text as logged.

pywin32's win32evtlogutil is imported on first use; tests pass a recording fake.
"""

from __future__ import annotations

import logging
from typing import Any

#: the event source, in the Application log
SOURCE = "certkeeper"
#: ReportEventW wType values (winnt.h)
EVENTLOG_ERROR_TYPE = 0x0001
EVENTLOG_WARNING_TYPE = 0x0002
EVENTLOG_INFORMATION_TYPE = 0x0004
#: message 1 ("%1") of win32evtlog's message table, with the severity bits of each type
EVENT_IDS = {EVENTLOG_ERROR_TYPE: 0xC0000001, EVENTLOG_WARNING_TYPE: 0x80000001,
             EVENTLOG_INFORMATION_TYPE: 0x40000001}
#: ReportEvent's strings are limited to 31,839 characters each (Microsoft Learn, "ReportEventW")
MAX_MESSAGE = 31_000


def event_type(levelno: int) -> int:
    """The event type of a logging level."""
    if levelno >= logging.ERROR:
        return EVENTLOG_ERROR_TYPE
    if levelno >= logging.WARNING:
        return EVENTLOG_WARNING_TYPE
    return EVENTLOG_INFORMATION_TYPE


def event(levelno: int) -> tuple[int, int]:
    """(event type, event ID) for a logging level."""
    kind = event_type(levelno)
    return kind, EVENT_IDS[kind]


class EventLogHandler(logging.Handler):
    """Writes each record to the Application log under :data:`SOURCE` (win32evtlogutil.ReportEvent)."""

    def __init__(self, source: str = SOURCE, *, evtlogutil: Any = None) -> None:
        super().__init__()
        self.source = source
        self._evtlogutil = evtlogutil

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._evtlogutil is None:
                import importlib

                self._evtlogutil = importlib.import_module("win32evtlogutil")
            kind, event_id = event(record.levelno)
            message = self.format(record)[:MAX_MESSAGE]
            self._evtlogutil.ReportEvent(self.source, event_id, 0, kind, [message])
        except Exception:  # noqa: BLE001 - logging must never take the daemon down
            self.handleError(record)


def register_source(*, evtlogutil: Any = None, evtlog: Any = None, source: str = SOURCE) -> None:
    """Register the event source (administrators only), win32evtlog's "%1" messages as its texts."""
    import importlib

    evtlogutil = evtlogutil or importlib.import_module("win32evtlogutil")
    evtlog = evtlog or importlib.import_module("win32evtlog")
    evtlogutil.AddSourceToRegistry(source, evtlog.__file__, "Application")


def remove_source(*, evtlogutil: Any = None, source: str = SOURCE) -> None:
    import importlib

    evtlogutil = evtlogutil or importlib.import_module("win32evtlogutil")
    evtlogutil.RemoveSourceFromRegistry(source, "Application")
