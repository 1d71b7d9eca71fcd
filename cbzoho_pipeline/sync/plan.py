"""The plan: what to do in Zoho for every Chargebee record in scope, and why. Pure code.

Inputs are plain data (Chargebee objects, Zoho records as Zoho returns them, links, rules, metadata);
output is one `PlanRow` per record and module with action `create | update | noop | skip | error`, the
fields that change and the reason. Nothing here performs I/O, reads a clock or a global: the same inputs
always give the same plan, which is what makes a dry run trustworthy.

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
    company_key,
    contact_fields,
    is_blank,
    last_name_fallback,
    normalize_email,
    same_value,
    to_major_units,
    zoho_date,
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


# --------------------------------------------------------------------------------------------- helpers
def _too_long(module: str, payload: dict[str, Any], lengths: dict[str, dict[str, int]]) -> str | None:
    limits = lengths.get(module, {})
    for name, value in payload.items():
        limit = limits.get(name)
        if limit and isinstance(value, str) and len(value) > limit:
            return f"{name} is {len(value)} characters long; Zoho allows at most {limit}"
    return None


def _lookup_id(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


@dataclass
class _ContactMatch:
    status: str  # linked | matched | none | skip | error
    zoho_id: str | None = None
    reason: str = ""
    code: str | None = None


# --------------------------------------------------------------------------------------------- contacts
def match_contacts(inputs: PlanInputs) -> dict[str, _ContactMatch]:
    """Stored link first, then the org's external-ID field, then email (trimmed, case-insensitive)."""
    by_id = {str(c["id"]): c for c in inputs.zoho_contacts}
    by_email: dict[str, list[str]] = defaultdict(list)
    by_external: dict[str, list[str]] = defaultdict(list)
    for record in inputs.zoho_contacts:
        email = normalize_email(record.get("Email"))
        if email:
            by_email[email].append(str(record["id"]))
        if inputs.contact_external_field and clean(record.get(inputs.contact_external_field)):
            by_external[str(record[inputs.contact_external_field]).strip()].append(str(record["id"]))
    linked_owner = {zid: cid for cid, zid in inputs.contact_links.items() if zid in by_id}

    matches: dict[str, _ContactMatch] = {}
    unmatched: list[dict[str, Any]] = []
    for customer in inputs.customers:
        cid = str(customer["id"])
        if customer.get("deleted"):
            matches[cid] = _ContactMatch("skip", reason="deleted in Chargebee")
            continue
        if cid in inputs.rejected_customers:
            matches[cid] = _ContactMatch("error", reason=f"set aside by validation: {inputs.rejected_customers[cid]}",
                                         code=VALIDATION_FAILED)
            continue
        linked = inputs.contact_links.get(cid)
        if linked and linked in by_id:
            matches[cid] = _ContactMatch("linked", linked)
            continue
        external = by_external.get(cid, [])
        if len(external) == 1:
            matches[cid] = _ContactMatch("matched", external[0], reason=f"matched by {inputs.contact_external_field}")
            continue
        unmatched.append(customer)

    # An email shared by several unmatched Chargebee customers is never merged into one contact.
    shared: dict[str, list[str]] = defaultdict(list)
    for customer in unmatched:
        email = normalize_email(customer.get("email"))
        if email:
            shared[email].append(str(customer["id"]))

    for customer in unmatched:
        cid = str(customer["id"])
        email = normalize_email(customer.get("email"))
        if email and len(shared[email]) > 1:
            others = ", ".join(sorted(set(shared[email]) - {cid}))
            matches[cid] = _ContactMatch("error", reason=f"email shared by several Chargebee customers ({others})",
                                         code=EMAIL_SHARED)
            continue
        candidates = by_email.get(email, []) if email else []
        if len(candidates) > 1:
            matches[cid] = _ContactMatch("error", reason="email not unique in Zoho CRM", code=EMAIL_NOT_UNIQUE)
            continue
        if len(candidates) == 1:
            owner = linked_owner.get(candidates[0])
            if owner is not None and owner != cid:
                matches[cid] = _ContactMatch(
                    "error", reason=f"the Zoho contact with this email is linked to Chargebee customer {owner}",
                    code=EMAIL_LINKED_ELSEWHERE)
                continue
            matches[cid] = _ContactMatch("matched", candidates[0], reason="matched by email")
            continue
        if inputs.rules.no_matching_contact == "skip":
            matches[cid] = _ContactMatch("skip", reason="no matching contact (rule no_matching_contact=skip)")
        else:
            matches[cid] = _ContactMatch("none")
    return matches


