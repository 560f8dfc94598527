"""Backoff after failures, on Let's Encrypt's schedule: 1 min, 10 min, 100 min, then daily."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certkeeper.lifecycle.backoff import next_attempt_after_failure, retry_delay

FAILED_AT = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("failure_count", "delay"),
    [
        (1, timedelta(minutes=1)),
        (2, timedelta(minutes=10)),
        (3, timedelta(minutes=100)),
        (4, timedelta(days=1)),
        (5, timedelta(days=1)),
        (1152, timedelta(days=1)),
    ],
)
def test_schedule(failure_count: int, delay: timedelta) -> None:
    assert retry_delay(failure_count) == delay
    assert next_attempt_after_failure(failure_count, FAILED_AT) == FAILED_AT + delay


@pytest.mark.parametrize(
    ("failure_count", "retry_after", "expected"),
    [
        pytest.param(
            1, FAILED_AT + timedelta(hours=3), FAILED_AT + timedelta(hours=3), id="later-retry-after-wins"
        ),
        pytest.param(
            1, FAILED_AT + timedelta(seconds=30), FAILED_AT + timedelta(minutes=1), id="earlier-ignored"
        ),
        pytest.param(4, FAILED_AT + timedelta(hours=3), FAILED_AT + timedelta(days=1), id="daily-beats-3h"),
        pytest.param(4, FAILED_AT + timedelta(days=2), FAILED_AT + timedelta(days=2), id="rate-limit-2-days"),
        pytest.param(2, FAILED_AT - timedelta(hours=1), FAILED_AT + timedelta(minutes=10), id="past-ignored"),
    ],
)
def test_retry_after(failure_count: int, retry_after: datetime, expected: datetime) -> None:
    assert next_attempt_after_failure(failure_count, FAILED_AT, retry_after=retry_after) == expected


def test_consecutive_failures_follow_the_schedule() -> None:
    # Each attempt happens at the stored next attempt time and fails again.
    attempt_at = FAILED_AT
    waits = []
    for count in range(1, 6):
        following = next_attempt_after_failure(count, attempt_at)
        waits.append(following - attempt_at)
        attempt_at = following
    minute = timedelta(minutes=1)
    assert waits == [minute, 10 * minute, 100 * minute, timedelta(days=1), timedelta(days=1)]


@pytest.mark.parametrize("failure_count", [0, -1])
def test_failure_count_starts_at_one(failure_count: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        next_attempt_after_failure(failure_count, FAILED_AT)


def test_naive_datetimes_refused() -> None:
    with pytest.raises(ValueError, match="failed_at"):
        next_attempt_after_failure(1, datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="retry_after"):
        next_attempt_after_failure(1, FAILED_AT, retry_after=datetime(2026, 3, 2))
