"""Assembles the code location; computes nothing but definitions."""

from __future__ import annotations

import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from cbzoho_pipeline.assets.jobs import build_autosync_schedule, disconnect_job, sync_job  # noqa: E402
from cbzoho_pipeline.assets.sync import SYNC_ASSETS, duplicate_emails_in_zoho  # noqa: E402
from cbzoho_pipeline.chargebee.resources import ChargebeeResource  # noqa: E402
from cbzoho_pipeline.warehouse.resources import WarehouseResource  # noqa: E402
from cbzoho_pipeline.zoho.resources import ZohoResource  # noqa: E402

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
    resources=RESOURCES,
    # One process per run, steps one after another: DuckDB allows a single writer per file.
    executor=dg.in_process_executor,
)
