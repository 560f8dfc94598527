"""A week of daemon passes in minutes: ``python tests/perf/daemon_week.py CONFIG PASSES`` (issue 14, goal 4).

Builds the daemon as ``certkeeper daemon`` does (malloc arenas capped, the scheduler's jobs built,
the metrics endpoint serving), puts its service on a FrozenClock, then runs the jobs in-process
as the scheduler would every 5 simulated minutes: heartbeat, reconcile, alert delivery; hourly
verification; ARI every 12 hours; digest, purge and prune daily; a Prometheus scrape. Prints one JSON object: the RSS
(VmRSS, KB) after every pass, and how long the passes took.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

STEP = timedelta(minutes=5)


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(config_path: str, passes: int) -> None:
    from certkeeper.clock import FrozenClock
    from certkeeper.config import load
    from certkeeper.daemon import Daemon, limit_malloc_arenas
    from certkeeper.metrics import serve
    from certkeeper.scheduler import JobSpec, build_scheduler

    limit_malloc_arenas()
    config = load(config_path)
    clock = FrozenClock(datetime.now(UTC))
    if "clock" in inspect.signature(Daemon).parameters:  # a Daemon that takes a clock (issue 14 brief)
        daemon = Daemon(config, node="week", clock=clock)  # type: ignore[call-arg]
    else:
        daemon = Daemon(config, node="week")
        daemon.service.context.clock = clock
        daemon.service.store.clock = clock
    jobs = [JobSpec("reconcile", daemon.reconcile, seconds=300, first_run_at=clock.now())]
    build_scheduler(jobs)  # built (its modules loaded), not started: the passes are driven here
    server = serve(config.settings.daemon.metrics_address or "127.0.0.1:0", daemon.service, daemon.state,
                   daemon.health)
    host, port = server.server_address[:2]
    metrics = f"http://{host}:{port}/metrics"
    samples, started = [], time.perf_counter()
    try:
        for index in range(passes):
            clock.advance(STEP)
            minutes = (index + 1) * 5
            daemon.heartbeat_job()
            daemon.reconcile()
            daemon.deliver_alerts()
            if minutes % 60 == 0:
                daemon.verify()
            if minutes % (12 * 60) == 0:
                daemon.refresh_renewal_info()
            if minutes % (24 * 60) == 0:
                daemon.digest()
                daemon.purge_alerts()
                daemon.prune()
            if not daemon.state.last_reconcile_ok:
                raise SystemExit(f"pass {index} failed")
            with urllib.request.urlopen(metrics, timeout=10) as response:  # Prometheus scrapes too
                response.read()
            samples.append(rss_kb())
    finally:
        server.shutdown()
        daemon.service.close()
    print(json.dumps({"rss_kb": samples, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
