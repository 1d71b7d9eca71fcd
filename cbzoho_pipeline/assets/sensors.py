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
