"""Incremental extraction of Chargebee customers and subscriptions into the site's warehouse.

The cursor is the newest `updated_at` seen (unix seconds). Each run asks for records updated after the
cursor minus an overlap, because `updated_at` has one-second granularity and Chargebee does not document
whether `[after]` is strict; rows are deduplicated on id and `resource_version`. The first load (and a
full resync) sends no `updated_at` filter at all: records last changed before 2016 carry no `updated_at`
and a filter would silently drop them.

Cost follows what is read, not what is stored: each page is checked against the contract and appended to
the stream's staging table (memory holds one page; nothing is joined against the stored table per page).
When the stream ends, one transaction merges the staged rows into the table, checks the rows that merge
changed against the row rules, records the verdicts and moves the cursor. A page that breaks the contract
stops the extraction before anything is merged; a crash mid-stream leaves the table and the cursor as they
were, and the next run drops what was staged and reads the same window again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cbzoho_pipeline.chargebee import schemas
from cbzoho_pipeline.prefetch import prefetched
from cbzoho_pipeline.warehouse.db import Warehouse

OVERLAP_SECONDS = 2
# The cursor never runs ahead of our own clock minus this margin: a record updated while a long scan was
# under way (and so possibly passed over) is then always inside the next run's window.
CLOCK_MARGIN_SECONDS = 300

TABLES = {"customers": "cb_customers", "subscriptions": "cb_subscriptions"}


@dataclass
class ExtractResult:
    stream: str
    pages: int = 0
    fetched: int = 0
    new: int = 0
    changed: int = 0
    checked: int = 0  # rows checked against the row rules in this run
    full: bool = False
    window_start: int | None = None
    contract_problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.contract_problems


def extract(
    wh: Warehouse,
    client: Any,
    stream: str,
    *,
    full_resync: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    clock: Callable[[], float] = time.time,
) -> ExtractResult:
    table = TABLES[stream]
    cursor_name = f"chargebee.{stream}"
    stored = None if full_resync else wh.get_cursor(cursor_name)
    started = int(clock())
    after = int(stored) - OVERLAP_SECONDS if stored is not None else None
    result = ExtractResult(stream, full=after is None, window_start=after)
    lister = client.list_customers if stream == "customers" else client.list_subscriptions
    newest = int(stored) if stored is not None else None

    log(f"{stream}: {'full load' if after is None else f'changes since {after} (unix s)'}")
    try:
        with wh.chargebee_stream(table):
            pages = lister(updated_after=after, include_deleted=True, page_size=100)
            for page in prefetched(pages, name=f"chargebee-{stream}"):
                result.pages += 1
                problems = schemas.contract_problems(stream, page)
                if problems:
                    result.contract_problems = problems
                    raise _ContractBreach
                result.fetched += wh.stage_chargebee(table, page)
                seen = [o["updated_at"] for o in page if isinstance(o.get("updated_at"), int)]
                if seen:
                    newest = max(newest or 0, max(seen))
                if result.pages % 10 == 0:
                    log(f"{stream}: {result.pages} pages, {result.fetched} records read")
            log(f"{stream}: {result.pages} pages, {result.fetched} records read; merging them")
            # A full read checks every row again (so `--full-resync` applies changed row rules to the whole
            # site); an incremental one checks only the rows it changed. Unchanged rows keep their verdict.
            result.new, result.changed = wh.merge_chargebee(table, check_all=result.full)
            rejects: list[tuple[str, int | None, str]] = []
            for rows in wh.chargebee_checked(table):
                result.checked += len(rows)
                rejects += schemas.row_rejects(stream, rows)
            wh.settle_rejects(stream, table, rejects)
            if newest is not None:
                wh.set_cursor(cursor_name, min(newest, started - CLOCK_MARGIN_SECONDS) if result.full else
                              max(int(stored or 0), min(newest, started - CLOCK_MARGIN_SECONDS)))
    except _ContractBreach:
        log(f"{stream}: page {result.pages} breaks the contract; stopping before anything is stored")
        return result
    log(f"{stream}: done, {result.pages} pages, {result.fetched} read, {result.new} new, {result.changed} changed, "
        f"{result.checked} checked, {len(rejects)} of them set aside")
    return result


class _ContractBreach(Exception):
    """Unwinds a stream whose page broke the contract, rolling back everything it staged."""


def rows_set_aside(wh: Warehouse, stream: str) -> list[tuple[str, int | None, str]]:
    """Every row of the stream now set aside by the row rules: (id, resource_version, reason), by id.

    Extraction keeps this list: a row is checked when it arrives changed, and keeps its verdict until then.
    """
    return wh.set_aside(stream)
