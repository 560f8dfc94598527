"""A CAS array in one process, on a FrozenClock: what the daemons decide, without waiting for it.

Three :class:`certkeeper.daemon.Daemon` objects (cas01, the canary, then cas02 and cas03) share
one PostgreSQL store; the test calls their jobs (``heartbeat``, ``reconcile``, ``deliver_alerts``)
by hand and moves the clock, so lease TTLs, the 3 x TTL "node is down" rule and renewal times pass
at once. Each node binds its own real gateway (nginx for cas01 and cas02, HAProxy for cas03), so
what is served is proven by a TLS handshake. Shown here: a renewal is issued once and rolled out
canary first; an issuer that dies while the CA holds its answer is replaced once its lease
expires, with exactly one re-request and nothing half-deployed, and the rollout goes on without a
dead canary once its heartbeat is 3 x TTL old; a failing canary stops the rollout, keeps its old
certificate and raises an alert.

What needs real processes (SIGKILL, a PostgreSQL restart under running daemons, a daemon that
takes its node name back) is tests/e2e/test_cas_array.py. A CAS array needs PostgreSQL (SQLite
stores take one daemon): these tests skip with a message where it is not reachable; the lease
rules themselves run on SQLite too (tests/integration/test_cas_leases.py).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from certkeeper.clock import FrozenClock, SystemClock
from certkeeper.cluster import DEAD_AFTER_TTLS, ISSUER_LEASE
from certkeeper.config import Config, parse
from certkeeper.daemon import Daemon
from certkeeper.reports import node_matrix
from certkeeper.service import Service
from certkeeper.store import leases
from certkeeper.store.tables import deployments as deployment_table
from certkeeper.store.tables import events as event_table
from certkeeper.store.tables import revisions as revision_table
from tests.fixtures.certsrv import CertsrvDouble
from tests.fixtures.gateways import NginxGateway, TestPKI, _stop, gateway_binding, start_cas_gateways
from tests.fixtures.http import HttpStub
from tests.support import DiesAtTheCa, Doomed, Killed, served_fingerprint, stand_in

pytestmark = pytest.mark.postgres

NODES = ("cas01", "cas02", "cas03")
NAMES = ["mail.contoso.com", "autodiscover.contoso.com"]
TTL = timedelta(seconds=10)  # [daemon] lease_ttl_seconds (its minimum)
SECOND = timedelta(seconds=1)


class Array:
    """Three in-process daemons on one store, their gateways, and the clock they share."""

    def __init__(self, home: Path, url: str, pki: TestPKI) -> None:
        self.home, self.url = home, url
        self.clock = FrozenClock(SystemClock().now())  # certificates from a CA double carry real times
        first = pki.bundle(*NAMES, common_name=NAMES[0])
        self.old_fingerprint = first.fingerprint
        self.gateways = start_cas_gateways(home, first)
        self.nodes: dict[str, Daemon] = {}
        self.retired: list[Daemon] = []
        self.config: Config | None = None

    def binding(self, node: str, reload: list[str] | None = None) -> dict[str, Any]:
        return gateway_binding(node, self.gateways[node], reload)

    def configure(self, issuer: dict[str, Any], *, bindings: list[dict[str, Any]] | None = None,
                  notifiers: dict[str, Any] | None = None) -> None:
        """The array's one config; the store is migrated once (the daemon never migrates)."""
        data: dict[str, Any] = {
            "store": {"url": self.url},
            "issuers": {"ca": issuer},
            "certificates": [{"id": "mail", "names": NAMES, "issuer": "ca",
                              "bindings": bindings or [self.binding(node) for node in NODES]}],
            "daemon": {"lease_ttl_seconds": int(TTL.total_seconds()), "metrics_address": "",
                       "canary": "cas01", "rollout_order": list(NODES)},
        }
        if notifiers:
            data["notifiers"] = notifiers
        self.config = parse(data, data_dir=self.home / "data")
        Service.open(self.config, clock=self.clock).close()
        for node in NODES:
            self.start(node)

    def start(self, node: str) -> Daemon:
        """A daemon for ``node`` (a restarted node is a new one, knowing only the store)."""
        assert self.config is not None
        if node in self.nodes:
            self.retired.append(self.nodes[node])
        self.nodes[node] = Daemon(self.config, node=node, clock=self.clock)
        return self.nodes[node]

    def beat(self, *nodes: str) -> None:
        for node in nodes or NODES:
            self.nodes[node].heartbeat()

    def advance(self, by: timedelta, *, beating: tuple[str, ...] = NODES) -> None:
        """Move the clock; the nodes in ``beating`` are alive (their heartbeat jobs run)."""
        self.clock.advance(by)
        self.beat(*beating)

    def reconcile(self, *nodes: str) -> None:
        for node in nodes:
            self.nodes[node].reconcile()

    # -- the store, read through one node's session ---------------------------------------------

    def service(self) -> Service:
        return next(iter(self.nodes.values())).service

    def revisions(self) -> list[tuple[int, str]]:
        with self.service().store.session() as session:
            rows = session.execute(select(revision_table.c.number, revision_table.c.state)
                                   .where(revision_table.c.certificate_id == "mail")
                                   .order_by(revision_table.c.number))
            return [(number, state) for number, state in rows]

    def revision(self, number: int) -> tuple[int, str, int | None]:
        """(id, fingerprint, replaces_revision_id) of an issued revision."""
        with self.service().store.session() as session:
            row = session.execute(select(revision_table).where(
                revision_table.c.certificate_id == "mail", revision_table.c.number == number)).one()
            assert row.state == "issued" and row.fingerprint_sha256, (row.number, row.state)
            return row.id, row.fingerprint_sha256, row.replaces_revision_id

    def deployments(self) -> dict[tuple[int, str], tuple[str, str | None]]:
        """(revision number, node) -> (state, error)."""
        with self.service().store.session() as session:
            d, r = deployment_table.c, revision_table.c
            rows = session.execute(select(r.number, d.node, d.state, d.error)
                                   .select_from(deployment_table)
                                   .join(revision_table, r.id == d.revision_id))
            return {(number, node): (state, error) for number, node, state, error in rows}

    def events(self, *kinds: str) -> list[tuple[str, int | None, str | None]]:
        with self.service().store.session() as session:
            e = event_table.c
            rows = session.execute(select(e.kind, e.revision_id, e.node).where(e.kind.in_(kinds)).order_by(e.id))
            return [(kind, revision_id, node) for kind, revision_id, node in rows]

    def issuer(self) -> str | None:
        with self.service().store.session() as session:
            held = leases.holder(session, ISSUER_LEASE)
        if held is None or held[1] < self.clock.now():
            return None
        return held[0].rsplit(":", 1)[1]

    def served(self, node: str) -> str:
        return served_fingerprint(self.gateways[node].endpoint, NAMES[0])

    def matrix(self) -> dict[str, Any]:
        assert self.config is not None
        return node_matrix(self.service().store, self.clock.now(), self.config.settings)

    def close(self) -> None:
        for daemon in [*self.nodes.values(), *self.retired]:
            daemon.service.close()
        for gateway in self.gateways.values():
            _stop(gateway.process)


