"""Extraction into the warehouse, with a scripted Chargebee client: cursor, staging, merge, row rules.

Why these tests exist: extraction has to cost what it reads, not what is stored (a first load of N
customers once cost O(N^2)), lose and duplicate nothing when a run dies mid-stream, keep a stored newer copy
against an older one read again, and check the row rules only on what arrived. Each of those is observable
here on a DuckDB file and a client that hands out pages, without HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from cbzoho_pipeline.chargebee import extract as cb_extract
from cbzoho_pipeline.chargebee import schemas
from cbzoho_pipeline.warehouse.db import Warehouse, open_warehouse

NOW = 1_750_000_000


def customer(i: int | str, *, version: int | None = 1, updated: int | None = NOW - 3_600, **fields: Any) -> dict:
    obj: dict[str, Any] = {"id": i if isinstance(i, str) else f"c{i:05d}", "last_name": f"Last {i}",
                           "email": f"person{i}@example.com", "created_at": 1_600_000_000, "deleted": False,
                           "object": "customer"}
    if updated is not None:
        obj["updated_at"] = updated
    if version is not None:
        obj["resource_version"] = version
    obj.update(fields)
    return obj


class ScriptedClient:
    """Hands out the given records in pages of `page_size`, and records what it was asked for."""

    def __init__(self, customers: list[dict] | None = None, subscriptions: list[dict] | None = None, *,
                 fail_after_pages: int | None = None, page_size: int | None = None) -> None:
        self.records = {"customers": customers or [], "subscriptions": subscriptions or []}
        self.fail_after_pages = fail_after_pages
        self.page_size = page_size  # smaller pages than asked for, to put copies of one id on different pages
        self.calls: list[dict[str, Any]] = []

    def _list(self, stream: str, updated_after: int | None, include_deleted: bool,
              page_size: int) -> Iterator[list[dict]]:
        self.calls.append({"stream": stream, "updated_after": updated_after, "include_deleted": include_deleted})
        records = [dict(r) for r in self.records[stream]]
        page_size = self.page_size or page_size
        for number, start in enumerate(range(0, len(records), page_size)):
            if self.fail_after_pages is not None and number == self.fail_after_pages:
                raise ConnectionError(f"connection lost after page {number}")
            yield records[start:start + page_size]

    def list_customers(self, *, updated_after=None, include_deleted=True, page_size=100):
        return self._list("customers", updated_after, include_deleted, page_size)

    def list_subscriptions(self, *, updated_after=None, include_deleted=True, page_size=100):
        return self._list("subscriptions", updated_after, include_deleted, page_size)


class RecordingConnection:
    """A DuckDB connection that notes every statement it runs (the observable for per-page cost)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.statements: list[str] = []

    def execute(self, sql: str, params: Any = None):
        self.statements.append(" ".join(sql.split()))
        return self._con.execute(sql) if params is None else self._con.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@pytest.fixture
def wh(tmp_path) -> Iterator[Warehouse]:
    with open_warehouse(tmp_path / "site.duckdb") as warehouse:
        yield warehouse


def run(wh: Warehouse, client: ScriptedClient, stream: str = "customers", **kw: Any) -> cb_extract.ExtractResult:
    return cb_extract.extract(wh, client, stream, clock=lambda: NOW, **kw)


def stored(wh: Warehouse, table: str = "cb_customers") -> dict[str, dict]:
    return {o["id"]: o for o in wh.chargebee_objects(table)}


# --------------------------------------------------------------------------------------------- cursor
def test_first_load_sends_no_updated_at_filter_and_keeps_records_without_one(wh):
    client = ScriptedClient([customer(1), customer("c_2015", updated=None, version=None, created_at=1_420_070_400)])
    result = run(wh, client)
    assert client.calls == [{"stream": "customers", "updated_after": None, "include_deleted": True}]
    assert result.full and (result.new, result.changed) == (2, 0)
    assert set(stored(wh)) == {"c00001", "c_2015"}
    assert wh.get_cursor("chargebee.customers") == str(NOW - 3_600)


