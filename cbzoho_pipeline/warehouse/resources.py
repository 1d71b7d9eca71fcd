"""Dagster resource for a site's DuckDB warehouse, and the per-site lock that keeps syncs apart.

The lock is an OS file lock on `$CBZOHO_HOME/sites/<site>/sync.lock`, taken when a run's resources are set
up and released when they are torn down (or when the process dies). Dagster's run queue already keeps two
*Dagster* runs of one site apart (dagster.yaml); the file lock also covers headless `cbzoho sync` from cron
and anything else that bypasses the queue. A second sync waits for the first (up to
`lock_timeout_seconds`), then fails with a message naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from cbzoho_pipeline.settings import site_dir
from cbzoho_pipeline.warehouse.db import Warehouse, open_warehouse
from cbzoho_pipeline.warehouse.status import disconnected_marker, disconnection  # noqa: F401 - re-exported

PARTITION_TAG = "dagster/partition"


# How long a sync waits for someone else's open handle on its DuckDB file (a person's DuckDB CLI, a
# notebook) before it gives up: DuckDB refuses a writer while any other process has the file open.
READER_GRACE_SECONDS = 120.0


class SiteBusy(RuntimeError):
    pass


def warehouse_path(site: str) -> Path:
    return site_dir(site) / "cbzoho.duckdb"


@contextmanager
def site_lock(site: str, *, timeout: float, holder: str, on_wait=None) -> Iterator[None]:
    path = site_dir(site) / "sync.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SiteBusy(f"another sync of site {site!r} is running ({_read_holder(path)}); "
                                   f"gave up after waiting {timeout:.0f} s") from None
                if not announced and on_wait is not None:
                    on_wait(f"waiting for the running sync of site {site!r} to finish ({_read_holder(path)})")
                    announced = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "holder": holder, "since": time.time()}).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read_holder(path: Path) -> str:
    try:
        data = json.loads(path.read_text() or "{}")
        return f"{data.get('holder', '?')}, pid {data.get('pid', '?')}"
    except (OSError, json.JSONDecodeError):
        return "holder unknown"


class WarehouseResource(dg.ConfigurableResource):
    """One DuckDB file per site under CBZOHO_HOME; holds the site's sync lock for the whole run."""

    lock_timeout_seconds: float = 3600.0
    _stack: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        site = run.tags.get(PARTITION_TAG) if run is not None else None
        if site:
            from contextlib import ExitStack

            from cbzoho_pipeline.runs import heartbeat

            stack = ExitStack()
            log = context.log.info if context.log else None
            # First say this process carries the run (so a run waiting for the lock is known alive)...
            stack.enter_context(heartbeat(site, run.run_id))
            # ...then wait for any other sync of the site to end.
            stack.enter_context(site_lock(site, timeout=self.lock_timeout_seconds,
                                          holder=f"dagster run {run.run_id[:8]}", on_wait=log))
            self._stack = stack

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    @contextmanager
    def open(self, site: str, *, log=None) -> Iterator[Warehouse]:
        with open_warehouse(warehouse_path(site), busy_timeout=READER_GRACE_SECONDS, on_busy=log) as wh:
            yield wh
