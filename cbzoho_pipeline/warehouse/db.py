"""The DuckDB warehouse of one site: raw Chargebee rows, Zoho snapshots, links, plans and the sync log.

Why it exists: every layer above reads and writes through these functions, so the schema and its SQL live
in one place. All SQL is parametrised. Each site has its own file, so test and live never mix.

What it must never do: hold a secret (no API key, token or client secret is ever written here), call an
API, or decide a business rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

-- Raw Chargebee objects, latest version per id (as the API returned them).
CREATE TABLE IF NOT EXISTS cb_customers (
    id VARCHAR PRIMARY KEY, data JSON NOT NULL, created_at BIGINT, updated_at BIGINT,
    resource_version BIGINT, deleted BOOLEAN, extracted_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS cb_subscriptions (
    id VARCHAR PRIMARY KEY, customer_id VARCHAR, data JSON NOT NULL, created_at BIGINT, updated_at BIGINT,
    resource_version BIGINT, deleted BOOLEAN, extracted_at TIMESTAMPTZ);

-- Incremental cursors (Chargebee updated_at in seconds, Zoho Modified_Time as text).
CREATE TABLE IF NOT EXISTS cursors (stream VARCHAR PRIMARY KEY, value VARCHAR, updated_at TIMESTAMPTZ);

-- Rows set aside by validation, keyed by the version that failed so a changed record is retried.
CREATE TABLE IF NOT EXISTS rejects (
    stream VARCHAR, id VARCHAR, resource_version BIGINT, reason VARCHAR, seen_at TIMESTAMPTZ,
    PRIMARY KEY (stream, id));

-- Zoho records as Zoho holds them (module = Contacts | Accounts | Deals).
CREATE TABLE IF NOT EXISTS zoho_records (
    module VARCHAR, id VARCHAR, data JSON NOT NULL, modified_time VARCHAR, PRIMARY KEY (module, id));
CREATE TABLE IF NOT EXISTS zoho_meta (kind VARCHAR PRIMARY KEY, data JSON NOT NULL, fetched_at TIMESTAMPTZ);

-- Chargebee key <-> Zoho id. Contacts: customer id; Deals: subscription id; Accounts: normalised company.
CREATE TABLE IF NOT EXISTS links (
    module VARCHAR, source_key VARCHAR, zoho_id VARCHAR, linked_at TIMESTAMPTZ, PRIMARY KEY (module, source_key));

-- The latest plan: one row per record and module.
CREATE TABLE IF NOT EXISTS plan (
    plan_id VARCHAR, module VARCHAR, source_key VARCHAR, action VARCHAR, zoho_id VARCHAR, payload JSON,
    changed_fields JSON, reason VARCHAR, code VARCHAR, refs JSON, pushed BOOLEAN DEFAULT FALSE,
    PRIMARY KEY (module, source_key));
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
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, status VARCHAR, counts JSON);
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Warehouse:
    """A thin, typed wrapper over one site's DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    # ----------------------------------------------------------------------------------------- basics
    def init(self) -> None:
        self.con.execute(_DDL)
        # Added after the first release: 'error' (the record is not in Zoho as it should be) or 'warning'
        # (it is, but something about it needs a person, e.g. a contact synced without its account).
        self.con.execute("ALTER TABLE sync_errors ADD COLUMN IF NOT EXISTS severity VARCHAR DEFAULT 'error'")
        self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        rows = self.con.execute(sql, params or []).fetchall()  # fetch all: DuckDB 2 refuses new work otherwise
        return rows[0][0] if rows else None

    def _bulk(self, sql: str, columns: list[str], rows: list[tuple]) -> None:
        """Run `sql` (which selects from `batch`) over many rows at once: DuckDB's executemany goes row by row."""
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=columns, dtype=object)
        self.con.register("batch", frame)
        try:
            self.con.execute(sql)
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
    def upsert_chargebee(self, table: str, objects: list[dict[str, Any]]) -> tuple[int, int]:
        """Store a page of Chargebee objects; keep the newest `resource_version` of each id.

        Returns (new ids, changed ids). A row with a lower resource_version than the stored one (an
        overlapping window or a record seen twice while it moved) never replaces a newer one.
        """
        if not objects:
            return 0, 0
        assert table in ("cb_customers", "cb_subscriptions")
        now = utcnow()
        frame = pd.DataFrame(
            {
                "id": [o["id"] for o in objects],
                "customer_id": [o.get("customer_id") for o in objects],
                "data": [json.dumps(o, ensure_ascii=False, separators=(",", ":")) for o in objects],
                "created_at": [o.get("created_at") for o in objects],
                "updated_at": [o.get("updated_at") for o in objects],
                "resource_version": [o.get("resource_version") for o in objects],
                "deleted": [bool(o.get("deleted", False)) for o in objects],
            }
        ).astype({"created_at": "Int64", "updated_at": "Int64", "resource_version": "Int64"})
        # Within one page keep the newest copy of an id.
        frame = frame.sort_values("resource_version", na_position="first").drop_duplicates("id", keep="last")
        self.con.register("incoming", frame)
        try:
            new = self.scalar(f"SELECT count(*) FROM incoming i ANTI JOIN {table} t ON t.id = i.id")
            changed = self.scalar(
                f"""SELECT count(*) FROM incoming i JOIN {table} t ON t.id = i.id
                    WHERE coalesce(i.resource_version, -1) > coalesce(t.resource_version, -1)
                       OR (i.resource_version IS NULL AND t.data::VARCHAR <> i.data)"""
            )
            extra_col = ", customer_id" if table == "cb_subscriptions" else ""
            extra_val = ", i.customer_id" if table == "cb_subscriptions" else ""
            self.con.execute(
                f"""INSERT INTO {table} (id{extra_col}, data, created_at, updated_at, resource_version, deleted,
                                        extracted_at)
                    SELECT i.id{extra_val}, i.data::JSON, i.created_at, i.updated_at, i.resource_version, i.deleted, ?
                    FROM incoming i LEFT JOIN {table} t ON t.id = i.id
                    WHERE t.id IS NULL
                       OR coalesce(i.resource_version, -1) > coalesce(t.resource_version, -1)
                       OR (i.resource_version IS NULL AND t.data::VARCHAR <> i.data)
                    ON CONFLICT (id) DO UPDATE SET data = excluded.data, created_at = excluded.created_at,
                        updated_at = excluded.updated_at, resource_version = excluded.resource_version,
                        deleted = excluded.deleted, extracted_at = excluded.extracted_at
                        {', customer_id = excluded.customer_id' if extra_col else ''}""",
                [now],
            )
        finally:
            self.con.unregister("incoming")
        return int(new), int(changed)

    def iter_chargebee_objects(self, table: str, batch: int = 20_000) -> Iterator[list[dict[str, Any]]]:
        """All stored objects of a table in batches, so a pass over a large site stays small in memory."""
        assert table in ("cb_customers", "cb_subscriptions")
        offset = 0
        while True:
            rows = self.con.execute(f"SELECT data FROM {table} ORDER BY id LIMIT ? OFFSET ?",
                                    [batch, offset]).fetchall()
            if not rows:
                return
            yield [json.loads(r[0]) for r in rows]
            offset += batch

    def chargebee_objects(self, table: str) -> list[dict[str, Any]]:
        return [obj for batch in self.iter_chargebee_objects(table) for obj in batch]

    def count(self, table: str, where: str = "") -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table} {where}"))

    # ----------------------------------------------------------------------------------------- rejects
    def replace_rejects(self, stream: str, rows: list[tuple[str, int | None, str]]) -> None:
        self.con.execute("DELETE FROM rejects WHERE stream = ?", [stream])
        now = utcnow()
        self._bulk("INSERT INTO rejects SELECT stream, id, resource_version::BIGINT, reason, seen_at FROM batch",
                   ["stream", "id", "resource_version", "reason", "seen_at"],
                   [(stream, i, v, r, now) for i, v, r in rows])

    def rejects(self, stream: str) -> pd.DataFrame:
        return self.df("SELECT id, resource_version, reason FROM rejects WHERE stream = ? ORDER BY id", [stream])

    # ----------------------------------------------------------------------------------------- zoho
    def upsert_zoho(self, module: str, records: Iterable[dict[str, Any]]) -> int:
        rows = [
            (module, str(r["id"]), json.dumps(r, ensure_ascii=False, separators=(",", ":")), r.get("Modified_Time"))
            for r in records
        ]
        self._bulk("INSERT OR REPLACE INTO zoho_records SELECT module, id, data::JSON, modified_time FROM batch",
                   ["module", "id", "data", "modified_time"], rows)
        return len(rows)

    def clear_zoho(self, module: str) -> None:
        self.con.execute("DELETE FROM zoho_records WHERE module = ?", [module])

    def zoho_count(self, module: str) -> int:
        return int(self.scalar("SELECT count(*) FROM zoho_records WHERE module = ?", [module]))

    def duplicate_emails(self) -> pd.DataFrame:
        """Emails (trimmed, case-insensitive) held by more than one Zoho contact, with their ids."""
        return self.df(
            """SELECT lower(trim(data->>'Email')) AS email, count(*) AS contacts,
                      string_agg(id, ', ' ORDER BY id) AS zoho_ids
               FROM zoho_records WHERE module = 'Contacts' AND coalesce(trim(data->>'Email'), '') <> ''
               GROUP BY 1 HAVING count(*) > 1 ORDER BY 1"""
        )

    def delete_zoho(self, module: str, ids: Iterable[str]) -> int:
        ids = [str(i) for i in ids]
        if ids:
            self.con.execute("DELETE FROM zoho_records WHERE module = ? AND list_contains(?, id)", [module, ids])
        return len(ids)

    def zoho_records(self, module: str) -> list[dict[str, Any]]:
        rows = self.con.execute("SELECT data FROM zoho_records WHERE module = ? ORDER BY id", [module]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def zoho_records_by_id(self, module: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        rows = self.con.execute("SELECT id, data FROM zoho_records WHERE module = ? AND list_contains(?, id)",
                                [module, [str(i) for i in ids]]).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

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
    def write_plan(self, plan_id: str, rows: pd.DataFrame, counts: dict[str, Any]) -> None:
        with self.transaction():
            self.con.execute("DELETE FROM plan")
            if len(rows):
                frame = rows.copy()
                for col in ("payload", "changed_fields", "refs"):
                    frame[col] = frame[col].map(lambda v: json.dumps(v, ensure_ascii=False) if v is not None else None)
                frame["plan_id"] = plan_id
                frame["pushed"] = False
                self.con.register("plan_rows", frame)
                try:
                    self.con.execute(
                        """INSERT INTO plan SELECT plan_id, module, source_key, action, zoho_id, payload::JSON,
                           changed_fields::JSON, reason, code, refs::JSON, pushed FROM plan_rows"""
                    )
                finally:
                    self.con.unregister("plan_rows")
            self.con.execute("INSERT OR REPLACE INTO plans VALUES (?, ?, ?::JSON)",
                             [plan_id, utcnow(), json.dumps(counts)])

    def latest_plan(self) -> tuple[str, Any] | None:
        """(plan_id, created_at) of the plan now stored, or None before the first plan."""
        rows = self.con.execute("SELECT plan_id, created_at FROM plans ORDER BY created_at DESC LIMIT 1").fetchall()
        return (rows[0][0], rows[0][1]) if rows else None

    def plan_rows(self, module: str, actions: tuple[str, ...] | None = None, *, unpushed: bool = True) -> list[dict]:
        sql = "SELECT * FROM plan WHERE module = ?"
        params: list[Any] = [module]
        if actions:
            sql += " AND list_contains(?, action)"
            params.append(list(actions))
        if unpushed:
            sql += " AND NOT pushed"
        rows = self.df(sql + " ORDER BY source_key", params).to_dict("records")
        for row in rows:
            for col in ("payload", "changed_fields", "refs"):
                row[col] = json.loads(row[col]) if isinstance(row[col], str) else row[col]
        return rows

    def mark_pushed(self, module: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.con.execute("UPDATE plan SET pushed = TRUE WHERE module = ? AND list_contains(?, source_key)",
                             [module, keys])

    # ----------------------------------------------------------------------------------------- journal
    def add_pending(self, module: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        now = utcnow()
        self._bulk("INSERT OR REPLACE INTO pending_creates "
                   "SELECT module, source_key, payload::JSON, sent_at FROM batch",
                   ["module", "source_key", "payload", "sent_at"],
                   [(module, key, json.dumps(payload, ensure_ascii=False), now) for key, payload in items])

    def clear_pending(self, module: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.con.execute("DELETE FROM pending_creates WHERE module = ? AND list_contains(?, source_key)",
                             [module, keys])

    def pending(self, module: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self.con.execute("SELECT source_key, payload FROM pending_creates WHERE module = ?", [module]).fetchall()
        return [(k, json.loads(p)) for k, p in rows]

    def writes_since_cursor(self, module: str, stream: str) -> int:
        """Records of `module` we wrote successfully since cursor `stream` was last stored."""
        return int(self.scalar(
            """SELECT count(*) FROM sync_log WHERE module = ? AND outcome = 'success'
               AND logged_at > coalesce((SELECT updated_at FROM cursors WHERE stream = ?), '-infinity'::TIMESTAMPTZ)""",
            [module, stream]))

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
               FROM batch
               ON CONFLICT (module, source_key) DO UPDATE SET code = excluded.code, message = excluded.message,
               details = excluded.details, last_seen = excluded.last_seen, run_id = excluded.run_id,
               severity = excluded.severity""",
            ["module", "source_key", "code", "message", "details", "first_seen", "last_seen", "run_id", "severity"],
            [(module, key, code, message, json.dumps(details or {}, ensure_ascii=False), now, now, run_id, severity)
             for key, code, message, details in errors],
        )

    def clear_errors(self, module: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.con.execute("DELETE FROM sync_errors WHERE module = ? AND list_contains(?, source_key)",
                             [module, keys])

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
