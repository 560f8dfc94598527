"""The one Retry-After parser: both forms, HTTP-dates measured against the response's Date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certkeeper.retry_after import MAX_DELTA_SECONDS, clock_skew, http_date, parse_retry_after

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
#: the server's clock, an hour ahead of ours
SERVER_DATE = "Mon, 30 Nov 2026 13:00:00 GMT"


@pytest.mark.parametrize(("value", "date", "seconds"), [
    pytest.param("120", None, 120.0, id="delta-seconds"),
    pytest.param(" 7 ", None, 7.0, id="whitespace"),
    pytest.param("0", None, 0.0, id="zero"),
    pytest.param("007", None, 7.0, id="leading-zeros"),
    pytest.param("120", SERVER_DATE, 120.0, id="delta-ignores-date"),
    pytest.param("9" * 400, None, float(MAX_DELTA_SECONDS), id="huge-delta-capped-rfc9111"),
    pytest.param("0" * 30 + "5", None, 5.0, id="long-but-small"),
    pytest.param("Mon, 30 Nov 2026 12:01:30 GMT", None, 90.0, id="http-date-no-date-header"),
    pytest.param("Mon, 30 Nov 2026 11:00:00 GMT", None, 0.0, id="http-date-past"),
    pytest.param("Mon, 30 Nov 2026 13:00:03 GMT", SERVER_DATE, 3.0, id="http-date-vs-server-date"),
    pytest.param("Mon, 30 Nov 2026 12:00:30 GMT", "Mon, 30 Nov 2026 11:00:00 GMT", 3630.0,
                 id="server-clock-behind"),
    pytest.param("Mon, 30 Nov 2026 13:00:03 GMT", "garbage", 3603.0, id="unreadable-date-uses-our-clock"),
    pytest.param("Monday, 30-Nov-26 12:00:10 GMT", None, 10.0, id="rfc850-form"),
    pytest.param("Mon Nov 30 12:00:20 2026", None, 20.0, id="asctime-form"),
    pytest.param(None, None, None, id="absent"),
    pytest.param("", None, None, id="empty"),
    pytest.param("soon", None, None, id="garbage"),
    pytest.param("-5", None, None, id="negative"),
    pytest.param("1.5", None, None, id="fraction"),
    pytest.param("٣", None, None, id="non-ascii-digit"),
    pytest.param("Mon, 30 Nov 2026 25:01:30 GMT", None, None, id="impossible-date"),
])
def test_retry_after(value: str | None, date: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, date=date, now=NOW) == seconds


def test_http_date_is_utc() -> None:
    assert http_date("Sun Nov  6 08:49:37 1994") == datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
    assert http_date("Sun, 06 Nov 1994 09:49:37 +0100") == datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
    assert http_date(None) is None and http_date(" ") is None and http_date("x") is None


def test_clock_skew() -> None:
    assert clock_skew(SERVER_DATE, NOW) == timedelta(hours=1)
    assert clock_skew("Mon, 30 Nov 2026 11:58:00 GMT", NOW) == timedelta(minutes=-2)
    assert clock_skew(None, NOW) is None and clock_skew("garbage", NOW) is None
