"""The DuckDB warehouse of one site: raw Chargebee rows, Zoho snapshots, links, plans and the sync log.

Why it exists: every layer above reads and writes through these functions, so the schema and its SQL live
in one place. All SQL is parametrised. Each site has its own file, so test and live never mix.

What it must never do: hold a secret (no API key, token or client secret is ever written here), call an
API, or decide a business rule.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

SCHEMA_VERSION = 1

# The key a Zoho record is matched on: a contact's email (lower-cased), an account's name (lower-cased, white
# space folded), a deal's name. Stored with the record so the plan can find the few records it needs.
_ZOHO_MATCH_KEY = """CASE module
    WHEN 'Contacts' THEN lower(nullif(trim(data->>'Email'), ''))
    WHEN 'Accounts' THEN lower(nullif(regexp_replace(trim(data->>'Account_Name'), '\\s+', ' ', 'g'), ''))
    WHEN 'Deals' THEN nullif(trim(data->>'Deal_Name'), '') END"""


def _zoho_lookup(field: str) -> str:
    """The record id of a lookup field, whether Zoho gave an object or a bare id."""
    value = f"data->'{field}'"
    return (f"CASE WHEN module = 'Accounts' THEN NULL WHEN json_type({value}) = 'OBJECT' "
            f"THEN nullif({value}->>'id', '') ELSE nullif(trim({value}->>'$'), '') END")


def _zoho_text(field: str) -> str:
    return f"nullif(trim(data->>'{field}'), '')"


# The typed columns of a Zoho record that the plan reads (sync/plan_sql.py), flattened from `data` when the
# record is stored, so a plan over a million records parses no JSON. `data` stays the copy as Zoho sent it;
# fields outside this list (extra contact fields) are read from it. Text columns hold the value trimmed,
# blank as NULL (as the rules compare values); `z_amount` is NULL unless Amount is a number or numeric text.
ZOHO_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("match_key", "VARCHAR", _ZOHO_MATCH_KEY),
    ("z_first_name", "VARCHAR", _zoho_text("First_Name")),
    ("z_last_name", "VARCHAR", _zoho_text("Last_Name")),
    ("z_email", "VARCHAR", _zoho_text("Email")),
    ("z_phone", "VARCHAR", _zoho_text("Phone")),
    ("z_account_id", "VARCHAR", _zoho_lookup("Account_Name")),
    ("z_contact_id", "VARCHAR", _zoho_lookup("Contact_Name")),
    ("z_deal_name", "VARCHAR", _zoho_text("Deal_Name")),
    ("z_amount", "DOUBLE", "CASE WHEN json_type(data->'Amount') IN ('DOUBLE', 'BIGINT', 'UBIGINT', 'VARCHAR') "
                           "THEN TRY_CAST(data->>'Amount' AS DOUBLE) END"),
    ("z_closing_date", "VARCHAR", _zoho_text("Closing_Date")),
    ("z_pipeline", "VARCHAR", _zoho_text("Pipeline")),
    ("z_stage", "VARCHAR", _zoho_text("Stage")),
    ("z_currency", "VARCHAR", _zoho_text("Currency")),
)
ZOHO_TYPED_NAMES = ", ".join(name for name, _type, _expr in ZOHO_COLUMNS)
# Zoho fields that have a typed column (the plan reads those from the column).
ZOHO_TYPED_FIELDS = {"First_Name": "z_first_name", "Last_Name": "z_last_name", "Email": "z_email",
                     "Phone": "z_phone"}


def zoho_typed_select() -> str:
    """A SELECT list computing the typed columns from `module` and `data` (JSON)."""
    return ", ".join(f"CAST({expr} AS {sql_type}) AS {name}" for name, sql_type, expr in ZOHO_COLUMNS)


# What of a Zoho record is not content: a record read back exactly as we wrote it is not a change, although
# Zoho adds its stamps, owner and the names of lookups (see `zoho_content_key`).
_ZOHO_NOT_CONTENT = frozenset({"id", "Modified_Time", "Created_Time", "Modified_By", "Created_By", "Owner",
                               "Last_Activity_Time"})


def _content_value(value: Any) -> Any:
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        if "id" in value:
            return str(value["id"])  # a lookup: what it points to, not the name Zoho shows with it
        inner = {k: v for k, v in ((k, _content_value(v)) for k, v in value.items()) if v is not None}
        return inner or None
    if isinstance(value, list):
        return [_content_value(v) for v in value] or None
    return str(value)


def zoho_content_key(record: dict[str, Any]) -> str:
    """A digest of what a Zoho record says, blind to what Zoho adds on its own: stamps, owner, a lookup's
    name next to its id, blank or missing fields, 29 versus 29.0. The snapshot's write-through of a record
    and the same record read back from Zoho have the same key, so our own writes are not changes."""
    content = {k: v for k, v in ((k, _content_value(v)) for k, v in record.items()
                                 if k not in _ZOHO_NOT_CONTENT and not k.startswith("$")) if v is not None}
    return hashlib.blake2b(json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
                           digest_size=12).hexdigest()


# DuckDB's memory limit while a Chargebee stream is extracted: a first load of a million customers stays
# within it by spilling to disk, so the extracting process stays well under 1 GB.
EXTRACT_MEMORY_LIMIT = "400MB"
# The same for planning: a full plan of a million customers fits in it (the process stays under 1 GB).
PLAN_MEMORY_LIMIT = "640MB"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

-- Chargebee objects, latest version per id: `data` is the audit copy, as the API returned it; the typed
-- columns are what the rules read, flattened from it at extraction (stored as given, not trimmed).
CREATE TABLE IF NOT EXISTS cb_customers (
    id VARCHAR PRIMARY KEY, data JSON NOT NULL, created_at BIGINT, updated_at BIGINT,
    resource_version BIGINT, deleted BOOLEAN, extracted_at TIMESTAMPTZ,
    first_name VARCHAR, last_name VARCHAR, email VARCHAR, phone VARCHAR, company VARCHAR,
    billing_last_name VARCHAR);
CREATE TABLE IF NOT EXISTS cb_subscriptions (
    id VARCHAR PRIMARY KEY, customer_id VARCHAR, data JSON NOT NULL, created_at BIGINT, updated_at BIGINT,
    resource_version BIGINT, deleted BOOLEAN, extracted_at TIMESTAMPTZ,
    status VARCHAR, currency_code VARCHAR, mrr BIGINT);

-- Incremental cursors (Chargebee updated_at in seconds, Zoho Modified_Time as text).
CREATE TABLE IF NOT EXISTS cursors (stream VARCHAR PRIMARY KEY, value VARCHAR, updated_at TIMESTAMPTZ);

-- Rows set aside by validation, keyed by the version that failed so a changed record is retried.
CREATE TABLE IF NOT EXISTS rejects (
    stream VARCHAR, id VARCHAR, resource_version BIGINT, reason VARCHAR, seen_at TIMESTAMPTZ,
    PRIMARY KEY (stream, id));

-- Zoho records as Zoho holds them (module = Contacts | Accounts | Deals).
CREATE TABLE IF NOT EXISTS zoho_records (
    module VARCHAR, id VARCHAR, data JSON NOT NULL, modified_time VARCHAR, PRIMARY KEY (module, id));
-- (the typed columns of ZOHO_COLUMNS, content_key and refreshed_at are added by `_migrate_zoho`)
-- Zoho records that left Zoho (deleted feed), so the next plan looks at what pointed to them.
CREATE TABLE IF NOT EXISTS zoho_deleted (module VARCHAR, id VARCHAR, deleted_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS zoho_meta (kind VARCHAR PRIMARY KEY, data JSON NOT NULL, fetched_at TIMESTAMPTZ);

-- Chargebee key <-> Zoho id. Contacts: customer id; Deals: subscription id; Accounts: normalised company.
CREATE TABLE IF NOT EXISTS links (
    module VARCHAR, source_key VARCHAR, zoho_id VARCHAR, linked_at TIMESTAMPTZ, PRIMARY KEY (module, source_key));

-- The latest plan: one row per record and module (see _PLAN_DDL).
-- One row per plan made; a plan is identified by the Dagster run that made it.
CREATE TABLE IF NOT EXISTS plans (plan_id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ, counts JSON);

-- Creates sent to Zoho whose answers were not yet recorded (crash recovery).
CREATE TABLE IF NOT EXISTS pending_creates (
    module VARCHAR, source_key VARCHAR, payload JSON, sent_at TIMESTAMPTZ, PRIMARY KEY (module, source_key));

CREATE TABLE IF NOT EXISTS sync_log (
    run_id VARCHAR, logged_at TIMESTAMPTZ, module VARCHAR, source_key VARCHAR, operation VARCHAR, zoho_id VARCHAR,
    outcome VARCHAR, code VARCHAR, message VARCHAR);
CREATE TABLE IF NOT EXISTS sync_errors (
    module VARCHAR, source_key VARCHAR, code VARCHAR, message VARCHAR, details JSON, first_seen TIMESTAMPTZ,
    last_seen TIMESTAMPTZ, run_id VARCHAR, PRIMARY KEY (module, source_key));
-- API credits spent per call site (see sync/credits.py); rows older than 3 days are dropped.
CREATE TABLE IF NOT EXISTS credit_ledger (spent_at TIMESTAMPTZ, run_id VARCHAR, step VARCHAR, credits INTEGER);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, status VARCHAR, counts JSON);
"""

