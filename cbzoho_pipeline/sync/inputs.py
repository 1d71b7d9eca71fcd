"""Plan a site inside its warehouse: the set-based rules of plan_sql over views of the stored data.

The one impure step before planning: creates whose answers were lost in a crash are reconciled here (their
records linked), so the plan that follows never creates them twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cbzoho_pipeline.settings import Site
from cbzoho_pipeline.sync import org as org_meta
from cbzoho_pipeline.sync import plan as core
from cbzoho_pipeline.sync import plan_sql
from cbzoho_pipeline.warehouse.db import PLAN_MEMORY_LIMIT, Warehouse, utcnow


def reconcile_lost_creates(wh: Warehouse) -> None:
    """Link the records that creates whose answers were lost (a crash) made in Zoho."""
    for module in core.MODULES:
        pending = wh.pending(module)
        if pending:
            links = wh.links(module)
            found = core.reconcile_pending(pending, wh.zoho_records(module), set(links.values()))
            wh.set_links(module, found)
            wh.clear_pending(module, [k for k, _ in pending])


def plan_params(wh: Warehouse, site: Site) -> plan_sql.PlanParams:
    """The site's rules and what Zoho's stored metadata says, as the plan wants them."""
    metadata = wh.meta("metadata")
    org = org_meta.describe_org(metadata)
    owner_id, owner_error = org_meta.resolve_owner(metadata, site.rules.deal_owner_email)
    return plan_sql.PlanParams(
        rules=site.rules, field_lengths=org["field_lengths"], pipelines=org["pipelines"], owner_id=owner_id,
        owner_error=owner_error, multi_currency=org["multi_currency"], currencies=org["currencies"],
        contact_external_field=org["contact_external_field"])


def plan_site(wh: Warehouse, site: Site, plan_id: str, *, full: bool = False,
              log=lambda _m: None) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]], dict[str, Any]]:
    """Make and store the site's plan; returns the counts per module and action, a sample of changes and
    how it was scoped.

    Incremental by default: only the records that can have changed since the last plan began (see
    `Warehouse.plan_scope`). Everything is planned on the first run, with `full`, and whenever the rules,
    the mapping or Zoho's metadata differ from the last plan's.
    """
    started = utcnow()
    reconcile_lost_creates(wh)
    params = plan_params(wh, site)
    fingerprint = params.fingerprint()
    last = wh.get_state("plan") or {}
    if full or not last.get("at"):
        why, scoped = ("asked for a full plan" if full else "first plan"), False
    elif last.get("fingerprint") != fingerprint:
        why, scoped = "rules, mapping or Zoho metadata changed since the last plan", False
    else:
        why, scoped = f"what changed since {last['at'][:19]}", True
    records = wh.plan_scope(datetime.fromisoformat(last["at"])) if scoped else None
    log(f"planning {'all records' if not scoped else f'{records} customer(s) and what depends on them'} ({why})")
    with wh.limited(PLAN_MEMORY_LIMIT):
        wh.plan_input_views(params.extra_paths(), scoped=scoped, external_field=params.contact_external_field)
        plan_sql.run_plan(wh.con, params)
        counts = wh.store_plan(plan_id)
    scope = {"scope": "incremental" if scoped else "full", "why": why, "customers_in_scope": records}
    wh.set_state("plan", {"at": started.isoformat(), "fingerprint": fingerprint, **scope})
    return counts, wh.plan_changes(limit=100), scope