def plan_accounts(
    inputs: PlanInputs, companies: dict[str, str], customers_of: dict[str, list[str]] | None = None
) -> tuple[list[PlanRow], dict[str, dict[str, Any] | None]]:
    """companies: normalised key -> display name; customers_of: key -> the customers with that company.

    Returns rows and key -> {"id"} | {"ref"} | None. An account that cannot be matched or created names the
    customers it affects (refs["customers"]), so the error is reported against Chargebee records.
    """
    customers_of = customers_of or {}
    by_name: dict[str, list[str]] = defaultdict(list)
    existing = {str(a["id"]) for a in inputs.zoho_accounts}
    for record in inputs.zoho_accounts:
        key = company_key(record.get("Account_Name"))
        if key:
            by_name[key].append(str(record["id"]))

    rows: list[PlanRow] = []
    refs: dict[str, dict[str, Any] | None] = {}
    for key, name in sorted(companies.items()):
        linked = inputs.account_links.get(key)
        if linked and linked in existing:
            rows.append(PlanRow(ACCOUNTS, key, "noop", zoho_id=linked, reason="linked"))
            refs[key] = {"id": linked}
            continue
        candidates = by_name.get(key, [])
        affected = sorted(customers_of.get(key, []))
        if len(candidates) > 1:
            rows.append(PlanRow(ACCOUNTS, key, "error",
                                reason=f"account name {name!r} not unique in Zoho CRM ({len(candidates)} accounts: "
                                       f"{', '.join(sorted(candidates))}); affects customers {', '.join(affected)}",
                                code=ACCOUNT_NOT_UNIQUE, refs={"customers": affected, "company": name}))
            refs[key] = None
        elif len(candidates) == 1:
            rows.append(PlanRow(ACCOUNTS, key, "noop", zoho_id=candidates[0], reason="matched by name",
                                refs={"link": True}))
            refs[key] = {"id": candidates[0]}
        elif inputs.rules.company_without_account == "leave_empty":
            rows.append(PlanRow(ACCOUNTS, key, "skip",
                                reason="company has no account (rule company_without_account=leave_empty)"))
            refs[key] = None
        else:
            payload = {"Account_Name": name}
            problem = _too_long(ACCOUNTS, payload, inputs.field_lengths)
            if problem:
                rows.append(PlanRow(ACCOUNTS, key, "error", payload=payload,
                                    reason=f"{problem}; affects customers {', '.join(affected)}",
                                    code=VALUE_TOO_LONG, refs={"customers": affected, "company": name}))
                refs[key] = None
            else:
                rows.append(PlanRow(ACCOUNTS, key, "create", payload=payload, changed_fields=["Account_Name"],
                                    reason="no account with this name"))
                refs[key] = {"ref": key}
    return rows, refs