def test_next_run_overlaps_two_seconds_and_the_cursor_never_passes_the_scan_start(wh):
    run(wh, ScriptedClient([customer(1, updated=NOW - 3_600)]))
    client = ScriptedClient([customer(2, updated=NOW - 10)])  # changed after the scan margin
    result = run(wh, client)
    assert client.calls[0]["updated_after"] == NOW - 3_600 - cb_extract.OVERLAP_SECONDS
    assert not result.full and result.window_start == NOW - 3_602
    assert wh.get_cursor("chargebee.customers") == str(NOW - cb_extract.CLOCK_MARGIN_SECONDS)
    # An incremental run that reads only older records never moves the cursor back.
    run(wh, ScriptedClient([customer(3, updated=NOW - 5_000)]))
    assert wh.get_cursor("chargebee.customers") == str(NOW - cb_extract.CLOCK_MARGIN_SECONDS)
    assert run(wh, ScriptedClient(), full_resync=True).full
    assert wh.get_cursor("chargebee.customers") == str(NOW - cb_extract.CLOCK_MARGIN_SECONDS)


# --------------------------------------------------------------------------------------------- merge
def test_newest_resource_version_wins_and_unversioned_records_compare_by_content(wh):
    run(wh, ScriptedClient([customer(1, version=5, email="five@example.com"), customer("c_old", version=None)]))
    # The overlap hands back an older copy, a newer one, the same unversioned record, and a new one (one per
    # page: a page never holds an id twice).
    pages = [customer(1, version=4, email="four@example.com"), customer(1, version=6, email="six@example.com"),
             customer(1, version=3, email="three@example.com"), customer("c_old", version=None),
             customer("c_new", version=None)]
    result = run(wh, ScriptedClient(pages, page_size=1))
    assert (result.pages, result.fetched, result.new, result.changed) == (5, 5, 1, 1)
    assert stored(wh)["c00001"]["email"] == "six@example.com"
    result = run(wh, ScriptedClient([customer("c_old", version=None, email="moved@example.com"),
                                     customer(1, version=6, email="six@example.com")]))
    assert stored(wh)["c00001"]["resource_version"] == 6
    assert (result.new, result.changed) == (0, 1)
    assert stored(wh)["c_old"]["email"] == "moved@example.com"
    assert wh.count("cb_customers") == 3


def test_typed_columns_are_flattened_at_extraction_as_given(wh):
    run(wh, ScriptedClient([customer(1, first_name="  Ada ", phone="+44 20", company="Acme",
                                     billing_address={"last_name": "Billing", "city": "Paris"}),
                            customer("c_bare", version=None, updated=None, last_name=None, email=None)]))
    run(wh, ScriptedClient(subscriptions=[
        {"id": "s1", "customer_id": "c00001", "status": "active", "currency_code": "EUR", "mrr": 4200,
         "created_at": 1_600_000_100, "updated_at": NOW - 100, "resource_version": 9, "object": "subscription"},
        {"id": "s2", "customer_id": "c00001", "status": "cancelled", "created_at": 1_600_000_200, "deleted": True,
         "object": "subscription"}]), "subscriptions")
    rows = wh.con.execute("""SELECT id, first_name, last_name, email, phone, company, billing_last_name, deleted
                             FROM cb_customers ORDER BY id""").fetchall()
    assert rows == [("c00001", "  Ada ", "Last 1", "person1@example.com", "+44 20", "Acme", "Billing", False),
                    ("c_bare", None, None, None, None, None, None, False)]
    subs = wh.con.execute("""SELECT id, customer_id, status, currency_code, mrr, created_at, deleted
                             FROM cb_subscriptions ORDER BY id""").fetchall()
    assert subs == [("s1", "c00001", "active", "EUR", 4200, 1_600_000_100, False),
                    ("s2", "c00001", "cancelled", None, None, 1_600_000_200, True)]


# --------------------------------------------------------------------------------------------- cost
def _statements_for(tmp_path, name: str, pages: int) -> tuple[list[str], cb_extract.ExtractResult]:
    con = duckdb.connect(str(tmp_path / f"{name}.duckdb"))
    recording = RecordingConnection(con)
    wh = Warehouse(recording)  # type: ignore[arg-type]
    wh.init()
    recording.statements.clear()
    result = run(wh, ScriptedClient([customer(i) for i in range(pages * 100)]))
    con.close()
    return recording.statements, result


