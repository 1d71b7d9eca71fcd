"""Keep the site's copy of Zoho (Contacts, Accounts, Deals and the metadata the plan needs) current.

A first load (or a full refresh) reads a module through COQL, paging on the record id, which stays
complete past the 2,000 records Get Records serves without a page token and past the 100,000 any token
chain reaches, at 2,000 records per call. Later runs ask Get Records only for what changed since the
newest `Modified_Time` seen (`If-Modified-Since`; one call and no credits spent on data when nothing did)
and the deleted-records list since the last deletion seen.

Never writes to Zoho.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cbzoho_pipeline.prefetch import prefetched
from cbzoho_pipeline.warehouse.db import Warehouse
from cbzoho_pipeline.zoho.client import coql_literal, format_zoho_datetime, parse_zoho_datetime

# Fields read per module (those missing from the org's metadata are left out).
BASE_FIELDS: dict[str, list[str]] = {
    "Contacts": ["First_Name", "Last_Name", "Email", "Phone", "Account_Name", "Owner", "Created_Time", "Modified_Time"],
    "Accounts": ["Account_Name", "Owner", "Created_Time", "Modified_Time"],
    "Deals": ["Deal_Name", "Amount", "Closing_Date", "Stage", "Pipeline", "Contact_Name", "Account_Name", "Owner",
              "Currency", "Created_Time", "Modified_Time"],
}
EPOCH = datetime(1970, 1, 2, tzinfo=UTC)
# A cursor never passes the moment the read began, by Zoho's clock (the client measures it from each
# answer's Date header), minus this margin for writes Zoho stamped but had not yet shown: a record edited
# after its page was read, while a later page held a newer edit, is then still inside the next window.
# It also makes an overlap unnecessary: every record modified at or before the cursor was modified before
# the read began, so the read saw it; the next read asks only for what came strictly after.
CLOCK_MARGIN = timedelta(seconds=3)
# Reading back what a run wrote (see `read_back`) pays off from this many writes in a module: fewer fit in
# the one changes call the next run makes anyway.
READ_BACK_FROM = 200
# Reading changes: Get Records costs 1 credit per 200 records, COQL 3 credits per 2,000. Below this many
# expected changes Get Records is cheaper (and answers 304 for nothing); above it COQL is.
COQL_CHANGES_THRESHOLD = 600


@dataclass
class SnapshotResult:
    module: str
    full: bool
    fetched: int = 0
    deleted: int = 0
    pages: int = 0
    total: int = 0
    skipped: bool = False  # a read-back left to the next run (the credit budget)


def snapshot_fields(module: str, metadata: dict[str, Any] | None, extra: list[str] = ()) -> list[str]:
    wanted = list(dict.fromkeys(BASE_FIELDS[module] + list(extra)))
    known = {f["api_name"] for f in (metadata or {}).get("fields", {}).get(module, [])}
    fields = [f for f in wanted if not known or f in known]
    return fields[:50]


def refresh(
    wh: Warehouse,
    client: Any,
    module: str,
    fields: list[str],
    *,
    full: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    clock: Callable[[], datetime] | None = None,
    expected_changes: int = 0,
) -> SnapshotResult:
    """Refresh one module. `expected_changes`: records we know changed since the last read (our own writes),
    which picks the cheaper way to read the changes. `clock` defaults to Zoho's clock as the client last saw
    it (`ZohoClient.server_now`), else ours."""
    clock = clock or getattr(client, "server_now", None) or (lambda: datetime.now(UTC))
    cap = clock() - CLOCK_MARGIN

    def capped(seen: datetime, previous: str | None) -> str:
        value = min(seen, cap)
        if previous:
            value = max(value, parse_zoho_datetime(previous))
        return format_zoho_datetime(value)

    cursor_name = f"zoho.{module}"
    deleted_cursor_name = f"zoho.{module}.deleted"
    cursor = None if full else wh.get_cursor(cursor_name)
    result = SnapshotResult(module, full=cursor is None)
    newest = parse_zoho_datetime(cursor) if cursor else None

    def track(records: list[dict[str, Any]]) -> None:
        nonlocal newest
        for record in records:
            stamp = record.get("Modified_Time")
            if stamp:
                when = parse_zoho_datetime(stamp)
                if newest is None or when > newest:
                    newest = when

    if cursor is None:
        log(f"{module}: full snapshot through COQL")
        with wh.transaction():
            wh.clear_zoho(module)
            for page in prefetched(client.iter_coql(module, [f for f in fields if f != "id"]), name=f"zoho-{module}"):
                result.pages += 1
                result.fetched += wh.upsert_zoho(module, page)
                track(page)
                if result.pages % 5 == 0:
                    log(f"{module}: {result.fetched} records read")
        # Deletions before this full read are already reflected; start the deleted feed from now on.
        if newest is not None:
            wh.set_cursor(deleted_cursor_name, capped(newest, None))
        else:
            # An empty module: from now on everything in it is a change, so read changes since the epoch
            # rather than paying for another full read next time.
            newest = EPOCH
            wh.set_cursor(deleted_cursor_name, format_zoho_datetime(EPOCH))
    else:
        since = parse_zoho_datetime(cursor)
        if _through_coql(expected_changes):
            log(f"{module}: changes since {format_zoho_datetime(since)} through COQL "
                f"(about {expected_changes} expected)")
            pages = client.iter_coql(module, [f for f in fields if f != "id"],
                                     where=f"Modified_Time > {coql_literal(since)}")
        else:
            log(f"{module}: changes since {format_zoho_datetime(since)}")
            pages = client.iter_records(module, fields, modified_since=since)
        for page in prefetched(pages, name=f"zoho-{module}"):
            result.pages += 1
            result.fetched += wh.upsert_zoho(module, page)
            track(page)
        deleted_cursor = wh.get_cursor(deleted_cursor_name)
        deleted_since = parse_zoho_datetime(deleted_cursor) if deleted_cursor else since
        newest_deleted = None
        for page in client.iter_deleted(module, modified_since=deleted_since):
            ids = [str(d["id"]) for d in page]
            result.deleted += wh.delete_zoho(module, ids)
            for item in page:
                stamp = item.get("deleted_time")
                if stamp:
                    when = parse_zoho_datetime(stamp)
                    newest_deleted = when if newest_deleted is None or when > newest_deleted else newest_deleted
        if newest_deleted is not None:
            wh.set_cursor(deleted_cursor_name, capped(newest_deleted, deleted_cursor))
    if newest is not None:
        wh.set_cursor(cursor_name, capped(newest, cursor))
    result.total = wh.zoho_count(module)
    log(f"{module}: {result.fetched} read, {result.deleted} deleted, {result.total} in snapshot")
    return result


def _through_coql(expected_changes: int) -> bool:
    return expected_changes > COQL_CHANGES_THRESHOLD


def read_back_cost(written: int) -> int:
    """The credits reading back `written` changed records costs: the changes read as `refresh` reads them
    (COQL 3 per 2,000, or Get Records 1 per 200), and one call for the deleted records."""
    pages = -(-written // 2000) * 3 if _through_coql(written) else -(-written // 200)
    return max(1, pages) + 1


def read_back(
    wh: Warehouse,
    client: Any,
    module: str,
    fields: list[str],
    *,
    affords: Callable[[int], bool] = lambda _credits: True,
    log: Callable[[str], None] = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> SnapshotResult | None:
    """Read back what this run wrote to `module`, so the snapshot and its cursor end in step with Zoho.

    Every write moves a record's Modified_Time past the cursor; unread, the next run would fetch all of
    them again (a million after a first sync) before it could tell that nothing changed. Read now, in one
    pass of 2,000 records per call, they cost the next run nothing: the content of a record read back as
    written is unchanged (`Warehouse.upsert_zoho`), so it is not planned again either. Waits out the
    cursor's margin after the last write first, so the cursor can pass it.

    Returns None when the module had fewer than `READ_BACK_FROM` writes since its cursor (the next run's
    changes call takes them for free); a result marked `skipped` when `affords` (the credit budget) refuses
    the cost: reading back only saves the next run reads, so that run is left to read them.
    """
    written = wh.writes_since_cursor(module, f"zoho.{module}")
    if written < READ_BACK_FROM:
        return None
    cost = read_back_cost(written)
    if not affords(cost):
        log(f"{module}: not read back: its {cost} credits would pass the daily credit budget; the next run "
            "reads these changes")
        return SnapshotResult(module, full=False, skipped=True)
    last = wh.last_write_at(module)
    if last is not None:
        wait = (CLOCK_MARGIN + timedelta(seconds=1.5) - (datetime.now(UTC) - last)).total_seconds()
        if wait > 0:
            log(f"{module}: waiting {wait:.1f} s for the last write to pass the cursor's margin")
            sleep(wait)
    log(f"{module}: reading back {written} records written by this run")
    return refresh(wh, client, module, fields, log=log, expected_changes=written)


def refresh_metadata(wh: Warehouse, client: Any, *, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Users, fields of the three modules, and the Deals pipelines with their stages."""
    users = client.users("ActiveUsers")
    fields = {module: client.fields(module) for module in ("Contacts", "Accounts", "Deals")}
    pipelines: dict[str, list[str]] = {}
    layouts = client.layouts("Deals")
    for layout in layouts:
        for pipeline in client.pipelines(str(layout["id"])):
            stages = [m.get("display_value") or m.get("actual_value") for m in pipeline.get("maps", [])]
            pipelines.setdefault(pipeline.get("display_value") or pipeline.get("actual_value"), stages)
    metadata = {"users": users, "fields": fields, "pipelines": pipelines}
    wh.set_meta("metadata", metadata)
    log(f"metadata: {len(users)} users, {sum(len(f) for f in fields.values())} fields, {len(pipelines)} pipelines")
    return metadata
