"""A CAS array of real daemon processes (cas01, cas02, cas03) on one PostgreSQL store, with Pebble.

The real-time smoke test: what can only be shown with processes, on the wall clock. Each node
binds its own loopback gateway (nginx for cas01 and cas02, HAProxy for cas03) through a binding
scoped to it; one node at a time holds the issuer lease. Shown here: the issuer killed with SIGKILL
in the middle of an ACME order is replaced within the lease TTL, and its order is resumed from the
checkpoint (one order per issuance); a second daemon with a running node's name is refused; the
daemons survive a PostgreSQL restart (see tests/fixtures/postgres.py) with no manual step; the
killed node, restarted, takes its name back and catches up; the renewal is one more order, served
by every node in rollout order with no drift; ``status --nodes`` says so; SIGTERM stops every node
with exit status 0.

The decisions behind this (lease expiry, the rollout gate, a dead canary, a failing canary, one
re-request after a lost answer) are shown on a FrozenClock in tests/integration/test_cas_array.py.

Needs PostgreSQL at 127.0.0.1:5432, nginx, haproxy and Pebble (each skips with a message).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from tests.fixtures.core import certkeeper_env, run_cli, to_toml
from tests.fixtures.gateways import HaproxyGateway, NginxGateway, TestPKI, _stop, gateway_binding, start_cas_gateways
from tests.fixtures.pebble import ChallTestSrv, PebbleFactory
from tests.fixtures.postgres import RestartablePostgres
from tests.support import served_fingerprint, start_certkeeper, stop_process, wait_for, write_dns_hook

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

NODES = ("cas01", "cas02", "cas03")
NAMES = ["mail.contoso.com", "autodiscover.contoso.com"]
TTL = 10  # [daemon] lease_ttl_seconds (its minimum)
VALIDITY = 30  # seconds: Pebble's certificates renew about 15 s after they are issued


def _can_unshare_uts() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10).returncode == 0


SEPARATE_HOSTS = _can_unshare_uts()


@dataclass
class Array:
    home: Path
    url: str
    pki: TestPKI
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    gateways: dict[str, NginxGateway | HaproxyGateway] = field(default_factory=dict)
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.url, pool_pre_ping=True)

    def start_gateways(self) -> None:
        self.gateways.update(start_cas_gateways(self.home, self.pki.bundle(*NAMES, common_name=NAMES[0])))

    def binding(self, node: str) -> dict[str, Any]:
        return gateway_binding(node, self.gateways[node])

    def write_config(self, issuer: dict[str, Any]) -> None:
        config: dict[str, Any] = {
            "store": {"url": self.url},
            "issuers": {"ca": issuer},
            "certificates": [{"id": "mail", "names": NAMES, "issuer": "ca",
                              "bindings": [self.binding(node) for node in NODES]}],
            "daemon": {"reconcile_minutes": 0.02, "lease_ttl_seconds": TTL, "metrics_address": "",
                       "canary": "cas01", "rollout_order": list(NODES)},
        }
        (self.home / "certkeeper.toml").write_text(to_toml(config))
        # the schema is created once, before the nodes start (the daemon never migrates by itself)
        migrated = run_cli("db", "upgrade", env=self.env("cli"))
        assert migrated.returncode == 0, migrated.stderr

    def env(self, node: str) -> dict[str, str]:
        return certkeeper_env(CERTKEEPER_CONFIG=self.home / "certkeeper.toml", CERTKEEPER_DATA_DIR=self.home / node,
                              CERTKEEPER_SECRET_KEY=self.secret_key)

    def start(self, node: str) -> None:
        prefix: tuple[str, ...] = ()
        if SEPARATE_HOSTS:
            # each node gets its own host name (a UTS namespace), as on real CAS servers: a lease
            # left by a killed node then cannot be seen as dead by pid, only by its TTL
            prefix = ("unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', f"{node}-host")
        # its own session: a kill -9 of the node takes its children (a DNS hook) with it
        self.daemons[node] = start_certkeeper("daemon", "--node", node, env=self.env(node),
                                              log=self.home / f"{node}.log", argv_prefix=prefix, new_session=True)

    def stop(self) -> dict[str, int]:
        for process in self.daemons.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        self.codes.update({node: stop_process(process, terminate=False) for node, process in self.daemons.items()})
        return self.codes

    def kill(self, node: str) -> None:
        os.killpg(self.daemons[node].pid, signal.SIGKILL)
        self.codes[node] = self.daemons.pop(node).wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.home.glob("cas0*.log")))

    def wait(self, check: Any, timeout: float, what: str) -> Any:
        return wait_for(check, timeout, interval=0.25, what=what, context=self.logs)

    # -- the store, read directly ---------------------------------------------------------------

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def revisions(self) -> list[Any]:
        return self.rows("select id, number, state, fingerprint_sha256, replaces_revision_id, checkpoint "
                         "from revisions where certificate_id = 'mail' order by number")

    def issued(self, number: int) -> Any:
        return next((r for r in self.revisions() if r.number == number and r.state == "issued"), None)

    def deployments(self, revision_id: int) -> dict[str, Any]:
        return {r.node: r for r in self.rows(
            "select node, state, served_fingerprint, verified_at, error from deployments "
            "where revision_id = :rid", rid=revision_id)}

    def verified_on(self, number: int, nodes: tuple[str, ...] = NODES) -> Any:
        revision = self.issued(number)
        if revision is None:
            return None
        rows = self.deployments(revision.id)
        if all(node in rows and rows[node].state == "verified" for node in nodes):
            return revision
        return None

    def issuer_node(self) -> str | None:
        rows = self.rows("select holder from leases where name = 'issuer'")
        return rows[0].holder.rsplit(":", 1)[1] if rows else None

    def served(self, node: str) -> str:
        return served_fingerprint(self.gateways[node].endpoint, NAMES[0])


@pytest.fixture
def array(tmp_path: Path, restartable_postgres: RestartablePostgres, test_pki: TestPKI) -> Iterator[Array]:
    made = Array(tmp_path, restartable_postgres.url, test_pki)
    try:
        made.start_gateways()
        yield made
    finally:
        made.stop()
        for gateway in made.gateways.values():
            _stop(gateway.process)
        made.engine.dispose()


def test_daemons_share_the_work_survive_a_kill_and_a_postgres_restart_and_renew_once(
    array: Array, restartable_postgres: RestartablePostgres, pebble_factory: PebbleFactory,
    challtestsrv: ChallTestSrv,
) -> None:
    pebble = pebble_factory.start(dns_server=challtestsrv.dns_address, name="pebble-cas",
                                  config={"certificateValidityPeriod": VALIDITY})

    def orders() -> int:
        return len(re.findall(r"Added order ", pebble.log()))

    hang, started = array.home / "hang", array.home / "hook-started"
    hook = write_dns_hook(array.home / "dns-hook.py", challtestsrv.management_port, hang=hang, started=started)
    array.write_config({
        "type": "acme", "directory": pebble.directory, "contact": ["mailto:exchange-admins@contoso.com"],
        "agree_tos": True, "ca_bundle": str(pebble.ca_bundle), "challenge": "dns-01", "public_names_only": False,
        "dns01": {"mode": "exec", "script": str(hook), "cname_delegation": False},
    })
    # cas03, last in the rollout order, starts first and becomes the issuer; its DNS hook hangs:
    # the order is placed, its challenge never published
    hang.touch()
    array.start("cas03")
    try:
        array.wait(started.exists, 60, "the issuer's order and DNS hook")
        assert array.issuer_node() == "cas03"
        assert orders() == 1
        (pending,) = array.revisions()
        assert pending.state == "pending" and pending.checkpoint, pending
        lease = array.rows("select lease_holder from certificates where id = 'mail'")[0].lease_holder
        assert lease.endswith(f":{array.daemons['cas03'].pid}:cas03"), lease
        if SEPARATE_HOSTS:
            assert lease.startswith("cas03-host:"), lease  # the others cannot check this pid
        array.start("cas01")
        array.start("cas02")
        array.kill("cas03")
        killed = time.monotonic()
        hang.unlink()

        # a survivor takes the issuer lease when it expires and resumes the dead node's order
        first = array.wait(lambda: array.issued(1), 3 * TTL + 20, "another node to finish the order")
        took = time.monotonic() - killed
        assert array.issuer_node() in ("cas01", "cas02")
        # the lease TTL (10 s) plus a reconcile pass and the rest of the order, with room for a
        # loaded machine: not the 15-minute default
        assert took < 2 * TTL + 10, took
        assert orders() == 1  # never ordered twice
        # cas03 is dead, but last in the order: the survivors do not wait for it
        array.wait(lambda: array.verified_on(1, ("cas01", "cas02")), 30, "revision 1 on cas01 and cas02")

        # node names are unique: a second daemon calling itself cas02 is refused while cas02 runs
        twin = run_cli("daemon", "--node", "cas02", env=array.env("twin"), timeout=60)
        assert twin.returncode == 1 and "already runs on node name 'cas02'" in twin.stderr, twin.stderr

        # PostgreSQL restarts under the running daemons; then the killed node, which still serves
        # what it had, comes back under its own name (on its own host, its dead pid frees the
        # name at once) and catches up with the renewal below
        assert array.served("cas03") not in (first.fingerprint_sha256, None)
        restarted = time.time()
        restartable_postgres.restart()
        array.start("cas03")

        # the renewal: one more order, rolled out canary first, then cas02, then cas03
        second = array.wait(lambda: array.verified_on(2), VALIDITY + 20, "revision 2 served by every node")
        assert orders() == 2, pebble.log()[-2000:]
        revisions = array.revisions()
        assert [(r.number, r.state) for r in revisions] == [(1, "issued"), (2, "issued")], revisions
        assert second.replaces_revision_id == first.id
        kinds = array.rows("select kind, revision_id from events where kind in ('issued', 'renewed') order by id")
        assert [(k.kind, k.revision_id) for k in kinds] == [("issued", first.id), ("renewed", second.id)]
        assert {r.revision_id for r in array.rows("select revision_id from deployments")} == {first.id, second.id}
        for node in NODES:
            assert array.served(node) == second.fingerprint_sha256, node
        rows = array.deployments(second.id)
        assert rows["cas01"].verified_at <= rows["cas02"].verified_at <= rows["cas03"].verified_at, rows
        assert all(process.poll() is None for process in array.daemons.values()), array.logs()
        heartbeats = array.rows("select name, heartbeat_at from nodes")
        assert all(row.heartbeat_at.timestamp() > restarted for row in heartbeats), heartbeats

        status = run_cli("status", "--nodes", "--json", env=array.env("cli"))
        assert status.returncode == 0, status.stderr
        matrix = json.loads(status.stdout)
        assert {n["name"] for n in matrix["nodes"]} == set(NODES)
        assert all(n["heartbeat_at"] and n["version"] and n["host"] and n["alive"] for n in matrix["nodes"])
        issuers = [n["name"] for n in matrix["nodes"] if n["issuer"]]
        assert issuers in (["cas01"], ["cas02"]), matrix["nodes"]
        assert {r["node"]: r["revision"] for r in matrix["rows"]} == dict.fromkeys(NODES, 2), matrix
        assert all(not r["drift"] and r["served_fingerprint"] == second.fingerprint_sha256 and r["verified_at"]
                   for r in matrix["rows"]), matrix
        table = run_cli("status", "--nodes", env=array.env("cli"))
        assert table.returncode == 0 and f"Issuer: {issuers[0]}" in table.stdout, table.stdout
        assert all(f"{node} " in table.stdout for node in NODES) and " yes " not in table.stdout, table.stdout
    finally:
        codes = array.stop()
    assert codes == {"cas01": 0, "cas02": 0, "cas03": 0}, (codes, array.logs())
    assert "PRIVATE KEY" not in array.logs()
