"""Issue 4 targets: the decision pass over 100,000 stored certificates with nothing due under 1 s;
daemon idle RSS under 80 MB and near-zero CPU over a minute."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from certkeeper.config import parse
from certkeeper.service import Service
from certkeeper.store.tables import certificates as CertificateRow
from certkeeper.store.tables import revisions as RevisionRow
from tests.fixtures.core import REPO_ROOT, free_port, to_toml


def _bulk(service: Service, count: int, now: datetime) -> None:
    sealed = service.store.sealer.seal(b"not a real key")
    certs, revisions = [], []
    for i in range(count):
        cert_id = f"cas{i:06d}.contoso.com"
        certs.append({"id": cert_id, "names": [cert_id], "issuer": "internal", "key_type": "rsa2048",
                      "bindings": [], "options": {}, "source": "cli", "enabled": True,
                      "created_at": now - timedelta(days=11), "updated_at": now - timedelta(days=11),
                      "failure_count": 0, "rejected": False})
        revisions.append({"certificate_id": cert_id, "number": 1, "state": "issued", "origin": "issued",
                          "issuer": "internal", "names": [cert_id], "key_type": "rsa2048", "key_encrypted": sealed,
                          "cert_pem": "-", "chain_pem": "", "serial": f"{i:032X}", "fingerprint_sha256": f"{i:064x}",
                          "not_before": now - timedelta(days=10), "not_after": now + timedelta(days=387),
                          "renewal_time": now + timedelta(days=255), "requested_at": now - timedelta(days=10),
                          "issued_at": now - timedelta(days=10)})
    with service.store.session() as session:
        session.execute(insert(CertificateRow), certs)
        session.execute(insert(RevisionRow), revisions)


def test_decision_pass_over_100000_certificates(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    service = Service.open(parse({}, data_dir=tmp_path / "data"))
    start = time.perf_counter()
    _bulk(service, 100_000, now)
    print(f"\nstored 100,000 certificates in {time.perf_counter() - start:.1f} s")
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        decisions = service.decide(now, only_due=True)
        timings.append(time.perf_counter() - start)
        assert decisions == []
    start = time.perf_counter()
    report = service.reconcile(now, only_due=True)
    full_pass = time.perf_counter() - start
    assert report.issued == [] and report.failed == {}
    print(f"decision pass, nothing due: best {min(timings):.3f} s, worst {max(timings):.3f} s (target < 1 s)")
    print(f"whole daemon pass (sync, decide, deploy, expiry alerts), nothing due: {full_pass:.3f} s")
    start = time.perf_counter()
    everything = service.decide(now)
    print(f"full chain over every certificate (what `renew --dry-run` prints): {time.perf_counter() - start:.2f} s"
          f" for {len(everything)} decisions")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _idle(env: dict[str, str], settle: float) -> tuple[float, float]:
    daemon = subprocess.Popen([sys.executable, "-m", "certkeeper", "daemon"], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        hz = os.sysconf("SC_CLK_TCK")
        ticks, rss = _cpu_ticks(daemon.pid), []
        start = time.monotonic()
        while time.monotonic() - start < 60:
            rss.append(_rss_kb(daemon.pid))
            time.sleep(1)
        cpu = (_cpu_ticks(daemon.pid) - ticks) / hz
        return max(rss) / 1024, cpu
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0


def test_daemon_idle_memory_and_cpu(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO_ROOT), "CERTKEEPER_DATA_DIR": str(tmp_path / "data"),
                "CERTKEEPER_CONFIG": str(tmp_path / "certkeeper.toml")})
    config = {"certificates": [{"id": f"c{i}", "names": [f"c{i}.contoso.com"]} for i in range(20)],
              "daemon": {"metrics_address": f"127.0.0.1:{free_port()}"}}
    (tmp_path / "certkeeper.toml").write_text(to_toml(config))
    # 1. first start ever: the daemon creates the store (Alembic) and the CA, and issues 20 certificates
    first_rss, first_cpu = _idle(env, settle=15)
    # 2. the usual case, a service (re)start on an existing store with 20 certificates
    again_rss, again_cpu = _idle(env, settle=10)
    print(f"\ndaemon idle over 60 s after its first start on an empty store: RSS max {first_rss:.1f} MB, "
          f"CPU {first_cpu:.2f} s")
    print(f"daemon idle over 60 s after a restart on an existing store: RSS max {again_rss:.1f} MB "
          f"(target < 80 MB: {'met' if again_rss < 80 else 'NOT met'}), CPU {again_cpu:.2f} s "
          f"= {again_cpu / 60 * 100:.2f} % of one core")
