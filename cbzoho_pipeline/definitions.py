"""Assembles the code location; computes nothing but definitions."""

from __future__ import annotations

import dagster as dg

from cbzoho_pipeline.assets.jobs import build_autosync_schedule, disconnect_job, sync_job
from cbzoho_pipeline.assets.sensors import cbzoho_failure_status, cbzoho_run_reaper
from cbzoho_pipeline.assets.sync import SYNC_ASSETS, duplicate_emails_in_zoho
from cbzoho_pipeline.chargebee.resources import ChargebeeResource
from cbzoho_pipeline.warehouse.resources import WarehouseResource
from cbzoho_pipeline.zoho.resources import ZohoResource

RESOURCES = {
    "chargebee": ChargebeeResource(),
    "zoho": ZohoResource(),
    "warehouse": WarehouseResource(),
}

defs = dg.Definitions(
    assets=SYNC_ASSETS,
    asset_checks=[duplicate_emails_in_zoho],
    jobs=[sync_job, disconnect_job],
    schedules=[build_autosync_schedule()],
    sensors=[cbzoho_run_reaper, cbzoho_failure_status],
    resources=RESOURCES,
    # One process per run, steps one after another: DuckDB allows a single writer per file.
    executor=dg.in_process_executor,
)
