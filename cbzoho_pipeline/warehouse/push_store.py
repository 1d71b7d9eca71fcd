"""The push's bookkeeping in the warehouse, as set-based statements keyed on what changes.

Why it exists: the push used to run about eight statements per batch of 100 records, several of them
scanning a whole table (the plan, Zoho's records) to find the keys of one batch. Here the rows that make
no call are settled in one transaction of a few statements over the whole module; the rows that do are
staged once, in the order they will be sent, into the temp table `push_todo` (numbered, so a batch is a
range of numbers); and the answers of the batches that came back are stored together, each statement
joining on the keys of those batches only.

It also keeps the ledger of API credits spent per site (the warehouse table `credit_ledger`), which the
credit budget reads (see sync/credits.py).

What it must never do: call an API, hold a secret, or decide a rule: which rows go in which call is the
push's decision (sync/push.py); this module only stores and fetches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cbzoho_pipeline.warehouse.db import SYNC_ERROR_UPSERT, Warehouse, utcnow

# Ledger rows older than this are no longer needed by any 24-hour window.
LEDGER_KEPT = timedelta(days=3)

# Columns of `push_todo` that a batch is built from, in this order.
TODO_COLUMNS = ("n", "source_key", "action", "zoho_id", "payload", "acc_key", "acc_id", "con_key", "con_id", "held")


@dataclass
class Staged:
    """What the module has to send: creates with a key to upsert on, creates without one (their lost answers
    are looked for in Zoho), updates that upsert would match to their own record, and the other updates.
    Rows are numbered 1.. in that order in `push_todo`."""

    keyed_creates: int = 0
    keyless_creates: int = 0
    upsertable_updates: int = 0
    other_updates: int = 0
    unresolved: int = 0  # rows that cannot be sent (their contact was not created) and were recorded as errors

    @property
    def creates(self) -> int:
        return self.keyed_creates + self.keyless_creates

    @property
    def updates(self) -> int:
        return self.upsertable_updates + self.other_updates


# ------------------------------------------------------------------------------------------- rows without calls
def settle_quiet_rows(wh: Warehouse, module: str, run_id: str) -> dict[str, int]:
    """Take the module's unpushed plan rows in hand (`push_scope`) and settle those that make no call: links
    for records matched in Zoho, plan-time errors recorded, noops and skips clear their errors; all of them
    are marked pushed. One transaction. Returns counts: linked, errors, skipped."""
    now = utcnow()
    params = {"m": module, "now": now, "run": run_id}
    with wh.transaction():
        wh.con.execute("""CREATE OR REPLACE TEMP TABLE push_scope AS
            SELECT source_key, action, zoho_id, payload, refs, code, reason FROM plan
            WHERE module = $m AND NOT pushed""", {"m": module})
        ((linked, errors, skipped),) = wh.con.execute("""SELECT
                count(*) FILTER ((refs->>'link') = 'true' AND zoho_id IS NOT NULL),
                count(*) FILTER (action = 'error'), count(*) FILTER (action = 'skip')
            FROM push_scope""").fetchall()
        if linked:
            wh.con.execute("""INSERT OR REPLACE INTO links
                SELECT $m, source_key, zoho_id, $now FROM push_scope
                WHERE (refs->>'link') = 'true' AND zoho_id IS NOT NULL""", {"m": module, "now": now})
        if errors:
            # What an error concerns beyond its own key (the customers of an account) travels in its details.
            wh.con.execute("""INSERT INTO sync_errors (module, source_key, code, message, details, first_seen,
                                                       last_seen, run_id, severity)
                SELECT $m, source_key, coalesce(code, 'PLAN_ERROR'), reason,
                       json_merge_patch(
                           CASE WHEN (refs->'customers') IS NOT NULL THEN json_object('customers', refs->'customers')
                                ELSE '{}'::JSON END,
                           CASE WHEN (refs->'company') IS NOT NULL THEN json_object('company', refs->'company')
                                ELSE '{}'::JSON END),
                       $now, $now, $run, 'error'
                FROM push_scope WHERE action = 'error'
                """ + SYNC_ERROR_UPSERT, params)
        wh.con.execute("""DELETE FROM sync_errors WHERE module = $m
            AND source_key IN (SELECT source_key FROM push_scope WHERE action IN ('noop', 'skip'))""", {"m": module})
        wh.con.execute("""UPDATE plan SET pushed = TRUE
            WHERE module = $m AND NOT pushed AND action IN ('error', 'noop', 'skip')""", {"m": module})
    return {"linked": int(linked), "errors": int(errors), "skipped": int(skipped)}


# ------------------------------------------------------------------------------------------- rows with calls
def _key_expr(module: str, key_field: str, source: str) -> str:
    """How Zoho compares `key_field` when it matches an upsert (case-insensitive, trimmed), over `source`, a
    Zoho record table alias. Email and Deal_Name use the stored match key, so no JSON is parsed."""
    if module == "Contacts" and key_field == "Email":
        return f"{source}.match_key"
    if module == "Deals" and key_field == "Deal_Name":
        return f"lower({source}.match_key)"
    return f"lower(nullif(trim({source}.data->>'{key_field}'), ''))"


def stage_rows(wh: Warehouse, module: str, run_id: str, key_field: str) -> Staged:
    """Stage the module's creates and updates in `push_todo`, numbered in the order they will be sent.

    `key_field` is what the module's upserts match on (Email, the external-ID field, Account_Name,
    Deal_Name). References to records created earlier in this push (a contact's account, a deal's contact)
    are resolved here from the links; a row whose contact was never created is recorded as an error and
    marked pushed, as it cannot be sent.

    An update is *upsertable* when sending it through upsert cannot land anywhere but on its own record: it
    leaves the key unchanged, its record holds a key, and no other Zoho record of the module holds the same
    one. Such updates may share an upsert call with creates (the key is added to what is sent).
    """
    assert "'" not in key_field
    now = utcnow()
    own_key = _key_expr(module, key_field, "z")
    any_key = _key_expr(module, key_field, "a")
    with wh.transaction():
        wh.con.execute(f"""CREATE OR REPLACE TEMP TABLE _push_rows AS
            WITH t AS (
                SELECT s.source_key, s.action, s.zoho_id, s.payload,
                       (s.refs->>'Account_Name') AS acc_key, (s.refs->>'Contact_Name') AS con_key
                FROM push_scope s WHERE s.action IN ('create', 'update'))
            SELECT t.*, la.zoho_id AS acc_id, lc.zoho_id AS con_id,
                   CASE WHEN t.action = 'update' THEN z.data END AS held,
                   CASE WHEN t.action = 'update' AND json_extract(t.payload, '$.{key_field}') IS NULL
                        THEN {own_key} END AS held_key
            FROM t
            LEFT JOIN links la ON la.module = 'Accounts' AND la.source_key = t.acc_key
            LEFT JOIN links lc ON lc.module = 'Contacts' AND lc.source_key = t.con_key
            LEFT JOIN zoho_records z ON z.module = $m AND z.id = t.zoho_id AND t.action = 'update'""",
                       {"m": module})
        unresolved = int(wh.scalar("SELECT count(*) FROM _push_rows WHERE con_key IS NOT NULL AND con_id IS NULL"))
        if unresolved:
            wh.con.execute("""INSERT INTO sync_errors (module, source_key, code, message, details, first_seen,
                                                       last_seen, run_id, severity)
                SELECT $m, source_key, 'CONTACT_NOT_SYNCED',
                       'its contact (customer ' || con_key || ') was not created in Zoho', '{}'::JSON,
                       $now, $now, $run, 'error'
                FROM _push_rows WHERE con_key IS NOT NULL AND con_id IS NULL
                """ + SYNC_ERROR_UPSERT, {"m": module, "now": now, "run": run_id})
            wh.con.execute("""UPDATE plan SET pushed = TRUE WHERE module = $m AND source_key IN
                (SELECT source_key FROM _push_rows WHERE con_key IS NOT NULL AND con_id IS NULL)""", {"m": module})
        wh.con.execute(f"""CREATE OR REPLACE TEMP TABLE push_todo AS
            WITH r AS (SELECT * FROM _push_rows WHERE con_key IS NULL OR con_id IS NOT NULL),
            holders AS (
                SELECT {any_key} AS k, count(*) AS n FROM zoho_records a
                WHERE a.module = $m AND {any_key} IN (SELECT held_key FROM r WHERE held_key IS NOT NULL)
                GROUP BY ALL),
            ranked AS (
                SELECT r.*,
                       CASE WHEN r.action = 'create' AND nullif(trim(r.payload->>'{key_field}'), '') IS NOT NULL THEN 0
                            WHEN r.action = 'create' THEN 1
                            WHEN h.n = 1 THEN 2
                            ELSE 3 END AS kind
                FROM r LEFT JOIN holders h ON h.k = r.held_key)
            SELECT row_number() OVER (ORDER BY kind, source_key) AS n, source_key, action, zoho_id,
                   payload::VARCHAR AS payload, acc_key, acc_id, con_key, con_id, held::VARCHAR AS held, kind
            FROM ranked ORDER BY n""", {"m": module})
        kinds = dict(wh.con.execute("SELECT kind, count(*) FROM push_todo GROUP BY kind").fetchall())
        wh.con.execute("DROP TABLE IF EXISTS _push_rows")
    return Staged(keyed_creates=int(kinds.get(0, 0)), keyless_creates=int(kinds.get(1, 0)),
                  upsertable_updates=int(kinds.get(2, 0)), other_updates=int(kinds.get(3, 0)),
                  unresolved=unresolved)


def staged_rows(wh: Warehouse, first: int, last: int, *, decode: bool = True) -> list[dict[str, Any]]:
    """Rows `first`..`last` of `push_todo`; payload and held record decoded, or as JSON text (`decode=False`,
    for a caller that decodes them elsewhere)."""
    rows = wh.con.execute(f"SELECT {', '.join(TODO_COLUMNS)} FROM push_todo WHERE n BETWEEN ? AND ? ORDER BY n",
                          [first, last]).fetchall()
    out = [dict(zip(TODO_COLUMNS, values, strict=True)) for values in rows]
    if decode:
        for row in out:
            row["payload"] = json.loads(row["payload"]) if row["payload"] else {}
            row["held"] = json.loads(row["held"]) if row["held"] else {}
    return out


def journal(wh: Warehouse, module: str, first: int, last: int, at: datetime) -> None:
    """Journal the creates among rows `first`..`last` of `push_todo` in `pending_creates` (before any of them
    is sent), with the payload the plan made (what a lost create is matched on: its plain fields). An entry
    already there (an earlier attempt of the same plan whose answer was lost) is kept as it is."""
    wh.con.execute("""INSERT INTO pending_creates
        SELECT $m, source_key, payload::JSON, $at FROM push_todo
        WHERE n BETWEEN $first AND $last AND action = 'create'
        ON CONFLICT (module, source_key) DO NOTHING""", {"m": module, "first": first, "last": last, "at": at})


def forget_journalled(wh: Warehouse, module: str, keys: Iterable[str], since: datetime) -> None:
    """Drop the journal entries of these creates that this push made (at or after `since`): they were never
    sent. An entry from before (an earlier attempt whose answer was lost) stays for the next plan."""
    keys = list(keys)
    if keys:
        wh.con.execute("""DELETE FROM pending_creates WHERE module = $m AND sent_at >= $since
            AND source_key IN (SELECT unnest($k))""", {"m": module, "k": keys, "since": since})


def forget_unsent(wh: Warehouse, module: str, after: int, since: datetime) -> None:
    """Drop the journal entries this push made (at or after `since`) for creates it never handed out (rows
    after `after`): nothing of them can be in Zoho."""
    wh.con.execute("""DELETE FROM pending_creates WHERE module = $m AND sent_at >= $since
        AND source_key IN (SELECT source_key FROM push_todo WHERE n > $after AND action = 'create')""",
                   {"m": module, "after": after, "since": since})


def keyless_candidates_linked(wh: Warehouse, module: str, last_names: Iterable[str]) -> set[str]:
    """Zoho ids already linked that a create without a key could be mistaken for when its answer is lost:
    linked records with no key in our snapshot, or with one of these last names."""
    names = sorted({str(n).strip().lower() for n in last_names if n})
    rows = wh.con.execute("""SELECT l.zoho_id FROM links l
        JOIN zoho_records z ON z.module = l.module AND z.id = l.zoho_id
        WHERE l.module = $m
          AND (z.match_key IS NULL OR lower(trim(z.data->>'Last_Name')) IN (SELECT unnest($names)))""",
                          {"m": module, "names": names}).fetchall()
    return {str(r[0]) for r in rows}


def held_by_id(wh: Warehouse, module: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Our copy of these Zoho records (a create that upsert matched to a record we already hold)."""
    ids = sorted({str(i) for i in ids})
    if not ids:
        return {}
    rows = wh.con.execute("SELECT id, data FROM zoho_records WHERE module = $m AND id IN (SELECT unnest($ids))",
                          {"m": module, "ids": ids}).fetchall()
    return {str(i): json.loads(d) for i, d in rows}


