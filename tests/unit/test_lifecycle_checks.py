"""should_issue (why issue) and may_attempt (what blocks an attempt): chains of pure checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certkeeper.lifecycle.checks import (
    CertificateFacts,
    Reason,
    RevisionFacts,
    SpecFacts,
    Verdict,
    may_attempt,
    should_issue,
)

NB = datetime(2026, 1, 1, tzinfo=UTC)
D = timedelta(days=1)
NAMES = ("mail.example.com", "autodiscover.example.com")
FRESH = NB + 10 * D  # well before the renewal time
REVISION = RevisionFacts(
    names=NAMES,
    key_type="rsa2048",
    issuer="letsencrypt",
    not_before=NB,
    not_after=NB + 90 * D,
    renewal_time=NB + 61 * D,
)
FACTS = CertificateFacts(id="owa", names=NAMES, key_type="rsa2048", issuer="letsencrypt", current=REVISION)


def facts(revision: dict[str, Any] | None = None, /, **changes: Any) -> CertificateFacts:
    """FACTS with ``changes``; ``revision`` changes the current revision."""
    if revision is not None:
        changes["current"] = replace(REVISION, **revision)
    return replace(FACTS, **changes)


# --- should_issue -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("certificate", "now", "force", "reason", "words"),
    [
        pytest.param(
            facts(current=None), FRESH, False, Reason.NEVER_ISSUED, "No certificate", id="never-issued"
        ),
        pytest.param(
            facts(names=(*NAMES, "owa.example.com")),
            FRESH,
            False,
            Reason.SPEC_CHANGED,
            "names added: owa.example.com",
            id="name-added",
        ),
        pytest.param(
            facts(names=NAMES[:1]),
            FRESH,
            False,
            Reason.SPEC_CHANGED,
            "names removed: autodiscover.example.com",
            id="name-removed",
        ),
        pytest.param(
            facts(key_type="ecdsa-p256"),
            FRESH,
            False,
            Reason.SPEC_CHANGED,
            "key type rsa2048 -> ecdsa-p256",
            id="key-type",
        ),
        pytest.param(
            facts(issuer="adcs"), FRESH, False, Reason.SPEC_CHANGED, "issuer letsencrypt -> adcs", id="issuer"
        ),
        pytest.param(
            facts({"key_matches": False}), FRESH, False, Reason.KEY_MISMATCH, "private key", id="key-mismatch"
        ),
        pytest.param(
            facts(),
            NB + 90 * D + timedelta(seconds=1),
            False,
            Reason.EXPIRED,
            "expired at 2026-04-01 00:00:00 UTC (1 second ago)",
            id="expired",
        ),
        pytest.param(
            facts(),
            NB + 61 * D,
            False,
            Reason.RENEWAL_DUE,
            "due since 2026-03-03 00:00:00 UTC",
            id="due-exactly",
        ),
        pytest.param(
            facts(),
            NB + 90 * D,
            False,
            Reason.RENEWAL_DUE,
            "0 seconds of validity left",
            id="last-valid-second",
        ),
        pytest.param(
            facts({"renewal_time": None}),
            NB + 60 * D,
            False,
            Reason.RENEWAL_DUE,
            "due since 2026-03-02",
            id="no-stored-time-uses-default-policy",
        ),
        pytest.param(facts(), FRESH, True, Reason.FORCED, "forced", id="forced"),
    ],
)
def test_each_check(
    certificate: CertificateFacts, now: datetime, force: bool, reason: Reason, words: str
) -> None:
    verdict = should_issue(certificate, now, force=force)
    assert verdict is not None
    assert verdict.reason == reason
    assert words in verdict.message


@pytest.mark.parametrize(
    ("certificate", "now"),
    [
        pytest.param(facts(), FRESH, id="fresh"),
        pytest.param(facts(), NB + 61 * D - timedelta(seconds=1), id="one-second-before-renewal-time"),
        pytest.param(facts({"renewal_time": None}), NB + 60 * D - timedelta(seconds=1), id="default-policy"),
        pytest.param(
            facts(names=("Autodiscover.Example.com.", "MAIL.example.com")), FRESH, id="names-order-case-dot"
        ),
    ],
)
def test_nothing_to_do(certificate: CertificateFacts, now: datetime) -> None:
    assert should_issue(certificate, now) is None


@pytest.mark.parametrize(
    ("certificate", "now", "force", "reason"),
    [
        pytest.param(facts(current=None), FRESH, True, Reason.NEVER_ISSUED, id="never-issued-beats-forced"),
        pytest.param(
            facts({"key_matches": False, "not_after": NB + 5 * D}, issuer="adcs"),
            NB + 30 * D,
            True,
            Reason.SPEC_CHANGED,
            id="spec-beats-key-expired-due-forced",
        ),
        pytest.param(
            facts({"key_matches": False}), NB + 95 * D, True, Reason.KEY_MISMATCH, id="key-beats-expired-due"
        ),
        pytest.param(facts(), NB + 95 * D, True, Reason.EXPIRED, id="expired-beats-due"),
        pytest.param(facts(), NB + 70 * D, True, Reason.RENEWAL_DUE, id="due-beats-forced"),
    ],
)
def test_precedence(certificate: CertificateFacts, now: datetime, force: bool, reason: Reason) -> None:
    verdict = should_issue(certificate, now, force=force)
    assert verdict is not None and verdict.reason == reason


def test_verdict_is_frozen_and_compares_by_value() -> None:
    verdict = should_issue(facts(current=None), FRESH)
    assert verdict == Verdict("never_issued", "No certificate has been issued yet.")
    with pytest.raises(AttributeError):
        verdict.reason = "other"  # type: ignore[misc]


# --- may_attempt --------------------------------------------------------------------------------

FAILED_AT = NB + 61 * D
BACKING_OFF = facts(
    failure_count=2,
    last_failure_at=FAILED_AT,
    last_failure_message="urn:ietf:params:acme:error:connection: timeout",
    next_attempt_at=FAILED_AT + timedelta(minutes=10),
)
REJECTED = facts(
    failure_count=1,
    last_failure_at=FAILED_AT,
    last_failure_message="urn:ietf:params:acme:error:caa: CAA record forbids issuance",
    rejected=True,
)
DURING = FAILED_AT + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("certificate", "now", "force", "reason", "words"),
    [
        pytest.param(
            BACKING_OFF,
            DURING,
            False,
            Reason.BACKING_OFF,
            "Backing off from issuance due to 2 previously failed issuance(s). "
            "Issuance will next be attempted at 2026-03-03 00:10:00 UTC. Last failure: "
            "urn:ietf:params:acme:error:connection: timeout",
            id="backing-off",
        ),
        pytest.param(
            REJECTED,
            FAILED_AT + 30 * D,
            False,
            Reason.REJECTED,
            "refused the last request permanently: urn:ietf:params:acme:error:caa",
            id="rejected-never-retries-by-itself",
        ),
        pytest.param(
            REJECTED, FAILED_AT, False, Reason.REJECTED, "certkeeper renew owa --force", id="says-what-to-do"
        ),
        pytest.param(facts(enabled=False), FRESH, False, Reason.DISABLED, "disabled", id="disabled"),
        pytest.param(
            facts(enabled=False), FRESH, True, Reason.DISABLED, "disabled", id="force-does-not-enable"
        ),
        pytest.param(
            replace(REJECTED, enabled=False), FRESH, False, Reason.DISABLED, "disabled", id="disabled-first"
        ),
        pytest.param(
            replace(BACKING_OFF, rejected=True),
            DURING,
            False,
            Reason.REJECTED,
            "refused",
            id="rejected-before-backoff",
        ),
        pytest.param(
            facts(names=NAMES[:1], next_attempt_at=FAILED_AT + D),
            DURING,
            False,
            Reason.BACKING_OFF,
            "Backing off",
            id="spec-change-of-unknown-failed-spec-does-not-bypass",
        ),
        pytest.param(
            replace(
                BACKING_OFF, names=NAMES[:1], last_failure_spec=SpecFacts(NAMES[:1], "rsa2048", "letsencrypt")
            ),
            DURING,
            False,
            Reason.BACKING_OFF,
            "Backing off",
            id="new-spec-that-failed-backs-off",
        ),
    ],
)
def test_blocked(
    certificate: CertificateFacts, now: datetime, force: bool, reason: Reason, words: str
) -> None:
    verdict = may_attempt(certificate, now, force=force)
    assert verdict is not None
    assert verdict.reason == reason
    assert words in verdict.message


@pytest.mark.parametrize(
    ("certificate", "now", "force"),
    [
        pytest.param(facts(), FRESH, False, id="no-failures"),
        pytest.param(
            BACKING_OFF, FAILED_AT + timedelta(minutes=10), False, id="backoff-over-at-next-attempt"
        ),
        pytest.param(BACKING_OFF, DURING, True, id="force-bypasses-backoff"),
        pytest.param(REJECTED, DURING, True, id="force-bypasses-rejection"),
        pytest.param(
            replace(
                BACKING_OFF,
                names=(*NAMES, "owa.example.com"),
                last_failure_spec=SpecFacts(NAMES, "rsa2048", "letsencrypt"),
            ),
            DURING,
            False,
            id="spec-change-bypasses-backoff",
        ),
        pytest.param(
            replace(REJECTED, names=NAMES[:1], last_failure_spec=SpecFacts(NAMES, "rsa2048", "letsencrypt")),
            DURING,
            False,
            id="spec-change-bypasses-rejection",
        ),
        pytest.param(
            replace(BACKING_OFF, issuer="adcs", last_failure_spec=SpecFacts(NAMES, "rsa2048", "letsencrypt")),
            DURING,
            False,
            id="issuer-change-bypasses-backoff",
        ),
        pytest.param(facts(pending=True), FRESH, False, id="pending-does-not-block-resuming"),
    ],
)
def test_allowed(certificate: CertificateFacts, now: datetime, force: bool) -> None:
    assert may_attempt(certificate, now, force=force) is None


def test_should_issue_ignores_failures() -> None:
    # Deciding *why* and deciding *whether allowed* are separate: a due, backing-off certificate is
    # still due; the service issues only when should_issue says so and may_attempt does not block.
    verdict = should_issue(BACKING_OFF, DURING)
    assert verdict is not None and verdict.reason == Reason.RENEWAL_DUE
    blocked = may_attempt(BACKING_OFF, DURING)
    assert blocked is not None and blocked.reason == Reason.BACKING_OFF


def test_naive_now_refused() -> None:
    with pytest.raises(ValueError, match="now"):
        should_issue(FACTS, datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="now"):
        may_attempt(FACTS, datetime(2026, 1, 2))


def test_a_request_awaiting_approval_is_not_called_backing_off() -> None:
    from dataclasses import replace as _replace

    from certkeeper.lifecycle.checks import Reason, may_attempt

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    waiting = _replace(
        BACKING_OFF, failure_count=0, last_failure_message=None, pending=True, awaiting_approval="4711",
        next_attempt_at=now + timedelta(hours=1),
    )
    verdict = may_attempt(waiting, now)
    assert verdict is not None and verdict.reason == Reason.AWAITING_APPROVAL
    assert "Request 4711 awaits approval" in verdict.message and "--force" in verdict.message
    assert "previously failed" not in verdict.message
    assert may_attempt(waiting, now, force=True) is None


def test_a_request_awaiting_approval_is_asked_again_when_its_check_time_comes() -> None:
    from dataclasses import replace as _replace

    from certkeeper.lifecycle.checks import may_attempt

    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    waiting = _replace(BACKING_OFF, failure_count=0, last_failure_message=None, pending=True,
                       awaiting_approval="4711", next_attempt_at=now)
    assert may_attempt(waiting, now) is None
