"""Leases for CAS arrays, on SQLite and on PostgreSQL (skipped with a message where absent), on a
FrozenClock: nodes racing for a new lease, the issuer lease passing on one TTL after its holder's
last renewal, a dead daemon's instance lock taken over at once on its own host, certificate leases
a live daemon keeps alive, a renewal decided before another node finished it never ordered
again, and a node that wakes up after another one settled its request recording nothing. Whole
daemons in an array: tests/integration/test_cas_array.py."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from certkeeper.clock import FrozenClock
from certkeeper.cluster import ISSUER_LEASE, Holder, Leases, instance_lease_name
from certkeeper.config import parse
from certkeeper.errors import ConcurrencyError, IssuanceError
from certkeeper.service import Service
from certkeeper.store import certificates, leases, revisions
from tests.support import recent_events

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


_OPENED: list[Service] = []


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    try:
        yield url
    finally:
        while _OPENED:  # close every pooled connection before the schema is dropped
            _OPENED.pop().close()


def _service(tmp_path: Path, url: str, clock: FrozenClock, node: str) -> Service:
    config = parse(
        {"store": {"url": url}, "issuers": {"internal": {"type": "internal-ca", "validity_days": 9}},
         "certificates": [{"id": "mail", "names": ["mail.contoso.com"]}]},
        data_dir=tmp_path / "data",
    )
    service = Service.open(config, clock=clock, node=node)
    _OPENED.append(service)
    return service


def test_nodes_racing_for_a_new_lease_get_one_winner_and_no_error(tmp_path: Path, store_url: str) -> None:
    clock = FrozenClock(START)
    services = [_service(tmp_path, store_url, clock, f"cas0{i}") for i in range(1, 7)]
    barrier = threading.Barrier(len(services))
    results: dict[str, Any] = {}

    def take(service: Service) -> None:
        barrier.wait()
        try:
            results[service.node] = service.context.leases.take("issuer", timedelta(seconds=10))
        except Exception as exc:  # the assertion below shows it
            results[service.node] = exc

    threads = [threading.Thread(target=take, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(map(str, results.values())) == ["False"] * 5 + ["True"], results
    winner = next(node for node, held in results.items() if held is True)
    holder = services[0].context.leases.holder_of("issuer")
    assert holder is not None and holder[0].endswith(f":{winner}")


def test_a_live_daemon_keeps_its_certificate_lease_and_a_dead_one_loses_it_after_the_ttl(
    tmp_path: Path, store_url: str
) -> None:
    clock = FrozenClock(START)
    first = _service(tmp_path, store_url, clock, "cas01")
    second = _service(tmp_path, store_url, clock, "cas02")
    first.specs.sync_config()
    ttl = timedelta(seconds=10)

    def take(service: Service) -> bool:
        with service.store.session() as session:
            return leases.take_certificate(session, "mail", str(service.context.holder), clock.now(), ttl)

    def extend(service: Service) -> int:
        with service.store.session() as session:
            return leases.extend_certificates(session, ["mail"], str(service.context.holder), clock.now(), ttl)

    assert take(first)
    for _ in range(3):  # heartbeats every few seconds keep a long issuance leased
        clock.advance(timedelta(seconds=8))
        assert extend(first) == 1
        assert not take(second)
    # the holder is killed: no more heartbeats; another node takes over one TTL later, not 15 minutes
    clock.advance(timedelta(seconds=9))
    assert not take(second)
    clock.advance(timedelta(seconds=2))
    assert extend(first) == 0  # an expired lease is not revived
    assert take(second)


def test_the_heartbeat_extends_only_the_leases_of_certificates_being_issued(tmp_path: Path, store_url: str) -> None:
    clock = FrozenClock(START)
    node = _service(tmp_path, store_url, clock, "cas01")
    node.specs.sync_config()
    ttl = timedelta(seconds=10)
    # a lease left behind (its release failed while the store was down): nothing is being issued
    with node.store.session() as session:
        assert leases.take_certificate(session, "mail", str(node.context.holder), clock.now(), ttl)
    assert node.context.leases.extend_issuing(ttl) == 0
    seen: list[int] = []

    def still_due() -> bool:  # runs under the lease, while "mail" is being issued
        seen.append(node.context.leases.extend_issuing(ttl))
        return False

    node.issuance.issue_certificate("mail", still_due=still_due)
    assert seen == [1]


def test_a_renewal_another_node_finished_meanwhile_is_not_ordered_again(tmp_path: Path, store_url: str) -> None:
    clock = FrozenClock(START)
    first = _service(tmp_path, store_url, clock, "cas01")
    second = _service(tmp_path, store_url, clock, "cas02")
    report = first.reconcile(deploy=False)
    assert [outcome.revision for outcome in report.issued] == [1]
    clock.advance(timedelta(days=5))  # a 9-day certificate renews at half its life
    # cas01 decided to renew (say just before its issuer lease lapsed) ...
    assert [d.action for d in first.decide(clock.now())] == ["issue"]
    # ... but cas02, the new issuer, renewed first
    renewed = second.reconcile(deploy=False)
    assert [outcome.revision for outcome in renewed.issued] == [2]

    def still_due() -> bool:
        return any(d.action == "issue" for d in first.decide(clock.now(), ["mail"]))

    # under the certificate lease cas01 checks again and asks the CA for nothing
    assert first.issuance.issue_certificate("mail", still_due=still_due) is None
    with first.store.session() as session:
        current = revisions.current(session, "mail")
        assert current is not None and current.number == 2
        assert revisions.next_number(session, "mail") == 3


class _PausedPastItsLease:
    """cas01's issuer: while the CA works, cas01 "pauses" (a VM freeze, a stopped process) past
    its certificate lease, and cas02 takes the lease over and finishes the same request; then
    cas01 wakes up with the CA's answer (``fails``: with a retryable error instead)."""

    def __init__(self, real: Any, clock: FrozenClock, other: Service, *, fails: bool) -> None:
        self.name, self.name_policy = real.name, real.name_policy
        self.real, self.clock, self.other, self.fails = real, clock, other, fails

    def issue(self, request: Any) -> Any:
        result = self.real.issue(request)
        self.clock.advance(self.other.context.issue_lease_ttl + timedelta(seconds=1))
        outcome = self.other.issuance.issue_certificate("mail")
        assert outcome is not None and outcome.revision == 1  # cas02 resumed cas01's request 1
        if self.fails:
            raise IssuanceError("CA unavailable (connection reset)", problem="serverInternal")
        return result

    def trust_anchors_pem(self) -> bytes:
        return self.real.trust_anchors_pem()