def test_a_page_costs_one_append_to_staging_and_the_table_is_touched_once_per_stream(tmp_path):
    """The table's size cannot matter per page if no per-page statement reads or writes the table."""
    table = re.compile(r"\bcb_customers\b(?!_)")
    counts = {}
    for pages in (3, 30):
        statements, result = _statements_for(tmp_path, f"p{pages}", pages)
        assert result.pages == pages and result.new == pages * 100
        appends = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO cb_customers_stage ")]
        assert len(appends) == pages
        # Between the first and the last append nothing but appends runs: no join against the stored table.
        assert all(statements[i].startswith("INSERT INTO cb_customers_stage ")
                   for i in range(appends[0], appends[-1] + 1))
        merges = [s for s in statements if s.startswith("CREATE OR REPLACE TEMP TABLE cb_customers_arrivals ")]
        assert len(merges) == 1
        counts[pages] = sum(1 for s in statements if table.search(s))
    assert counts[3] == counts[30] <= 5, counts


# --------------------------------------------------------------------------------------------- crash
def test_a_run_that_dies_mid_stream_leaves_table_rejects_and_cursor_as_they_were(wh):
    first = [customer(i, updated=NOW - 7_200) for i in range(150)]
    run(wh, ScriptedClient(first))
    cursor = wh.get_cursor("chargebee.customers")
    changed = [customer(i, version=2, updated=NOW - 3_600, email=f"new{i}@example.com") for i in range(100, 400)]
    changed[5]["email"] = "broken"
    with pytest.raises(ConnectionError):
        run(wh, ScriptedClient(changed, fail_after_pages=2))
    assert wh.get_cursor("chargebee.customers") == cursor
    assert wh.count("cb_customers") == 150
    assert all(o["resource_version"] == 1 for o in stored(wh).values())
    assert wh.set_aside("customers") == []
    assert not wh.con.execute("SELECT * FROM duckdb_tables() WHERE table_name LIKE 'cb_customers_%'").fetchall()

    client = ScriptedClient(changed)
    result = run(wh, client)
    assert client.calls[0]["updated_after"] == int(cursor) - cb_extract.OVERLAP_SECONDS
    assert (result.new, result.changed) == (250, 50)
    assert wh.count("cb_customers") == 400 == wh.scalar("SELECT count(DISTINCT id) FROM cb_customers")
    assert [r[0] for r in wh.set_aside("customers")] == ["c00105"]
    assert int(wh.get_cursor("chargebee.customers")) == NOW - 3_600


def test_rows_a_crashed_run_left_staged_are_dropped_not_merged(wh):
    wh.con.execute("CREATE TABLE cb_customers_stage (seq BIGINT, id VARCHAR, resource_version BIGINT, data VARCHAR)")
    wh.con.execute("""INSERT INTO cb_customers_stage VALUES (0, 'c_ghost', 1, '{"id":"c_ghost"}')""")
    run(wh, ScriptedClient([customer(1)]))
    assert set(stored(wh)) == {"c00001"}


def test_a_page_that_breaks_the_contract_stores_nothing_and_keeps_the_cursor(wh):
    run(wh, ScriptedClient([customer(1, updated=NOW - 7_200)]))
    pages = [customer(i, version=2, updated=NOW - 3_600) for i in range(150)]
    pages[120]["created_at"] = "yesterday"
    result = run(wh, ScriptedClient(pages))
    assert not result.ok and result.pages == 2
    assert {p["column"] for p in result.contract_problems} == {"created_at"}
    assert wh.count("cb_customers") == 1 and stored(wh)["c00001"]["resource_version"] == 1
    assert wh.get_cursor("chargebee.customers") == str(NOW - 7_200)


# --------------------------------------------------------------------------------------------- row rules
@pytest.fixture
def checked_ids(monkeypatch) -> list[set[str]]:
    """The ids handed to the row rules, one set per extraction."""
    seen: list[set[str]] = []
    real = schemas.row_rejects

    def spy(stream: str, objects: list[dict[str, Any]]):
        seen[-1].update(o["id"] for o in objects)
        return real(stream, objects)

    monkeypatch.setattr(cb_extract.schemas, "row_rejects", spy)
    return seen


