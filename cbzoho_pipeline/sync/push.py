"""Carry out a stored plan for one Zoho module: the only part of the sync that writes to Zoho.

Only creates and updates make calls, at most 100 records per call; links, noop matches and skips are
bookkeeping. Every answer is recorded record by record: links and the local snapshot follow what Zoho
said, the sync log gets one line per write, failures become sync errors (planned again next run) and a
record that now succeeds clears its error.

Crash safety: creates go through upsert on a natural key (Account_Name, Deal_Name, the contact's email or
external-ID field), and are journalled in `pending_creates` before they are sent; the next plan links any
record a lost answer had created instead of creating it again. Plan rows are marked pushed as soon as
their answers are stored, so pushing the same plan twice writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cbzoho_pipeline.sync.plan import ACCOUNTS, CONTACTS, DEALS
from cbzoho_pipeline.warehouse.db import Warehouse

BATCH_SIZE = 100
DUPLICATE_CHECK = {ACCOUNTS: ["Account_Name"], DEALS: ["Deal_Name"], CONTACTS: ["Email"]}


class RecordResultLike(Protocol):
    ok: bool
    code: str
    message: str
    details: dict
    id: str | None


class ZohoWriter(Protocol):
    def upsert(self, module: str, records: list[dict], *, duplicate_check_fields: list[str] | None = None,
               trigger: tuple = ()) -> list[RecordResultLike]: ...

    def update(self, module: str, records: list[dict], *, trigger: tuple = ()) -> list[RecordResultLike]: ...


@dataclass
class PushCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: int = 0
    linked: int = 0
    calls: int = 0
    error_rows: list[dict[str, Any]] = field(default_factory=list)

    def as_metadata(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "error_rows"}


def _resolve(row: dict[str, Any], links: dict[str, dict[str, str]]) -> tuple[dict[str, Any], str | None]:
    """Replace symbolic references with the ids created earlier in this push. Returns (payload, problem)."""
    payload = dict(row["payload"] or {})
    refs = row.get("refs") or {}
    for field_name, target_module in (("Account_Name", ACCOUNTS), ("Contact_Name", CONTACTS)):
        key = refs.get(field_name)
        if key is None:
            continue
        zoho_id = links[target_module].get(key)
        if zoho_id:
            payload[field_name] = {"id": zoho_id}
        elif field_name == "Contact_Name":
            return payload, f"its contact (customer {key}) was not created in Zoho"
        # A company whose account failed: the contact or deal goes without it and is fixed next run.
    return payload, None


def push_module(
    wh: Warehouse,
    client: ZohoWriter,
    module: str,
    run_id: str,
    *,
    external_field: str | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> PushCounts:
    counts = PushCounts()
    rows = wh.plan_rows(module)
    links = {m: wh.links(m) for m in (ACCOUNTS, CONTACTS)}

    # Bookkeeping first: noops, skips and plan-time errors make no call.
    new_links = [(r["source_key"], r["zoho_id"]) for r in rows if (r.get("refs") or {}).get("link") and r["zoho_id"]]
    wh.set_links(module, new_links)
    counts.linked = len(new_links)
    links.setdefault(module, {}).update(dict(new_links))
    plan_errors = [r for r in rows if r["action"] == "error"]
    wh.record_errors(run_id, module, [(r["source_key"], r["code"] or "PLAN_ERROR", r["reason"], None) for r in plan_errors])
    counts.errors += len(plan_errors)
    counts.error_rows += [{"source_key": r["source_key"], "code": r["code"], "message": r["reason"]} for r in plan_errors]
    quiet = [r for r in rows if r["action"] in ("noop", "skip")]
    wh.clear_errors(module, [r["source_key"] for r in quiet])
    counts.unchanged = sum(r["action"] == "noop" for r in rows)
    counts.skipped = sum(r["action"] == "skip" for r in rows)
    wh.mark_pushed(module, [r["source_key"] for r in plan_errors + quiet])

    creates = [r for r in rows if r["action"] == "create"]
    updates = [r for r in rows if r["action"] == "update"]
    total_batches = -(-len(creates) // BATCH_SIZE) + -(-len(updates) // BATCH_SIZE)
    batch_no = 0
    for operation, todo in (("create", creates), ("update", updates)):
        for start in range(0, len(todo), BATCH_SIZE):
            batch_no += 1
            batch = todo[start:start + BATCH_SIZE]
            _push_batch(wh, client, module, run_id, operation, batch, links, counts, external_field)
            log(f"{module}: batch {batch_no}/{total_batches} pushed ({operation}, {len(batch)} records)")
    return counts


def _push_batch(
    wh: Warehouse,
    client: ZohoWriter,
    module: str,
    run_id: str,
    operation: str,
    batch: list[dict[str, Any]],
    links: dict[str, dict[str, str]],
    counts: PushCounts,
    external_field: str | None,
) -> None:
    sendable: list[tuple[dict[str, Any], dict[str, Any]]] = []
    failures: list[tuple[str, str, str, dict | None]] = []
    for row in batch:
        payload, problem = _resolve(row, links)
        if problem:
            failures.append((row["source_key"], "CONTACT_NOT_SYNCED", problem, None))
            continue
        if operation == "update":
            payload["id"] = row["zoho_id"]
        sendable.append((row, payload))

    if sendable:
        records = [p for _, p in sendable]
        if operation == "create":
            wh.add_pending(module, [(r["source_key"], p) for r, p in sendable])
            check = [external_field] if (module == CONTACTS and external_field) else DUPLICATE_CHECK[module]
            results = client.upsert(module, records, duplicate_check_fields=check)
        else:
            results = client.update(module, records)
        counts.calls += 1

        successes: list[tuple[str, str]] = []
        snapshot: list[dict[str, Any]] = []
        log_entries = []
        held = wh.zoho_records_by_id(module, [str(r.id or row["zoho_id"]) for (row, _), r in zip(sendable, results)
                                              if r.ok])
        for (row, payload), result in zip(sendable, results, strict=True):
            key = row["source_key"]
            if result.ok:
                zoho_id = str(result.id or row["zoho_id"])
                successes.append((key, zoho_id))
                snapshot.append(_written_record(held.get(zoho_id, {}), zoho_id, payload, result.details))
                if operation == "create":
                    counts.created += 1
                else:
                    counts.updated += 1
                log_entries.append((module, key, operation, zoho_id, "success", result.code, None))
            else:
                failures.append((key, result.code, result.message, result.details))
                log_entries.append((module, key, operation, row["zoho_id"], "error", result.code, result.message))
        with wh.transaction():
            wh.set_links(module, successes)
            links.setdefault(module, {}).update(dict(successes))
            wh.upsert_zoho(module, snapshot)
            wh.clear_errors(module, [k for k, _ in successes])
            if operation == "create":
                wh.clear_pending(module, [r["source_key"] for r, _ in sendable])
            wh.log(run_id, log_entries)
            wh.record_errors(run_id, module, failures)
            wh.mark_pushed(module, [r["source_key"] for r in batch])
    else:
        wh.record_errors(run_id, module, failures)
        wh.mark_pushed(module, [r["source_key"] for r in batch])
    counts.errors += len(failures)
    counts.error_rows += [{"source_key": k, "code": c, "message": m} for k, c, m, _ in failures]


def _written_record(held: dict[str, Any], zoho_id: str, payload: dict[str, Any], details: dict) -> dict:
    """The snapshot row after a successful write: what Zoho held, plus what we sent, plus its timestamps."""
    record = dict(held)
    record.update({k: v for k, v in payload.items() if k != "id"})
    record["id"] = zoho_id
    for stamp in ("Modified_Time", "Created_Time"):
        if details and details.get(stamp):
            record[stamp] = details[stamp]
    return record
