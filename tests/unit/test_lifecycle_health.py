"""Derived health: Missing, Renewing, Failing, Expiring, Expired, Ready, each with its reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certkeeper.lifecycle.checks import CertificateFacts, RevisionFacts
from certkeeper.lifecycle.health import health
from certkeeper.model import Health

NB = datetime(2026, 1, 1, tzinfo=UTC)
D = timedelta(days=1)
NAMES = ("mail.example.com",)
REVISION = RevisionFacts(NAMES, "rsa2048", "letsencrypt", NB, NB + 90 * D, renewal_time=NB + 60 * D)
FACTS = CertificateFacts(id="owa", names=NAMES, key_type="rsa2048", issuer="letsencrypt", current=REVISION)
FAILED_AT = NB + 62 * D
FAILING = dict(
    failure_count=3,
    last_failure_at=FAILED_AT,
    last_failure_message="dns-01: NXDOMAIN for _acme-challenge.mail.example.com",
    next_attempt_at=FAILED_AT + timedelta(minutes=100),
)


def facts(revision: dict[str, Any] | None = None, /, **changes: Any) -> CertificateFacts:
    if revision is not None:
        changes["current"] = replace(REVISION, **revision)
    return replace(FACTS, **changes)


SIX_DAY = {"not_after": NB + 6 * D, "renewal_time": NB + 3 * D}


@pytest.mark.parametrize(
    ("certificate", "now", "state", "words"),
    [
        # never issued
        pytest.param(
            facts(current=None), NB, Health.MISSING, "No certificate has been issued yet.", id="missing"
        ),
        pytest.param(
            facts(current=None, enabled=False), NB, Health.MISSING, "disabled", id="missing-disabled"
        ),
        pytest.param(
            facts(current=None, pending=True), NB, Health.RENEWING, "first certificate", id="first-pending"
        ),
        pytest.param(
            facts(current=None, **FAILING),
            FAILED_AT,
            Health.FAILING,
            "No certificate has been issued yet. 3 consecutive",
            id="first-failing",
        ),
        # ready
        pytest.param(
            facts(),
            NB + 10 * D,
            Health.READY,
            "valid until 2026-04-01 00:00:00 UTC (80 days left); renewal from 2026-03-02 00:00:00 UTC",
            id="ready",
        ),
        # renewing
        pytest.param(
            facts(),
            NB + 60 * D,
            Health.RENEWING,
            "Renewal has been due since 2026-03-02 00:00:00 UTC; 30 days of validity left. "
            "The current certificate expires at 2026-04-01 00:00:00 UTC.",
            id="due",
        ),
        pytest.param(
            facts(pending=True), NB + 10 * D, Health.RENEWING, "requested and is pending", id="pending"
        ),
        pytest.param(
            facts(names=("owa.example.com",)), NB + 10 * D, Health.RENEWING, "names added", id="spec-changed"
        ),
        # failing
        pytest.param(
            facts(**FAILING),
            FAILED_AT + timedelta(minutes=1),
            Health.FAILING,
            "3 consecutive attempts; the last failed at 2026-03-04 00:00:00 UTC: dns-01: NXDOMAIN for "
            "_acme-challenge.mail.example.com. Next attempt at 2026-03-04 01:40:00 UTC. "
            "The current certificate is valid until 2026-04-01",
            id="backing-off",
        ),
        pytest.param(
            facts(**{**FAILING, "failure_count": 1}),
            FAILED_AT + D,
            Health.FAILING,
            "The last attempt failed at 2026-03-04 00:00:00 UTC: dns-01: NXDOMAIN",
            id="failed-retry-due-now",
        ),
        pytest.param(
            facts(failure_count=1, last_failure_message="caa: forbidden", rejected=True),
            NB + 70 * D,
            Health.FAILING,
            "refused the last request permanently: caa: forbidden. No automatic retry until an operator runs "
            "`certkeeper renew owa --force`",
            id="rejected",
        ),
        pytest.param(
            facts(enabled=False),
            NB + 65 * D,
            Health.FAILING,
            "disabled, so nothing will happen",
            id="due-disabled",
        ),
        pytest.param(
            facts(enabled=False), NB + 10 * D, Health.READY, "valid until", id="disabled-not-due-is-ready"
        ),
        # expiring: overdue and under 1/6 of the lifetime (15 days of 90) left
        pytest.param(
            facts(**FAILING),
            NB + 75 * D + timedelta(seconds=1),
            Health.EXPIRING,
            "Renewal has been overdue since 2026-03-02 00:00:00 UTC and the certificate is only valid until "
            "2026-04-01 00:00:00 UTC (15 days left). 3 consecutive attempts",
            id="expiring-failing",
        ),
        pytest.param(
            facts(**FAILING), NB + 75 * D, Health.FAILING, "3 consecutive", id="exactly-1/6-left-not-yet"
        ),
        pytest.param(facts(pending=True), NB + 85 * D, Health.EXPIRING, "pending", id="expiring-pending"),
        pytest.param(facts(enabled=False), NB + 85 * D, Health.EXPIRING, "disabled", id="expiring-disabled"),
        pytest.param(
            facts({"renewal_time": NB + 87 * D}),
            NB + 85 * D,
            Health.READY,
            "renewal from",
            id="late-renewal-on-purpose",
        ),
        pytest.param(
            facts({"renewal_time": NB + 87 * D}),
            NB + 88 * D,
            Health.EXPIRING,
            "overdue",
            id="late-renewal-overdue",
        ),
        pytest.param(facts(SIX_DAY), NB + 4 * D, Health.RENEWING, "due since", id="6-day-due-2-days-left"),
        pytest.param(
            facts(SIX_DAY),
            NB + 5 * D + timedelta(hours=1),
            Health.EXPIRING,
            "23 hours left",
            id="6-day-under-1-day",
        ),
        # expired
        pytest.param(
            facts(),
            NB + 91 * D,
            Health.EXPIRED,
            "Expired at 2026-04-01 00:00:00 UTC (1 day ago).",
            id="expired",
        ),
        pytest.param(facts(**FAILING), NB + 92 * D, Health.EXPIRED, "3 consecutive", id="expired-failing"),
        pytest.param(facts(pending=True), NB + 92 * D, Health.EXPIRED, "pending", id="expired-pending"),
    ],
)
def test_health(certificate: CertificateFacts, now: datetime, state: Health, words: str) -> None:
    got_state, reason = health(certificate, now)
    assert (got_state, words in reason) == (state, True), reason


@pytest.mark.parametrize(
    ("now", "state"),
    [
        pytest.param(NB + 389 * D, Health.RENEWING, id="8-days-left"),
        pytest.param(NB + 390 * D + timedelta(seconds=1), Health.EXPIRING, id="under-7-days-left"),
    ],
)
def test_days_rule_for_long_lifetimes(now: datetime, state: Health) -> None:
    # With a tiny fraction only the "7 days" rule can make a 397-day certificate Expiring.
    certificate = facts({"not_after": NB + 397 * D, "renewal_time": NB + 264 * D})
    assert health(certificate, now, expiring_fraction=0.001)[0] == state


def test_days_rule_needs_a_longer_lifetime() -> None:
    # A 6-day certificate is not Expiring merely for having fewer than 7 days left.
    assert health(facts(SIX_DAY), NB + 3 * D, expiring_fraction=0.001)[0] == Health.RENEWING


def test_custom_fraction() -> None:
    assert health(facts(), NB + 65 * D)[0] == Health.RENEWING
    assert health(facts(), NB + 65 * D, expiring_fraction=1 / 3)[0] == Health.EXPIRING


def test_a_first_issuance_that_failed_and_waits_to_resume_is_failing_not_renewing() -> None:
    # an ACME order placed, then a retryable error: the revision stays pending to be resumed
    state, reason = health(facts(current=None, pending=True, **FAILING), FAILED_AT + timedelta(minutes=1))
    assert state == Health.FAILING, reason
    assert "NXDOMAIN" in reason and "Next attempt at" in reason


def test_a_request_awaiting_approval_says_so() -> None:
    waiting = facts(current=None, pending=True, awaiting_approval="4711", next_attempt_at=NB + D)
    state, reason = health(waiting, NB)
    assert state == Health.RENEWING
    assert "Request 4711 awaits approval by a CA manager" in reason and "renew owa --force" in reason
    state, reason = health(replace(waiting, current=REVISION), NB + 61 * D)
    assert state == Health.RENEWING and "Request 4711 awaits approval" in reason and "valid until" in reason


def test_a_rejected_certificate_mentions_no_next_attempt() -> None:
    state, reason = health(facts(rejected=True, **FAILING), FAILED_AT)
    assert state == Health.FAILING and "Next attempt" not in reason and "--force" in reason