# ------------------------------------------------------------------------------------------- answers
def calls_left(wh: Warehouse, modules: Iterable[str]) -> int:
    """Creates and updates of the stored plan still unpushed in these modules."""
    modules = list(modules)
    if not modules:
        return 0
    return int(wh.scalar("""SELECT count(*) FROM plan WHERE module IN (SELECT unnest($m)) AND NOT pushed
                            AND action IN ('create', 'update')""", {"m": modules}))  # type: ignore[arg-type]


def record_warnings(wh: Warehouse, module: str, run_id: str) -> int:
    """Warnings of the rows this push settled (synced, but worth a person's eye, e.g. a contact without its
    account), unless the row failed in this run; recorded last, so a success in this run does not clear them.
    Rows left unpushed (deferred by the credit budget) are not settled and get none."""
    now = utcnow()
    params = {"m": module, "now": now, "run": run_id}
    with wh.transaction():
        wh.con.execute("""CREATE OR REPLACE TEMP TABLE _push_warnings AS
            SELECT s.source_key, (s.refs->'warning'->>'code') AS code, (s.refs->'warning'->>'message') AS message
            FROM push_scope s JOIN plan p ON p.module = $m AND p.source_key = s.source_key AND p.pushed
            WHERE (s.refs->'warning') IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM sync_errors e WHERE e.module = $m AND e.source_key = s.source_key
                              AND e.run_id = $run AND e.severity = 'error')""", {"m": module, "run": run_id})
        count = int(wh.scalar("SELECT count(*) FROM _push_warnings"))
        if count:
            wh.con.execute("""INSERT INTO sync_errors (module, source_key, code, message, details, first_seen,
                                                       last_seen, run_id, severity)
                SELECT $m, source_key, code, message, '{}'::JSON, $now, $now, $run, 'warning' FROM _push_warnings
                """ + SYNC_ERROR_UPSERT, params)
        wh.con.execute("DROP TABLE IF EXISTS _push_warnings")
    return count


def finish(wh: Warehouse) -> None:
    for name in ("push_todo", "push_scope"):
        wh.con.execute(f"DROP TABLE IF EXISTS temp.{name}")


# ------------------------------------------------------------------------------------------- credits
def record_credits(wh: Warehouse, run_id: str, step: str, credits: int, at: datetime | None = None) -> None:
    if credits:
        wh.con.execute("INSERT INTO credit_ledger VALUES (?, ?, ?, ?)", [at or utcnow(), run_id, step, int(credits)])


def credits_spent_since(wh: Warehouse, since: datetime) -> int:
    """Credits the site spent after `since` (the ledger's rows older than LEDGER_KEPT are dropped here)."""
    wh.con.execute("DELETE FROM credit_ledger WHERE spent_at < ?", [utcnow() - LEDGER_KEPT])
    return int(wh.scalar("SELECT coalesce(sum(credits), 0) FROM credit_ledger WHERE spent_at > ?", [since]))