@pytest.fixture
def array(tmp_path: Path, postgres_url: str, test_pki: TestPKI) -> Iterator[Array]:
    made = Array(tmp_path, postgres_url, test_pki)
    try:
        yield made
    finally:
        made.close()  # every pooled connection closed before the schema is dropped


def test_a_renewal_is_issued_once_and_rolled_out_canary_first(array: Array) -> None:
    array.configure({"type": "internal-ca", "validity_days": 9})
    array.beat()
    # cas02 happens to reconcile first: it takes the issuer lease and issues, but it is second in
    # the rollout, and cas03 third: both wait for the canary
    array.reconcile("cas02", "cas03")
    assert array.issuer() == "cas02"
    assert array.revisions() == [(1, "issued")]
    assert array.deployments() == {}
    waiting = array.nodes["cas03"].service.deployment.deploy("mail")
    assert [r.message for r in waiting] == ["waiting for node cas01 to deploy and verify this revision first"]

    array.reconcile("cas01")  # the canary: not the issuer, it deploys what the issuer stored
    assert array.issuer() == "cas02" and array.revisions() == [(1, "issued")]
    array.advance(SECOND)
    array.reconcile("cas03")
    assert set(array.deployments()) == {(1, "cas01")}  # cas03 waits for cas02 now
    array.reconcile("cas02", "cas03")
    first_id, first, _ = array.revision(1)
    assert array.deployments() == {(1, node): ("verified", None) for node in NODES}
    assert all(array.served(node) == first for node in NODES)

    # five days later the 9-day certificate is due; the heartbeats kept cas02 the issuer, so the
    # other nodes, reconciling first, do not issue; cas02 issues once
    array.advance(timedelta(days=5))
    array.reconcile("cas01", "cas03")
    assert array.revisions() == [(1, "issued")] and array.issuer() == "cas02"
    array.reconcile("cas02")
    array.reconcile("cas02")  # a second pass orders nothing more
    assert array.revisions() == [(1, "issued"), (2, "issued")]
    second_id, second, replaces = array.revision(2)
    assert replaces == first_id
    assert array.events("issued", "renewed") == [("issued", first_id, "cas02"), ("renewed", second_id, "cas02")]
    assert (2, "cas02") not in array.deployments()  # cas02 waits for the canary again

    # the rollout, one node at a time in order: canary, cas02, cas03
    for node in NODES:
        for later in NODES[NODES.index(node) + 1:]:
            array.reconcile(later)
            assert (2, later) not in array.deployments(), later
        array.advance(SECOND)
        array.reconcile(node)
        assert array.deployments()[(2, node)] == ("verified", None)
        assert array.served(node) == second
    matrix = array.matrix()
    assert [(n["name"], n["alive"], n["issuer"]) for n in matrix["nodes"]] == [
        ("cas01", True, False), ("cas02", True, True), ("cas03", True, False)]
    assert [(r["node"], r["revision"], r["drift"]) for r in matrix["rows"]] == [(n, 2, False) for n in NODES]


