"""A certificate's health, derived from stored facts and ``now`` (never stored).

The states, first match wins:

``Missing``
    No certificate was ever issued, none is being requested, and no attempt has failed.
``Expired``
    The current certificate's ``not_after`` has passed.
``Expiring``
    Renewal is overdue (``now`` is at or past the revision's renewal time) **and** little validity
    is left: less than ``expiring_fraction`` of the lifetime (default 1/6, half of the default
    1/3 renewal margin), or fewer than ``expiring_days`` days (default 7) for a certificate whose
    lifetime is longer than that. For a 90-day certificate this is "renewal overdue and under 15
    days left"; for a 6-day one, "under a day left". A certificate renewed late *on purpose* (a
    short ``renew_before``) is not Expiring until its own renewal time has passed. Expiring wins over
    Failing and Renewing because it is the more urgent news; the reason still says what is going
    on (failing, pending).
``Failing``
    The CA rejected the last request, or the last attempt failed (the reason gives the CA's
    message and the next attempt), or renewal is due while automatic issuance is disabled.
``Renewing``
    A request is pending, or :func:`~certkeeper.lifecycle.checks.should_issue` has a verdict
    (renewal due, spec changed, ...) and nothing is failing.
``Ready``
    Otherwise: the certificate is valid and renewal is not due.

A certificate never issued whose attempts fail is Failing (even while its request stays pending
to be resumed), not Missing or Renewing; one whose first request is pending without a failure
is Renewing, and a request that waits for a CA manager's approval says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from certkeeper.lifecycle._time import format_span, format_time, require_aware
from certkeeper.lifecycle.checks import CertificateFacts, RevisionFacts, should_issue
from certkeeper.model import Health

DEFAULT_EXPIRING_FRACTION = 1 / 6
DEFAULT_EXPIRING_DAYS = 7


def health(
    facts: CertificateFacts,
    now: datetime,
    *,
    expiring_fraction: float = DEFAULT_EXPIRING_FRACTION,
    expiring_days: float = DEFAULT_EXPIRING_DAYS,
) -> tuple[Health, str]:
    """The health of a certificate and a short sentence saying why (see the module docstring)."""
    require_aware(now=now)
    current = facts.current
    failing = _failure_summary(facts, now)
    waiting = _pending_summary(facts)
    activity = failing or waiting

    if current is None:
        if failing:
            return Health.FAILING, f"No certificate has been issued yet. {failing}"
        if facts.pending:
            return Health.RENEWING, f"The first certificate is on its way. {waiting}"
        if not facts.enabled:
            return Health.MISSING, "No certificate has been issued, and automatic issuance is disabled."
        return Health.MISSING, "No certificate has been issued yet."

    if now > current.not_after:
        ago = format_span(now - current.not_after)
        return Health.EXPIRED, _join(f"Expired at {format_time(current.not_after)} ({ago} ago).", activity)

    validity = f"valid until {format_time(current.not_after)} ({format_span(current.not_after - now)} left)"
    due_at = current.due_at
    if now >= due_at and _little_left(current, now, expiring_fraction, expiring_days):
        return Health.EXPIRING, _join(
            f"Renewal has been overdue since {format_time(due_at)} and the certificate is only {validity}.",
            activity or ("Automatic issuance is disabled." if not facts.enabled else None),
        )
    if failing:
        return Health.FAILING, f"{failing} The current certificate is {validity}."
    verdict = should_issue(facts, now)
    if verdict is not None and not facts.enabled:
        return Health.FAILING, f"{verdict.message} Automatic issuance is disabled, so nothing will happen."
    if facts.pending:
        return Health.RENEWING, f"{waiting} The current one is {validity}."
    if verdict is not None:
        return (
            Health.RENEWING,
            f"{verdict.message} The current certificate expires at {format_time(current.not_after)}.",
        )
    return Health.READY, f"The certificate is {validity}; renewal from {format_time(due_at)}."


def _little_left(current: RevisionFacts, now: datetime, fraction: float, days: float) -> bool:
    lifetime = current.not_after - current.not_before
    left = current.not_after - now
    if left < lifetime * fraction:
        return True
    threshold = timedelta(days=days)
    return lifetime > threshold and left < threshold


def _failure_summary(facts: CertificateFacts, now: datetime) -> str | None:
    """Why the certificate is failing and when the next attempt comes, or None if it is not."""
    problem = f": {facts.last_failure_message}" if facts.last_failure_message else ""
    if facts.rejected:
        return (
            f"The CA refused the last request permanently{problem}. No automatic retry until an "
            f"operator runs `certkeeper renew {facts.id} --force`."
        )
    if facts.failure_count <= 0 and facts.awaiting_approval is not None:
        return None  # the next check of an approval is not a retry after a failure
    backing_off = facts.next_attempt_at is not None and now < facts.next_attempt_at
    if facts.failure_count <= 0 and not backing_off:
        return None
    when = f" at {format_time(facts.last_failure_at)}" if facts.last_failure_at else ""
    count = max(facts.failure_count, 1)
    attempts = "The last attempt" if count == 1 else f"{count} consecutive attempts; the last"
    if backing_off and facts.next_attempt_at is not None:
        nxt = f"Next attempt at {format_time(facts.next_attempt_at)}."
    else:
        nxt = "Next attempt on the next pass."
    return f"{attempts} failed{when}{problem}. {nxt}"


def _pending_summary(facts: CertificateFacts) -> str | None:
    """What the request in flight waits for, or None when nothing is requested."""
    if not facts.pending:
        return None
    if facts.awaiting_approval is not None:
        when = f" (checked again at {format_time(facts.next_attempt_at)})" if facts.next_attempt_at else ""
        return (f"Request {facts.awaiting_approval} awaits approval by a CA manager{when}; "
                f"`certkeeper renew {facts.id} --force` asks now.")
    return "A new certificate has been requested and is pending."


def _join(first: str, second: str | None) -> str:
    return f"{first} {second}" if second else first
