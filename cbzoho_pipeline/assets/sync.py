"""The sync as a Dagster asset graph, partitioned by site: chargebee -> zoho_snapshot -> plan -> push.

Thin by design: each asset opens the site's warehouse, calls one function of the layer below (extract,
snapshot, plan, push) and reports what happened as metadata and check results. No business rule lives here.
"""


from typing import Any

import dagster as dg
import pandas as pd

from cbzoho_pipeline.assets.errors import plain_failures
from cbzoho_pipeline.assets.partitions import SITES
from cbzoho_pipeline.chargebee import extract as cb_extract
from cbzoho_pipeline.chargebee import schemas
from cbzoho_pipeline.chargebee.resources import ChargebeeResource
from cbzoho_pipeline.settings import Site, load_settings
from cbzoho_pipeline.sync import org as org_meta
from cbzoho_pipeline.sync import plan as core
from cbzoho_pipeline.sync import credits
from cbzoho_pipeline.sync.inputs import plan_site
from cbzoho_pipeline.sync.push import push_module
from cbzoho_pipeline.warehouse.resources import WarehouseResource, disconnection
from cbzoho_pipeline.warehouse.status import publish_status
from cbzoho_pipeline.zoho import snapshot
from cbzoho_pipeline.zoho.resources import ZohoResource

OWNERS = ["team:data-engineering"]


def _common(group: str) -> dict[str, Any]:
    """What every asset of the graph shares: the site partitions, its group, kinds and owners."""
    return {"partitions_def": SITES, "group_name": group, "kinds": {"python", "duckdb"}, "owners": OWNERS}


class ExtractConfig(dg.Config):
    full_resync: bool = False
    """Ignore the cursor and read everything again (the first run always does)."""


class MetadataConfig(dg.Config):
    max_age_minutes: int = 360
    """Reuse Zoho's users, fields and pipelines if read this recently (saves six calls a run)."""


_RUN_SITES: dict[tuple[str, str], Site] = {}  # (run id, site) -> the site as its run first read it
_RUN_SITES_KEPT = 32  # runs of one process are sequential (in-process executor): a few entries suffice