def test_an_issuer_that_dies_mid_issuance_is_replaced_when_its_lease_expires(
    array: Array, certsrv_factory: Any
) -> None:
    double: CertsrvDouble = certsrv_factory()
    entered, release = threading.Event(), threading.Event()
    original = double.submit

    def held_answer(form: dict[str, str], auth_scheme: str | None) -> bytes:
        # the first request reaches the CA, which issues; its answer is held back until the end
        page: bytes = original(form, auth_scheme)
        if len(double.submissions) == 1:
            entered.set()
            release.wait(60)
        return page

    double.submit = held_answer  # type: ignore[method-assign]
    array.configure({"type": "adcs", **double.options()})
    array.beat()
    started = array.clock.now()
    # cas01, the canary, is the issuer; it dies while the CA holds its answer (nothing it would do
    # after that point happens: no checkpoint, no heartbeat, no release of its leases)
    victim = array.nodes["cas01"]
    stand_in(victim.service, "ca", DiesAtTheCa)
    doomed = Doomed(victim.reconcile)
    try:
        assert entered.wait(30), "the issuer never reached the CA"
        assert array.issuer() == "cas01"
        assert array.revisions() == [(1, "pending")]
        with array.service().store.session() as session:
            lease = leases.certificate_holder(session, "mail")
        assert lease == str(victim.service.context.holder) and lease.endswith(":cas01")

        # within the TTL the others wait: the lease might belong to a slow but live issuer
        array.advance(TTL - SECOND, beating=("cas02", "cas03"))
        array.reconcile("cas02", "cas03")
        assert array.issuer() == "cas01" and len(double.submissions) == 1

        # one TTL after its last heartbeat the issuer lease and the certificate's lease have
        # expired: cas02 takes over and resumes the pending revision (same key): one re-request
        array.advance(2 * SECOND, beating=("cas02", "cas03"))
        array.reconcile("cas02")
        assert array.issuer() == "cas02"
        assert len(double.submissions) == 2, double.submissions
        assert array.revisions() == [(1, "issued")]
        revision_id, fingerprint, _ = array.revision(1)
        answered = double.requests[max(double.requests)].cert  # what the CA issued the second time
        assert answered is not None and hashlib.sha256(answered.public_bytes(Encoding.DER)).hexdigest() == fingerprint

        # the dead canary still counts as up until its heartbeat is 3 x TTL old: nobody deploys
        array.reconcile("cas03", "cas02")
        assert array.deployments() == {}
        array.clock.set(started + DEAD_AFTER_TTLS * TTL - SECOND)
        array.beat("cas02", "cas03")
        array.reconcile("cas02", "cas03")
        assert array.deployments() == {}
        array.clock.set(started + DEAD_AFTER_TTLS * TTL + SECOND)
        array.beat("cas02", "cas03")
        array.reconcile("cas03")
        assert array.deployments() == {}  # cas03 still waits for cas02, which is alive
        array.reconcile("cas02", "cas03")
        assert array.deployments() == {(1, "cas02"): ("verified", None), (1, "cas03"): ("verified", None)}
        assert array.served("cas02") == array.served("cas03") == fingerprint
        assert array.served("cas01") == array.old_fingerprint  # the dead node serves what it had
        matrix = array.matrix()
        nodes = {n["name"]: (n["alive"], n["issuer"]) for n in matrix["nodes"]}
        assert nodes == {"cas01": (False, False), "cas02": (True, True), "cas03": (True, False)}
        assert {r["revision_id"] for r in _all_deployments(array)} == {revision_id}  # nothing half-deployed

        # restarted, the canary knows only the store: it deploys revision 1 and orders nothing
        array.start("cas01")
        array.advance(SECOND)
        array.reconcile("cas01")
        assert array.served("cas01") == fingerprint
        assert len(double.submissions) == 2 and array.revisions() == [(1, "issued")]
    finally:
        release.set()
        ended = doomed.stop()
    assert isinstance(ended, Killed), ended


