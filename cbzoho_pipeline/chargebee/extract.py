"""Incremental extraction of Chargebee customers and subscriptions into the site's warehouse.

The cursor is the newest `updated_at` seen (unix seconds). Each run asks for records updated after the
cursor minus an overlap, because `updated_at` has one-second granularity and Chargebee does not document
whether `[after]` is strict; rows are deduplicated on id and `resource_version`. The first load (and a
full resync) sends no `updated_at` filter at all: records last changed before 2016 carry no `updated_at`
and a filter would silently drop them.

Pages stream straight into DuckDB, so memory does not grow with the number of customers. A page that
breaks the contract stops the extraction before it is stored and before the cursor moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cbzoho_pipeline.chargebee import schemas
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
    for page in lister(updated_after=after, include_deleted=True, page_size=100):
        result.pages += 1
        problems = schemas.contract_problems(stream, page)
        if problems:
            result.contract_problems = problems
            log(f"{stream}: page {result.pages} breaks the contract; stopping before it is stored")
            return result
        new, changed = wh.upsert_chargebee(table, page)
        result.fetched += len(page)
        result.new += new
        result.changed += changed
        seen = [o["updated_at"] for o in page if isinstance(o.get("updated_at"), int)]
        if seen:
            newest = max(newest or 0, max(seen))
        if result.pages % 10 == 0:
            log(f"{stream}: {result.pages} pages, {result.fetched} records read ({result.new} new, "
                f"{result.changed} changed)")
    if newest is not None:
        wh.set_cursor(cursor_name, min(newest, started - CLOCK_MARGIN_SECONDS) if result.full else
                      max(int(stored or 0), min(newest, started - CLOCK_MARGIN_SECONDS)))
    log(f"{stream}: done, {result.pages} pages, {result.fetched} read, {result.new} new, {result.changed} changed")
    return result


def validate_rows(wh: Warehouse, stream: str) -> list[tuple[str, int | None, str]]:
    """Check every stored row against the row rules and record what is set aside (replacing the last list)."""
    rejects: list[tuple[str, int | None, str]] = []
    for batch in wh.iter_chargebee_objects(TABLES[stream]):
        rejects += schemas.row_rejects(stream, batch)
    wh.replace_rejects(stream, rejects)
    return rejects