@pytest.mark.parametrize("fails", [False, True], ids=["late-certificate", "late-failure"])
def test_a_node_that_wakes_after_another_settled_its_request_records_nothing(
    tmp_path: Path, store_url: str, fails: bool
) -> None:
    clock = FrozenClock(START)
    first = _service(tmp_path, store_url, clock, "cas01")
    second = _service(tmp_path, store_url, clock, "cas02")
    first.specs.sync_config()
    first.context.issuers["internal"] = _PausedPastItsLease(
        first.context.issuer("internal"), clock, second, fails=fails
    )
    with pytest.raises(ConcurrencyError, match="settled by another certkeeper process") if not fails \
            else pytest.raises(IssuanceError):
        first.issuance.issue_certificate("mail")
    with first.store.session() as session:
        current = revisions.current(session, "mail")
        assert current is not None and current.number == 1 and current.state == "issued"
        assert current.error is None  # cas01's late failure did not overwrite cas02's certificate
        assert revisions.next_number(session, "mail") == 2
        row = certificates.get(session, "mail")
        assert row.failure_count == 0 and row.last_failure_message is None
    kinds = [event.kind for event in recent_events(first, "mail")]
    assert kinds.count("issued") == 1 and "renewal_failed" not in kinds


def _array_service(tmp_path: Path, url: str, clock: FrozenClock, node: str, names: list[str],
                   bindings: list[dict[str, Any]]) -> Service:
    config = parse(
        {"store": {"url": url}, "issuers": {"internal": {"type": "internal-ca", "validity_days": 9}},
         "certificates": [{"id": "owa", "names": names, "bindings": bindings}],
         "daemon": {"canary": "cas01", "rollout_order": ["cas01", "cas02", "cas03"]}},
        data_dir=tmp_path / "data",
    )
    service = Service.open(config, clock=clock, node=node)
    _OPENED.append(service)
    return service


