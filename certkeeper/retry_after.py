"""Retry-After and the server's clock: the one place certkeeper reads HTTP dates from a response.

Every HTTP client in certkeeper (the ACME client, ARI, the webhook notifiers) reads
``Retry-After`` through :func:`parse_retry_after`, so they agree on what it means:

* ``Retry-After`` is delta-seconds or an HTTP-date (RFC 9110 §10.2.3). Delta-seconds are capped
  at 2**31 as RFC 9111 §1.2.2 asks for delta-seconds a recipient cannot hold.
* An HTTP-date is a time on the *server's* clock, so it is measured against the response's own
  ``Date`` header (RFC 9110 §6.6.1), not against our clock: a CA whose clock is an hour ahead and
  says "retry at 12:00:03" with ``Date: 12:00:00`` means three seconds, not an hour. Only when the
  response has no usable ``Date`` is our clock the reference.
* All three HTTP-date formats are read (IMF-fixdate, the obsolete RFC 850 and asctime forms,
  RFC 9110 §5.6.7); a date without a zone is UTC, as every HTTP-date is.

Pure functions: the caller passes ``now``; nothing here reads the clock, logs or sleeps.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

__all__ = ["MAX_DELTA_SECONDS", "SKEW_WARNING", "clock_skew", "http_date", "parse_retry_after"]

#: RFC 9111 §1.2.2: a delta-seconds value too large to hold is taken as 2**31
MAX_DELTA_SECONDS = 2**31
#: a server clock further than this from ours is worth one warning
SKEW_WARNING = timedelta(minutes=5)


def http_date(value: str | None) -> datetime | None:
    """An HTTP-date (any of the three formats of RFC 9110 §5.6.7) as an aware UTC datetime, or
    None when absent or unreadable."""
    if not value or not value.strip():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_retry_after(value: str | None, *, date: str | None, now: datetime) -> float | None:
    """Seconds to wait for a ``Retry-After`` header, or None when there is none or it is unreadable.

    Args:
        value: the ``Retry-After`` header: delta-seconds (``"120"``) or an HTTP-date.
        date: the same response's ``Date`` header; an HTTP-date is measured from it.
        now: our clock, the reference only when ``date`` is missing or unreadable.

    Returns:
        Seconds, never negative (a date in the past means "now"), at most :data:`MAX_DELTA_SECONDS`.
        Callers keep their own floor: a Retry-After never makes a poll faster than it would be
        without one (``max(parse_retry_after(...) or 0, floor)``).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # judge the length first: int() of a huge string is slow, and float() of it overflows
        digits = text.lstrip("0") or "0"
        if len(digits) > len(str(MAX_DELTA_SECONDS)):
            return float(MAX_DELTA_SECONDS)
        return float(min(int(digits), MAX_DELTA_SECONDS))
    when = http_date(text)
    if when is None:
        return None
    reference = http_date(date) or now
    seconds = (when - reference).total_seconds()
    return min(max(0.0, seconds), float(MAX_DELTA_SECONDS))


def clock_skew(date: str | None, now: datetime) -> timedelta | None:
    """How far the server's clock (its ``Date`` header) is ahead of ``now`` (negative: behind), or
    None without a usable ``Date``. ``Date`` has whole seconds, so below a second means nothing."""
    server = http_date(date)
    if server is None:
        return None
    return server - now
