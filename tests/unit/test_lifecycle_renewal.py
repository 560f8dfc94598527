"""renewal_time: ARI first, then renew_before, then 1/3 (or 1/2 for short lifetimes) before expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certkeeper.lifecycle.renewal import random_point, renewal_time, usable_window
from certkeeper.model import RenewalWindow

NB = datetime(2026, 1, 1, tzinfo=UTC)
D = timedelta(days=1)


def midpoint(start: datetime, end: datetime) -> datetime:
    return start + (end - start) / 2


def window(start: datetime, end: datetime) -> RenewalWindow:
    return RenewalWindow(start=start, end=end, retry_after=start)


@pytest.mark.parametrize(
    ("not_after", "expected"),
    [
        pytest.param(NB + 9 * D, NB + timedelta(days=4, hours=12), id="9-day-renews-at-half-life"),
        pytest.param(NB + 10 * D, NB + 5 * D, id="10-day-is-short-renews-at-half"),
        pytest.param(
            NB + 10 * D + timedelta(seconds=3),
            NB + 10 * D + timedelta(seconds=3) - (10 * D + timedelta(seconds=3)) / 3,
            id="just-over-10-days-renews-at-two-thirds",
        ),
        pytest.param(NB + timedelta(hours=160), NB + timedelta(hours=80), id="le-shortlived-160h"),
        pytest.param(NB + 90 * D, NB + 60 * D, id="90-day-renews-at-day-60"),
        pytest.param(
            NB + 90 * D - timedelta(seconds=1), NB + 60 * D - timedelta(seconds=1), id="le-90d-minus-1s"
        ),
        pytest.param(NB + 397 * D, NB + timedelta(days=264, hours=16), id="397-day-renews-at-two-thirds"),
        pytest.param(NB + 45 * D, NB + 30 * D, id="45-day"),
        pytest.param(NB, NB, id="zero-lifetime-is-due-at-once"),
        pytest.param(NB - D, NB, id="negative-lifetime-is-due-at-once"),
    ],
)
def test_default_policy(not_after: datetime, expected: datetime) -> None:
    assert renewal_time(NB, not_after) == expected.replace(microsecond=0)


def test_result_is_truncated_to_whole_seconds() -> None:
    not_before = NB + timedelta(microseconds=700_000)
    assert renewal_time(not_before, not_before + 90 * D) == NB + 60 * D


@pytest.mark.parametrize(
    ("lifetime", "renew_before", "expected"),
    [
        pytest.param(90 * D, 30 * D, NB + 60 * D, id="90d-30d"),
        pytest.param(90 * D, 10 * D, NB + 80 * D, id="renew-before-wins-over-default"),
        pytest.param(9 * D, 1 * D, NB + 8 * D, id="renew-before-wins-over-half-life"),
        pytest.param(90 * D, 100 * D, NB, id="clamped-to-not-before"),
        pytest.param(90 * D, timedelta(seconds=1), NB + 90 * D - timedelta(seconds=1), id="one-second"),
    ],
)
def test_renew_before(lifetime: timedelta, renew_before: timedelta, expected: datetime) -> None:
    assert renewal_time(NB, NB + lifetime, renew_before=renew_before) == expected


@pytest.mark.parametrize(
    ("ari", "renew_before", "expected"),
    [
        pytest.param(window(NB + 50 * D, NB + 52 * D), None, NB + 51 * D, id="ari-wins-over-default"),
        pytest.param(window(NB + 50 * D, NB + 52 * D), 10 * D, NB + 51 * D, id="ari-wins-over-renew-before"),
        pytest.param(window(NB + 70 * D, NB + 70 * D), None, NB + 70 * D, id="empty-window-is-its-start"),
        pytest.param(window(NB, NB + 2 * D), None, NB + 60 * D, id="start-at-not-before-ignored"),
        pytest.param(
            window(NB - 5 * D, NB + 2 * D), 10 * D, NB + 80 * D, id="start-before-not-before-ignored"
        ),
        pytest.param(window(NB + 52 * D, NB + 50 * D), None, NB + 60 * D, id="end-before-start-ignored"),
        pytest.param(
            window(NB + 50 * D, NB + 50 * D + timedelta(seconds=3)),
            None,
            NB + 50 * D + timedelta(seconds=1),
            id="picked-point-truncated",
        ),
    ],
)
def test_ari_window(ari: RenewalWindow, renew_before: timedelta | None, expected: datetime) -> None:
    assert renewal_time(NB, NB + 90 * D, renew_before=renew_before, ari=ari, pick=midpoint) == expected


def test_pick_receives_the_window_bounds() -> None:
    seen: list[tuple[datetime, datetime]] = []

    def record(start: datetime, end: datetime) -> datetime:
        seen.append((start, end))
        return end

    assert renewal_time(NB, NB + 90 * D, ari=window(NB + 50 * D, NB + 52 * D), pick=record) == NB + 52 * D
    assert seen == [(NB + 50 * D, NB + 52 * D)]


def test_ignored_window_never_calls_pick() -> None:
    def refuse(start: datetime, end: datetime) -> datetime:
        raise AssertionError("pick called for an unusable window")

    assert renewal_time(NB, NB + 90 * D, ari=window(NB, NB + D), pick=refuse) == NB + 60 * D
    assert usable_window(NB, window(NB, NB + D)) is None
    assert usable_window(NB, None) is None


def test_random_point_stays_in_window_and_varies() -> None:
    start, end = NB + 50 * D, NB + 51 * D
    points = [random_point(start, end) for _ in range(200)]
    assert all(start <= point < end for point in points)
    assert len(set(points)) > 100


@pytest.mark.parametrize("end", [NB + 50 * D, NB + 49 * D], ids=["empty", "inverted"])
def test_random_point_of_empty_window_is_start(end: datetime) -> None:
    assert random_point(NB + 50 * D, end) == NB + 50 * D


def test_random_point_drives_renewal_time_inside_window() -> None:
    ari = window(NB + 50 * D, NB + 52 * D)
    assert NB + 50 * D <= renewal_time(NB, NB + 90 * D, ari=ari) < NB + 52 * D


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"not_before": datetime(2026, 1, 1), "not_after": NB + 90 * D}, "not_before"),
        ({"not_before": NB, "not_after": datetime(2026, 4, 1)}, "not_after"),
        ({"not_before": NB, "not_after": NB + 90 * D, "renew_before": timedelta(0)}, "renew_before"),
        ({"not_before": NB, "not_after": NB + 90 * D, "renew_before": -D}, "renew_before"),
    ],
)
def test_invalid_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        renewal_time(**kwargs)  # type: ignore[arg-type]
