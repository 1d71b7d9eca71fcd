"""The sync job, its hourly schedule (autosync) and the disconnect job."""


import json

import dagster as dg

from cbzoho_pipeline.assets.partitions import SITES
from cbzoho_pipeline.assets.sync import SYNC_ASSETS, duplicate_emails_in_zoho
from cbzoho_pipeline.settings import load_settings
from cbzoho_pipeline.warehouse.resources import disconnection

sync_job = dg.define_asset_job(
    "cbzoho_sync",
    selection=dg.AssetSelection.assets(*SYNC_ASSETS) | dg.AssetSelection.checks(duplicate_emails_in_zoho),
    description="One sync of one site: extract, snapshot, plan, push. Launch it for a site ('Sync Now').",
    tags={"cbzoho/kind": "sync"},
)


def build_autosync_schedule() -> dg.ScheduleDefinition:
    settings = load_settings()

    @dg.schedule(
        name="cbzoho_autosync",
        job=sync_job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Autosync: one run per site with autosync on, every hour by default (schedule.cron in "
                    "the settings). Turn it off here, or per site with autosync: false.",
    )
    def cbzoho_autosync(context: dg.ScheduleEvaluationContext):
        current = load_settings()
        known = set(SITES.get_partition_keys())
        requests = []
        skipped = []
        for name, site in sorted(current.sites.items()):
            if name not in known:
                skipped.append(f"{name} (new in the settings: reload the code location to sync it)")
            elif not site.autosync:
                skipped.append(f"{name} (autosync off)")
            elif disconnection(name) is not None:
                skipped.append(f"{name} (disconnected)")
            else:
                tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
                requests.append(dg.RunRequest(run_key=f"{name}:{tick}", partition_key=name))
        if not requests:
            return dg.SkipReason("no site to sync: " + (", ".join(skipped) or "none configured"))
        return requests

    return cbzoho_autosync


class DisconnectConfig(dg.Config):
    site: str
    """The site to disconnect: its Zoho refresh token is revoked and its syncs stop; its history is kept."""


@dg.op(description="Revoke the site's Zoho refresh token and stop its syncs (history is kept).")
def disconnect_site(context: dg.OpExecutionContext, config: DisconnectConfig) -> None:
    from cbzoho_pipeline.disconnect import disconnect

    result = disconnect(config.site)
    context.log.info(json.dumps(result))


@dg.job(name="cbzoho_disconnect", description="Disconnect a site (set its name in the launchpad config).")
def disconnect_job() -> None:
    disconnect_site()