def test_row_rules_run_only_on_rows_that_arrived_changed(wh, checked_ids):
    checked_ids.append(set())
    run(wh, ScriptedClient([customer(1), customer("c_bad", email="not-an-email", version=7)]))
    assert checked_ids[-1] == {"c00001", "c_bad"}
    assert [(i, v) for i, v, _r in cb_extract.rows_set_aside(wh, "customers")] == [("c_bad", 7)]

    # The overlap reads c_bad again unchanged, with a new customer: c_bad is not checked, and stays set aside.
    checked_ids.append(set())
    result = run(wh, ScriptedClient([customer("c_bad", email="not-an-email", version=7), customer(2)]))
    assert checked_ids[-1] == {"c00002"} and result.checked == 1
    assert [(i, v) for i, v, _r in cb_extract.rows_set_aside(wh, "customers")] == [("c_bad", 7)]

    # Fixed in Chargebee: checked again, and it leaves the rejects; a good row that turns bad enters them.
    checked_ids.append(set())
    run(wh, ScriptedClient([customer("c_bad", email="fixed@example.com", version=8),
                            customer(1, email="a@b", version=2)]))
    assert checked_ids[-1] == {"c_bad", "c00001"}
    set_aside = cb_extract.rows_set_aside(wh, "customers")
    assert [(i, v) for i, v, _r in set_aside] == [("c00001", 2)] and "email" in set_aside[0][2]

    # A full resync checks every row again (a changed rule then applies to the whole site).
    checked_ids.append(set())
    run(wh, ScriptedClient([customer(1, email="a@b", version=2), customer(2), customer("c_bad", version=8)]),
        full_resync=True)
    assert checked_ids[-1] == {"c00001", "c00002", "c_bad"}


def test_subscription_row_rules_read_the_typed_mrr(wh):
    subs = [{"id": f"s{i}", "customer_id": "c1", "status": "active", "mrr": mrr, "resource_version": 1,
             "object": "subscription"} for i, mrr in enumerate((100, -5, None))]
    subs[2].pop("mrr")
    result = run(wh, ScriptedClient(subscriptions=subs), "subscriptions")
    assert result.checked == 3
    assert [(i, v) for i, v, _r in cb_extract.rows_set_aside(wh, "subscriptions")] == [("s1", 1)]


# --------------------------------------------------------------------------------------------- migration
OLD_DDL = """
CREATE TABLE cb_customers (
    id VARCHAR PRIMARY KEY, data JSON NOT NULL, created_at BIGINT, updated_at BIGINT,
    resource_version BIGINT, deleted BOOLEAN, extracted_at TIMESTAMPTZ);
CREATE TABLE cb_subscriptions (
    id VARCHAR PRIMARY KEY, customer_id VARCHAR, data JSON NOT NULL, created_at BIGINT, updated_at BIGINT,
    resource_version BIGINT, deleted BOOLEAN, extracted_at TIMESTAMPTZ);
CREATE TABLE rejects (
    stream VARCHAR, id VARCHAR, resource_version BIGINT, reason VARCHAR, seen_at TIMESTAMPTZ,
    PRIMARY KEY (stream, id));
"""


def test_a_warehouse_made_before_the_typed_columns_gets_them_filled_once(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(OLD_DDL)
    con.execute("""INSERT INTO cb_customers VALUES ('c1', '{"id":"c1","first_name":"Zoë","last_name":"Ødegaard",
        "email":"zoe@example.com","phone":"+47 1","company":"Fjord AS","billing_address":{"last_name":"Bill"},
        "resource_version":3}', 1, 2, 3, false, now())""")
    con.execute("""INSERT INTO cb_subscriptions VALUES ('s1', 'c1', '{"id":"s1","customer_id":"c1",
        "status":"non_renewing","currency_code":"JPY","mrr":1200}', 1, 2, 3, false, now())""")
    con.close()

    with open_warehouse(path) as wh:
        assert wh.con.execute("""SELECT first_name, last_name, email, phone, company, billing_last_name
                                 FROM cb_customers""").fetchall() == [
            ("Zoë", "Ødegaard", "zoe@example.com", "+47 1", "Fjord AS", "Bill")]
        assert wh.con.execute("SELECT status, currency_code, mrr FROM cb_subscriptions").fetchall() == [
            ("non_renewing", "JPY", 1200)]
        wh.con.execute("UPDATE cb_customers SET first_name = 'kept'")  # a later open must not backfill again
    with open_warehouse(path) as wh, open_warehouse(tmp_path / "fresh.duckdb") as fresh:
        assert wh.scalar("SELECT first_name FROM cb_customers") == "kept"
        for table in ("cb_customers", "cb_subscriptions"):
            columns = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index"
            assert wh.df(columns, [table]).values.tolist() == fresh.df(columns, [table]).values.tolist()
        # And it extracts on as a fresh one would.
        result = run(wh, ScriptedClient([customer("c1", version=4, first_name="Zoe")]))
        assert (result.new, result.changed) == (0, 1)
        assert wh.scalar("SELECT first_name FROM cb_customers") == "Zoe"