# The latest plan: one row per record and module. Replaced whole by each plan (dropped and made again:
# deleting a million indexed rows one by one took DuckDB longer than planning them).
_PLAN_DDL = """CREATE TABLE IF NOT EXISTS plan (
    plan_id VARCHAR, module VARCHAR, source_key VARCHAR, action VARCHAR, zoho_id VARCHAR, payload JSON,
    changed_fields JSON, reason VARCHAR, code VARCHAR, refs JSON, pushed BOOLEAN DEFAULT FALSE,
    PRIMARY KEY (module, source_key))"""


# The typed columns of each Chargebee table: (column, JSON path in the object, SQL type). The lifecycle
# stamps first (every table has them, since the first release), then what the rules read (added later;
# `_CB_TYPED`). The column names are the contract with the plan's SQL: change them only together.
_CB_STAMPS = (("created_at", "$.created_at", "BIGINT"), ("updated_at", "$.updated_at", "BIGINT"),
              ("resource_version", "$.resource_version", "BIGINT"), ("deleted", "$.deleted", "BOOLEAN"))
_CB_TYPED = {
    "cb_customers": (("first_name", "$.first_name", "VARCHAR"), ("last_name", "$.last_name", "VARCHAR"),
                     ("email", "$.email", "VARCHAR"), ("phone", "$.phone", "VARCHAR"),
                     ("company", "$.company", "VARCHAR"),
                     ("billing_last_name", "$.billing_address.last_name", "VARCHAR")),
    "cb_subscriptions": (("status", "$.status", "VARCHAR"), ("currency_code", "$.currency_code", "VARCHAR"),
                         ("mrr", "$.mrr", "BIGINT")),
}
_CB_COLUMNS = {
    "cb_customers": (*_CB_STAMPS, *_CB_TYPED["cb_customers"]),
    "cb_subscriptions": (("customer_id", "$.customer_id", "VARCHAR"), *_CB_STAMPS, *_CB_TYPED["cb_subscriptions"]),
}


def _cb_stage(table: str) -> str:
    assert table in _CB_TYPED
    return f"{table}_stage"


