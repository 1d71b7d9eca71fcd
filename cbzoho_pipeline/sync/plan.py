"""The plan: what to do in Zoho for every Chargebee record in scope, and why.

One `PlanRow` per record and module with action `create | update | noop | skip | error`, the fields that
change and the reason. The rules themselves are set operations in `plan_sql` (DuckDB SQL over the
warehouse); this module holds the plan's vocabulary and `build_plan`, which runs those same rules over
plain data in an in-memory DuckDB, for the rule tables and for tools. Nothing here reads a clock or a
global: the same inputs always give the same plan, which is what makes a dry run trustworthy.

Records that do not exist yet (an account created in this run, the contact of a new customer) are
referred to symbolically in `refs`; the push resolves them after the earlier modules are written.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from cbzoho_pipeline.settings import Rules
from cbzoho_pipeline.sync.mapping import (
    clean,
    same_value,
)

ACCOUNTS, CONTACTS, DEALS = "Accounts", "Contacts", "Deals"
MODULES = (ACCOUNTS, CONTACTS, DEALS)
ACTIONS = ("create", "update", "noop", "skip", "error")

# Plan-level error codes (Zoho's own codes come back from the push).
EMAIL_NOT_UNIQUE = "EMAIL_NOT_UNIQUE_IN_ZOHO"
EMAIL_SHARED = "EMAIL_SHARED_IN_CHARGEBEE"
EMAIL_LINKED_ELSEWHERE = "EMAIL_LINKED_TO_OTHER_CUSTOMER"
ACCOUNT_NOT_UNIQUE = "ACCOUNT_NAME_NOT_UNIQUE_IN_ZOHO"
DEAL_NOT_UNIQUE = "DEAL_NAME_NOT_UNIQUE_IN_ZOHO"
VALUE_TOO_LONG = "VALUE_TOO_LONG"
VALIDATION_FAILED = "VALIDATION_FAILED"
PIPELINE_NOT_FOUND = "PIPELINE_NOT_FOUND"
STAGE_NOT_IN_PIPELINE = "STAGE_NOT_IN_PIPELINE"
CURRENCY_NOT_ENABLED = "CURRENCY_NEEDS_MULTI_CURRENCY"
OWNER_NOT_FOUND = "OWNER_NOT_FOUND"
CONTACT_NOT_SYNCED = "CONTACT_NOT_SYNCED"


@dataclass
class PlanRow:
    module: str
    source_key: str
    action: str
    zoho_id: str | None = None
    payload: dict[str, Any] | None = None
    changed_fields: list[str] | None = None
    reason: str = ""
    code: str | None = None
    refs: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlanInputs:
    customers: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    zoho_contacts: list[dict[str, Any]]
    zoho_accounts: list[dict[str, Any]]
    zoho_deals: list[dict[str, Any]]
    rules: Rules
    contact_links: dict[str, str] = field(default_factory=dict)
    account_links: dict[str, str] = field(default_factory=dict)
    deal_links: dict[str, str] = field(default_factory=dict)
    rejected_customers: dict[str, str] = field(default_factory=dict)  # id -> validation reason
    rejected_subscriptions: dict[str, str] = field(default_factory=dict)
    field_lengths: dict[str, dict[str, int]] = field(default_factory=dict)  # module -> field -> max length
    pipelines: dict[str, list[str]] | None = None  # pipeline display name -> stage names; None: unknown
    owner_id: str | None = None
    owner_error: str | None = None
    multi_currency: bool = False
    currencies: tuple[str, ...] = ()
    contact_external_field: str | None = None


# --------------------------------------------------------------------------------------------- whole plan
def build_plan(inputs: PlanInputs) -> list[PlanRow]:
    """The plan of plain inputs, computed by the set-based rules in plan_sql on an in-memory DuckDB."""
    import duckdb

    from cbzoho_pipeline.sync import plan_sql

    params = plan_sql.PlanParams(
        rules=inputs.rules, field_lengths=inputs.field_lengths, pipelines=inputs.pipelines,
        owner_id=inputs.owner_id, owner_error=inputs.owner_error, multi_currency=inputs.multi_currency,
        currencies=inputs.currencies, contact_external_field=inputs.contact_external_field)
    with duckdb.connect() as con:
        plan_sql.load_plain_inputs(
            con, params, customers=inputs.customers, subscriptions=inputs.subscriptions,
            zoho={ACCOUNTS: inputs.zoho_accounts, CONTACTS: inputs.zoho_contacts, DEALS: inputs.zoho_deals},
            links={ACCOUNTS: inputs.account_links, CONTACTS: inputs.contact_links, DEALS: inputs.deal_links},
            rejects={"customers": inputs.rejected_customers, "subscriptions": inputs.rejected_subscriptions})
        plan_sql.run_plan(con, params)
        return [PlanRow(**row) for row in plan_sql.plan_rows(con)]


def reconcile_pending(
    pending: list[tuple[str, dict[str, Any]]], records: list[dict[str, Any]], linked_ids: set[str]
) -> list[tuple[str, str]]:
    """Creates that were sent but whose answers were lost (a crash): find the records Zoho made for them.

    A pending create is matched to an unlinked Zoho record holding exactly the values we sent; each record
    is claimed once. Returns (source_key, zoho_id) pairs to link instead of creating again.
    """
    found: list[tuple[str, str]] = []
    claimed = set(linked_ids)
    indexes: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def candidates(payload: dict[str, Any]) -> list[dict[str, Any]]:
        anchor = next((f for f in ("Last_Name", "Account_Name", "Deal_Name") if f in payload), None)
        if anchor is None:
            return records
        if anchor not in indexes:
            index: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in records:
                index[str(clean(str(record.get(anchor) or "")) or "").lower()].append(record)
            indexes[anchor] = index
        return indexes[anchor].get(str(clean(str(payload[anchor])) or "").lower(), [])

    for key, payload in pending:
        simple = {k: v for k, v in payload.items() if not isinstance(v, dict)}
        for record in candidates(payload):
            rid = str(record["id"])
            if rid in claimed:
                continue
            if all(same_value(k, v, record.get(k)) for k, v in simple.items()):
                found.append((key, rid))
                claimed.add(rid)
                break
    return found


def summarize(rows: list[PlanRow]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {m: {a: 0 for a in ACTIONS} for m in MODULES}
    for r in rows:
        counts[r.module][r.action] += 1
    return counts