def _contact_changes(
    desired: dict[str, Any], current: dict[str, Any], rule: str
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, value in desired.items():
        theirs = current.get(name)
        if rule == "fill_blanks" and not is_blank(theirs):
            continue
        if not same_value(name, value, theirs):
            changes[name] = value
    return changes


def plan_contacts(
    inputs: PlanInputs, matches: dict[str, _ContactMatch], account_refs: dict[str, dict[str, Any] | None],
    account_rows: list[PlanRow] | None = None,
) -> list[PlanRow]:
    by_id = {str(c["id"]): c for c in inputs.zoho_contacts}
    rule = inputs.rules.matching_contact
    # A contact whose company's account is in error is still synced, without the account: it says so.
    account_problems = {
        r.source_key: {"code": r.code or "ACCOUNT_ERROR",
                       "message": f"synced without its account: {r.reason.split('; affects customers')[0]}"}
        for r in (account_rows or []) if r.action == "error"}
    rows: list[PlanRow] = []
    for customer in inputs.customers:
        cid = str(customer["id"])
        match = matches[cid]
        if match.status in ("skip", "error"):
            rows.append(PlanRow(CONTACTS, cid, match.status, zoho_id=match.zoho_id, reason=match.reason,
                                code=match.code))
            continue
        desired = contact_fields(customer, inputs.rules.extra_contact_fields)
        if inputs.contact_external_field:
            desired[inputs.contact_external_field] = cid
        company = company_key(customer.get("company")) or ""
        account = account_refs.get(company, None)
        account_ref: str | None = None
        if account and "id" in account:
            desired["Account_Name"] = {"id": account["id"]}
        elif account and "ref" in account:
            account_ref = account["ref"]
        warning = account_problems.get(company)

        if match.status == "none":
            payload = dict(desired)
            if "Last_Name" not in payload:
                payload["Last_Name"], source = last_name_fallback(customer)
                reason = f"new contact (Last_Name from {source})" if source != "last_name" else "new contact"
            else:
                reason = "new contact"
            refs = {"Account_Name": account_ref} if account_ref else {}
            if warning:
                refs["warning"] = warning
            changed = sorted(payload) + (["Account_Name"] if account_ref else [])
            problem = _too_long(CONTACTS, payload, inputs.field_lengths)
            if problem:
                rows.append(PlanRow(CONTACTS, cid, "error", payload=payload, reason=problem, code=VALUE_TOO_LONG))
            else:
                rows.append(PlanRow(CONTACTS, cid, "create", payload=payload, changed_fields=changed, reason=reason,
                                    refs=refs or None))
            continue

        assert match.zoho_id is not None  # linked or matched: both name the Zoho record
        current = by_id[match.zoho_id]
        link_refs: dict[str, Any] = {"link": True} if match.status == "matched" else {}
        if warning and is_blank(current.get("Account_Name")):
            link_refs["warning"] = warning
        if rule == "link_only":
            rows.append(PlanRow(CONTACTS, cid, "noop", zoho_id=match.zoho_id,
                                reason=f"{match.reason or 'linked'}; rule matching_contact=link_only",
                                refs=link_refs or None))
            continue
        changes = _contact_changes(desired, current, rule)
        if account_ref and (rule == "overwrite" or is_blank(current.get("Account_Name"))):
            link_refs["Account_Name"] = account_ref
            changes.pop("Account_Name", None)
        changed = sorted(changes) + (["Account_Name"] if "Account_Name" in link_refs else [])
        problem = _too_long(CONTACTS, changes, inputs.field_lengths)
        if problem:
            rows.append(PlanRow(CONTACTS, cid, "error", zoho_id=match.zoho_id, payload=changes, reason=problem,
                                code=VALUE_TOO_LONG, refs=link_refs or None))
        elif changed:
            rows.append(PlanRow(CONTACTS, cid, "update", zoho_id=match.zoho_id, payload=changes,
                                changed_fields=changed,
                                reason=f"{match.reason or 'linked'}; rule matching_contact={rule}",
                                refs=link_refs or None))
        else:
            rows.append(PlanRow(CONTACTS, cid, "noop", zoho_id=match.zoho_id, reason=match.reason or "linked",
                                refs=link_refs or None))
    return rows


# --------------------------------------------------------------------------------------------- deals
def _deal_config_errors(inputs: PlanInputs) -> tuple[str | None, dict[str, str]]:
    """A missing pipeline fails every deal; a missing stage fails the deals of that status."""
    rules = inputs.rules
    if inputs.pipelines is None:
        return None, {}
    stages = inputs.pipelines.get(rules.deal_pipeline)
    if stages is None:
        known = ", ".join(sorted(inputs.pipelines)) or "none"
        return f"pipeline {rules.deal_pipeline!r} does not exist in Zoho CRM (pipelines: {known})", {}
    per_status: dict[str, str] = {}
    for status, stage in rules.deal_stages.items():
        if stage not in stages:
            per_status[status] = (f"stage {stage!r} (for subscription status {status!r}) is not a stage of pipeline "
                                  f"{rules.deal_pipeline!r} (stages: {', '.join(stages)})")
    return None, per_status


def plan_deals(
    inputs: PlanInputs, contact_rows: dict[str, PlanRow], account_refs: dict[str, dict[str, Any] | None]
) -> list[PlanRow]:
    rules = inputs.rules
    customers = {str(c["id"]): c for c in inputs.customers}
    deals_by_id = {str(d["id"]): d for d in inputs.zoho_deals}
    deals_by_name: dict[str, list[str]] = defaultdict(list)
    for record in inputs.zoho_deals:
        name = clean(record.get("Deal_Name"))
        if name:
            deals_by_name[name].append(str(record["id"]))
    pipeline_error, stage_errors = _deal_config_errors(inputs)

    rows: list[PlanRow] = []
    for sub in inputs.subscriptions:
        sid = str(sub["id"])
        status = sub.get("status")
        linked = inputs.deal_links.get(sid)
        zoho_id = linked if linked in deals_by_id else None

        def row(action: str, reason: str, code: str | None = None, *, sid: str = sid, zoho_id: str | None = zoho_id,
                **kw: Any) -> None:
            rows.append(PlanRow(DEALS, sid, action, zoho_id=zoho_id, reason=reason, code=code, **kw))

        if sub.get("deleted"):
            row("skip", "deleted in Chargebee")
            continue
        if sid in inputs.rejected_subscriptions:
            row("error", f"set aside by validation: {inputs.rejected_subscriptions[sid]}", VALIDATION_FAILED)
            continue
        if status not in rules.deal_stages:
            row("skip", f"subscription status {status!r} is not synced (rule deal_stages)")
            continue
        if pipeline_error:
            row("error", pipeline_error, PIPELINE_NOT_FOUND)
            continue
        if status in stage_errors:
            row("error", stage_errors[status], STAGE_NOT_IN_PIPELINE)
            continue
        if inputs.owner_error:
            row("error", inputs.owner_error, OWNER_NOT_FOUND)
            continue
        currency = str(sub.get("currency_code") or rules.home_currency).upper()
        if currency != rules.home_currency and not inputs.multi_currency:
            row("error", f"currency {currency} needs Zoho multi-currency (the org's home currency is "
                         f"{rules.home_currency})", CURRENCY_NOT_ENABLED)
            continue
        if inputs.multi_currency and inputs.currencies and currency not in inputs.currencies:
            row("error", f"currency {currency} is not enabled in Zoho CRM (enabled: {', '.join(inputs.currencies)})",
                CURRENCY_NOT_ENABLED)
            continue

        cid = str(sub.get("customer_id"))
        contact = contact_rows.get(cid)
        if contact is None or contact.action in ("skip", "error") or (
            contact.action != "create" and not contact.zoho_id
        ):
            why = ("customer not in Chargebee extract" if contact is None
                   else f"contact {contact.action}: {contact.reason}")
            if contact is not None and contact.action == "skip":
                row("skip", f"customer's contact is not synced ({contact.reason})")
            else:
                row("error", f"customer's contact is not synced ({why})", CONTACT_NOT_SYNCED)
            continue

        desired: dict[str, Any] = {
            "Deal_Name": sid,
            "Amount": to_major_units(sub.get("mrr") or 0, currency),
            "Closing_Date": zoho_date(sub.get("created_at")),
            "Pipeline": rules.deal_pipeline,
            "Stage": rules.deal_stages[status],
        }
        if inputs.multi_currency:
            desired["Currency"] = currency
        refs: dict[str, Any] = {}
        if contact.zoho_id:
            desired["Contact_Name"] = {"id": contact.zoho_id}
        else:
            refs["Contact_Name"] = cid
        account = account_refs.get(company_key(customers.get(cid, {}).get("company")) or "", None)
        if account and "id" in account:
            desired["Account_Name"] = {"id": account["id"]}
        elif account and "ref" in account:
            refs["Account_Name"] = account["ref"]

        if zoho_id is None:
            candidates = deals_by_name.get(sid, [])
            if len(candidates) > 1:
                row("error", "deal name not unique in Zoho CRM", DEAL_NOT_UNIQUE)
                continue
            if len(candidates) == 1:
                zoho_id = candidates[0]
                refs["link"] = True
        if zoho_id is None:
            payload = {**desired, **({"Owner": {"id": inputs.owner_id}} if inputs.owner_id else {})}
            problem = _too_long(DEALS, payload, inputs.field_lengths)
            if problem:
                row("error", problem, VALUE_TOO_LONG, payload=payload)
                continue
            row("create", "new deal", payload=payload,
                changed_fields=sorted(set(payload) | {k for k in refs if k != "link"}), refs=refs or None)
            continue
        current = deals_by_id[zoho_id]
        changes = {k: v for k, v in desired.items() if not same_value(k, v, current.get(k))}
        for ref_field in ("Contact_Name", "Account_Name"):
            if ref_field in refs:
                changes.pop(ref_field, None)
        changed = sorted(set(changes) | {k for k in refs if k != "link"})
        if changed:
            row("update", "subscription changed" if linked else "matched by Deal_Name", zoho_id=zoho_id,
                payload=changes, changed_fields=changed, refs=refs or None)
        else:
            row("noop", "linked" if linked else "matched by Deal_Name", zoho_id=zoho_id, refs=refs or None)
    return rows


# --------------------------------------------------------------------------------------------- whole plan
def build_plan(inputs: PlanInputs) -> list[PlanRow]:
    matches = match_contacts(inputs)
    companies: dict[str, str] = {}
    customers_of: dict[str, list[str]] = defaultdict(list)
    for customer in sorted(inputs.customers, key=lambda c: (c.get("created_at") or 0, str(c["id"]))):
        match = matches[str(customer["id"])]
        if match.status in ("skip", "error"):
            continue
        key = company_key(customer.get("company"))
        if key:
            customers_of[key].append(str(customer["id"]))
        if key and key not in companies:
            companies[key] = " ".join(str(customer["company"]).split())
    account_rows, account_refs = plan_accounts(inputs, companies, customers_of)
    contact_rows = plan_contacts(inputs, matches, account_refs, account_rows)
    deal_rows = (plan_deals(inputs, {r.source_key: r for r in contact_rows}, account_refs)
                 if inputs.rules.sync_deals else [])
    return account_rows + contact_rows + deal_rows


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