def _cb_flatten(table: str, source: str, *, typed_only: bool = False) -> tuple[list[str], str]:
    """Column names and a SELECT list computing them from the JSON text in `source` (one parse per row)."""
    columns = _CB_TYPED[table] if typed_only else _CB_COLUMNS[table]
    paths = ", ".join(f"'{path}'" for _name, path, _type in columns)
    values = f"json_extract_string({source}, [{paths}])"
    exprs = []
    for position, (name, _path, sql_type) in enumerate(columns, start=1):
        value = f"CAST(({values})[{position}] AS {sql_type})"
        # An object without `deleted` is not deleted (as Chargebee omits false optional flags).
        exprs.append(f"coalesce({value}, false) AS {name}" if name == "deleted" else f"{value} AS {name}")
    return [name for name, _path, _type in columns], ", ".join(exprs)


# How a sync error is stored over an earlier one of the same record: its first_seen stays.
SYNC_ERROR_UPSERT = """ON CONFLICT (module, source_key) DO UPDATE SET code = excluded.code,
    message = excluded.message, details = excluded.details, last_seen = excluded.last_seen,
    run_id = excluded.run_id, severity = excluded.severity"""


# The refreshed_at of a record we created: no plan needs to look at it for the sake of its creation.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Warehouse:
    """A thin, typed wrapper over one site's DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._staged: dict[str, int] = {}  # rows staged so far per Chargebee table (their sequence numbers)

    # ----------------------------------------------------------------------------------------- basics
    def init(self) -> None:
        self.con.execute(_DDL)
        self.con.execute(_PLAN_DDL)
        self._migrate_chargebee()
        # Added after the first release: 'error' (the record is not in Zoho as it should be) or 'warning'
        # (it is, but something about it needs a person, e.g. a contact synced without its account).
        self.con.execute("ALTER TABLE sync_errors ADD COLUMN IF NOT EXISTS severity VARCHAR DEFAULT 'error'")
        self._migrate_zoho()
        self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def _migrate_zoho(self) -> None:
        """Zoho records carry their typed columns, the key they are matched on, a digest of their content and
        when that content last changed (for the plan's scope); a warehouse made before gets them, once."""
        have = {r[0] for r in self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = 'zoho_records'").fetchall()}
        wanted = [(name, sql_type) for name, sql_type, _expr in ZOHO_COLUMNS]
        wanted += [("content_key", "VARCHAR"), ("refreshed_at", "TIMESTAMPTZ")]
        missing = [(name, sql_type) for name, sql_type in wanted if name not in have]
        if not missing:
            return
        with self.transaction():
            for name, sql_type in missing:
                self.con.execute(f"ALTER TABLE zoho_records ADD COLUMN IF NOT EXISTS {name} {sql_type}")
            self.retype_zoho()

    def retype_zoho(self) -> None:
        """(Re)compute the typed columns and content keys of stored Zoho records from their `data` (a schema
        upgrade, or records inserted by plain SQL such as a benchmark's synthetic site)."""
        assignments = ", ".join(f"{name} = x.{name}" for name, _t, _e in ZOHO_COLUMNS)
        self.con.execute(f"""UPDATE zoho_records SET {assignments}, refreshed_at = coalesce(refreshed_at, $now)
                             FROM (SELECT module AS xm, id AS xid, {zoho_typed_select()} FROM zoho_records) x
                             WHERE zoho_records.module = x.xm AND zoho_records.id = x.xid""", {"now": utcnow()})
        after = ("", "")
        while True:
            rows = self.con.execute(
                """SELECT module, id, data FROM zoho_records WHERE (module, id) > (?, ?)
                   ORDER BY module, id LIMIT 50000""", list(after)).fetchall()
            if not rows:
                return
            keys = [(m, i, zoho_content_key(json.loads(d))) for m, i, d in rows]
            self._bulk("""UPDATE zoho_records SET content_key = batch.content_key FROM batch
                          WHERE zoho_records.module = batch.module AND zoho_records.id = batch.id""",
                       ["module", "id", "content_key"], keys)
            after = (rows[-1][0], rows[-1][1])

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        rows = self.con.execute(sql, params or []).fetchall()  # fetch all: DuckDB 2 refuses new work otherwise
        return rows[0][0] if rows else None

    def _bulk(self, sql: str, columns: list[str], rows: list[tuple], params: dict | None = None) -> None:
        """Run `sql` (which selects from `batch`) over many rows at once: DuckDB's executemany goes row by row."""
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=columns, dtype=object)
        self.con.register("batch", frame)
        try:
            self.con.execute(sql, params or {})
        finally:
            self.con.unregister("batch")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # ----------------------------------------------------------------------------------------- cursors
    def get_cursor(self, stream: str) -> str | None:
        return self.scalar("SELECT value FROM cursors WHERE stream = ?", [stream])

    def set_cursor(self, stream: str, value: str | int | None) -> None:
        if value is None:
            self.con.execute("DELETE FROM cursors WHERE stream = ?", [stream])
        else:
            self.con.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", [stream, str(value), utcnow()])

    # ----------------------------------------------------------------------------------------- chargebee
    # A stream of pages lands so that a first load of N records costs O(N) and memory stays flat: inside
    # `chargebee_stream` (one transaction, DuckDB held to a memory limit) `stage_chargebee` appends each page
    # to the stream's staging table, touching nothing else, and `merge_chargebee`, once at the end, moves the
    # newest copy of each id into the table in a few set-based statements. The caller records the rejects
    # and the cursor in the same transaction, so a stream lands whole or not at all.

    def _migrate_chargebee(self) -> None:
        """Give a warehouse made before the typed columns those columns, filled from the JSON (once)."""
        for table, typed in _CB_TYPED.items():
            have = {r[0] for r in self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ?", [table]).fetchall()}
            missing = [(name, sql_type) for name, _path, sql_type in typed if name not in have]
            if not missing:
                continue
            with self.transaction():
                for name, sql_type in missing:
                    self.con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")
                names, values = _cb_flatten(table, "data", typed_only=True)
                assignments = ", ".join(f"{n} = x.{n}" for n in names)
                self.con.execute(f"UPDATE {table} SET {assignments} FROM (SELECT id AS xid, {values} FROM {table}) x "
                                 f"WHERE {table}.id = x.xid")

    @contextmanager
    def chargebee_stream(self, table: str, *, memory_limit: str = EXTRACT_MEMORY_LIMIT) -> Iterator[None]:
        """One stream of `table` as one transaction over an empty staging table, within `memory_limit`.

        Whatever a crashed run staged is dropped first, never merged. An exception inside rolls back
        everything the stream did (its pages, merge, rejects and cursor); the staging table goes on commit.
        """
        assert table in _CB_TYPED
        stage = _cb_stage(table)
        try:
            with self.limited(memory_limit), self.transaction():
                self.con.execute(f"DROP TABLE IF EXISTS {stage}")
                self.con.execute(f"CREATE TABLE {stage} (seq BIGINT, id VARCHAR, resource_version BIGINT, "
                                 "data VARCHAR)")
                self._staged[table] = 0
                yield
                for name in (stage, f"temp.{table}_arrivals", f"temp.{table}_checked"):
                    self.con.execute(f"DROP TABLE IF EXISTS {name}")
        finally:
            self._staged.pop(table, None)

    @contextmanager
    def limited(self, memory_limit: str) -> Iterator[None]:
        """Hold DuckDB to `memory_limit` (it spills what does not fit) and keep its progress bar off our
        stdout (a `cbzoho sync --json` answer) for the work inside; the previous settings come back after."""
        assert re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit), memory_limit
        previous = self.scalar("SELECT current_setting('memory_limit')")
        progress_bar = self.scalar("SELECT current_setting('enable_progress_bar')")
        order = self.scalar("SELECT current_setting('preserve_insertion_order')")
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET preserve_insertion_order = false")  # nothing here reads rows in stored order
        try:
            yield
        finally:
            self.con.execute(f"SET enable_progress_bar = {'true' if progress_bar else 'false'}")
            self.con.execute(f"SET preserve_insertion_order = {'true' if order else 'false'}")
            self.con.execute("RESET memory_limit")
            if self.scalar("SELECT current_setting('memory_limit')") != previous:
                self.con.execute(f"SET memory_limit = '{previous}'")

    def stage_chargebee(self, table: str, objects: list[dict[str, Any]]) -> int:
        """Append one page to the stream's staging table: one INSERT of the page, no read of anything else."""
        if not objects:
            return 0
        stage = _cb_stage(table)
        seq = self._staged[table]  # KeyError outside `chargebee_stream`
        self.con.execute(
            f"INSERT INTO {stage} SELECT $seq + generate_subscripts($ids, 1), unnest($ids), unnest($versions), "
            "unnest($data)",
            {"seq": seq, "ids": [o["id"] for o in objects],
             "versions": [v if isinstance(v := o.get("resource_version"), int) else None for o in objects],
             "data": [json.dumps(o, ensure_ascii=False, separators=(",", ":")) for o in objects]})
        self._staged[table] = seq + len(objects)
        return len(objects)

    def merge_chargebee(self, table: str, *, check_all: bool = False) -> tuple[int, int]:
        """Move the staged stream into `table`: the newest copy of each id, only where it changes something.

        Within the stream an id's copy with the highest `resource_version` wins (the last read among equals
        or among copies without one). Against the table, a staged copy replaces the stored one when its
        `resource_version` is higher, or when it has none and its content differs; an older copy (an
        overlapping window) never replaces a newer one. Returns (new ids, changed ids). The rows to check
        against the row rules - those merged, or every staged id with `check_all` - are then readable
        through `chargebee_checked`. Once per stream, inside `chargebee_stream`.
        """
        assert table in _CB_TYPED
        stage, arrivals, checked = _cb_stage(table), f"{table}_arrivals", f"{table}_checked"
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {arrivals} AS
            WITH latest AS (
                SELECT seq FROM {stage}
                QUALIFY row_number() OVER (PARTITION BY id ORDER BY resource_version DESC NULLS LAST, seq DESC) = 1)
            SELECT s.seq, s.id,
                   CASE WHEN t.id IS NULL THEN 'new'
                        WHEN coalesce(s.resource_version, -1) > coalesce(t.resource_version, -1)
                          OR (s.resource_version IS NULL AND t.data::VARCHAR <> s.data) THEN 'changed'
                        ELSE 'same' END AS action
            FROM {stage} s SEMI JOIN latest l ON l.seq = s.seq
            LEFT JOIN {table} t ON t.id = s.id""")
        new, changed = self.con.execute(
            f"SELECT count(*) FILTER (action = 'new'), count(*) FILTER (action = 'changed') FROM {arrivals}").fetchone()
        names, values = _cb_flatten(table, "s.data")
        now = utcnow()
        if new:
            self.con.execute(
                f"""INSERT INTO {table} (id, data, {', '.join(names)}, extracted_at)
                    SELECT s.id, s.data::JSON, {values}, $now
                    FROM {stage} s SEMI JOIN {arrivals} a ON a.seq = s.seq AND a.action = 'new'""", {"now": now})
        if changed:
            assignments = ", ".join(f"{n} = x.{n}" for n in names)
            self.con.execute(
                f"""UPDATE {table} SET data = x.data, {assignments}, extracted_at = $now
                    FROM (SELECT s.id AS xid, s.data::JSON AS data, {values}
                          FROM {stage} s SEMI JOIN {arrivals} a ON a.seq = s.seq AND a.action = 'changed') x
                    WHERE {table}.id = x.xid""", {"now": now})
        rule_columns = ", ".join(f"t.{name}" for name, _path, _type in _CB_COLUMNS[table])
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {checked} AS
            SELECT row_number() OVER (ORDER BY t.id) AS n, t.id, {rule_columns}
            FROM {table} t SEMI JOIN {arrivals} a ON a.id = t.id AND ($all OR a.action <> 'same')
            ORDER BY n""", {"all": check_all})
        return int(new), int(changed)

    def chargebee_checked(self, table: str, batch: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        """The typed columns of the rows the last `merge_chargebee` of `table` marked for checking, in batches."""
        checked = f"{table}_checked"
        start = 0
        while True:
            cursor = self.con.execute(f"SELECT * EXCLUDE (n) FROM {checked} WHERE n > ? AND n <= ? ORDER BY n",
                                      [start, start + batch])
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            if not rows:
                return
            yield [dict(zip(columns, row, strict=True)) for row in rows]
            start += batch

    def upsert_chargebee(self, table: str, objects: list[dict[str, Any]]) -> tuple[int, int]:
        """Store one batch of Chargebee objects through the staging path (for fixtures and small loads).

        Returns (new ids, changed ids); the newest `resource_version` of each id is kept. No row rules run.
        """
        with self.chargebee_stream(table):
            self.stage_chargebee(table, objects)
            return self.merge_chargebee(table)

    def iter_chargebee_objects(self, table: str, batch: int = 20_000) -> Iterator[list[dict[str, Any]]]:
        """All stored objects of a table in batches, by id, so a pass over a large site stays small in memory."""
        assert table in _CB_TYPED
        after = ""
        while True:
            rows = self.con.execute(f"SELECT id, data FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                                    [after, batch]).fetchall()
            if not rows:
                return
            yield [json.loads(r[1]) for r in rows]
            after = rows[-1][0]

    def chargebee_objects(self, table: str) -> list[dict[str, Any]]:
        return [obj for batch in self.iter_chargebee_objects(table) for obj in batch]

    def count(self, table: str, where: str = "") -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table} {where}"))

    # ----------------------------------------------------------------------------------------- rejects
    def settle_rejects(self, stream: str, table: str, rows: list[tuple[str, int | None, str]]) -> None:
        """Record the verdict on the rows checked this run: those in `rows` are set aside (with the version
        that failed), the other checked rows leave the rejects table; rows not checked keep their state."""
        self.con.execute(f"DELETE FROM rejects WHERE stream = ? AND id IN (SELECT id FROM temp.{table}_checked)",
                         [stream])
        now = utcnow()
        self._bulk("INSERT INTO rejects SELECT stream, id, resource_version::BIGINT, reason, seen_at FROM batch",
                   ["stream", "id", "resource_version", "reason", "seen_at"],
                   [(stream, i, v, r, now) for i, v, r in rows])

    def set_aside(self, stream: str) -> list[tuple[str, int | None, str]]:
        """Every row of the stream now set aside: (id, resource_version that failed, reason), by id."""
        rows = self.con.execute("SELECT id, resource_version, reason FROM rejects WHERE stream = ? ORDER BY id",
                                [stream]).fetchall()
        return [(str(i), None if v is None else int(v), str(r)) for i, v, r in rows]

    def rejects(self, stream: str) -> pd.DataFrame:
        return self.df("SELECT id, resource_version, reason FROM rejects WHERE stream = ? ORDER BY id", [stream])

    # ----------------------------------------------------------------------------------------- zoho
    def upsert_zoho(self, module: str, records: Iterable[dict[str, Any]], *, written: bool = False) -> int:
        """Store Zoho records as read, or with `written` as the push wrote them (write-through): one row per
        id, with its typed columns. `refreshed_at` says when Zoho last changed a record in a way no plan has
        seen, so it moves only when a read finds the content changed (`zoho_content_key`): a record read again
        unchanged, or our own write read back, is not looked at again by the next plan, and a write-through
        (the plan's own doing) never moves it."""
        latest = {str(r["id"]): r for r in records}  # one row per id: an upsert may not touch a row twice
        rows = [
            (module, rid, json.dumps(r, ensure_ascii=False, separators=(",", ":")), r.get("Modified_Time"),
             zoho_content_key(r))
            for rid, r in latest.items()
        ]
        updates = ", ".join(f"{name} = excluded.{name}" for name, _t, _e in ZOHO_COLUMNS)
        self._bulk(f"""INSERT INTO zoho_records (module, id, data, modified_time, content_key, refreshed_at,
                                                 {ZOHO_TYPED_NAMES})
                       SELECT module, id, data, modified_time, content_key, $now, {zoho_typed_select()}
                       FROM (SELECT module, id, data::JSON AS data, modified_time, content_key FROM batch)
                       ON CONFLICT (module, id) DO UPDATE SET data = excluded.data,
                           modified_time = excluded.modified_time, {updates},
                           refreshed_at = CASE WHEN NOT $written AND content_key IS DISTINCT FROM excluded.content_key
                                               THEN excluded.refreshed_at ELSE refreshed_at END,
                           content_key = excluded.content_key""",
                   ["module", "id", "data", "modified_time", "content_key"], rows,
                   {"now": _NEVER if written else utcnow(), "written": written})
        return len(rows)

    def clear_zoho(self, module: str) -> None:
        self.con.execute("DELETE FROM zoho_records WHERE module = ?", [module])

    def zoho_count(self, module: str) -> int:
        return int(self.scalar("SELECT count(*) FROM zoho_records WHERE module = ?", [module]))

    def duplicate_emails(self) -> pd.DataFrame:
        """Emails (trimmed, case-insensitive) held by more than one Zoho contact, with their ids."""
        return self.df(
            """SELECT match_key AS email, count(*) AS contacts, string_agg(id, ', ' ORDER BY id) AS zoho_ids
               FROM zoho_records WHERE module = 'Contacts' AND match_key IS NOT NULL
               GROUP BY 1 HAVING count(*) > 1 ORDER BY 1"""
        )

    def delete_zoho(self, module: str, ids: Iterable[str]) -> int:
        ids = [str(i) for i in ids]
        if ids:
            self.con.execute("DELETE FROM zoho_records WHERE module = ? AND list_contains(?, id)", [module, ids])
            self.con.execute("INSERT INTO zoho_deleted SELECT ?, unnest(?::VARCHAR[]), ?", [module, ids, utcnow()])
        return len(ids)

    def zoho_records(self, module: str) -> list[dict[str, Any]]:
        rows = self.con.execute("SELECT data FROM zoho_records WHERE module = ? ORDER BY id", [module]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def set_meta(self, kind: str, data: Any) -> None:
        self.con.execute("INSERT OR REPLACE INTO zoho_meta VALUES (?, ?::JSON, ?)", [kind, json.dumps(data), utcnow()])

    def meta_age_minutes(self, kind: str) -> int | None:
        return self.scalar("SELECT date_diff('minute', fetched_at, now()) FROM zoho_meta WHERE kind = ?", [kind])

    def meta(self, kind: str) -> Any:
        value = self.scalar("SELECT data FROM zoho_meta WHERE kind = ?", [kind])
        return json.loads(value) if value is not None else None

    # ----------------------------------------------------------------------------------------- links
    def links(self, module: str) -> dict[str, str]:
        return dict(self.con.execute("SELECT source_key, zoho_id FROM links WHERE module = ?", [module]).fetchall())

    def set_links(self, module: str, pairs: Iterable[tuple[str, str]]) -> None:
        now = utcnow()
        self._bulk("INSERT OR REPLACE INTO links SELECT module, source_key, zoho_id, linked_at FROM batch",
                   ["module", "source_key", "zoho_id", "linked_at"], [(module, k, v, now) for k, v in pairs])

    def drop_links(self, module: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.con.execute("DELETE FROM links WHERE module = ? AND list_contains(?, source_key)", [module, keys])

    # ----------------------------------------------------------------------------------------- plan
    def plan_scope(self, since: datetime) -> int:
        """The records whose plan may differ from what was last carried out, as `scope_customers` and
        `scope_subscriptions`; returns how many customers that is.

        What changed since `since` (Chargebee records merged, Zoho records stored or deleted), what is still
        open (sync errors, creates whose answers were lost, plan rows not pushed), and what depends on those:
        the customers of a subscription, all customers of a company involved, every customer sharing an
        email with one of them, and the subscriptions of all those customers.
        """
        company_key = "lower(nullif(regexp_replace(trim(company), '\\s+', ' ', 'g'), ''))"
        self.con.execute("""CREATE OR REPLACE TEMP TABLE _changed_zoho AS
            SELECT module, id, match_key FROM zoho_records WHERE refreshed_at > $since
            UNION ALL SELECT module, id, NULL FROM zoho_deleted WHERE deleted_at > $since""", {"since": since})
        self.con.execute("""CREATE OR REPLACE TEMP TABLE _open AS
            SELECT module, source_key FROM sync_errors
            UNION SELECT module, source_key FROM pending_creates
            UNION SELECT module, source_key FROM plan WHERE NOT pushed""")
        self.con.execute("""CREATE OR REPLACE TEMP TABLE scope_subscriptions AS
            SELECT id FROM cb_subscriptions WHERE extracted_at > $since
            UNION SELECT source_key FROM _open WHERE module = 'Deals'
            UNION SELECT l.source_key FROM links l JOIN _changed_zoho z ON z.module = 'Deals' AND z.id = l.zoho_id
                  WHERE l.module = 'Deals'
            UNION SELECT match_key FROM _changed_zoho WHERE module = 'Deals' AND match_key IS NOT NULL""",
                         {"since": since})
        self.con.execute("""CREATE OR REPLACE TEMP TABLE _dirty_accounts AS
            SELECT source_key AS key FROM _open WHERE module = 'Accounts'
            UNION SELECT l.source_key FROM links l JOIN _changed_zoho z ON z.module = 'Accounts' AND z.id = l.zoho_id
                  WHERE l.module = 'Accounts'
            UNION SELECT match_key FROM _changed_zoho WHERE module = 'Accounts' AND match_key IS NOT NULL""")
        self.con.execute("CREATE OR REPLACE TEMP TABLE _changed_customers AS "
                         "SELECT id FROM cb_customers WHERE extracted_at > $since", {"since": since})
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE _c0 AS
            SELECT id FROM _changed_customers
            UNION SELECT source_key FROM _open WHERE module = 'Contacts'
            UNION SELECT customer_id FROM cb_subscriptions SEMI JOIN scope_subscriptions s USING (id)
            UNION SELECT l.source_key FROM links l JOIN _changed_zoho z ON z.module = 'Contacts' AND z.id = l.zoho_id
                  WHERE l.module = 'Contacts'
            UNION SELECT c.id FROM cb_customers c
                  JOIN _changed_zoho z ON z.module = 'Contacts' AND z.match_key = lower(nullif(trim(c.email), ''))
            UNION SELECT c.id FROM cb_customers c JOIN _dirty_accounts a ON a.key = {company_key}""")
        if not self.scalar("SELECT count(*) FROM _c0"):
            self.con.execute("CREATE OR REPLACE TEMP TABLE scope_customers AS SELECT id FROM _c0")
            return 0
        # What a changed customer can change for others: its company's account (so all the company's
        # customers), and whether an email is shared (so everyone with the same email). Records in scope only
        # because they are open need no such hop: an account in error already brings all its customers.
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE _c1 AS
            WITH keys AS (SELECT DISTINCT {company_key} AS key
                          FROM cb_customers SEMI JOIN _changed_customers USING (id))
            SELECT id FROM _c0
            UNION SELECT c.id FROM cb_customers c JOIN keys k ON k.key = {company_key}""")
        self.con.execute("""CREATE OR REPLACE TEMP TABLE scope_customers AS
            WITH emails AS (SELECT DISTINCT lower(nullif(trim(email), '')) AS e
                            FROM cb_customers SEMI JOIN _changed_customers USING (id))
            SELECT id FROM _c1
            UNION SELECT c.id FROM cb_customers c JOIN emails m ON m.e = lower(nullif(trim(c.email), ''))""")
        self.con.execute("""INSERT INTO scope_subscriptions
            SELECT s.id FROM cb_subscriptions s SEMI JOIN scope_customers c ON c.id = s.customer_id
            EXCEPT SELECT id FROM scope_subscriptions""")
        return int(self.scalar("SELECT count(*) FROM scope_customers"))

    def plan_input_views(self, extra_paths: list[str], *, scoped: bool = False,
                         external_field: str | None = None) -> None:
        """The relations the set-based plan reads (sync/plan_sql.py), as views over this warehouse; with
        `scoped`, only the records of `plan_scope` and the Zoho records they can match."""
        extras = "".join(
            f", json_extract_string(data, '$.{path}') AS x{i}" for i, path in enumerate(extra_paths)
            if "'" not in path)
        customer_filter = "WHERE id IN (SELECT id FROM scope_customers)" if scoped else ""
        sub_filter = "WHERE id IN (SELECT id FROM scope_subscriptions)" if scoped else ""
        self.con.execute(f"""CREATE OR REPLACE TEMP VIEW in_customers AS
            SELECT id, first_name, last_name, email, phone, company, billing_last_name, deleted, created_at{extras}
            FROM cb_customers {customer_filter}""")
        self.con.execute(f"""CREATE OR REPLACE TEMP VIEW in_subscriptions AS
            SELECT id, customer_id, status, currency_code, mrr, created_at, deleted
            FROM cb_subscriptions {sub_filter}""")
        if not scoped:
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW in_zoho AS SELECT module, id, data, {ZOHO_TYPED_NAMES} "
                             "FROM zoho_records")
        else:
            company_key = "lower(nullif(regexp_replace(trim(company), '\\s+', ' ', 'g'), ''))"
            by_external = (f"""UNION SELECT id FROM zoho_records WHERE module = 'Contacts'
                               AND nullif(trim(data->>'{external_field}'), '') IN (SELECT id FROM scope_customers)"""
                           if external_field and "'" not in external_field else "")
            self.con.execute(f"""CREATE OR REPLACE TEMP TABLE _scope_zoho AS
                WITH sc AS (SELECT c.id, lower(nullif(trim(c.email), '')) AS email, {company_key} AS company
                            FROM cb_customers c SEMI JOIN scope_customers s USING (id))
                SELECT 'Contacts' AS module, id FROM (
                    SELECT l.zoho_id AS id FROM links l SEMI JOIN sc ON sc.id = l.source_key WHERE l.module = 'Contacts'
                    UNION SELECT z.id FROM zoho_records z SEMI JOIN sc ON sc.email = z.match_key
                          WHERE z.module = 'Contacts' {by_external})
                UNION ALL SELECT 'Accounts', id FROM (
                    SELECT l.zoho_id AS id FROM links l SEMI JOIN sc ON sc.company = l.source_key
                          WHERE l.module = 'Accounts'
                    UNION SELECT z.id FROM zoho_records z SEMI JOIN sc ON sc.company = z.match_key
                          WHERE z.module = 'Accounts')
                UNION ALL SELECT 'Deals', id FROM (
                    SELECT l.zoho_id AS id FROM links l SEMI JOIN scope_subscriptions s ON s.id = l.source_key
                          WHERE l.module = 'Deals'
                    UNION SELECT z.id FROM zoho_records z SEMI JOIN scope_subscriptions s ON s.id = z.match_key
                          WHERE z.module = 'Deals')""")
            self.con.execute(f"""CREATE OR REPLACE TEMP VIEW in_zoho AS
                SELECT module, id, data, {ZOHO_TYPED_NAMES} FROM zoho_records z
                SEMI JOIN _scope_zoho s USING (module, id)""")
        self.con.execute("CREATE OR REPLACE TEMP VIEW in_links AS SELECT module, source_key, zoho_id FROM links")
        self.con.execute("CREATE OR REPLACE TEMP VIEW in_rejects AS SELECT stream, id, reason FROM rejects")

    def store_plan(self, plan_id: str) -> dict[str, dict[str, int]]:
        """Keep what the push needs of `plan_out` (creates, updates, skips, errors, links to record, errors to
        clear) and count every action, noops included; returns the counts per module and action."""
        counts: dict[str, dict[str, int]] = {m: {a: 0 for a in ("create", "update", "noop", "skip", "error")}
                                             for m in ("Accounts", "Contacts", "Deals")}
        for module, action, n in self.con.execute(
                "SELECT module, action, count(*) FROM plan_out GROUP BY ALL").fetchall():
            counts[module][action] = int(n)
        with self.transaction():
            self.con.execute("DROP TABLE IF EXISTS plan")
            self.con.execute(_PLAN_DDL)
            self.con.execute(
                """INSERT INTO plan SELECT ?, p.module, p.source_key, p.action, p.zoho_id, p.payload,
                          to_json(p.changed_fields), p.reason, p.code, p.refs, FALSE
                   FROM plan_out p
                   WHERE p.action <> 'noop' OR p.refs IS NOT NULL
                      OR EXISTS (SELECT 1 FROM sync_errors e
                                 WHERE e.module = p.module AND e.source_key = p.source_key)""",
                [plan_id])
            self.con.execute("INSERT OR REPLACE INTO plans VALUES (?, ?, ?::JSON)",
                             [plan_id, utcnow(), json.dumps(counts)])
        return counts

    def get_state(self, key: str) -> Any:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", [key])
        return json.loads(value) if value else None

    def set_state(self, key: str, value: Any) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, json.dumps(value, default=str)])

    def planned_count(self, module: str, action: str) -> int:
        """How many records of `module` the stored plan gave `action` (noops are counted, not stored)."""
        value = self.scalar("""SELECT counts->?->>? FROM plans WHERE plan_id = (SELECT any_value(plan_id) FROM plan)
                               UNION ALL SELECT NULL LIMIT 1""", [module, action])
        return int(value or 0)

    def plan_changes(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` planned changes (anything but noop), for people to read."""
        rows = self.con.execute(
            """SELECT module, source_key, action, array_to_string(coalesce(changed_fields, []), ', '), reason
               FROM plan_out WHERE action <> 'noop'
               ORDER BY CASE module WHEN 'Accounts' THEN 0 WHEN 'Contacts' THEN 1 ELSE 2 END, source_key
               LIMIT ?""", [limit]).fetchall()
        return [{"module": m, "key": k, "action": a, "changed": c, "reason": r} for m, k, a, c, r in rows]

    def latest_plan(self) -> tuple[str, Any] | None:
        """(plan_id, created_at) of the plan now stored, or None before the first plan."""
        rows = self.con.execute("SELECT plan_id, created_at FROM plans ORDER BY created_at DESC LIMIT 1").fetchall()
        return (rows[0][0], rows[0][1]) if rows else None

    def mark_pushed(self, module: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.con.execute("UPDATE plan SET pushed = TRUE WHERE module = $m AND source_key IN (SELECT unnest($k))",
                             {"m": module, "k": keys})

    # ----------------------------------------------------------------------------------------- journal
    def clear_pending(self, module: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.con.execute("DELETE FROM pending_creates WHERE module = $m AND source_key IN (SELECT unnest($k))",
                             {"m": module, "k": keys})

    def pending(self, module: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self.con.execute("SELECT source_key, payload FROM pending_creates WHERE module = ?", [module]).fetchall()
        return [(k, json.loads(p)) for k, p in rows]

    def writes_since_cursor(self, module: str, stream: str) -> int:
        """Records of `module` we wrote successfully since cursor `stream` was last stored."""
        return int(self.scalar(
            """SELECT count(*) FROM sync_log WHERE module = ? AND outcome = 'success'
               AND logged_at > coalesce((SELECT updated_at FROM cursors WHERE stream = ?), '-infinity'::TIMESTAMPTZ)""",
            [module, stream]))

    def last_write_at(self, module: str) -> datetime | None:
        """When the latest successful write to `module` was logged."""
        return self.scalar("SELECT max(logged_at) FROM sync_log WHERE module = ? AND outcome = 'success'", [module])

    # ----------------------------------------------------------------------------------------- log & errors
    def log(self, run_id: str, entries: list[tuple[str, str, str, str | None, str, str | None, str | None]]) -> None:
        """entries: (module, source_key, operation, zoho_id, outcome, code, message)."""
        now = utcnow()
        self._bulk("INSERT INTO sync_log SELECT * FROM batch",
                   ["run_id", "logged_at", "module", "source_key", "operation", "zoho_id", "outcome", "code",
                    "message"],
                   [(run_id, now, *e) for e in entries])

    def record_errors(self, run_id: str, module: str, errors: list[tuple[str, str, str, dict | None]], *,
                      severity: str = "error") -> None:
        """errors: (source_key, code, message, details). Keeps first_seen of an error that persists."""
        if not errors:
            return
        now = utcnow()
        self._bulk(
            """INSERT INTO sync_errors (module, source_key, code, message, details, first_seen, last_seen, run_id,
                                        severity)
               SELECT module, source_key, code, message, details::JSON, first_seen, last_seen, run_id, severity
               FROM batch """ + SYNC_ERROR_UPSERT,
            ["module", "source_key", "code", "message", "details", "first_seen", "last_seen", "run_id", "severity"],
            [(module, key, code, message, json.dumps(details or {}, ensure_ascii=False), now, now, run_id, severity)
             for key, code, message, details in errors],
        )

    def clear_errors(self, module: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.con.execute("DELETE FROM sync_errors WHERE module = $m AND source_key IN (SELECT unnest($k))",
                             {"m": module, "k": keys})

    def errors(self, module: str | None = None) -> pd.DataFrame:
        """Open sync errors and warnings. `chargebee_id` names the Chargebee records concerned: the record's
        own id, or for an account the customers whose company it is."""
        sql = """SELECT module, source_key, code, message, details, first_seen, last_seen, severity,
                        CASE WHEN module = 'Accounts' AND json_array_length(details->'customers') > 0
                             THEN array_to_string(CAST(details->'customers' AS VARCHAR[]), ', ')
                             ELSE source_key END AS chargebee_id
                 FROM sync_errors"""
        params: list[Any] = []
        if module:
            sql += " WHERE module = ?"
            params.append(module)
        return self.df(sql + " ORDER BY module, source_key", params)

    # ----------------------------------------------------------------------------------------- runs
    def record_run(self, run_id: str, status: str, counts: dict[str, Any]) -> None:
        existing = self.scalar("SELECT counts FROM runs WHERE run_id = ?", [run_id])
        merged = {**(json.loads(existing) if existing else {}), **counts}
        self.con.execute(
            """INSERT INTO runs VALUES (?, ?, ?, ?, ?::JSON) ON CONFLICT (run_id) DO UPDATE SET
               finished_at = excluded.finished_at, status = excluded.status, counts = excluded.counts""",
            [run_id, utcnow(), utcnow(), status, json.dumps(merged)],
        )

    def last_run(self) -> dict[str, Any] | None:
        rows = self.con.execute(
            "SELECT run_id, started_at, finished_at, status, counts FROM runs ORDER BY finished_at DESC LIMIT 1"
        ).fetchall()
        if not rows:
            return None
        row = rows[0]
        return {"run_id": row[0], "started_at": row[1], "finished_at": row[2], "status": row[3],
                "counts": json.loads(row[4])}


def _connect(path: Path, read_only: bool, busy_timeout: float, on_busy) -> duckdb.DuckDBPyConnection:
    """Connect, waiting up to `busy_timeout` seconds while another process has the file open."""
    deadline = time.monotonic() + busy_timeout
    delay = 0.05
    told = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            if on_busy is not None and not told:
                on_busy(f"{path.name} is open in another process; waiting up to {busy_timeout:.0f} s for it")
                told = True
            time.sleep(delay)
            delay = min(1.0, delay * 2)


@contextmanager
def open_warehouse(path: Path, *, read_only: bool = False, busy_timeout: float = 0.0,
                   on_busy=None) -> Iterator[Warehouse]:
    """Open, migrate and close: connections are held only around the work, so the file lock is short."""
    con = _connect(path, read_only, busy_timeout, on_busy)
    try:
        wh = Warehouse(con)
        if not read_only:
            wh.init()
        yield wh
    finally:
        con.close()
