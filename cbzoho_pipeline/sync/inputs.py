"""Gather what the pure plan needs from a site's warehouse.

The one impure step before planning: creates whose answers were lost in a crash are reconciled here (their
records linked), so the plan that follows never creates them twice.
"""

from __future__ import annotations

from cbzoho_pipeline.settings import Site
from cbzoho_pipeline.sync import org as org_meta
from cbzoho_pipeline.sync import plan as core
from cbzoho_pipeline.warehouse.db import Warehouse


def gather_plan_inputs(wh: Warehouse, site: Site) -> core.PlanInputs:
    """Read everything the pure plan needs from the warehouse (and reconcile lost create answers first)."""
    for module in core.MODULES:
        pending = wh.pending(module)
        if pending:
            links = wh.links(module)
            found = core.reconcile_pending(pending, wh.zoho_records(module), set(links.values()))
            wh.set_links(module, found)
            wh.clear_pending(module, [k for k, _ in pending])
    metadata = wh.meta("metadata")
    org = org_meta.describe_org(metadata)
    owner_id, owner_error = org_meta.resolve_owner(metadata, site.rules.deal_owner_email)
    rejects = {s: dict(zip(df["id"], df["reason"], strict=True)) for s in ("customers", "subscriptions")
               for df in [wh.rejects(s)]}
    return core.PlanInputs(
        customers=wh.chargebee_objects("cb_customers"),
        subscriptions=wh.chargebee_objects("cb_subscriptions"),
        zoho_contacts=wh.zoho_records("Contacts"),
        zoho_accounts=wh.zoho_records("Accounts"),
        zoho_deals=wh.zoho_records("Deals"),
        rules=site.rules,
        contact_links=wh.links("Contacts"),
        account_links=wh.links("Accounts"),
        deal_links=wh.links("Deals"),
        rejected_customers=rejects["customers"],
        rejected_subscriptions=rejects["subscriptions"],
        field_lengths=org["field_lengths"],
        pipelines=org["pipelines"],
        owner_id=owner_id,
        owner_error=owner_error,
        multi_currency=org["multi_currency"],
        currencies=org["currencies"],
        contact_external_field=org["contact_external_field"],
    )
