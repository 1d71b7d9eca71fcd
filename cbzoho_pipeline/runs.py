"""Which runs of a site are alive, and the cleanup that keeps a dead one from blocking the site.

Why it exists: a run whose process is killed (SIGKILL, OOM, a reboot) never reports its end, so Dagster
keeps it STARTED, and the run queue, which admits one run per site, holds the site's next run in QUEUED for
ever. Dagster's run monitoring cannot see a local run worker die (the default run launcher offers no health
check), and a headless `cbzoho sync` has no launcher at all. So every run leaves a heartbeat file naming
its process while its resources are up; a run that is STARTED with no live process behind it is marked
failed by `reap_dead_runs`, which the `cbzoho_run_reaper` sensor calls every 30 seconds and `cbzoho sync`
calls before it starts.

What it must never do: fail a live run. A run is only reaped when its heartbeat names a process that is
gone on this host, or when it has had no heartbeat at all for `NO_HEARTBEAT_GRACE` seconds after it
started (it died before its resources came up). Runs on another host are left to that host.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cbzoho_pipeline.settings import site_dir

SYNC_JOB = "cbzoho_sync"
PARTITION_TAG = "dagster/partition"
# A STARTED run with no heartbeat file this long after it started died before its resources came up.
NO_HEARTBEAT_GRACE = 120.0


def _heartbeat_dir(site: str) -> Path:
    path = site_dir(site) / "runs"
    path.mkdir(exist_ok=True)
    return path


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (so a recycled pid is not taken for the same process), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its closing paren.
    return stat.rsplit(")", 1)[-1].split()[19]


def process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if started is None or not Path("/proc").is_dir():
        return True
    return _process_start(pid) == started


@contextmanager
def heartbeat(site: str, run_id: str) -> Iterator[None]:
    """Announce that this process is carrying out `run_id` of `site` until the block ends."""
    path = _heartbeat_dir(site) / f"{run_id}.json"
    pid = os.getpid()
    mine = read_heartbeat(site, run_id)
    if mine is not None and mine.get("pid") == pid:
        yield  # announced already by this process (cbzoho sync does so before the run starts)
        return
    path.write_text(json.dumps({"run_id": run_id, "pid": pid, "host": socket.gethostname(),
                                "process_start": _process_start(pid), "since": time.time()}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def read_heartbeat(site: str, run_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((_heartbeat_dir(site) / f"{run_id}.json").read_text())
    except (OSError, ValueError):
        return None


def why_dead(site: str, run_id: str, started_at: float | None, *, now: float | None = None) -> str | None:
    """Why the STARTED run `run_id` can no longer be running, or None if it may be alive."""
    beat = read_heartbeat(site, run_id)
    now = time.time() if now is None else now
    if beat is None:
        if started_at is not None and now - started_at > NO_HEARTBEAT_GRACE:
            return (f"its process never announced itself in {NO_HEARTBEAT_GRACE:.0f} s "
                    "(it died before its resources were set up)")
        return None
    if beat.get("host") != socket.gethostname():
        return None  # another machine's run: only that machine can tell
    if process_alive(int(beat["pid"]), beat.get("process_start")):
        return None
    return f"its process (pid {beat['pid']} on {beat['host']}) is gone"


def reap_dead_runs(instance: Any, sites: list[str] | None = None, *, log=None) -> list[tuple[str, str, str]]:
    """Mark failed every STARTED sync run whose process is gone; returns (site, run_id, reason) for each."""
    import dagster as dg

    runs = instance.get_run_records(dg.RunsFilter(job_name=SYNC_JOB, statuses=[dg.DagsterRunStatus.STARTED]))
    reaped = []
    for record in runs:
        run = record.dagster_run
        site = run.tags.get(PARTITION_TAG)
        if not site or (sites is not None and site not in sites):
            continue
        started = record.start_time or (record.create_timestamp.timestamp() if record.create_timestamp else None)
        reason = why_dead(site, run.run_id, started)
        if reason is None:
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED:
            continue  # it ended on its own meanwhile
        message = (f"cbzoho: run {run.run_id[:8]} of site {site!r} marked failed: {reason}. "
                   "The site's next run can start; what this run pushed is kept and the next run picks up "
                   "from there.")
        instance.report_run_failed(current, message)
        (_heartbeat_dir(site) / f"{run.run_id}.json").unlink(missing_ok=True)
        if log is not None:
            log(message)
        reaped.append((site, run.run_id, reason))
    return reaped