def site_for(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Site:
    """The site of this run, read from the settings once per run: an edit to the file mid-run applies to the
    next run, never to half of this one."""
    key = (context.run.run_id, context.partition_key)
    site = _RUN_SITES.get(key)
    if site is None:
        site = _RUN_SITES[key] = load_settings().site(context.partition_key)
        while len(_RUN_SITES) > _RUN_SITES_KEPT:
            del _RUN_SITES[next(iter(_RUN_SITES))]
    gone = disconnection(site.name)
    if gone is not None:
        raise dg.Failure(
            description=(f"site {site.name!r} was disconnected at {gone.get('at', '?')} "
                         "(`cbzoho disconnect`); its history is kept. To sync it again, give it a new Zoho "
                         "refresh token and run `cbzoho reconnect --site " + site.name + "`."),
            allow_retries=False,
        )
    return site


def _md_table(rows: list[dict[str, Any]], limit: int = 50) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_none_")
    frame = pd.DataFrame(rows[:limit])
    more = f"\n\n…and {len(rows) - limit} more" if len(rows) > limit else ""
    return dg.MetadataValue.md(frame.to_markdown(index=False) + more)


def _cell(value: Any) -> str | int | float | bool | None:
    """A value a TableRecord accepts: plain scalars as they are, missing values as None, the rest as text."""
    if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _table(rows: list[dict[str, Any]], columns: dict[str, str], limit: int) -> dg.MetadataValue:
    """A check's rows as Dagster table metadata (the UI renders it as a table with this header, even when
    empty). `columns` maps each column to its type ("string", "int"); only the first `limit` rows are kept."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()])
    records = [dg.TableRecord({name: _cell(row.get(name)) for name in columns}) for row in rows[:limit]]
    return dg.MetadataValue.table(records=records, schema=schema)


def _shown(total: int, limit: int) -> dict[str, Any]:
    """Says so when a check's table is cut short."""
    return {"rows_shown": f"first {limit} of {total}"} if total > limit else {}


# The columns of each check's table, in the order the UI shows them.
PROBLEM_COLUMNS = {"column": "string", "check": "string", "value": "string"}
SET_ASIDE_COLUMNS = {"id": "string", "resource_version": "int", "reason": "string"}
ERROR_COLUMNS = {"chargebee_id": "string", "severity": "string", "code": "string", "message": "string",
                 "last_seen": "string"}
DUPLICATE_COLUMNS = {"email": "string", "contacts": "int", "zoho_ids": "string"}


def _site_check(name: str, asset: str, **spec: Any) -> dg.AssetCheckSpec:
    """A check of one site: partitioned like its asset, so each evaluation belongs to the site of its run.
    (Dagster marks partitions_def on a check as a preview; see README, Architecture.)"""
    return dg.AssetCheckSpec(name, asset=asset, partitions_def=SITES, **spec)


# --------------------------------------------------------------------------------------------- chargebee
def _extract_asset(stream: str, contract: Any):
    name = f"chargebee_{stream}"

    @dg.asset(
        name=name,
        **_common("chargebee"),
        tags={"source": "chargebee"},
        metadata={"dagster/column_schema": schemas.table_schema(contract),
                  "dagster/table_name": f"cb_{stream}"},
        check_specs=[
            _site_check("contract", name, blocking=True,
                        description="Every page read honours the columns and types the sync relies on. "
                                    "Blocking: a breach stops the sync before anything is pushed."),
            _site_check("rows_set_aside", name,
                        description="Rows set aside by validation (e.g. an email Zoho would reject). "
                                    "They are not synced and are checked again when they change."),
        ],
        description=f"Chargebee {stream}, read incrementally (cursor on updated_at, with overlap) into DuckDB.",
    )
    def _asset(context: dg.AssetExecutionContext, config: ExtractConfig, chargebee: ChargebeeResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        site = site_for(context)
        with plain_failures(site), warehouse.open(site.name, log=context.log.warning) as wh:
            client = chargebee.client(site, log=context.log.info)
            result = cb_extract.extract(wh, client, stream, full_resync=config.full_resync, log=context.log.info)
            rejects = cb_extract.rows_set_aside(wh, stream) if result.ok else []
            total = wh.count(f"cb_{stream}")
        client.close()
        checks = [
            dg.AssetCheckResult(
                check_name="contract", passed=result.ok,
                metadata={"problems": _table(result.contract_problems, PROBLEM_COLUMNS, limit=50),
                          "problem_count": len(result.contract_problems), **_shown(len(result.contract_problems), 50)},
                description=None if result.ok else f"{stream} from Chargebee broke the contract; nothing was pushed",
            ),
            dg.AssetCheckResult(
                check_name="rows_set_aside", passed=not rejects,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"rows_set_aside": len(rejects),
                          "rows": _table([{"id": i, "resource_version": v, "reason": r} for i, v, r in rejects],
                                         SET_ASIDE_COLUMNS, limit=200),
                          **_shown(len(rejects), 200)},
            ),
        ]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "fetched": result.fetched,
                "new": result.new,
                "changed": result.changed,
                "pages": result.pages,
                "full_load": result.full,
                "window_start": result.window_start if result.window_start is not None else "none (full load)",
                "rows_set_aside": len(rejects),
            },
            check_results=checks,
        )

    return _asset


chargebee_customers = _extract_asset("customers", schemas.CUSTOMER_CONTRACT)
chargebee_subscriptions = _extract_asset("subscriptions", schemas.SUBSCRIPTION_CONTRACT)


# --------------------------------------------------------------------------------------------- zoho
@dg.asset(
    **_common("zoho_snapshot"),
    tags={"source": "zoho"},
    description="Zoho CRM metadata the plan checks against: active users, module fields, deal pipelines.",
)
def zoho_metadata(context: dg.AssetExecutionContext, config: MetadataConfig, zoho: ZohoResource,
                  warehouse: WarehouseResource) -> dg.MaterializeResult:
    site = site_for(context)
    with plain_failures(site), warehouse.open(site.name, log=context.log.warning) as wh:
        age = wh.meta_age_minutes("metadata")
        if age is not None and age < config.max_age_minutes:
            metadata = wh.meta("metadata")
            reused = True
            context.log.info(f"metadata read {age} min ago; reused (max age {config.max_age_minutes} min)")
        else:
            metadata = snapshot.refresh_metadata(wh, zoho.client(site, log=context.log.info), log=context.log.info)
            reused = False
    org = org_meta.describe_org(metadata)
    return dg.MaterializeResult(metadata={
        "users": len(metadata.get("users", [])),
        "pipelines": dg.MetadataValue.json(metadata.get("pipelines", {})),
        "multi_currency": org["multi_currency"],
        "contact_external_field": org["contact_external_field"] or "none",
        "reused_cached": reused,
    })


def _snapshot_fields(site, wh, module: str) -> list[str]:
    """The fields read of `module`: the base fields, the site's extra contact fields and the external-ID field."""
    metadata = wh.meta("metadata")
    org = org_meta.describe_org(metadata)
    extra = list(site.rules.extra_contact_fields.values()) if module == "Contacts" else []
    if module == "Contacts" and org["contact_external_field"]:
        extra.append(org["contact_external_field"])
    return snapshot.snapshot_fields(module, metadata, extra)


