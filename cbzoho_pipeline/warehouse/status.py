"""A site's state as small files that readers can open while a sync writes the warehouse.

Why it exists: DuckDB lets one process hold a database file for writing and no other process open it at
all meanwhile, not even read-only; a reader that got in first made the sync itself fail ("Could not set
lock"). So the sync publishes what people ask for (the last run, its counts, the open sync errors) to
`status.json` beside the warehouse, replaced atomically, and `cbzoho status` reads that file and never the
warehouse while a sync may run.

The disconnect marker lives here too, for the same readers. This module stays light (no Dagster, DuckDB
or pandas import) so that `cbzoho status` answers in well under a second.

What it must never do: hold a secret, or be written anywhere but through a temporary file and a rename
(a reader must never see half a file).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cbzoho_pipeline.settings import site_dir

if TYPE_CHECKING:
    from cbzoho_pipeline.warehouse.db import Warehouse


def status_path(site: str) -> Path:
    return site_dir(site) / "status.json"


def snapshot_status(wh: Warehouse) -> dict[str, Any]:
    """What `cbzoho status` shows, read from the warehouse by the process that holds it."""
    last = wh.last_run()
    errors = [
        {"module": r["module"], "chargebee_id": r["chargebee_id"], "code": r["code"], "message": r["message"],
         "severity": r["severity"] or "error", "last_seen": str(r["last_seen"])[:19]}
        for r in wh.errors().to_dict("records")
    ]
    return {
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "last_run": None if last is None else {
            "run_id": last["run_id"], "status": last["status"], "finished_at": str(last["finished_at"]),
            "counts": last["counts"]},
        "errors": errors,
    }


def publish_status(site: str, wh: Warehouse) -> None:
    write_status(site, snapshot_status(wh))


def record_failure(site: str, run_id: str, step: str, cause: str) -> None:
    """A failed run becomes the last run shown, with its failing step and cause; open errors stay listed."""
    status = read_status(site) or {"errors": []}
    previous = status.get("last_run") or {}
    status["last_run"] = {
        "run_id": run_id, "status": "failed", "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "failed_step": step, "cause": cause,
        # what the modules that did finish in this run reported, if any
        "counts": previous.get("counts", {}) if previous.get("run_id") == run_id else {},
    }
    status["published_at"] = status["last_run"]["finished_at"]
    write_status(site, status)


def write_status(site: str, status: dict[str, Any]) -> None:
    path = status_path(site)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, default=str))
    os.replace(tmp, path)


def read_status(site: str) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(site).read_text())
    except (OSError, ValueError):
        return None


def disconnected_marker(site: str) -> Path:
    return site_dir(site) / "disconnected.json"


def disconnection(site: str) -> dict[str, Any] | None:
    path = disconnected_marker(site)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"at": "unknown"}
