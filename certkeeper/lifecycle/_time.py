"""Small helpers shared by the lifecycle modules (no clock, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def require_aware(**values: datetime | None) -> None:
    """Refuse naive datetimes: every lifecycle fact is an aware UTC instant."""
    for name, value in values.items():
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")


def whole_seconds(value: datetime) -> datetime:
    """``value`` truncated to the second (stored times compare cleanly and print without noise)."""
    return value.replace(microsecond=0)


def format_time(value: datetime) -> str:
    """An instant as operators read it in messages: ``2026-03-01 12:00:00 UTC``."""
    at = value.astimezone(UTC)  # by hand: strftime costs more than the rest of a list line
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d} {at.hour:02d}:{at.minute:02d}:{at.second:02d} UTC"


def format_span(span: timedelta) -> str:
    """A duration in the largest unit that reads well: ``12 days``, ``5 hours``, ``3 minutes``."""
    seconds = abs(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds / size
            text = f"{count:.1f}".removesuffix(".0")
            return f"{text} {unit}{'' if text == '1' else 's'}"
    text = f"{seconds:.0f}"
    return f"{text} second{'' if text == '1' else 's'}"