def _snapshot_asset(module: str):
    name = f"zoho_{module.lower()}"

    @dg.asset(
        name=name,
        **_common("zoho_snapshot"),
        tags={"source": "zoho"},
        deps=[zoho_metadata],
        metadata={"dagster/table_name": "zoho_records"},
        description=f"Zoho CRM {module} as Zoho holds them: full read through COQL, then only changes "
                    "(If-Modified-Since) and deletions.",
    )
    def _asset(context: dg.AssetExecutionContext, config: ExtractConfig, zoho: ZohoResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        site = site_for(context)
        with plain_failures(site), warehouse.open(site.name, log=context.log.warning) as wh:
            fields = _snapshot_fields(site, wh, module)
            client = zoho.client(site, log=context.log.info)
            result = snapshot.refresh(wh, client, module, fields, full=config.full_resync, log=context.log.info,
                                      expected_changes=wh.writes_since_cursor(module, f"zoho.{module}"))
        return dg.MaterializeResult(metadata={
            "dagster/row_count": result.total, "fetched": result.fetched, "deleted": result.deleted,
            "pages": result.pages, "full_load": result.full,
        })

    return _asset


zoho_accounts = _snapshot_asset("Accounts")
zoho_contacts = _snapshot_asset("Contacts")
zoho_deals = _snapshot_asset("Deals")


# --------------------------------------------------------------------------------------------- plan
@dg.asset(
    **_common("plan"),
    deps=[chargebee_customers, chargebee_subscriptions, zoho_metadata, zoho_accounts, zoho_contacts, zoho_deals],
    metadata={"dagster/table_name": "plan"},
    description="What the push will do, record by record: create | update | noop | skip | error, with the "
                "changed fields and the reason. Materialize it alone for a dry run.",
)
def sync_plan(context: dg.AssetExecutionContext, config: ExtractConfig,
              warehouse: WarehouseResource) -> dg.MaterializeResult:
    site = site_for(context)
    with plain_failures(site), warehouse.open(site.name, log=context.log.warning) as wh:
        counts, sample, scope = plan_site(wh, site, context.run.run_id, full=config.full_resync,
                                          log=context.log.info)
    table = [{"module": m, **c} for m, c in counts.items()]
    flat = {f"{m.lower()}_{a}": n for m, c in counts.items() for a, n in c.items()}
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(sum(c.values()) for c in counts.values()),
        "summary": dg.MetadataValue.md(pd.DataFrame(table).to_markdown(index=False)),
        "changes": _md_table(sample, limit=100),
        "scope": scope["scope"],
        "scope_reason": scope["why"],
        **flat,
    })


# --------------------------------------------------------------------------------------------- push
def _require_plan_of_this_run(context: dg.AssetExecutionContext, plan: tuple[str, Any] | None) -> None:
    """Refuse to carry out a plan made by another run: Zoho may have changed since its snapshots were read.

    A re-execution of a failed sync (same root run) may finish the plan its first attempt made; the rows
    already pushed are marked so and are not written again.
    """
    run = context.run
    allowed = {run.run_id, run.parent_run_id, run.root_run_id} - {None}
    if plan is not None and plan[0] in allowed:
        return
    made = "no plan has been made yet" if plan is None else (
        f"the stored plan was made by run {plan[0][:8]} at {str(plan[1])[:19]} UTC, from snapshots that may be "
        "stale by now")
    raise dg.Failure(
        description=(f"nothing pushed: {made}. The push only carries out a plan made in the same run; "
                     "materialize sync_plan together with the synced_* assets (or 'Materialize all')."),
        allow_retries=False,
    )


