"""Expiring-alert thresholds: fractions of the lifetime and days before expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certkeeper.lifecycle.alerts import Threshold, crossed_thresholds, expiry_thresholds, latest_crossed

NB = datetime(2026, 1, 1, tzinfo=UTC)
D = timedelta(days=1)
H = timedelta(hours=1)


def test_90_day_certificate() -> None:
    assert expiry_thresholds(NB, NB + 90 * D) == [
        Threshold("frac-1/3", NB + 60 * D),
        Threshold("frac-1/6", NB + 75 * D),
        Threshold("days-7", NB + 83 * D),
        Threshold("frac-1/15", NB + 84 * D),
        Threshold("days-3", NB + 87 * D),
        Threshold("days-1", NB + 89 * D),
    ]


def test_6_day_certificate_has_no_7_day_threshold() -> None:
    assert expiry_thresholds(NB, NB + 6 * D) == [
        Threshold("days-3", NB + 3 * D),
        Threshold("frac-1/3", NB + 4 * D),
        Threshold("days-1", NB + 5 * D),  # ties are ordered by label
        Threshold("frac-1/6", NB + 5 * D),
        Threshold("frac-1/15", NB + 5 * D + 14 * H + timedelta(minutes=24)),
    ]


def test_days_threshold_needs_a_strictly_longer_lifetime() -> None:
    labels = [threshold.label for threshold in expiry_thresholds(NB, NB + 7 * D)]
    assert "days-7" not in labels and "days-3" in labels


def test_times_are_whole_seconds() -> None:
    # LE's 90-day certificates end one second before day 90: a third of that is not whole seconds.
    for threshold in expiry_thresholds(NB, NB + 90 * D - timedelta(seconds=1)):
        assert threshold.at.microsecond == 0


def test_float_and_custom_thresholds() -> None:
    assert expiry_thresholds(NB, NB + 90 * D, fractions=(1 / 3, 0.25), days=(0.5, 14)) == [
        Threshold("frac-1/3", NB + 60 * D),
        Threshold("frac-1/4", NB + 67 * D + 12 * H),
        Threshold("days-14", NB + 76 * D),
        Threshold("days-0.5", NB + 89 * D + 12 * H),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": (0,)}, "between 0 and 1"),
        ({"fractions": (1,)}, "between 0 and 1"),
        ({"days": (0,)}, "positive"),
    ],
)
def test_invalid_thresholds(kwargs: dict[str, tuple[float, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expiry_thresholds(NB, NB + 90 * D, **kwargs)


def test_no_lifetime_no_thresholds() -> None:
    assert expiry_thresholds(NB, NB) == []


@pytest.mark.parametrize(
    ("now", "labels"),
    [
        pytest.param(NB + 60 * D - timedelta(seconds=1), [], id="before-first"),
        pytest.param(NB + 60 * D, ["frac-1/3"], id="at-first-inclusive"),
        pytest.param(NB + 84 * D, ["frac-1/3", "frac-1/6", "days-7", "frac-1/15"], id="four-crossed"),
        pytest.param(
            NB + 95 * D, ["frac-1/3", "frac-1/6", "days-7", "frac-1/15", "days-3", "days-1"], id="expired"
        ),
    ],
)
def test_crossed_90_day(now: datetime, labels: list[str]) -> None:
    assert [threshold.label for threshold in crossed_thresholds(NB, NB + 90 * D, now)] == labels


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(NB + 59 * D, None, id="none-yet"),
        pytest.param(NB + 76 * D, Threshold("frac-1/6", NB + 75 * D), id="second"),
        pytest.param(NB + 88 * D, Threshold("days-3", NB + 87 * D), id="daemon-started-late-alerts-once"),
    ],
)
def test_latest_crossed_90_day(now: datetime, expected: Threshold | None) -> None:
    assert latest_crossed(NB, NB + 90 * D, now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(NB + 3 * D - timedelta(seconds=1), None, id="none-yet"),
        pytest.param(NB + 3 * D, "days-3", id="half-life"),
        pytest.param(NB + 5 * D, "frac-1/6", id="tie-resolves-to-last-label"),
        pytest.param(NB + 5 * D + 15 * H, "frac-1/15", id="last"),
    ],
)
def test_latest_crossed_6_day(now: datetime, expected: str | None) -> None:
    threshold = latest_crossed(NB, NB + 6 * D, now)
    assert (threshold.label if threshold else None) == expected


@pytest.mark.parametrize(
    ("renewal_time", "now", "labels"),
    [
        pytest.param(NB + 60 * D, NB + 60 * D, ["frac-1/3"], id="threshold-at-renewal-time-kept"),
        pytest.param(NB + 62 * D, NB + 76 * D, ["frac-1/6"], id="ari-later-than-1/3-skips-it"),
        pytest.param(NB + 87 * D, NB + 88 * D, ["days-3"], id="short-renew-before-skips-earlier"),
        pytest.param(NB + 87 * D, NB + 86 * D, [], id="nothing-before-renewal"),
    ],
)
def test_renewal_time_filter(renewal_time: datetime, now: datetime, labels: list[str]) -> None:
    crossed = crossed_thresholds(NB, NB + 90 * D, now, renewal_time=renewal_time)
    assert [threshold.label for threshold in crossed] == labels
    latest = latest_crossed(NB, NB + 90 * D, now, renewal_time=renewal_time)
    assert (latest.label if latest else None) == (labels[-1] if labels else None)