def test_a_canary_without_a_binding_for_the_certificate_does_not_hold_the_rollout(
    tmp_path: Path, store_url: str
) -> None:
    clock = FrozenClock(START)
    out = tmp_path / "cas02"
    bindings = [{"type": "files", "node": "cas02", "fullchain": str(out / "fullchain.pem"),
                 "key": str(out / "key.pem")}]
    canary = _array_service(tmp_path, store_url, clock, "cas01", ["owa.contoso.com"], bindings)
    second = _array_service(tmp_path, store_url, clock, "cas02", ["owa.contoso.com"], bindings)
    for service in (canary, second):
        Leases(service.store, Holder("localhost", 1, service.node)).beat(service.node, version="test")
    assert canary.reconcile().issued  # the canary issues; it has nothing to deploy for "owa"
    results = second.deployment.deploy("owa")
    assert [(r.ok, r.skipped) for r in results] == [(True, False)], results
    assert (out / "fullchain.pem").read_bytes() == second.inventory.bundle("owa").fullchain_pem


def test_only_the_issuer_writes_the_config_into_the_store(tmp_path: Path, store_url: str) -> None:
    clock = FrozenClock(START)
    issuer = _array_service(tmp_path, store_url, clock, "cas01", ["owa.contoso.com"], [])
    lagging = _array_service(tmp_path, store_url, clock, "cas02", ["owa.contoso.com", "old.contoso.com"], [])
    assert [o.revision for o in issuer.reconcile(issue=True).issued] == [1]
    # a node with an older config deploys but does not flip the spec: an issuer deciding right
    # after such a flip would order a certificate with the lagging node's names
    lagging.reconcile(issue=False)
    with issuer.store.session() as session:
        assert certificates.get(session, "owa").names == ["owa.contoso.com"]
    assert issuer.decide(clock.now())[0].action == "wait"


def test_the_issuer_lease_passes_to_another_node_only_once_its_holder_stops_renewing_it(
    tmp_path: Path, store_url: str
) -> None:
    """The issuer lease of a node killed on another host (its pid cannot be checked): the others
    wait one TTL after its last renewal, not more, not less."""
    clock = FrozenClock(START)
    service = _service(tmp_path, store_url, clock, "cas01")
    ttl = timedelta(seconds=10)
    cas01 = Leases(service.store, Holder("cas01-host", 4242, "cas01"))
    cas02 = Leases(service.store, Holder("cas02-host", 4343, "cas02"))
    assert cas01.take(ISSUER_LEASE, ttl) and not cas02.take(ISSUER_LEASE, ttl)
    for _ in range(3):  # cas01's heartbeat renews it every few seconds
        clock.advance(timedelta(seconds=4))
        assert cas01.take(ISSUER_LEASE, ttl) and not cas02.take(ISSUER_LEASE, ttl)
    renewed = clock.now()
    # cas01 is killed: no more renewals
    clock.set(renewed + ttl - timedelta(seconds=1))
    assert not cas02.take(ISSUER_LEASE, ttl)
    clock.set(renewed + ttl + timedelta(seconds=1))
    assert cas02.take(ISSUER_LEASE, ttl)
    held = cas02.holder_of(ISSUER_LEASE)
    assert held is not None and held[0] == "cas02-host:4343:cas02"
    assert not cas01.take(ISSUER_LEASE, ttl)  # back again, cas01 has lost it


def test_a_daemon_that_died_on_this_host_is_replaced_at_once_a_live_one_is_refused(
    tmp_path: Path, store_url: str
) -> None:
    clock = FrozenClock(START)
    service = _service(tmp_path, store_url, clock, "cas01")
    ttl = timedelta(minutes=2)
    name = instance_lease_name("cas01", shared_store=True)
    gone = subprocess.Popen(["true"])  # a process that ran here and exited: its pid is free
    gone.wait()
    dead = Leases(service.store, Holder(socket.gethostname(), gone.pid, "cas01"))
    dead.acquire_instance(name, ttl, shared_store=True, node="cas01")
    # a restarted daemon on the same host sees the holder's pid is gone: no waiting for the TTL
    restarted = Leases(service.store, Holder(socket.gethostname(), os.getpid(), "cas01"))
    restarted.acquire_instance(name, ttl, shared_store=True, node="cas01")
    held = restarted.holder_of(name)
    assert held is not None and held[0] == f"{socket.gethostname()}:{os.getpid()}:cas01"
    # while that one lives, another daemon calling itself cas01 is refused, with what to do
    twin = Leases(service.store, Holder(socket.gethostname(), os.getppid(), "cas01"))
    with pytest.raises(ConcurrencyError, match=r"already runs on node name 'cas01'.*its own --node name"):
        twin.acquire_instance(name, ttl, shared_store=True, node="cas01")
