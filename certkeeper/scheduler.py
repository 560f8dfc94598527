"""APScheduler 3.11 wiring only: fixed job ids, coalesce, one instance each; job bodies are one call.

The database is the truth, so jobs are in memory and thin. After a suspend or a long pause each job
runs once (coalesce) rather than once per missed interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 7 * 24 * 3600}


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[[], Any]
    seconds: float | None = None
    jitter: int | None = None
    cron_hour: int | None = None
    first_run_at: datetime | None = None


def build_scheduler(jobs: list[JobSpec]) -> Any:
    """A BackgroundScheduler (UTC) with ``jobs`` added; not started."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    # six jobs, each max_instances=1: a small pool is enough and keeps the idle daemon small
    scheduler = BackgroundScheduler(
        timezone="UTC", job_defaults=JOB_DEFAULTS, executors={"default": ThreadPoolExecutor(4)}
    )
    for job in jobs:
        if job.cron_hour is not None:
            scheduler.add_job(job.func, "cron", id=job.id, hour=job.cron_hour, minute=0, jitter=job.jitter,
                              replace_existing=True)
        else:
            assert job.seconds is not None
            # APScheduler 3 adds a job with an explicit next_run_time=None as *paused*: pass the
            # argument only when a first run time is given
            extra: dict[str, Any] = {"next_run_time": job.first_run_at} if job.first_run_at else {}
            scheduler.add_job(
                job.func, "interval", id=job.id, seconds=job.seconds, jitter=job.jitter,
                replace_existing=True, **extra,
            )
    return scheduler
