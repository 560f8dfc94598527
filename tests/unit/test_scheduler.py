"""The scheduler wiring: no job is added paused; coalescing and one instance per job."""

from __future__ import annotations

from certkeeper.scheduler import JOB_DEFAULTS, JobSpec, build_scheduler


def test_jobs_without_a_first_run_time_are_scheduled_not_paused() -> None:
    scheduler = build_scheduler([JobSpec("plain", lambda: None, seconds=60), JobSpec("daily", lambda: None,
                                                                                       cron_hour=7)])
    scheduler.start(paused=True)
    try:
        for job_id in ("plain", "daily"):
            job = scheduler.get_job(job_id)
            assert job is not None and job.next_run_time is not None, job_id
            assert job.coalesce is True and job.max_instances == 1
    finally:
        scheduler.shutdown(wait=False)
    assert JOB_DEFAULTS["coalesce"] is True
