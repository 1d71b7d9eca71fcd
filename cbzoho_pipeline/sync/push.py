"""Carry out a stored plan for one Zoho module: the only part of the sync that writes to Zoho.

Only creates and updates make calls, at most 100 records per call; links, noop matches and skips are
bookkeeping. Every answer is recorded record by record: links and the local snapshot follow what Zoho
said, the sync log gets one line per write, failures become sync errors (planned again next run) and a
record that now succeeds clears its error.

Crash safety: creates go through upsert on a natural key (Account_Name, Deal_Name, the contact's email or
external-ID field), and are journalled in `pending_creates` before they are sent; the next plan links any
record a lost answer had created instead of creating it again. Plan rows are marked pushed as soon as
their answers are stored, so pushing the same plan twice writes nothing twice.

Lost answers: when a create batch's answer is lost (timeout, dropped connection, 5xx: Zoho may or may not
have acted), nothing is re-sent blindly. Records that carry a key the upsert matches on are idempotent and
are simply sent again. A record with no such key (a contact without an email in an org without an
external-ID field) is first looked for in Zoho: the records modified since just before the send are read
(COQL) and matched on exactly the values sent; what is found is linked, and only the rest is sent again.
After `RECOVERY_ATTEMPTS` lost answers in a row the records stay journalled and are reported as
`OUTCOME_UNKNOWN` errors; the next run looks for them again before planning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cbzoho_pipeline.sync.plan import ACCOUNTS, CONTACTS, DEALS, reconcile_pending
from cbzoho_pipeline.warehouse.db import Warehouse
from cbzoho_pipeline.zoho.client import RecordResult, ZohoOutcomeUnknown, coql_literal

BATCH_SIZE = 100
DUPLICATE_CHECK = {ACCOUNTS: ["Account_Name"], DEALS: ["Deal_Name"], CONTACTS: ["Email"]}
RECOVERY_ATTEMPTS = 6
# How far before a lost send to look for what it created: generous, for clock skew between us and Zoho.
RECOVERY_WINDOW = timedelta(minutes=5)


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

    def iter_coql(self, module: str, fields: list[str], *, where: str | None = None) -> Iterator[list[dict]]: ...


@dataclass
class PushCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: int = 0
    linked: int = 0
    warnings: int = 0
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
    sleep: Callable[[float], None] = time.sleep,
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
    wh.record_errors(run_id, module, [(r["source_key"], r["code"] or "PLAN_ERROR", r["reason"],
                                       _plan_error_details(r)) for r in plan_errors])
    counts.errors += len(plan_errors)
    counts.error_rows += [{"source_key": r["source_key"], "code": r["code"], "message": r["reason"]}
                          for r in plan_errors]
    quiet = [r for r in rows if r["action"] in ("noop", "skip")]
    wh.clear_errors(module, [r["source_key"] for r in quiet])
    # Unchanged records are counted by the plan, not stored one by one.
    counts.unchanged = wh.planned_count(module, "noop")
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
            _push_batch(wh, client, module, run_id, operation, batch, links, counts, external_field, log, sleep)
            log(f"{module}: batch {batch_no}/{total_batches} pushed ({operation}, {len(batch)} records)")

    # Records that synced but need a person's eye (e.g. a contact without its account): warnings, recorded
    # last so that a success in this run does not clear them.
    failed = {e["source_key"] for e in counts.error_rows}
    warnings = [(r["source_key"], r["refs"]["warning"]["code"], r["refs"]["warning"]["message"], None)
                for r in rows if (r.get("refs") or {}).get("warning") and r["source_key"] not in failed]
    wh.record_errors(run_id, module, warnings, severity="warning")
    counts.warnings = len(warnings)
    return counts


def _plan_error_details(row: dict[str, Any]) -> dict[str, Any] | None:
    """What a plan-time error concerns beyond its own key: the customers of an account, for instance."""
    refs = row.get("refs") or {}
    details = {k: refs[k] for k in ("customers", "company") if k in refs}
    return details or None


def describe(result: RecordResultLike) -> str:
    """Zoho's per-record message with what its details name: the field, and the type or length it wants."""
    details = result.details or {}
    parts = []
    if details.get("api_name"):
        parts.append(f"field {details['api_name']}")
    if details.get("expected_data_type"):
        parts.append(f"expected {details['expected_data_type']}")
    if details.get("maximum_length"):
        parts.append(f"at most {details['maximum_length']} characters")
    if details.get("limit"):
        parts.append(f"limit {details['limit']}")
    duplicate = details.get("duplicate_record")
    if isinstance(duplicate, dict) and duplicate.get("id"):
        parts.append(f"held by Zoho record {duplicate['id']}")
    message = result.message or result.code
    return f"{message} ({', '.join(parts)})" if parts else message


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
    log: Callable[[str], None],
    sleep: Callable[[float], None],
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
            results = _create(wh, client, module, records, check, counts, log, sleep)
        else:
            results = client.update(module, records)
            counts.calls += 1

        successes: list[tuple[str, str]] = []
        snapshot: list[dict[str, Any]] = []
        log_entries = []
        written_ids = [str(r.id or row["zoho_id"]) for (row, _), r in zip(sendable, results, strict=True) if r.ok]
        held = wh.zoho_records_by_id(module, written_ids)
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
                failures.append((key, result.code, describe(result), result.details))
                log_entries.append((module, key, operation, row["zoho_id"], "error", result.code, describe(result)))
        with wh.transaction():
            wh.set_links(module, successes)
            links.setdefault(module, {}).update(dict(successes))
            wh.upsert_zoho(module, snapshot, written=True)
            wh.clear_errors(module, [k for k, _ in successes])
            if operation == "create":  # an unknown outcome stays journalled for the next run to look for
                wh.clear_pending(module, [r["source_key"] for (r, _), res in zip(sendable, results, strict=True)
                                          if res.code != OUTCOME_UNKNOWN])
            wh.log(run_id, log_entries)
            wh.record_errors(run_id, module, failures)
            wh.mark_pushed(module, [r["source_key"] for r in batch])
    else:
        wh.record_errors(run_id, module, failures)
        wh.mark_pushed(module, [r["source_key"] for r in batch])
    counts.errors += len(failures)
    counts.error_rows += [{"source_key": k, "code": c, "message": m} for k, c, m, _ in failures]


OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


def _create(
    wh: Warehouse,
    client: ZohoWriter,
    module: str,
    records: list[dict[str, Any]],
    check: list[str],
    counts: PushCounts,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> list[RecordResultLike]:
    """Upsert a batch of creates; when an answer is lost, find what Zoho made before sending anything again."""
    results: list[RecordResultLike | None] = [None] * len(records)
    todo = list(range(len(records)))
    for attempt in range(RECOVERY_ATTEMPTS + 1):
        sent_at = datetime.now(UTC)
        try:
            answers = client.upsert(module, [records[i] for i in todo], duplicate_check_fields=check)
        except ZohoOutcomeUnknown as exc:
            counts.calls += 1
            keyless = [i for i in todo if not any(_filled(records[i].get(f)) for f in check)]
            log(f"{module}: the answer to a batch of {len(todo)} creates was lost ({exc.message}); "
                f"{len(keyless)} of them have no {'/'.join(check)} and are looked for in Zoho first")
            if keyless:
                for i, found in _look_for(wh, client, module, records, keyless, sent_at - RECOVERY_WINDOW):
                    results[i] = found
                todo = [i for i in todo if results[i] is None]
            if not todo:
                break
            if attempt < RECOVERY_ATTEMPTS:
                sleep(min(30.0, 0.5 * 2 ** attempt))
            continue
        counts.calls += 1
        for i, answer in zip(todo, answers, strict=True):
            results[i] = answer
        todo = []
        break
    for i in todo:
        results[i] = RecordResult(index=i, ok=False, code=OUTCOME_UNKNOWN,
                                  message=f"Zoho's answer was lost {RECOVERY_ATTEMPTS + 1} times in a row; the "
                                          "record is looked for again before the next run plans it")
    return results  # type: ignore[return-value]


def _look_for(
    wh: Warehouse, client: ZohoWriter, module: str, records: list[dict[str, Any]], indexes: list[int],
    since: datetime,
) -> list[tuple[int, RecordResult]]:
    """The records among `indexes` that Zoho holds already, matched on exactly the values sent."""
    fields = sorted({k for i in indexes for k, v in records[i].items() if not isinstance(v, dict) and k != "id"}
                    | {"Modified_Time", "Created_Time"})
    candidates = [r for page in client.iter_coql(module, fields, where=f"Modified_Time >= {coql_literal(since)}")
                  for r in page]
    by_id = {str(r["id"]): r for r in candidates}
    pairs = reconcile_pending([(str(i), records[i]) for i in indexes], candidates, set(wh.links(module).values()))
    found = []
    for key, zoho_id in pairs:
        held = by_id[zoho_id]
        details = {"id": zoho_id, **{k: held[k] for k in ("Modified_Time", "Created_Time") if held.get(k)}}
        found.append((int(key), RecordResult(index=int(key), ok=True, code="SUCCESS", message="found in Zoho",
                                             details=details, id=zoho_id, action="found")))
    return found


def _filled(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _written_record(held: dict[str, Any], zoho_id: str, payload: dict[str, Any], details: dict) -> dict:
    """The snapshot row after a successful write: what Zoho held, plus what we sent, plus its timestamps."""
    record = dict(held)
    record.update({k: v for k, v in payload.items() if k != "id"})
    record["id"] = zoho_id
    for stamp in ("Modified_Time", "Created_Time"):
        if details and details.get(stamp):
            record[stamp] = details[stamp]
    return record