def _all_deployments(array: Array) -> list[dict[str, Any]]:
    with array.service().store.session() as session:
        return [{"revision_id": row.revision_id, "node": row.node, "state": row.state}
                for row in session.execute(select(deployment_table))]


def test_a_failing_canary_stops_the_rollout_and_keeps_its_certificate(array: Array, http_stub: HttpStub) -> None:
    broken = array.home / "canary-reload-broken"
    canary = array.gateways["cas01"]
    assert isinstance(canary, NginxGateway)
    # cas01's reload works until the flag file exists (a broken gateway config, say)
    reload = ["sh", "-c", f'test ! -e "{broken}" && exec "$0" "$@"', *canary.settled_reload_argv]
    bindings = [array.binding("cas01", reload=reload), array.binding("cas02"), array.binding("cas03")]
    array.configure({"type": "internal-ca", "validity_days": 9}, bindings=bindings,
                    notifiers={"slack": http_stub.notifier_table("slack", "/slack")})
    array.beat()
    array.reconcile(*NODES)
    first_id, first, _ = array.revision(1)
    assert array.deployments() == {(1, node): ("verified", None) for node in NODES}

    broken.touch()
    array.advance(timedelta(days=5))
    array.reconcile("cas01")  # the issuer and canary: renews, fails to deploy, rolls back
    second_id, _second, _ = array.revision(2)
    state, error = array.deployments()[(2, "cas01")]
    assert state == "failed" and "reload" in (error or ""), error
    for _ in range(2):  # two more passes on every node, a minute apart
        array.advance(timedelta(minutes=1))
        array.reconcile(*NODES)
    assert {node for number, node in array.deployments() if number == 2} == {"cas01"}
    assert array.revisions() == [(1, "issued"), (2, "issued")]
    for node in NODES:
        assert array.served(node) == first, node
    failed = array.events("deploy_failed")
    assert failed and all(node == "cas01" and revision == second_id for _kind, revision, node in failed), failed

    array.nodes["cas01"].deliver_alerts()
    slack = [json.loads(r.body) for r in http_stub.requests if r.path == "/slack"]
    assert any("cas01" in json.dumps(body) and "deploy" in body["text"].lower() for body in slack), slack
    latest = {r["node"]: r for r in array.matrix()["rows"]}
    assert latest["cas01"]["revision"] == 2 and latest["cas01"]["state"] == "failed", latest
    assert latest["cas02"]["revision"] == 1 and latest["cas03"]["revision"] == 1, latest
    assert all(r["drift"] for r in latest.values()), latest  # nobody serves the current revision
    assert first_id != second_id
