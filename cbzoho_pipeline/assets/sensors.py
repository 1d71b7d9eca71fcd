"""The sensor that frees a site whose run died: see cbzoho_pipeline/runs.py for why and how."""

import dagster as dg

from cbzoho_pipeline.runs import reap_dead_runs

REAPER_INTERVAL_SECONDS = 30


@dg.sensor(
    name="cbzoho_run_reaper",
    minimum_interval_seconds=REAPER_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: a sync run whose process died (killed, out of memory, machine restarted) is "
                "marked failed so the site's next run can start. Launches nothing.",
)
def cbzoho_run_reaper(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    reaped = reap_dead_runs(context.instance, log=context.log.warning)
    if not reaped:
        return dg.SkipReason("every started sync run has a live process")
    return dg.SkipReason("marked failed: " + "; ".join(f"{run[:8]} of {site} ({why})" for site, run, why in reaped))


@dg.run_failure_sensor(
    name="cbzoho_failure_status",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed sync run (from the UI or the schedule) becomes its site's last run in "
                "`cbzoho status`, with the failing step and its cause in one line.",
)
def cbzoho_failure_status(context: dg.RunFailureSensorContext) -> None:
    from cbzoho_pipeline.assets.errors import root_cause
    from cbzoho_pipeline.runs import PARTITION_TAG, SYNC_JOB
    from cbzoho_pipeline.warehouse.status import record_failure

    run = context.dagster_run
    site = run.tags.get(PARTITION_TAG)
    if run.job_name != SYNC_JOB or not site:
        return
    steps = context.get_step_failure_events()
    if steps:
        first = steps[0]
        error = getattr(first.event_specific_data, "error", None)
        record_failure(site, run.run_id, first.step_key or "run", root_cause(error) if error else first.message or "")
    else:
        record_failure(site, run.run_id, "run", context.failure_event.message or "the run failed")
