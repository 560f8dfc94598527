"""When to try again after an issuance failed.

Let's Encrypt's integration guide (https://letsencrypt.org/docs/integration-guide/, "Retrying
Failures"): "use an
exponential backoff pattern, maxing out at once per day per certificate. For instance … 1st retry
after one minute, 2nd retry after ten minutes, 3rd retry after 100 minutes, 4th and subsequent
retries after one day." The CA's limit of 5 failed authorizations per identifier per hour is thus
never reached by retries alone. The service stores the result as the certificate's
``next_attempt_at``, so a restarted daemon keeps waiting.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from certkeeper.lifecycle._time import require_aware

#: Delay after the 1st, 2nd, 3rd failure; every later failure waits :data:`MAX_DELAY`.
DELAYS: tuple[timedelta, ...] = (timedelta(minutes=1), timedelta(minutes=10), timedelta(minutes=100))
MAX_DELAY = timedelta(days=1)


def retry_delay(failure_count: int) -> timedelta:
    """How long to wait after the ``failure_count``-th consecutive failure (1-based).

    Raises:
        ValueError: ``failure_count`` is less than 1.
    """
    if failure_count < 1:
        raise ValueError(f"failure_count counts failures and starts at 1, got {failure_count}")
    return DELAYS[failure_count - 1] if failure_count <= len(DELAYS) else MAX_DELAY


def next_attempt_after_failure(
    failure_count: int, failed_at: datetime, *, retry_after: datetime | None = None
) -> datetime:
    """The earliest time of the next automatic attempt after the ``failure_count``-th failure.

    ``failed_at + retry_delay(failure_count)``, but never earlier than ``retry_after``, the time a
    CA gave in a ``Retry-After`` header or a rate-limit error (Let's Encrypt sends one with every
    rate-limit error). An operator's ``--force`` bypasses this; see
    :func:`certkeeper.lifecycle.checks.may_attempt`.

    Raises:
        ValueError: ``failure_count`` is less than 1, or a naive datetime.
    """
    require_aware(failed_at=failed_at, retry_after=retry_after)
    at = failed_at + retry_delay(failure_count)
    if retry_after is not None and retry_after > at:
        return retry_after
    return at
