"""A CAS array: three daemon processes (cas01, cas02, cas03) on one PostgreSQL store.

Each node binds its own loopback gateway (nginx for cas01 and cas02, HAProxy for cas03) through a
binding scoped to it; one node at a time holds the issuer lease. Shown here: a renewal is issued
once and served by every node in rollout order (canary first) with no drift; the issuer killed
with SIGKILL in the middle of an issuance is replaced within the lease TTL with one re-request and
nothing half-deployed; a PostgreSQL restart is survived with no manual step; a failing canary
stops the rollout, keeps its old certificate and raises an alert.

Needs PostgreSQL at 127.0.0.1:5432 (skips with a message otherwise), nginx and haproxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import create_engine, text

from tests.fixtures.core import REPO_ROOT, run_cli, to_toml
from tests.fixtures.gateways import HaproxyGateway, NginxGateway, TestPKI, _stop, start_haproxy, start_nginx

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

NODES = ("cas01", "cas02", "cas03")
NAMES = ["mail.contoso.com", "autodiscover.contoso.com"]
TTL = 10  # [daemon] lease_ttl_seconds


def _can_unshare_uts() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10).returncode == 0


SEPARATE_HOSTS = _can_unshare_uts()


def _served_fingerprint(endpoint: str) -> str:
    host, _, port = endpoint.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname=NAMES[0]) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _wait(predicate: Callable[[], Any], timeout: float, what: str, array: Array | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    logs = array.logs() if array is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


def _restart_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql"))
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
                   check=True, capture_output=True, timeout=120)


def _ensure_postgres_running() -> None:
    if not Path("/etc/postgresql").is_dir():
        return
    for version in os.listdir("/etc/postgresql"):
        status = subprocess.run(["pg_ctlcluster", version, "main", "status"], capture_output=True, timeout=30)
        if status.returncode != 0:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                           capture_output=True, timeout=120)


@dataclass
class Array:
    home: Path
    url: str
    pki: TestPKI
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    gateways: dict[str, NginxGateway | HaproxyGateway] = field(default_factory=dict)
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.url, pool_pre_ping=True)

    # -- setup --------------------------------------------------------------------------------

    def start_gateways(self) -> None:
        first = self.pki.bundle(*NAMES, common_name=NAMES[0])
        self.gateways["cas01"] = start_nginx(self.home / "cas01-nginx", first, auth_challenge=False)
        self.gateways["cas02"] = start_nginx(self.home / "cas02-nginx", first, auth_challenge=False)
        self.gateways["cas03"] = start_haproxy(self.home / "cas03-haproxy", first)

    def binding(self, node: str, reload: list[str] | None = None) -> dict[str, Any]:
        gateway = self.gateways[node]
        if isinstance(gateway, HaproxyGateway):
            return {"name": "gateway", "type": "haproxy", "node": node, "socket": str(gateway.socket_path),
                    "crt": str(gateway.crt), "verify": [gateway.endpoint], "settle_seconds": 5}
        return {"name": "gateway", "type": "files", "node": node, "fullchain": str(gateway.fullchain),
                "key": str(gateway.key), "reload": reload or gateway.reload_argv, "verify": [gateway.endpoint],
                "settle_seconds": 5}

    def write_config(self, issuer: dict[str, Any], *, bindings: list[dict[str, Any]] | None = None,
                     notifiers: dict[str, Any] | None = None) -> None:
        config: dict[str, Any] = {
            "store": {"url": self.url},
            "issuers": {"ca": issuer},
            "certificates": [{"id": "mail", "names": NAMES, "issuer": "ca",
                              "bindings": bindings or [self.binding(node) for node in NODES]}],
            "daemon": {"reconcile_minutes": 0.05, "lease_ttl_seconds": TTL, "metrics_address": "",
                       "canary": "cas01", "rollout_order": list(NODES)},
        }
        if notifiers:
            config["notifiers"] = notifiers
        (self.home / "certkeeper.toml").write_text(to_toml(config))
        # the schema is created once, before the nodes start (the daemon never migrates by itself)
        migrated = run_cli("db", "upgrade", env=self.env("cli"))
        assert migrated.returncode == 0, migrated.stderr

    def env(self, node: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PYTHONPATH": str(REPO_ROOT), "CERTKEEPER_CONFIG": str(self.home / "certkeeper.toml"),
                    "CERTKEEPER_DATA_DIR": str(self.home / node), "CERTKEEPER_SECRET_KEY": self.secret_key})
        return env

    def start(self, node: str) -> None:
        argv = [sys.executable, "-m", "certkeeper", "daemon", "--node", node]
        if SEPARATE_HOSTS:
            # each node gets its own host name (a UTS namespace), as on real CAS servers: a lease
            # left by a killed node then cannot be seen as dead by pid, only by its TTL
            argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', f"{node}-host", *argv]
        log = (self.home / f"{node}.log").open("ab")
        # its own session: a kill -9 of the node takes its children (a DNS hook) with it
        self.daemons[node] = subprocess.Popen(argv, env=self.env(node), cwd=REPO_ROOT, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop(self) -> dict[str, int]:
        codes = {}
        for node, process in self.daemons.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for node, process in self.daemons.items():
            try:
                codes[node] = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[node] = process.wait(timeout=10)
        return codes

    def kill(self, node: str) -> None:
        os.killpg(self.daemons[node].pid, signal.SIGKILL)
        self.daemons[node].wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.home.glob("cas0*.log")))

    # -- the store, read directly ---------------------------------------------------------------

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def revisions(self) -> list[Any]:
        return self.rows("select id, number, state, fingerprint_sha256, replaces_revision_id from revisions "
                         "where certificate_id = 'mail' order by number")

    def issued(self, number: int) -> Any:
        return next((r for r in self.revisions() if r.number == number and r.state == "issued"), None)

    def deployments(self, revision_id: int) -> dict[str, Any]:
        return {r.node: r for r in self.rows(
            "select node, state, served_fingerprint, verified_at, error from deployments "
            "where revision_id = :rid", rid=revision_id)}

    def verified_everywhere(self, number: int, nodes: tuple[str, ...] = NODES) -> Any:
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

    def status_nodes(self) -> dict[str, Any]:
        result = run_cli("status", "--nodes", "--json", env=self.env("cli"))
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data


@pytest.fixture
def array(tmp_path: Path, postgres_url: str, test_pki: TestPKI) -> Iterator[Array]:
    made = Array(tmp_path, postgres_url, test_pki)
    try:
        made.start_gateways()
        yield made
    finally:
        made.stop()
        for gateway in made.gateways.values():
            _stop(gateway.process)
        made.engine.dispose()


def _short_ca(seconds: int) -> dict[str, Any]:
    return {"type": "internal-ca", "validity_days": seconds / 86400}


def test_array_renews_once_rolls_out_in_order_and_survives_a_postgres_restart(array: Array) -> None:
    array.write_config(_short_ca(40))  # renewal due after 20 s
    for node in NODES:
        array.start(node)
    try:
        first = _wait(lambda: array.verified_everywhere(1), 60, "revision 1 served by every node", array)
        # node names are unique: a second daemon calling itself cas02 is refused while cas02 runs
        twin = run_cli("daemon", "--node", "cas02", env=array.env("twin"), timeout=60)
        assert twin.returncode == 1 and "already runs on node name 'cas02'" in twin.stderr, twin.stderr
        second = _wait(lambda: array.verified_everywhere(2), 60, "revision 2 served by every node", array)

        # one issuance per renewal: revision 2 replaces revision 1, nothing failed or doubled
        revisions = array.revisions()
        assert [(r.number, r.state) for r in revisions[:2]] == [(1, "issued"), (2, "issued")], revisions
        assert second.replaces_revision_id == first.id
        replaced = [r.replaces_revision_id for r in revisions if r.replaces_revision_id is not None]
        assert len(replaced) == len(set(replaced)), revisions
        kinds = array.rows("select kind, revision_id, node from events where kind in ('issued', 'renewed') "
                           "and certificate_id = 'mail' order by id")
        assert [(k.kind, k.revision_id) for k in kinds][:2] == [("issued", first.id), ("renewed", second.id)]

        # every gateway serves revision 2, proven by our own handshake too
        for node, gateway in array.gateways.items():
            assert _served_fingerprint(gateway.endpoint) == second.fingerprint_sha256, node
        # rollout order: canary cas01 first, then cas02, then cas03
        rows = array.deployments(second.id)
        assert rows["cas01"].verified_at <= rows["cas02"].verified_at <= rows["cas03"].verified_at, rows

        matrix = array.status_nodes()
        assert {n["name"] for n in matrix["nodes"]} == set(NODES)
        assert all(n["heartbeat_at"] and n["version"] and n["host"] and n["alive"] for n in matrix["nodes"])
        issuers = [n["name"] for n in matrix["nodes"] if n["issuer"]]
        assert len(issuers) == 1, matrix["nodes"]
        table = run_cli("status", "--nodes", env=array.env("cli"))
        assert table.returncode == 0 and f"Issuer: {issuers[0]}" in table.stdout, table.stdout
        assert all(f"{node} " in table.stdout for node in NODES) and " yes " not in table.stdout, table.stdout
        current = [r for r in matrix["rows"] if r["revision"] == 2]
        assert {r["node"] for r in current} == set(NODES), matrix
        assert all(not r["drift"] and r["served_fingerprint"] == second.fingerprint_sha256 and r["verified_at"]
                   for r in current), matrix

        # PostgreSQL restarts under the idle daemons: they keep running and the next renewal works
        try:
            _restart_postgres()
        finally:
            _ensure_postgres_running()
        restarted = time.time()
        third = _wait(lambda: array.verified_everywhere(3), 60, "revision 3 after the restart", array)
        assert all(process.poll() is None for process in array.daemons.values()), array.logs()
        heartbeats = array.rows("select name, heartbeat_at from nodes")
        assert all(row.heartbeat_at.timestamp() > restarted for row in heartbeats), heartbeats
        for gateway in array.gateways.values():
            assert _served_fingerprint(gateway.endpoint) == third.fingerprint_sha256
        numbers = [r.number for r in array.revisions() if r.state == "issued"]
        assert numbers == list(range(1, len(numbers) + 1)), array.revisions()
    finally:
        _ensure_postgres_running()
        codes = array.stop()
    assert codes == dict.fromkeys(NODES, 0), array.logs()
    output = array.logs()
    assert "PRIVATE KEY" not in output


def test_issuer_killed_mid_issuance_is_replaced_within_the_lease_ttl(
    array: Array, certsrv_factory: Any
) -> None:
    double = certsrv_factory()
    entered, release = threading.Event(), threading.Event()
    original = double.submit

    def slow_submit(form: dict[str, str], auth_scheme: str | None) -> bytes:
        # the first request reaches the CA, then its answer is held back until the test says so:
        # the issuing daemon is killed while it waits (the answer is lost with it)
        page: bytes = original(form, auth_scheme)
        if len(double.submissions) == 1:
            entered.set()
            release.wait(60)
        return page

    double.submit = slow_submit
    array.write_config({"type": "adcs", **double.options()})
    for node in NODES:
        array.start(node)
    try:
        assert entered.wait(60), array.logs()
        victim = _wait(array.issuer_node, 10, "the issuer lease", array)
        pending = array.revisions()
        assert [(r.number, r.state) for r in pending] == [(1, "pending")], pending
        lease = array.rows("select lease_holder from certificates where id = 'mail'")[0].lease_holder
        assert lease.endswith(f":{array.daemons[victim].pid}:{victim}"), lease
        if SEPARATE_HOSTS:
            assert lease.startswith(f"{victim}-host:"), lease  # the others cannot check this pid
        array.kill(victim)
        killed = time.monotonic()
        release.set()

        survivors = tuple(node for node in NODES if node != victim)
        _wait(lambda: array.issued(1), 3 * TTL + 20, "another node to finish the issuance", array)
        took = time.monotonic() - killed
        new_issuer = array.issuer_node()
        assert new_issuer in survivors
        # the lease TTL (10 s) plus one reconcile pass (3 s) and the re-request, with room for a
        # loaded machine: not the 15-minute default
        assert took < 2 * TTL + 10, took
        # the rollout: when the victim was the canary (or before a survivor in the order) the
        # survivors wait until its heartbeat is 3 x TTL old, then deploy one after another
        # (a reconcile pass and 5 s settle each)
        issued = _wait(lambda: array.verified_everywhere(1, survivors), 3 * TTL + 45,
                       "revision 1 on every live node", array)
        # the first request's answer was lost with the process: exactly one re-request, one revision
        assert len(double.submissions) == 2, double.submissions
        revisions = array.revisions()
        assert [(r.number, r.state) for r in revisions] == [(1, "issued")], revisions
        served = x509.load_pem_x509_certificate(double.requests[max(double.requests)].cert.public_bytes(
            Encoding.PEM))
        assert hashlib.sha256(served.public_bytes(Encoding.DER)).hexdigest() == issued.fingerprint_sha256
        # nothing half-deployed: deployments only of the issued revision, proven on every survivor
        all_deployments = array.rows("select revision_id, node, state from deployments")
        assert {r.revision_id for r in all_deployments} == {issued.id}, all_deployments
        for node in survivors:
            assert _served_fingerprint(array.gateways[node].endpoint) == issued.fingerprint_sha256
        # the killed node still serves what it had; restarted, it takes its name back and catches up
        assert _served_fingerprint(array.gateways[victim].endpoint) != issued.fingerprint_sha256
        array.start(victim)
        _wait(lambda: array.verified_everywhere(1), 60, "the restarted node to deploy", array)
        assert _served_fingerprint(array.gateways[victim].endpoint) == issued.fingerprint_sha256
        assert len(double.submissions) == 2
    finally:
        release.set()
        codes = array.stop()
    assert all(codes[node] == 0 for node in NODES if node != victim), (codes, array.logs())


def test_a_failing_canary_stops_the_rollout_and_keeps_its_certificate(array: Array, http_stub: Any) -> None:
    broken = array.home / "canary-reload-broken"
    canary = array.gateways["cas01"]
    assert isinstance(canary, NginxGateway)
    # cas01's reload works until the flag file exists (a broken gateway config, say)
    reload = ["sh", "-c", f'test ! -e "{broken}" && exec "$0" "$@"', *canary.reload_argv]
    bindings = [array.binding("cas01", reload=reload), array.binding("cas02"), array.binding("cas03")]
    array.write_config(_short_ca(40), bindings=bindings,
                       notifiers={"slack": http_stub.notifier_table("slack", "/slack")})
    for node in NODES:
        array.start(node)
    try:
        first = _wait(lambda: array.verified_everywhere(1), 60, "revision 1 served by every node", array)
        broken.touch()
        second = _wait(lambda: array.issued(2), 60, "revision 2", array)

        def canary_failed() -> bool:
            row = array.deployments(second.id).get("cas01")
            return row is not None and row.state == "failed"

        _wait(canary_failed, 30, "the canary's deployment to fail", array)
        time.sleep(8)  # two more reconcile passes on every node
        rows = array.deployments(second.id)
        assert set(rows) == {"cas01"}, rows  # cas02 and cas03 never started revision 2
        assert "reload" in (rows["cas01"].error or ""), rows["cas01"]
        for node, gateway in array.gateways.items():
            assert _served_fingerprint(gateway.endpoint) == first.fingerprint_sha256, node
        events = array.rows("select kind, node, message from events where kind = 'deploy_failed'")
        assert events and all(e.node == "cas01" for e in events), events

        def slack_alert() -> bool:
            return any("cas01" in json.dumps(json.loads(r.body)) and "deploy" in json.loads(r.body)["text"].lower()
                       for r in http_stub.requests if r.path == "/slack")

        _wait(slack_alert, 30, "the deploy_failed alert on Slack", array)
        matrix = array.status_nodes()
        latest = {r["node"]: r for r in matrix["rows"]}
        assert latest["cas01"]["revision"] == 2 and latest["cas01"]["state"] == "failed", latest
        assert latest["cas02"]["revision"] == 1 and latest["cas03"]["revision"] == 1, latest
        assert all(r["drift"] for r in latest.values()), latest  # nobody serves the current revision
    finally:
        codes = array.stop()
    assert codes == dict.fromkeys(NODES, 0), array.logs()


HOOK = """#!{python}
import json, os, sys, time, urllib.request
action, fqdn, value = sys.argv[1:4]
if action == "present" and os.path.exists({hang!r}):
    open({started!r}, "w").close()
    time.sleep(600)