def _push_asset(module: str, deps: list):
    name = f"synced_{module.lower()}"

    @dg.asset(
        name=name,
        **_common("push"),
        tags={"destination": "zoho"},
        deps=deps,
        check_specs=[_site_check(
            "sync_errors", name,
            description=f"Every {module} record that failed to sync, with Zoho's (or our) code and message. "
                        "Failed records are planned again next run.")],
        description=f"Pushes the plan's {module} creates and updates to Zoho CRM (at most 100 records a call, "
                    "several calls in flight, within the site's daily credit budget) and records every answer.",
    )
    def _asset(context: dg.AssetExecutionContext, zoho: ZohoResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        site = site_for(context)
        run_id = context.run.run_id
        with plain_failures(site), warehouse.open(site.name, log=context.log.warning) as wh:
            _require_plan_of_this_run(context, wh.latest_plan())
            org = org_meta.describe_org(wh.meta("metadata"))
            client = zoho.client(site, log=context.log.info)
            budget, budget_info = credits.open_budget(wh, client, site.zoho_daily_credit_budget, run_id, name,
                                                      context.log.info)
            counts = push_module(wh, client, module, run_id, external_field=org["contact_external_field"],
                                 log=context.log.info, concurrency=site.zoho_max_concurrency, budget=budget)
            credits.record_spend(wh, client, run_id, name)
            spent = budget.spent()
            open_errors = wh.errors(module)
            wh.record_run(run_id, "finished", {module: {
                **counts.as_metadata(), "open_errors": len(open_errors),
                "credits_used_24h": spent, "credit_budget": budget.limit}})
            publish_status(site.name, wh)  # what `cbzoho status` reads without touching the warehouse
        error_rows = [
            {"chargebee_id": r["chargebee_id"], "severity": r["severity"] or "error", "code": r["code"],
             "message": r["message"], "last_seen": str(r["last_seen"])[:19]}
            for r in open_errors.to_dict("records")
        ]
        failing = sum(r["severity"] == "error" for r in error_rows)
        warnings = len(error_rows) - failing
        # Errors fail the check; warnings alone (synced, but worth a look) show it as a warning.
        description = (f"{failing} {module} record(s) failed to sync" if failing else None)
        if warnings:
            description = (description + "; " if description else "") + f"{warnings} synced with a warning"
        return dg.MaterializeResult(
            metadata={**counts.as_metadata(), "open_errors": failing, "concurrency": site.zoho_max_concurrency,
                      "credits_used_24h": spent, "credit_budget": budget.limit,
                      "credit_budget_source": budget_info.source},
            check_results=[dg.AssetCheckResult(
                check_name="sync_errors", passed=not error_rows,
                severity=dg.AssetCheckSeverity.ERROR if failing else dg.AssetCheckSeverity.WARN,
                metadata={"error_count": failing, "warning_count": warnings,
                          "errors": _table(error_rows, ERROR_COLUMNS, limit=200), **_shown(len(error_rows), 200),
                          "errors_json": dg.MetadataValue.json(error_rows[:500])},
                description=description,
            )],
        )

    return _asset


synced_accounts = _push_asset("Accounts", [sync_plan])
synced_contacts = _push_asset("Contacts", [sync_plan, synced_accounts])
synced_deals = _push_asset("Deals", [sync_plan, synced_contacts])


@dg.asset(
    **_common("push"),
    tags={"source": "zoho"},
    deps=[synced_accounts, synced_contacts, synced_deals],
    description="Reads back from Zoho what this run wrote (from 200 writes in a module), so the snapshot and its "
                "cursors end in step: the next run then reads only what changed after this one.",
)
def zoho_read_back(context: dg.AssetExecutionContext, zoho: ZohoResource,
                   warehouse: WarehouseResource) -> dg.MaterializeResult:
    site = site_for(context)
    run_id = context.run.run_id
    read: dict[str, int] = {}
    skipped: list[str] = []
    with plain_failures(site), warehouse.open(site.name, log=context.log.warning) as wh:
        client = zoho.client(site, log=context.log.info)
        budget, _info = credits.open_budget(wh, client, site.zoho_daily_credit_budget, run_id, "zoho_read_back",
                                            context.log.info)
        for module in ("Accounts", "Contacts", "Deals"):
            result = snapshot.read_back(wh, client, module, _snapshot_fields(site, wh, module),
                                        affords=budget.affords, log=context.log.info)
            read[module] = result.fetched if result is not None else 0
            if result is not None and result.skipped:
                skipped.append(module)
            credits.record_spend(wh, client, run_id, "zoho_read_back")
    return dg.MaterializeResult(metadata={**{f"read_back_{m.lower()}": n for m, n in read.items()},
                                          **({"skipped_for_budget": ", ".join(skipped)} if skipped else {})})


SYNC_ASSETS = [
    chargebee_customers, chargebee_subscriptions, zoho_metadata, zoho_accounts, zoho_contacts, zoho_deals,
    sync_plan, synced_accounts, synced_contacts, synced_deals, zoho_read_back,
]


@dg.asset_check(asset=zoho_contacts, partitions_def=SITES,
                description="Emails held by more than one Zoho contact: customers with such an email cannot be "
                            "matched and become sync errors.")
def duplicate_emails_in_zoho(context: dg.AssetCheckExecutionContext,
                             warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.open(load_settings().site(context.partition_key).name) as wh:
        dupes = wh.duplicate_emails()
    return dg.AssetCheckResult(
        passed=dupes.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"duplicate_emails": len(dupes),
                  "rows": _table(dupes.to_dict("records"), DUPLICATE_COLUMNS, limit=200), **_shown(len(dupes), 200)},
    )


