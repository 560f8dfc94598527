"""The renewal engine with a frozen clock: renewal times, backoff across restarts, isolation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certkeeper.clock import FrozenClock
from certkeeper.config import parse
from certkeeper.errors import IssuanceError, IssuanceRejected
from certkeeper.hostnames import NamePolicy
from certkeeper.issuers.internal_ca import InternalCA
from certkeeper.model import IssueRequest, IssueResult
from certkeeper.service import Service

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _config(tmp_path: Path, certificates: list[dict[str, Any]], validity_days: float = 90) -> Any:
    return parse(
        {"issuers": {"internal": {"type": "internal-ca", "validity_days": validity_days},
                     "short": {"type": "internal-ca", "validity_days": 9}},
         "certificates": certificates},
        data_dir=tmp_path / "data",
    )


def _service(tmp_path: Path, clock: FrozenClock, certificates: list[dict[str, Any]]) -> Service:
    return Service.open(_config(tmp_path, certificates), clock=clock)


class FlakyIssuer:
    """A test double of the Issuer protocol: fails ``failures`` times, then delegates to a real CA."""

    name_policy = NamePolicy.PRIVATE
    allows_internal_names = True

    def __init__(self, real: InternalCA, failures: int, *, permanent: bool = False) -> None:
        self.name = real.name
        self.real, self.failures, self.permanent, self.calls = real, failures, permanent, 0

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], context: Any) -> FlakyIssuer:
        raise NotImplementedError

    def issue(self, request: IssueRequest) -> IssueResult:
        self.calls += 1
        if self.calls <= self.failures:
            if self.permanent:
                raise IssuanceRejected("the CA refused the names", problem="rejectedIdentifier")
            raise IssuanceError("CA unavailable (connection refused)", problem="serverInternal")
        return self.real.issue(request)

    def trust_anchors_pem(self) -> bytes:
        return self.real.trust_anchors_pem()


def test_nine_day_certificate_renews_at_half_life_and_ninety_day_at_day_sixty(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [
        {"id": "short", "names": ["short.contoso.com"], "issuer": "short"},
        {"id": "long", "names": ["long.contoso.com"], "issuer": "internal"},
    ])
    report = service.reconcile()
    assert sorted(o.certificate_id for o in report.issued) == ["long", "short"]
    outcomes = {o.certificate_id: o for o in report.issued}
    for cert_id, fraction in (("short", 0.5), ("long", 2 / 3)):
        o = outcomes[cert_id]
        lifetime = o.not_after - o.not_before
        assert abs((o.renewal_time - o.not_before) - lifetime * fraction) <= timedelta(seconds=1)

    # the day before: nothing; at the renewal time: exactly the due one renews
    short_due = outcomes["short"].renewal_time
    clock.set(short_due - timedelta(minutes=1))
    assert service.reconcile().issued == []
    clock.set(short_due)
    renewed = service.reconcile().issued
    assert [o.certificate_id for o in renewed] == ["short"] and renewed[0].renewed
    assert renewed[0].revision == 2

    long_due = outcomes["long"].renewal_time
    # day 60 of a 90-day certificate (its notBefore is backdated 5 minutes for clock skew)
    assert abs(long_due - outcomes["long"].not_before - timedelta(days=60)) < timedelta(minutes=5)
    clock.set(long_due)
    assert "long" in [o.certificate_id for o in service.reconcile().issued]  # (short renewed again too)


def test_failures_back_off_on_schedule_and_across_a_restart(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    certificates = [{"id": "mail", "names": ["mail.contoso.com"]}]
    service = _service(tmp_path, clock, certificates)
    flaky = FlakyIssuer(service.issuer("internal"), failures=5)  # type: ignore[arg-type]
    service._issuers["internal"] = flaky  # type: ignore[assignment]

    expected_delays = [timedelta(minutes=1), timedelta(minutes=10), timedelta(minutes=100), timedelta(days=1)]
    for attempt, delay in enumerate(expected_delays, start=1):
        report = service.reconcile()
        assert "mail" in report.failed and "connection refused" in report.failed["mail"]
        row = service.repository.find_certificate("mail")
        assert row is not None and row.failure_count == attempt
        assert row.next_attempt_at == clock.now() + delay
        # just before the next attempt: blocked, no call to the CA
        clock.set(row.next_attempt_at - timedelta(seconds=1))
        calls = flaky.calls
        decision = service.reconcile().decisions[0]
        assert decision.action == "blocked" and decision.reason == "backing_off"
        assert flaky.calls == calls
        # a "restart": a new service over the same store keeps waiting
        restarted = _service(tmp_path, clock, certificates)
        assert restarted.decide(clock.now())[0].reason == "backing_off"
        clock.set(row.next_attempt_at)

    report = service.reconcile()  # fifth failure, still daily
    row = service.repository.find_certificate("mail")
    assert row is not None and row.next_attempt_at == clock.now() + timedelta(days=1)
    clock.set(row.next_attempt_at)
    report = service.reconcile()
    assert [o.certificate_id for o in report.issued] == ["mail"]
    row = service.repository.find_certificate("mail")
    assert row is not None and row.failure_count == 0 and row.next_attempt_at is None
    kinds = [e.kind for e in service.repository.events("mail", limit=20)]
    assert "recovered" in kinds and kinds.count("renewal_failed") == 5


def test_permanent_rejection_stops_retries_until_forced(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [{"id": "mail", "names": ["mail.contoso.com"]}])
    flaky = FlakyIssuer(service.issuer("internal"), failures=1, permanent=True)  # type: ignore[arg-type]
    service._issuers["internal"] = flaky  # type: ignore[assignment]
    assert "mail" in service.reconcile().failed
    clock.advance(timedelta(days=30))
    decision = service.reconcile().decisions[0]
    assert decision.action == "blocked" and decision.reason == "rejected"
    assert flaky.calls == 1
    service.clear_rejection("mail")
    assert [o.certificate_id for o in service.reconcile(force=True).issued] == ["mail"]


def test_one_failing_certificate_does_not_hold_back_the_others(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [
        {"id": "a", "names": ["a.contoso.com"]},
        {"id": "broken", "names": ["broken.contoso.com"], "issuer": "short"},
        {"id": "c", "names": ["c.contoso.com"]},
    ])

    class Exploding(FlakyIssuer):
        def issue(self, request: IssueRequest) -> IssueResult:
            raise RuntimeError("bug in a plugin")

    service._issuers["short"] = Exploding(service.issuer("short"), 0)  # type: ignore[arg-type,assignment]
    report = service.reconcile()
    assert sorted(o.certificate_id for o in report.issued) == ["a", "c"], report.failed
    assert "bug in a plugin" not in report.failed["broken"] or "unexpectedly" in report.failed["broken"]
    assert "broken" in report.failed


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [])
    service.issue(("mail.contoso.com",))
    clock.advance(timedelta(days=70))
    report = service.reconcile(dry_run=True)
    assert [d.reason for d in report.decisions] == ["renewal_due"]
    assert report.issued == []
    assert service.repository.overview()[0].revision == 1


def test_pending_request_with_a_checkpoint_resumes_the_same_revision(tmp_path: Path) -> None:
    """A crash after the request was placed: the next run resumes with the same key and checkpoint."""
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [{"id": "mail", "names": ["mail.contoso.com"]}])
    real = service.issuer("internal")
    seen: list[Any] = []

    class Crashing(FlakyIssuer):
        def issue(self, request: IssueRequest) -> IssueResult:
            seen.append((request.checkpoint, request.csr_pem))
            if request.checkpoint is None:
                request.save_checkpoint({"order_url": "https://ca.invalid/order/1"})
                raise KeyboardInterrupt  # the process dies here
            return self.real.issue(request)

    service._issuers["internal"] = Crashing(real, 0)  # type: ignore[arg-type,assignment]
    service.sync_config()
    with pytest.raises(KeyboardInterrupt):
        service.issue_certificate("mail")
    # the lease of the dead process would block; a restart after the TTL takes over
    clock.advance(timedelta(minutes=16))
    restarted = _service(tmp_path, clock, [{"id": "mail", "names": ["mail.contoso.com"]}])
    restarted._issuers["internal"] = Crashing(real, 0)  # type: ignore[arg-type,assignment]
    outcome = restarted.issue_certificate("mail")
    assert outcome.revision == 1
    assert seen[1][0] == {"order_url": "https://ca.invalid/order/1"} and seen[1][1] == seen[0][1]


def test_the_due_prefilter_never_misses_what_the_full_chain_would_issue(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    certificates = [
        {"id": "fresh", "names": ["fresh.contoso.com"]},
        {"id": "due", "names": ["due.contoso.com"], "issuer": "short"},
        {"id": "changed", "names": ["changed.contoso.com"]},
        {"id": "failing", "names": ["failing.contoso.com"]},
    ]
    service = _service(tmp_path, clock, certificates)
    service.reconcile()
    clock.advance(timedelta(days=5))  # the 9-day certificate is past half its life
    certificates[2]["names"] = ["changed.contoso.com", "autodiscover.contoso.com"]
    service = _service(tmp_path, clock, certificates)
    service.sync_config()
    with service.repository.session() as session:
        service.repository.get_certificate(session, "failing").failure_count = 1
    service.repository.upsert_certificate("never", names=["never.contoso.com"], issuer="internal",
                                          key_type="rsa2048", source="cli")

    def due(decisions: list[Any]) -> set[str]:
        return {d.certificate_id for d in decisions if d.action != "wait"}

    full = due(service.decide(clock.now()))
    fast = due(service.decide(clock.now(), only_due=True))
    assert full == fast == {"due", "changed", "never"} | ({"failing"} & full)
    # an unchanged config does not make everything a candidate again
    service.sync_config()
    assert "fresh" not in service.repository.due_candidates(clock.now())
