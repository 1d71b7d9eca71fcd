"""Carry out a stored plan for one Zoho module: the only part of the sync that writes to Zoho.

Only creates and updates make calls, at most 100 records per call; links, noop matches and skips are
bookkeeping, settled first in a few set-based statements (warehouse/push_store.py). Every answer is
recorded record by record: links and the local snapshot follow what Zoho said, the sync log gets one line
per write, failures become sync errors (planned again next run) and a record that now succeeds clears its
error.

Calls per module: the floor is one call per 100 changed records, creates and updates together. Creates go
through upsert; an update that upsert would match to its own record (its key unchanged, held by no other
record: see `push_store.stage_rows`) may ride in the last, partly filled upsert call of creates. The other
updates (a contact whose email changed, for one: upsert would create a new contact for the new email) go by
id, through update. So a module costs at most ⌈changed/100⌉ calls when enough updates qualify, and one more
otherwise.

Concurrency: batches of one module are in flight together, up to the site's `zoho.max_concurrency` (and
never more than Zoho's sub-concurrency of 10 writes); the modules still run one after another (accounts,
contacts, deals: each is its own asset). The HTTP calls run in worker threads (the client is thread-safe);
everything that touches DuckDB stays in the calling thread: batches are read and journalled there before
they are handed out, and the answers that have come back are stored there, together, in one transaction.

Crash safety: creates go through upsert on a natural key (Account_Name, Deal_Name, the contact's email or
external-ID field), and are journalled in `pending_creates` before they are sent; the next plan links any
record a lost answer had created instead of creating it again. Plan rows are marked pushed as soon as
their answers are stored, so pushing the same plan twice writes nothing twice; a process killed with
batches in flight leaves their creates journalled and their rows unpushed, which the next run completes.

Lost answers: when a create batch's answer is lost (timeout, dropped connection, 5xx: Zoho may or may not
have acted), nothing is re-sent blindly. Records that carry a key the upsert matches on are idempotent and
are simply sent again. A record with no such key (a contact without an email in an org without an
external-ID field) is first looked for in Zoho: the records modified since just before the send are read
(COQL) and matched on exactly the values sent, among the records that have no key either and are not
linked; what is found is linked, and only the rest is sent again. Batches holding such records are sent
one at a time, so that what one of them created is claimed before another looks. After
`RECOVERY_ATTEMPTS` lost answers in a row the records stay journalled and are reported as `OUTCOME_UNKNOWN`
errors; the next run looks for them again before planning.

Credit budget: with a `CreditBudget` (sync/credits.py) the push hands out no batch the budget cannot pay
for, and the client refuses any call (a retry, a look in Zoho) that would go past it. What is left stays
unpushed and is planned again by the next run; it is counted as `deferred`, never as an error.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cbzoho_pipeline.sync import credits
from cbzoho_pipeline.sync.credits import BudgetReached, CreditBudget
from cbzoho_pipeline.sync.plan import ACCOUNTS, CONTACTS, DEALS, MODULES, reconcile_pending
from cbzoho_pipeline.warehouse import push_store
from cbzoho_pipeline.warehouse.db import Warehouse, utcnow
from cbzoho_pipeline.zoho.client import RecordResult, ZohoOutcomeUnknown, coql_literal, write_credits

BATCH_SIZE = 100
# Records written through to the snapshot in one statement (see _Store.flush).
WRITE_THROUGH_EVERY = 1000
# How often a push says how far it got. Not once per batch: each line is an event in Dagster's storage, and a
# million-record push would write twenty thousand of them while its batches wait for the storing thread.
PROGRESS_EVERY_SECONDS = 5.0
DUPLICATE_CHECK = {ACCOUNTS: ["Account_Name"], DEALS: ["Deal_Name"], CONTACTS: ["Email"]}
# Zoho's sub-concurrency (reference §20): in every edition, at most 10 writes of more than 10 records in flight.
MAX_WRITES_IN_FLIGHT = 10
RECOVERY_ATTEMPTS = 6
# How far before a lost send to look for what it created: generous, for clock skew between us and Zoho.
RECOVERY_WINDOW = timedelta(minutes=5)
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
# An update sent through upsert that Zoho applied to another record than the one it was meant for (someone
# changed the key in Zoho after the snapshot was read).
UPSERT_MISMATCH = "UPSERT_MATCHED_ANOTHER_RECORD"


class RecordResultLike(Protocol):
    ok: bool
    code: str
    message: str
    details: dict
    id: str | None
    action: str | None


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
    deferred: int = 0  # creates and updates left for the next run by the credit budget
    budget_stopped: bool = False

    def as_metadata(self) -> dict[str, int | bool]:
        return dict(self.__dict__)


@dataclass
class _Batch:
    """Rows `first`..`last` of `push_todo`: one upsert (creates, perhaps with updates) or one update call."""

    number: int
    first: int
    last: int
    upsert: bool
    serial: bool  # holds creates without a key: never in flight beside another such batch

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def credits(self) -> int:
        return write_credits(self.size)


@dataclass
class _Answer:
    """What came back for one batch, as the worker thread saw it."""

    batch: _Batch
    items: list[tuple[dict[str, Any], dict[str, Any]]]  # (staged row, payload sent)
    results: list[RecordResultLike | None]  # None: not settled (deferred by the budget)
    written: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> the record as written (snapshot)
    calls: int = 0
    sent: bool = False  # whether any call of this batch may have reached Zoho
    messages: list[str] = field(default_factory=list)
    error: BaseException | None = None


class _Claimed:
    """Zoho ids that a lost create must not be matched to: linked before the push, or written by it."""

    def __init__(self, ids: set[str]) -> None:
        self._ids = set(ids)
        self._lock = threading.Lock()

    def add(self, ids: list[str]) -> None:
        with self._lock:
            self._ids.update(ids)

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self._ids)


def plan_batches(staged: push_store.Staged) -> list[_Batch]:
    """Creates first, in calls of 100 (those with a key before those without); the free places of the last
    upsert call taken by updates that upsert can carry; the other updates in calls of 100."""
    creates, updates = staged.creates, staged.updates
    riders = min((-creates) % BATCH_SIZE, staged.upsertable_updates) if creates else 0
    upserted = creates + riders
    batches: list[_Batch] = []
    for first in range(1, upserted + 1, BATCH_SIZE):
        last = min(first + BATCH_SIZE - 1, upserted)
        serial = first <= creates and last > staged.keyed_creates
        batches.append(_Batch(len(batches) + 1, first, last, upsert=True, serial=serial))
    for first in range(upserted + 1, creates + updates + 1, BATCH_SIZE):
        last = min(first + BATCH_SIZE - 1, creates + updates)
        batches.append(_Batch(len(batches) + 1, first, last, upsert=False, serial=False))
    return batches


def push_module(
    wh: Warehouse,
    client: ZohoWriter,
    module: str,
    run_id: str,
    *,
    external_field: str | None = None,
    log: Callable[[str], None] = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
    concurrency: int = 1,
    budget: CreditBudget | None = None,
) -> PushCounts:
    """Push the stored plan's rows of `module`; `concurrency` batches in flight at most; `budget` (if any)
    installed on the client for the duration."""
    counts = PushCounts()
    quiet = push_store.settle_quiet_rows(wh, module, run_id)
    counts.linked, counts.errors, counts.skipped = quiet["linked"], quiet["errors"], quiet["skipped"]
    # Unchanged records are counted by the plan, not stored one by one.
    counts.unchanged = wh.planned_count(module, "noop")

    check = [external_field] if (module == CONTACTS and external_field) else DUPLICATE_CHECK[module]
    batches: list[_Batch] = []
    staged = push_store.Staged()
    if push_store.calls_left(wh, MODULES[:MODULES.index(module)]):
        # An earlier module stopped at the budget: writing this one now would write records without the
        # records they refer to (or fail them for want of those). It waits for the next run with them.
        if push_store.calls_left(wh, [module]):
            log(f"{module}: not started; an earlier module has writes left for the next run (credit budget)")
    else:
        staged = push_store.stage_rows(wh, module, run_id, check[0])
        counts.errors += staged.unresolved
        batches = plan_batches(staged)
    if batches:
        workers = max(1, min(concurrency, MAX_WRITES_IN_FLIGHT, len(batches)))
        log(f"{module}: {staged.creates} create(s) and {staged.updates} update(s) in {len(batches)} call(s), "
            f"up to {workers} at a time")
        _run_batches(wh, client, module, run_id, batches, staged, check, counts, workers, budget, log, sleep)
    counts.deferred = push_store.calls_left(wh, [module])
    if budget is not None and (budget.stopped or counts.deferred):
        counts.budget_stopped = True
    if counts.deferred:
        log(f"{module}: {counts.deferred} record(s) left for the next run: the daily credit budget is reached")
    counts.warnings = push_store.record_warnings(wh, module, run_id)
    push_store.finish(wh)
    return counts


def _run_batches(
    wh: Warehouse, client: ZohoWriter, module: str, run_id: str, batches: list[_Batch], staged: push_store.Staged,
    check: list[str], counts: PushCounts, workers: int, budget: CreditBudget | None,
    log: Callable[[str], None], sleep: Callable[[float], None],
) -> None:
    """Keep up to `workers` batches in flight: wait for answers, hand out batches for the places they freed,
    then store every answer that came back in one transaction (the calls go on meanwhile), and again.
    Batches are read and journalled 2 x `workers` at a time."""
    claimed = _Claimed(set())
    if staged.keyless_creates:
        keyless = push_store.staged_rows(wh, staged.keyed_creates + 1, staged.creates)
        claimed.add(sorted(push_store.keyless_candidates_linked(
            wh, module, [r["payload"].get("Last_Name") for r in keyless])))
    store = _Store(wh, client, module, run_id, len(batches), counts, log, since=utcnow())
    in_flight: dict[Future[_Answer], _Batch] = {}
    ready: dict[int, list[dict[str, Any]]] = {}  # rows read and journalled, by batch number
    handed = 0  # batches handed out so far
    stopped = False
    gate = getattr(client, "credit_gate", None)
    if budget is not None:
        client.credit_gate = budget  # type: ignore[attr-defined]

    def hand_out(pool: ThreadPoolExecutor) -> None:
        nonlocal handed, stopped
        while store.failure is None and not stopped and handed < len(batches) and len(in_flight) < workers:
            batch = batches[handed]
            if batch.serial and any(b.serial for b in in_flight.values()):
                return  # creates without a key: one such batch at a time
            if budget is not None and not budget.affords(batch.credits):
                log(f"{module}: the daily credit budget is reached ({budget.spent()} of {budget.limit} spent in "
                    "the last 24 hours); the rest waits for the next run")
                stopped = True
                return
            if batch.number not in ready:
                ready.update(_prepare(wh, module, batches[handed:handed + 2 * workers]))
            rows = ready.pop(batch.number)
            in_flight[pool.submit(_send, client, module, batch, rows, check, claimed, sleep)] = batch
            handed += 1

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"push-{module}") as pool:
            hand_out(pool)
            while in_flight:
                answers = store.collect(in_flight)
                hand_out(pool)  # refill first: the calls go on while the answers are stored
                store.store(answers)
        store.progress()
    finally:
        store.flush()
        if budget is not None:
            client.credit_gate = gate  # type: ignore[attr-defined]
    if handed < len(batches):  # journalled ahead but never handed out (a crash leaves them to the next plan)
        push_store.forget_unsent(wh, module, batches[handed].first - 1, store.since)
    if store.failure is not None:
        raise store.failure


def _prepare(wh: Warehouse, module: str, batches: list[_Batch]) -> dict[int, list[dict[str, Any]]]:
    """Read the rows of these consecutive batches in one query and journal their creates in one statement.
    The rows' JSON is decoded by the worker that sends them (`_items`), not here."""
    first, last = batches[0].first, batches[-1].last
    push_store.journal(wh, module, first, last, utcnow())
    rows = push_store.staged_rows(wh, first, last, decode=False)
    return {b.number: rows[b.first - first:b.last - first + 1] for b in batches}


