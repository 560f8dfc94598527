"""CLI start-up targets, on demand (`python -m pytest tests/perf/test_cli_perf.py -s -p no:cacheprovider`):
`certkeeper --help` under 0.1 s (issue 14; 0.15 s in issue 2); `certkeeper list` of 10,000 under 1 s
(issues 2 and 14) and no more than twice the time of `list` of 20 (issue 2). Against certbot:
test_vs_certbot_lego.py."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fixtures.core import REPO_ROOT


def _time(args: list[str], env: dict[str, str], runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, cwd=REPO_ROOT)
        samples.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr.decode()
    return statistics.median(samples)


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO_ROOT), "CERTKEEPER_DATA_DIR": str(home / "data"),
                "CERTKEEPER_CONFIG": str(home / "certkeeper.toml")})
    return env


def _populate(home: Path, count: int) -> None:
    from certkeeper.config import parse
    from certkeeper.service import Service
    from certkeeper.store.tables import certificates, revisions

    config = parse({}, data_dir=home / "data")
    service = Service.open(config, create=True)
    now = datetime.now(UTC)
    sealed = service.store.sealer.seal(b"-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
    with service.store.session() as session:
        for i in range(count):
            cert_id = f"cas{i:05d}.contoso.com"
            session.execute(certificates.insert().values(
                id=cert_id, names=[cert_id, f"autodiscover{i}.contoso.com"], issuer="internal", key_type="rsa2048",
                bindings=[], options={}, source="cli", enabled=True, created_at=now, updated_at=now,
                failure_count=0, rejected=False))
            session.execute(revisions.insert().values(
                certificate_id=cert_id, number=1, state="issued", origin="issued", issuer="internal",
                names=[cert_id, f"autodiscover{i}.contoso.com"], key_type="rsa2048", key_encrypted=sealed,
                cert_pem="-", chain_pem="", serial=f"{i:032X}", fingerprint_sha256=f"{i:064x}",
                not_before=now - timedelta(days=10), not_after=now + timedelta(days=387),
                renewal_time=now + timedelta(days=255), requested_at=now, issued_at=now))


def test_help_and_list_timings(tmp_path: Path) -> None:
    python = sys.executable
    help_s = _time([python, "-m", "certkeeper", "--help"], _env(tmp_path / "h"), runs=7)
    figures = {"--help": help_s}
    for count in (20, 10_000):
        home = tmp_path / f"n{count}"
        _populate(home, count)
        figures[f"list ({count})"] = _time([python, "-m", "certkeeper", "list"], _env(home))
        figures[f"list --json ({count})"] = _time([python, "-m", "certkeeper", "list", "--json"], _env(home))
    print("\ncertkeeper CLI timings (median wall seconds):")
    for name, value in figures.items():
        print(f"  {name:<22} {value:.3f}")
    ratio = figures["list (10000)"] / figures["list (20)"]
    print(f"  list 10,000 / list 20 = {ratio:.2f} (target <= 2)")
    print(f"  --help target < 0.1 s: {'met' if help_s < 0.1 else 'NOT met'}")
    print(f"  list 10,000 target < 1 s: {'met' if figures['list (10000)'] < 1 else 'NOT met'}")
