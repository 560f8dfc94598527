"""The renewal engine with a frozen clock: renewal times, backoff across restarts, isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certkeeper.clock import FrozenClock
from certkeeper.config import parse
from certkeeper.errors import StoreError
from certkeeper.model import IssueRequest, IssueResult
from certkeeper.service import Service
from certkeeper.store import certificates as stored
from tests.support import FlakyIssuer, certificate_row, recent_events, stand_in

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
    flaky = stand_in(service, "internal", lambda real: FlakyIssuer(real, failures=5))
    assert isinstance(flaky, FlakyIssuer)

    expected_delays = [timedelta(minutes=1), timedelta(minutes=10), timedelta(minutes=100), timedelta(days=1)]
    for attempt, delay in enumerate(expected_delays, start=1):
        report = service.reconcile()
        assert "mail" in report.failed and "connection refused" in report.failed["mail"]
        row = certificate_row(service, "mail")
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
    row = certificate_row(service, "mail")
    assert row is not None and row.next_attempt_at == clock.now() + timedelta(days=1)
    clock.set(row.next_attempt_at)
    report = service.reconcile()
    assert [o.certificate_id for o in report.issued] == ["mail"]
    row = certificate_row(service, "mail")
    assert row is not None and row.failure_count == 0 and row.next_attempt_at is None
    kinds = [e.kind for e in recent_events(service, "mail", limit=20)]
    assert "recovered" in kinds and kinds.count("renewal_failed") == 5


def test_permanent_rejection_stops_retries_until_forced(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [{"id": "mail", "names": ["mail.contoso.com"]}])
    flaky = stand_in(service, "internal", lambda real: FlakyIssuer(real, failures=1, permanent=True))
    assert isinstance(flaky, FlakyIssuer)
    assert "mail" in service.reconcile().failed
    clock.advance(timedelta(days=30))
    decision = service.reconcile().decisions[0]
    assert decision.action == "blocked" and decision.reason == "rejected"
    assert flaky.calls == 1
    service.inventory.clear_rejection("mail")
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

    stand_in(service, "short", lambda real: Exploding(real, 0))
    report = service.reconcile()
    assert sorted(o.certificate_id for o in report.issued) == ["a", "c"], report.failed
    assert "bug in a plugin" not in report.failed["broken"] or "unexpectedly" in report.failed["broken"]
    assert "broken" in report.failed


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [])
    service.issuance.issue(("mail.contoso.com",))
    clock.advance(timedelta(days=70))
    report = service.reconcile(dry_run=True)
    assert [d.reason for d in report.decisions] == ["renewal_due"]
    assert report.issued == []
    with service.store.session() as session:
        assert stored.overview(session)[0].revision == 1


def test_pending_request_with_a_checkpoint_resumes_the_same_revision(tmp_path: Path) -> None:
    """A crash after the request was placed: the next run resumes with the same key and checkpoint."""
    clock = FrozenClock(START)
    service = _service(tmp_path, clock, [{"id": "mail", "names": ["mail.contoso.com"]}])
    real = service.context.issuer("internal")
    seen: list[Any] = []

    class Crashing(FlakyIssuer):
        def issue(self, request: IssueRequest) -> IssueResult:
            seen.append((request.checkpoint, request.csr_pem))
            if request.checkpoint is None:
                request.save_checkpoint({"order_url": "https://ca.invalid/order/1"})
                raise KeyboardInterrupt  # the process dies here
            return self.real.issue(request)

    service.context.issuers["internal"] = Crashing(real, 0)
    service.specs.sync_config()
    with pytest.raises(KeyboardInterrupt):
        service.issuance.issue_certificate("mail")
    # the lease of the dead process would block; a restart after the TTL takes over
    clock.advance(timedelta(minutes=16))
    restarted = _service(tmp_path, clock, [{"id": "mail", "names": ["mail.contoso.com"]}])
    restarted.context.issuers["internal"] = Crashing(real, 0)
    outcome = restarted.issuance.issue_certificate("mail")
    assert outcome is not None and outcome.revision == 1
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
    service.specs.sync_config()
    with service.store.session() as session:
        stored.record_failure(session, "failing", now=clock.now(), message="down", retryable=True,
                              next_attempt_at=clock.now())
        stored.upsert(session, "never", names=["never.contoso.com"], issuer="internal",
                            key_type="rsa2048", source="cli", now=clock.now())

    def due(decisions: list[Any]) -> set[str]:
        return {d.certificate_id for d in decisions if d.action != "wait"}

    full = due(service.decide(clock.now()))
    fast = due(service.decide(clock.now(), only_due=True))
    assert full == fast == {"due", "changed", "never"} | ({"failing"} & full)
    # an unchanged config does not make everything a candidate again
    service.specs.sync_config()
    with service.store.session() as session:
        assert "fresh" not in stored.due_candidates(session, clock.now())


def test_a_request_left_pending_by_a_failed_store_write_is_finished_without_force(tmp_path: Path) -> None:
    """The store refused the write that records the outcome (full disk, lock): the revision stays
    pending. The next ordinary pass finishes it; no `renew --force` is needed."""
    clock = FrozenClock(START)
    certificates = [{"id": "mail", "names": ["mail.contoso.com"]}]
    service = _service(tmp_path, clock, certificates)
    assert [o.revision for o in service.reconcile().issued] == [1]

    class StoreFailsAfterTheCa(FlakyIssuer):
        def issue(self, request: IssueRequest) -> IssueResult:
            self.real.issue(request)
            raise StoreError("the store's disk is full: free some space, then try again")

    stand_in(service, "internal", lambda real: StoreFailsAfterTheCa(real))
    with pytest.raises(StoreError):
        service.issuance.issue_certificate("mail", reason="forced")
    with service.store.session() as session:
        assert stored.overview(session)[0].pending  # left behind, as a real failed write leaves it
    # a new process, the same store, nothing due by the calendar: the pass still resumes the request
    restarted = _service(tmp_path, clock, certificates)
    decision = restarted.decide(clock.now())[0]
    assert (decision.action, decision.reason) == ("issue", "request_pending")
    report = restarted.reconcile()
    assert [o.revision for o in report.issued] == [2]
    with restarted.store.session() as session:
        assert not stored.overview(session)[0].pending


def test_a_config_sync_with_unchanged_bindings_writes_nothing(tmp_path: Path) -> None:
    """A binding's options compare as stored (JSON lists, not tuples): syncing the same config
    again leaves the spec's updated_at alone (it would otherwise make every certificate a due
    candidate, and make read-only commands write)."""
    clock = FrozenClock(START)
    binding = {"type": "files", "fullchain": str(tmp_path / "out" / "mail.pem"), "key": str(tmp_path / "out" / "k"),
               "verify": ["127.0.0.1:443"]}
    certs = [{"id": "mail", "names": ["mail.contoso.com"], "bindings": [binding]},
             {"id": "owa", "names": ["owa.contoso.com"], "bindings": [{**binding, "name": "second"}]}]
    service = _service(tmp_path, clock, certs)
    service.specs.sync_config()
    first = {cert_id: certificate_row(service, cert_id) for cert_id in ("mail", "owa")}
    clock.advance(timedelta(hours=1))
    service.specs.sync_config()
    again = {cert_id: certificate_row(service, cert_id) for cert_id in ("mail", "owa")}
    assert again == first
    assert again["mail"] is not None and again["mail"].bindings[0]["verify"] == ["127.0.0.1:443"]
    certs[1]["names"] = ["owa.contoso.com", "autodiscover.contoso.com"]
    clock.advance(timedelta(hours=1))
    _service(tmp_path, clock, certs).specs.sync_config()
    changed = certificate_row(service, "owa")
    assert changed is not None and changed.updated_at == clock.now()
    assert certificate_row(service, "mail") == first["mail"]