def _items(batch: _Batch, rows: list[dict[str, Any]], key_field: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The batch's rows with what is sent for each: references resolved to the ids created earlier in this
    push, an update's id (update call) or its unchanged key (upsert call)."""
    items = []
    for row in rows:
        row["payload"] = json.loads(row["payload"]) if row["payload"] else {}
        row["held"] = json.loads(row["held"]) if row["held"] else {}
        payload = dict(row["payload"])
        if row["acc_key"] is not None and row["acc_id"]:
            payload["Account_Name"] = {"id": row["acc_id"]}
        # (a company whose account failed: the contact or deal goes without it and is fixed next run)
        if row["con_key"] is not None:
            payload["Contact_Name"] = {"id": row["con_id"]}
        if row["action"] == "update":
            if batch.upsert:
                payload[key_field] = row["held"][key_field]
            else:
                payload["id"] = row["zoho_id"]
        items.append((row, payload))
    return items


class _Store:
    """Stores what came back, in the calling thread: the answers of every batch done, in one transaction."""

    def __init__(self, wh: Warehouse, client: ZohoWriter, module: str, run_id: str, total: int, counts: PushCounts,
                 log: Callable[[str], None], *, since: datetime) -> None:
        self.wh, self.client, self.module, self.run_id, self.total = wh, client, module, run_id, total
        self.counts, self.log, self.since = counts, log, since
        self.failure: BaseException | None = None  # the first error a worker met (its batch stays unpushed)
        self.written: list[dict[str, Any]] = []  # write-through records not yet in the snapshot
        self.answered = self.records = 0  # batches answered and their records, for the progress lines
        self.started = self.said_at = time.monotonic()

    def flush(self, *, at_least: int = 0) -> None:
        """Write the buffered write-through records to the snapshot, if there are `at_least` of them.

        Buffered because one statement of 1,000 records costs DuckDB about a third of ten statements of 100
        each. Losing the buffer (a crash) costs nothing but reads: every run reads Zoho's changes before it
        plans, and our writes are among them."""
        if self.written and len(self.written) >= at_least:
            self.wh.upsert_zoho(self.module, self.written, written=True)
            self.written = []

    def collect(self, in_flight: dict[Future[_Answer], _Batch]) -> list[_Answer]:
        """Wait for at least one batch; take every answer that has come back (a worker's error stops the
        handing out of batches)."""
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        answers = [f.result() for f in sorted(done, key=lambda f: in_flight[f].number)]
        for f in done:
            del in_flight[f]
        if self.failure is None:
            self.failure = next((a.error for a in answers if a.error is not None), None)
        return answers

    def store(self, answers: list[_Answer]) -> None:
        """Store the answers in one transaction."""
        for answer in answers:
            for message in answer.messages:
                self.log(message)
        self.written += _store(self.wh, self.client, self.module, self.run_id, answers, self.counts, self.since)
        self.flush(at_least=WRITE_THROUGH_EVERY)
        self.answered += sum(1 for a in answers if a.error is None)
        self.records += sum(1 for a in answers for r in a.results if r is not None)  # not those the budget left
        if time.monotonic() - self.said_at >= PROGRESS_EVERY_SECONDS:
            self.progress()

    def progress(self) -> None:
        """One line: how many batches have been answered, with what outcome, how long it has taken."""
        now = time.monotonic()
        self.said_at = now
        c = self.counts
        self.log(f"{self.module}: {self.answered:,} of {self.total:,} batches answered ({self.records:,} records: "
                 f"{c.created:,} created, {c.updated:,} updated, {c.errors:,} failed) in {now - self.started:.1f} s")


def _store(wh: Warehouse, client: ZohoWriter, module: str, run_id: str, answers: list[_Answer],
           counts: PushCounts, since: datetime) -> list[dict[str, Any]]:
    """Store the answers in one transaction; returns the records to write through to the snapshot."""
    successes: list[tuple[str, str]] = []
    snapshot: list[dict[str, Any]] = []
    failures: list[tuple[str, str, str, dict | None]] = []
    log_entries: list[tuple[str, str, str, str | None, str, str | None, str | None]] = []
    settled_creates: list[str] = []
    unsent_creates: list[str] = []
    answered: list[str] = []
    matched_ids = [str(r.id) for a in answers for (row, _), r in zip(a.items, a.results, strict=True)
                   if r is not None and r.ok and row["action"] == "create" and r.action == "update" and r.id]
    known = push_store.held_by_id(wh, module, matched_ids)
    for answer in answers:
        counts.calls += answer.calls
        for index, ((row, _payload), result) in enumerate(zip(answer.items, answer.results, strict=True)):
            key, operation = row["source_key"], row["action"]
            if result is None:  # deferred: no answer to store; a create never sent leaves the journal
                if operation == "create" and not answer.sent:
                    unsent_creates.append(key)
                continue
            answered.append(key)
            if operation == "create" and result.code != OUTCOME_UNKNOWN:
                settled_creates.append(key)  # an unknown outcome stays journalled for the next run to look for
            if not result.ok:
                failures.append((key, result.code, describe(result), result.details))
                log_entries.append((module, key, operation, row["zoho_id"], "error", result.code, describe(result)))
                continue
            zoho_id = str(result.id or row["zoho_id"])
            if operation == "update" and zoho_id != str(row["zoho_id"]):
                # Someone changed the linked record's key in Zoho after it was read: the next snapshot reads
                # both records again, and a person decides which one is the customer's.
                message = (f"sent through upsert, the update went to Zoho record {zoho_id} instead of the linked "
                           f"record {row['zoho_id']}, whose key changed in Zoho meanwhile; check both records")
                failures.append((key, UPSERT_MISMATCH, message, {"zoho_id": zoho_id}))
                log_entries.append((module, key, operation, zoho_id, "error", UPSERT_MISMATCH, message))
                continue
            successes.append((key, zoho_id))
            written = answer.written[index]
            snapshot.append({**known[zoho_id], **written} if zoho_id in known else written)
            if operation == "create":
                counts.created += 1
            else:
                counts.updated += 1
            log_entries.append((module, key, operation, zoho_id, "success", result.code, None))
    with wh.transaction():
        wh.set_links(module, successes)
        wh.clear_errors(module, [k for k, _ in successes])
        wh.clear_pending(module, settled_creates)
        push_store.forget_journalled(wh, module, unsent_creates, since)
        wh.log(run_id, log_entries)
        wh.record_errors(run_id, module, failures)
        wh.mark_pushed(module, answered)
        credits.record_spend(wh, client, run_id, f"synced_{module.lower()}")
    counts.errors += len(failures)
    return snapshot


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


# ------------------------------------------------------------------------------------------- worker threads
def _send(client: ZohoWriter, module: str, batch: _Batch, rows: list[dict[str, Any]], check: list[str],
          claimed: _Claimed, sleep: Callable[[float], None]) -> _Answer:
    """One batch's call(s), in a worker thread: no DuckDB here, only decoding and HTTP."""
    answer = _Answer(batch, [], [])
    try:
        answer.items = _items(batch, rows, check[0])
        answer.results = [None] * len(answer.items)
        records = [payload for _, payload in answer.items]
        if batch.upsert:
            _create(client, module, records, check, claimed, sleep, answer)
        else:
            try:
                answer.results = list(client.update(module, records))
                answer.calls, answer.sent = 1, True
            except BudgetReached:
                answer.messages.append(f"{module}: batch {batch.number} left for the next run (credit budget)")
        claimed.add([str(r.id) for r in answer.results if r is not None and r.ok and r.id])
        for index, ((row, payload), result) in enumerate(zip(answer.items, answer.results, strict=True)):
            if result is not None and result.ok:  # the snapshot row, built here to spare the storing thread
                held = row["held"] if row["action"] == "update" else {}
                answer.written[index] = _written_record(held, str(result.id or row["zoho_id"]), payload,
                                                        result.details)
    except BaseException as exc:  # stored by the main thread, which stops and raises it
        answer.error = exc
        answer.results = [None] * len(answer.items)
    return answer


def _create(client: ZohoWriter, module: str, records: list[dict[str, Any]], check: list[str], claimed: _Claimed,
            sleep: Callable[[float], None], answer: _Answer) -> None:
    """Upsert a batch; when an answer is lost, find what Zoho made before sending anything again. Fills
    `answer.results`; records the budget refused stay None."""
    results = answer.results
    todo = list(range(len(records)))
    for attempt in range(RECOVERY_ATTEMPTS + 1):
        sent_at = datetime.now(UTC)
        try:
            replies = client.upsert(module, [records[i] for i in todo], duplicate_check_fields=check)
        except BudgetReached:
            answer.messages.append(f"{module}: batch {answer.batch.number}: {len(todo)} record(s) left for the "
                                   "next run (credit budget)")
            return
        except ZohoOutcomeUnknown as exc:
            answer.calls += 1
            answer.sent = True
            keyless = [i for i in todo if not any(_filled(records[i].get(f)) for f in check)]
            answer.messages.append(
                f"{module}: the answer to a batch of {len(todo)} upserts was lost ({exc.message}); "
                f"{len(keyless)} of them have no {'/'.join(check)} and are looked for in Zoho first")
            if keyless:
                try:
                    for i, found in _look_for(client, module, records, keyless, sent_at - RECOVERY_WINDOW, check,
                                              claimed):
                        results[i] = found
                except BudgetReached:
                    return
                todo = [i for i in todo if results[i] is None]
            if not todo:
                return
            if attempt < RECOVERY_ATTEMPTS:
                sleep(min(30.0, 0.5 * 2 ** attempt))
            continue
        answer.calls += 1
        answer.sent = True
        for i, reply in zip(todo, replies, strict=True):
            results[i] = reply
        return
    for i in todo:
        results[i] = RecordResult(index=i, ok=False, code=OUTCOME_UNKNOWN,
                                  message=f"Zoho's answer was lost {RECOVERY_ATTEMPTS + 1} times in a row; the "
                                          "record is looked for again before the next run plans it")


def _look_for(client: ZohoWriter, module: str, records: list[dict[str, Any]], indexes: list[int], since: datetime,
              check: list[str], claimed: _Claimed) -> list[tuple[int, RecordResult]]:
    """The records among `indexes` (sent without a key) that Zoho holds already, matched on exactly the
    values sent. Only records without a key can be theirs; ids claimed by links or by this push are not."""
    fields = sorted({k for i in indexes for k, v in records[i].items() if not isinstance(v, dict) and k != "id"}
                    | {"Modified_Time", "Created_Time"} | set(check))
    candidates = [r for page in client.iter_coql(module, fields, where=f"Modified_Time >= {coql_literal(since)}")
                  for r in page if not any(_filled(r.get(f)) for f in check)]
    by_id = {str(r["id"]): r for r in candidates}
    pairs = reconcile_pending([(str(i), records[i]) for i in indexes], candidates, claimed.snapshot())
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