body = {{"host": fqdn, "value": value}} if action == "present" else {{"host": fqdn}}
request = urllib.request.Request("http://127.0.0.1:{port}/" + ("set-txt" if action == "present" else "clear-txt"),
                                 data=json.dumps(body).encode())
urllib.request.urlopen(request, timeout=5).read()
"""


def test_acme_one_order_per_issuance_across_an_issuer_killed_mid_order(
    array: Array, pebble_factory: Any, challtestsrv: Any
) -> None:
    pebble = pebble_factory.start(dns_server=challtestsrv.dns_address, name="pebble-cas",
                                  config={"certificateValidityPeriod": 60})

    def orders() -> int:
        return len(re.findall(r"Added order ", pebble.log()))

    hang, started = array.home / "hang", array.home / "hook-started"
    hook = array.home / "dns-hook.py"
    hook.write_text(HOOK.format(python=sys.executable, hang=str(hang), started=str(started),
                                port=challtestsrv.management_port))
    hook.chmod(0o755)
    array.write_config({
        "type": "acme", "directory": pebble.directory, "contact": ["mailto:exchange-admins@contoso.com"],
        "agree_tos": True, "ca_bundle": str(pebble.ca_bundle), "challenge": "dns-01", "public_names_only": False,
        "dns01": {"mode": "exec", "script": str(hook), "cname_delegation": False},
    })
    hang.touch()  # the issuer's DNS hook hangs: the order is placed, its challenge never published
    for node in NODES:
        array.start(node)
    try:
        _wait(started.exists, 60, "the issuer's order and DNS hook", array)
        victim = _wait(array.issuer_node, 10, "the issuer lease", array)
        assert orders() == 1
        pending = array.rows("select state, checkpoint from revisions")
        assert len(pending) == 1 and pending[0].state == "pending" and pending[0].checkpoint, pending
        array.kill(victim)
        killed = time.monotonic()
        hang.unlink()

        survivors = tuple(node for node in NODES if node != victim)
        first = _wait(lambda: array.issued(1), 3 * TTL + 20, "another node to finish the order", array)
        assert time.monotonic() - killed < 2 * TTL + 10
        assert array.issuer_node() in survivors
        assert orders() == 1  # the dead node's order, resumed from its checkpoint: never ordered twice
        # the rollout waits for the dead node (before cas03 in the order) until its heartbeat is
        # 3 x TTL old, then goes on without it
        _wait(lambda: array.verified_everywhere(1, survivors), 3 * TTL + 45, "revision 1 on every live node",
              array)

        # the next renewal (60-second certificates) is one more order, served by every live node
        second = _wait(lambda: array.verified_everywhere(2, survivors), 60, "the renewal", array)
        assert orders() == 2, pebble.log()[-2000:]
        assert [(r.number, r.state) for r in array.revisions()][:2] == [(1, "issued"), (2, "issued")]
        assert {r.revision_id for r in array.rows("select revision_id from deployments")} <= {first.id, second.id}
        for node in survivors:
            assert _served_fingerprint(array.gateways[node].endpoint) == second.fingerprint_sha256
        matrix = array.status_nodes()
        rows = [r for r in matrix["rows"] if r["node"] in survivors]
        assert all(r["revision"] == 2 and not r["drift"] and r["alive"] for r in rows), rows
        nodes = {n["name"]: n for n in matrix["nodes"]}
        assert not nodes[victim]["alive"] and not nodes[victim]["issuer"], nodes
        assert first.id != second.id
    finally:
        codes = array.stop()
    assert all(codes[node] == 0 for node in NODES if node != victim), (codes, array.logs())
