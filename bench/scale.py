"""Benchmark of issues 8 and 9: what a sync costs at 10k, 100k and 1M customers, next to the floor and a naive
sync; a first sync at the APIs' latency; a first sync larger than the daily credit budget.

For each size N it starts a fresh sandbox, loads a clean site of N customers (one active subscription each,
distinct emails, a company shared by every 20 customers; Zoho empty) in chunks through `/_sandbox/load`,
and runs the real headless CLI, `cbzoho sync --site acme-test`, three times as a subprocess:

- first sync: everything is new;
- no-change sync: right after, nothing changed in Chargebee or Zoho;
- 1 %-changed sync: every 100th customer gets a new phone number through the sandbox's Chargebee API
  (`ChargebeeWriter.update_customer`), so exactly their contacts need an update, and nothing else.

Per sync it measures wall and CPU seconds of the cbzoho process (`os.wait4` on that one process: the kernel's
ru_utime + ru_stime), its peak RSS (its own VmHWM from /proc, sampled every 0.1 s: ru_maxrss would carry the
benchmark's own high-water mark into the child across fork + exec), the Dagster steps of the run (STEP_START ->
STEP_SUCCESS from the run's DAGSTER_HOME) with a peak RSS per step sampled from /proc (exact when the
process's high-water mark rose during the step, otherwise the largest sample), Chargebee and Zoho calls
by kind from `/_sandbox/stats` (reset before each sync; polled during the run to attribute them to steps,
hence to modules), Zoho credits, the floor and the naive per-record strategy's calls.

Then the plan against pandas, in a child process per warehouse: the SQL plan (`inputs.plan_site`, whose
`plan_sql.run_plan` is timed on its own) on a copy of the largest size's warehouse after its first sync,
then - after the peak RSS counter is reset - a pandas implementation of the same diff (accounts, contacts,
deals: merge on the link, else on email / name, compare the mapped fields), on the same data. The same is
done on a synthetic warehouse of 1M customers + 1M subscriptions against 1M contacts, 50k accounts and 1M
deals built directly with DuckDB SQL (`--plan-size`).

Issue 9 adds two scenarios, each on fresh sandboxes. A first sync with every Chargebee and Zoho call answered
100 ms late (`--latency-ms`), at 10k and 100k customers (`--latency-sizes`), against a Standard org (10 calls
at once) with the site's `zoho.max_concurrency` at 10 (`--concurrency`), next to its floor: Chargebee pages in
sequence x latency + the floor's Zoho calls / allowed concurrency x latency. (1M would take a clean first
sync of its own, about 45 minutes at that latency; it is not run.) And a daily credit budget smaller than a
first sync (`--budget-size`, default 10k customers; `--budget`, default 40 % of what the unbudgeted first
sync of the same site spent): run after run, a day passing between them, until one is not stopped by the
budget; credits per run (as the sandbox counted them), errors, and Zoho's records against the unbudgeted
sync's.

Prints one table and the issues' targets, each met or missed with the measured value, and writes the same
figures as JSON. Usage:

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--reuse DIR] [--json PATH]
        [--latency-sizes 10000,100000] [--latency-ms 100] [--budget-size 10000]

`--reuse DIR` keeps, per size, the state right after the first sync (its CBZOHO_HOME and the first sync's
figures) and later runs start from it: a fresh sandbox is loaded from that warehouse, read-only (the raw
Chargebee objects of cb_customers / cb_subscriptions and the Zoho snapshot of zoho_records), and only the
no-change and 1 %-changed syncs run.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from extract_bench import _status_kib  # noqa: E402  (the other benchmark's /proc/<pid>/status reader)

SITE, ORG = "acme-test", "sandbox"
MODULES = ("Accounts", "Contacts", "Deals")
TARGET_RSS_MIB = 1024
PER_COMPANY = 20  # customers per company: ~50k accounts at 1M
CHANGE_EVERY = 100  # the 1 %-changed sync changes customers with i % 100 == CHANGE_OFFSET
CHANGE_OFFSET = 50
LOAD_CHUNK = 25_000
SYNC_KINDS = ("first", "no-change", "1%-changed")
NAIVE_FORMULA = ("naive = C + S (a Chargebee GET per customer and per subscription) + C + S (a Zoho search per "
                 "contact and per deal) + W (a Zoho write per record that changes), C customers, S subscriptions")
FLOOR_NOTE = ("floor = Chargebee: max(1, ceil(changed/100)) pages per object; Zoho writes: ceil(changed/100) per "
              "module; Zoho reads: 1 per module on a first sync of an empty org, else 2 per module (changes and "
              "deletions since the cursor); metadata and token calls are not in the floor")
SETTINGS = {"sites": {SITE: {"sandbox": True, "autosync": False, "chargebee": {"site": SITE},
                             # limits lifted (see Sandbox.raise_limits), the site's credit budget too: the
                             # sizes measure the sync, not the limiter (the budget has a scenario of its own)
                             "zoho": {"environment": "sandbox", "sandbox_org": ORG,
                                      "daily_credit_budget": 1_000_000_000},
                             "rules": {"deal_owner_email": "admin@acme.example"}}}}


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mib(kib: float | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


# ============================================================================================== the dataset
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Katherine", "Linus",
         "Margaret", "Niklaus", "Radia", "Ken", "Sophie", "Tim", "Anita", "Dennis", "Hedy", "Claude")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Johnson", "Torvalds",
        "Hamilton", "Wirth", "Perlman", "Thompson", "Wilson", "Berners", "Borg", "Ritchie", "Lamarr", "Shannon",
        "Kay", "Cerf", "Hoare", "Milner", "Naur", "Floyd", "Codd", "Gray", "Rivest", "Shamir")
PLANS = (("basic-USD-monthly", 2900), ("pro-USD-monthly", 9900), ("enterprise-USD-monthly", 49900))


def company(i: int) -> str:
    return f"Company {i // PER_COMPANY:06d} Ltd"


def phone(i: int, version: int = 0) -> str:
    return f"+1 {555 + version} {i:07d}"


def customer(i: int, base: int) -> dict[str, Any]:
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    stamp = base + i
    return {
        "id": f"cust_{i:07d}", "first_name": first, "last_name": last,
        "email": f"{first}.{last}.{i}@example.com".lower(), "phone": phone(i), "company": company(i),
        "auto_collection": "on", "net_term_days": 0, "allow_direct_debit": False, "created_at": stamp,
        "taxability": "taxable", "updated_at": stamp, "pii_cleared": "active", "channel": "web",
        "resource_version": stamp * 1000, "deleted": False, "object": "customer",
        "billing_address": {"first_name": first, "last_name": last, "line1": f"{1 + i % 240} Main Street",
                            "city": "Springfield", "country": "US", "zip": f"{10000 + i % 90000}",
                            "validation_status": "not_validated", "object": "billing_address"},
        "card_status": "valid", "promotional_credits": 0, "refundable_credits": 0, "excess_payments": 0,
        "unbilled_charges": 0, "preferred_currency_code": "USD",
    }


def subscription(i: int, base: int, now: int) -> dict[str, Any]:
    price_id, price = PLANS[i % len(PLANS)]
    stamp = base + i
    return {
        "id": f"sub_{i:07d}", "billing_period": 1, "billing_period_unit": "month", "customer_id": f"cust_{i:07d}",
        "status": "active", "current_term_start": now - 10 * 86400, "current_term_end": now + 20 * 86400,
        "next_billing_at": now + 20 * 86400, "created_at": stamp, "started_at": stamp, "activated_at": stamp,
        "updated_at": stamp, "has_scheduled_changes": False, "channel": "web", "resource_version": stamp * 1000,
        "deleted": False, "object": "subscription", "currency_code": "USD",
        "subscription_items": [{"item_price_id": price_id, "item_type": "plan", "quantity": 1, "unit_price": price,
                                "amount": price, "free_quantity": 0, "object": "subscription_item"}],
        "due_invoices_count": 0, "mrr": price, "has_scheduled_advance_invoices": False,
    }


def changed_customers(n: int) -> list[int]:
    return list(range(CHANGE_OFFSET % CHANGE_EVERY, n, CHANGE_EVERY))


# ============================================================================================== the sandbox
class Sandbox:
    """One `cbzoho sandbox` process on a free port, driven through its control surface."""

    def __init__(self, workdir: Path) -> None:
        self.info_file = workdir / "sandbox-info.json"
        self.info_file.unlink(missing_ok=True)
        self.process = subprocess.Popen([*cbzoho_command(), "sandbox", "--port", "0", "--info-file",
                                         str(self.info_file), "--quiet"], cwd=REPO)
        deadline = time.monotonic() + 120
        while not self.info_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox did not start (exit {self.process.returncode})")
            time.sleep(0.05)
        self.info = json.loads(self.info_file.read_text())
        self.control = self.info["control_url"]
        self.http = requests.Session()

    def call(self, method: str, path: str, body: Any = None, *, data: bytes | None = None, timeout: float = 3600
             ) -> Any:
        headers = {"Content-Type": "application/json"} if data is not None else None
        response = self.http.request(method, f"{self.control}/{path}", json=body, data=data, headers=headers,
                                     timeout=timeout)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def raise_limits(self) -> None:
        """Limits well above what a run of a million customers needs, so we measure the sync, not the limiter."""
        self.call("POST", f"chargebee/{SITE}/settings", {"rate_limit_per_minute": 10_000_000})
        self.call("POST", f"zoho/{ORG}/settings", {"concurrency_limit": 25, "sub_concurrency_limit": 25,
                                                  "daily_credits": 1_000_000_000})

    def now(self) -> int:
        return int(self.call("POST", "clock", {"advance_seconds": 0})["now"])

    def load_raw(self, collection: str, texts: list[str], *, zoho: bool = False) -> None:
        """Load already-serialised objects (JSON texts) into the Chargebee site or the Zoho org."""
        tenant = (f'"zoho": {{"{ORG}": {{"{collection}": [' if zoho
                  else f'"chargebee": {{"{SITE}": {{"{collection}": [')
        self.call("POST", "load", data=("{" + tenant + ",".join(texts) + "]}}}").encode())

    def rss_mib(self) -> float | None:
        try:
            return mib(_status_kib(self.process.pid, "VmRSS"))
        except OSError:
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cbzoho_command() -> list[str]:
    """The installed `cbzoho` console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "cbzoho"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cbzoho_pipeline.cli"]


def load_clean_site(sandbox: Sandbox, n: int, base: int | None = None) -> dict[str, Any]:
    """The clean site of N customers; `base` (the first customer's created_at) makes two loads identical."""
    now = sandbox.now()
    base = base if base is not None else now - 40 * 86400
    started = time.perf_counter()
    for lo in range(0, n, LOAD_CHUNK):
        hi = min(n, lo + LOAD_CHUNK)
        sandbox.call("POST", "load", {"chargebee": {SITE: {
            "customers": [customer(i, base) for i in range(lo, hi)],
            "subscriptions": [subscription(i, base, now) for i in range(lo, hi)]}}})
    counts = sandbox.call("GET", f"chargebee/{SITE}/counts")
    return {"base": base, "seconds": round(time.perf_counter() - started, 1), "counts": counts}


def restore_site(sandbox: Sandbox, warehouse: Path) -> dict[str, Any]:
    """Load the sandbox from a warehouse saved right after a first sync (opened read-only): Chargebee's raw
    objects, then the Zoho snapshot, Accounts before Contacts before Deals so lookups resolve."""
    import duckdb

    started = time.perf_counter()
    loaded: Counter = Counter()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for collection, sql, zoho in (
            ("customers", "SELECT data::VARCHAR FROM cb_customers ORDER BY id", False),
            ("subscriptions", "SELECT data::VARCHAR FROM cb_subscriptions ORDER BY id", False),
            *[(m, f"SELECT data::VARCHAR FROM zoho_records WHERE module = '{m}' ORDER BY id::BIGINT", True)
              for m in MODULES],
        ):
            cursor = con.execute(sql)
            while rows := cursor.fetchmany(LOAD_CHUNK):
                sandbox.load_raw(collection, [r[0] for r in rows], zoho=zoho)
                loaded[collection] += len(rows)
    finally:
        con.close()
    return {"seconds": round(time.perf_counter() - started, 1), "loaded": dict(loaded)}


# ============================================================================================== one sync
class RssSampler(threading.Thread):
    """VmRSS and VmHWM of one process every `interval` seconds, with time.time() stamps."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            values = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in text.splitlines())
                      if k in ("VmRSS", "VmHWM")}
            if "VmRSS" in values:  # absent once the process is a zombie
                self.samples.append((time.time(), values["VmRSS"], values.get("VmHWM", 0)))
            self.done.wait(self.interval)


class StatsPoller(threading.Thread):
    """The sandbox's call counters every `interval` seconds during a run, to attribute calls to steps."""

    def __init__(self, sandbox: Sandbox, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.interval = sandbox, interval
        self.http = requests.Session()
        self.polls: list[tuple[float, float, Counter]] = []
        self.done = threading.Event()

    def poll(self) -> None:
        before = time.time()
        counts = flat_calls(self.http.get(f"{self.sandbox.control}/stats", timeout=600).json())
        if len(self.polls) > 1 and self.polls[-1][2] == counts == self.polls[-2][2]:
            self.polls[-1] = (before, time.time(), counts)  # nothing new: keep the latest bounds only
        else:
            self.polls.append((before, time.time(), counts))

    def run(self) -> None:
        while not self.done.wait(self.interval):
            with contextlib.suppress(requests.RequestException):
                self.poll()


def flat_calls(stats: dict[str, Any]) -> Counter:
    """Every counter we report as one flat Counter: cb|<endpoint>, zoho|<endpoint>, token, credits."""
    out: Counter = Counter()
    for endpoint, n in stats["chargebee"][SITE]["calls"].items():
        out[f"cb|{endpoint}"] += n
    zoho = stats["zoho"][ORG]
    for endpoint, n in zoho["calls"].items():
        out[f"zoho|{endpoint}"] += n
    out["token"] = stats["zoho_accounts"]["calls_total"]
    out["credits"] = zoho["credits_used"]
    out["429"] = stats["chargebee"][SITE]["served_429"] + zoho["served_429"]
    return out


def zoho_kind(endpoint: str) -> str:
    """write | meta | read for a Zoho endpoint template such as 'POST /crm/v8/{module}/upsert'."""
    method, _, path = endpoint.partition(" ")
    if method in ("POST", "PUT", "PATCH", "DELETE") and not path.endswith("/coql"):
        return "write"
    if any(part in path for part in ("/users", "/settings/", "/org")):
        return "meta"
    return "read"


def run_sync(label: str, env: dict[str, str], workdir: Path, sandbox: Sandbox) -> dict[str, Any]:
    """One `cbzoho sync --site acme-test --json` subprocess, measured."""
    sandbox.call("POST", "stats/reset")
    out_path, err_path = workdir / f"{label}.stdout", workdir / f"{label}.stderr"
    poller = StatsPoller(sandbox)
    poller.poll()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    with out_path.open("w") as out, err_path.open("w") as err:
        started, started_at = time.perf_counter(), time.time()
        process = subprocess.Popen([*cbzoho_command(), "sync", "--site", SITE, "--json", "--log-level", "WARNING"],
                                   env=env, cwd=workdir, stdout=out, stderr=err)
        sampler = RssSampler(process.pid)
        sampler.start()
        poller.start()
        _pid, status, usage = os.wait4(process.pid, 0)  # this one process's own rusage
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    sampler.done.set()
    poller.done.set()
    sampler.join()
    poller.join()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    poller.poll()
    stdout, stderr = out_path.read_text(), err_path.read_text()
    failure = None
    if process.returncode in (0, 1):
        result = json.loads(stdout[stdout.index("{"):])
    else:  # a failed run is measured and reported, with the step and cause the CLI printed
        found = re.search(r"failed \(([0-9a-f-]{36})\)", stderr)
        result = {"run_id": found.group(1) if found else None}
        lines = [line for line in stderr.splitlines() if line.startswith("cbzoho sync: ")]
        failure = lines[-1].removeprefix("cbzoho sync: ") if lines else f"exit {process.returncode}"
        log(f"{label}: the sync failed: {failure} (stderr in {err_path})")
    final = poller.polls[-1][2]
    return {
        "label": label, "exit_code": process.returncode, "run_id": result["run_id"], "failure": failure,
        "started_at": started_at, "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "cpu_s_rusage_children": round(children_after.ru_utime - children_before.ru_utime
                                       + children_after.ru_stime - children_before.ru_stime, 2),
        # The process's own high-water mark (VmHWM, sampled until it exits). Not ru_maxrss: Linux carries the
        # parent's high-water mark into a child across fork/vfork + exec, so a child spawned by this process
        # after it restored a million-customer state reported this process's ~1.5 GB as its own.
        "peak_rss_mib": mib(max((hwm for _t, _rss, hwm in sampler.samples), default=0) or usage.ru_maxrss),
        "ru_maxrss_mib": mib(usage.ru_maxrss), "counts": result.get("counts", {}),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "open_errors": len(result.get("errors", [])), "calls": dict(final),
        "_polls": poller.polls, "_samples": sampler.samples,
    }


# ============================================================================================== Dagster steps
def dagster_steps(dagster_home: Path, run_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """[(step, start, end, status)] of the run and the metadata of each step's materialization."""
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
             dg.DagsterEventType.STEP_SKIPPED, dg.DagsterEventType.ASSET_MATERIALIZATION}
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            entries = instance.all_logs(run_id, of_type=kinds)
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    steps: dict[str, dict[str, Any]] = {}
    metadata: dict[str, dict[str, Any]] = {}
    for entry in entries:
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        step = steps.setdefault(entry.step_key, {"step": entry.step_key, "start": None, "end": None,
                                                 "status": None})
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            step["start"] = entry.timestamp
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            values = event.event_specific_data.materialization.metadata
            metadata[entry.step_key] = {k: getattr(v, "value", v) for k, v in values.items()
                                        if isinstance(getattr(v, "value", v), (int, float, str, bool))}
        else:
            step["end"] = entry.timestamp
            step["status"] = kind.value
    ordered = sorted((s for s in steps.values() if s["start"] is not None), key=lambda s: s["start"])
    return ordered, metadata


def step_figures(run: dict[str, Any], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step's wall, its peak RSS (see the module docstring) and the calls made while it ran."""
    samples = run["_samples"]
    out = []
    for s in steps:
        start, end = s["start"], s["end"] or s["start"]
        inside = [rss for t, rss, _ in samples if start <= t <= end]
        hwm_before = max([h for t, _, h in samples if t < start], default=0)
        hwm_after = min([h for t, _, h in samples if t > end], default=run["peak_rss_mib"] * 1024)
        peak = max(inside, default=0)
        if hwm_after > hwm_before:
            peak = max(peak, hwm_after)  # the high-water mark rose during this step: it is this step's peak
        out.append({"step": s["step"], "status": s["status"], "wall_s": round(end - start, 2),
                    "peak_rss_mib": mib(peak) if peak else None, "calls": Counter()})
    # Calls between two polls go to the step that ran in that interval and could have made them (a Chargebee
    # stream's own step, metadata to zoho_metadata, writes to a push step); among several, to the one that
    # overlaps the interval most, and such calls are counted as ambiguous.
    polls = run["_polls"]
    ambiguous = 0
    outside: Counter = Counter()
    for (b0, _a0, c0), (_b1, a1, c1) in zip(polls, polls[1:], strict=False):
        delta = c1 - c0
        if not delta:
            continue
        overlaps = {i: min(a1, s["end"] or s["start"]) - max(b0, s["start"]) for i, s in enumerate(steps)}
        overlaps = {i: o for i, o in overlaps.items() if o > 0}
        busiest = None
        for key, n in delta.items():
            if key in ("credits", "429"):
                continue
            fitting = {i: o for i, o in overlaps.items() if could_make(steps[i]["step"], key)} or overlaps
            if not fitting:
                outside[key] += n
                continue
            ambiguous += n if len(fitting) > 1 else 0
            chosen = max(fitting, key=lambda i: fitting[i])
            out[chosen]["calls"][key] += n
            busiest = chosen if busiest is None else busiest
        if busiest is None and overlaps:  # counters that moved after their call was counted
            busiest = max(overlaps, key=lambda i: overlaps[i])
        for key in ("credits", "429"):  # with the calls that cost them
            if delta.get(key):
                if busiest is None:
                    outside[key] += delta[key]
                else:
                    out[busiest]["calls"][key] += delta[key]
    for figure in out:
        figure["calls"] = dict(figure["calls"])
    run["calls_outside_steps"] = dict(outside)
    run["calls_attributed_ambiguously"] = ambiguous
    return out


# ============================================================================================== accounting
def could_make(step: str, key: str) -> bool:
    """Whether a step of the sync job makes calls of this kind (cb|<endpoint>, zoho|<endpoint>, token)."""
    if key.startswith("cb|"):
        return step == "chargebee_" + key.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    if key.startswith("zoho|"):
        kind = zoho_kind(key.split("|", 1)[1])
        if kind == "meta":
            return step == "zoho_metadata"
        if kind == "write":
            return step.startswith("synced_")
        return step.startswith(("zoho_", "synced_", "sync_plan")) and step != "zoho_metadata"
    return True


def summarise_calls(calls: dict[str, int]) -> dict[str, Any]:
    cb = {k.split("|", 1)[1]: v for k, v in calls.items() if k.startswith("cb|")}
    zoho = {k.split("|", 1)[1]: v for k, v in calls.items() if k.startswith("zoho|")}
    by_kind: Counter = Counter()
    for endpoint, n in zoho.items():
        by_kind[zoho_kind(endpoint)] += n
    pages = {obj: sum(v for k, v in cb.items() if k.split("?")[0].rstrip("/").endswith(f"/{obj}"))
             for obj in ("customers", "subscriptions")}
    return {"chargebee_calls": sum(cb.values()), "chargebee_pages": pages, "chargebee_by_endpoint": cb,
            "zoho_reads": by_kind["read"] + by_kind["meta"], "zoho_data_reads": by_kind["read"],
            "zoho_metadata_reads": by_kind["meta"], "zoho_writes": by_kind["write"], "zoho_by_endpoint": zoho,
            "token_calls": calls.get("token", 0), "credits": calls.get("credits", 0),
            "served_429": calls.get("429", 0)}


def per_module(steps: list[dict[str, Any]], metadata: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Zoho reads and writes per module, from the calls made while each module's steps ran."""
    out = {}
    for module in MODULES:
        reads = writes = 0
        for s in steps:
            if s["step"] not in (f"zoho_{module.lower()}", f"synced_{module.lower()}"):
                continue
            for key, n in s["calls"].items():
                if key.startswith("zoho|"):
                    if zoho_kind(key.split("|", 1)[1]) == "write":
                        writes += n
                    else:
                        reads += n
        push = metadata.get(f"synced_{module.lower()}", {})
        out[module] = {"reads": reads, "writes": writes, "writes_by_push_metadata": push.get("calls")}
    return out


def changes_for(kind: str, n: int, changed: int) -> dict[str, int]:
    """What must change, per Chargebee object and Zoho module, for each kind of sync of our dataset."""
    accounts = math.ceil(n / PER_COMPANY)
    if kind == "first":
        return {"customers": n, "subscriptions": n, "Accounts": accounts, "Contacts": n, "Deals": n}
    if kind == "no-change":
        return {"customers": 0, "subscriptions": 0, "Accounts": 0, "Contacts": 0, "Deals": 0}
    return {"customers": changed, "subscriptions": 0, "Accounts": 0, "Contacts": changed, "Deals": 0}


def floor_for(kind: str, change: dict[str, int]) -> dict[str, int]:
    cb = sum(max(1, math.ceil(change[o] / 100)) for o in ("customers", "subscriptions"))
    writes = sum(math.ceil(change[m] / 100) for m in MODULES)
    reads = len(MODULES) * (1 if kind == "first" else 2)
    return {"chargebee": cb, "zoho_reads": reads, "zoho_writes": writes, "total": cb + reads + writes}


def naive_for(n: int, change: dict[str, int]) -> int:
    records = n + n  # C customers (contacts) and S subscriptions (deals)
    return records + records + sum(change[m] for m in MODULES)


# ============================================================================================== plan vs pandas
def plan_child(warehouse: Path, out: Path) -> int:
    """In this process: the SQL plan over `warehouse` (a copy), then pandas on the same data; JSON to `out`."""
    sys.path.insert(0, str(REPO))
    baseline_kib = _status_kib("self", "VmHWM")
    import duckdb

    from cbzoho_pipeline.settings import parse_settings
    from cbzoho_pipeline.sync import inputs, plan_sql
    from cbzoho_pipeline.warehouse.db import open_warehouse

    site = parse_settings(SETTINGS).site(SITE)
    from cbzoho_pipeline.warehouse.db import Warehouse

    # Where plan_site's time goes: its SQL plan and the warehouse work around it, each timed by a wrapper
    # installed in this child process only (the product's code runs unchanged).
    timed: Counter = Counter()

    def timing(owner: Any, name: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timed[name] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    timing(plan_sql, "run_plan")
    for name in ("reconcile_lost_creates", "plan_params"):
        timing(inputs, name)
    for name in ("plan_scope", "plan_input_views", "store_plan", "plan_changes"):
        timing(Warehouse, name)
    imported_kib = _status_kib("self", "VmHWM")
    figures: dict[str, Any] = {"baseline_rss_mib": mib(imported_kib)}
    with open_warehouse(warehouse) as wh:
        kwargs = {"full": True} if "full" in inspect.signature(inputs.plan_site).parameters else {}
        t0 = time.perf_counter()
        outcome = inputs.plan_site(wh, site, "bench-plan", **kwargs)
        figures["sql_s"] = round(time.perf_counter() - t0, 2)
        figures["sql_run_plan_s"] = round(timed.get("run_plan", float("nan")), 2)
        figures["sql_breakdown_s"] = {k: round(v, 2) for k, v in timed.items()}
        counts = outcome[0]
        figures["sql_counts"] = counts
        figures["sql_peak_rss_mib"] = mib(_status_kib("self", "VmHWM"))
    stages, pipeline = dict(site.rules.deal_stages), site.rules.deal_pipeline
    figures["inputs"] = {}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for table, sql in (("customers", "SELECT count(*) FROM cb_customers"),
                           ("subscriptions", "SELECT count(*) FROM cb_subscriptions"),
                           *[(m, f"SELECT count(*) FROM zoho_records WHERE module = '{m}'") for m in MODULES]):
            figures["inputs"][table] = con.execute(sql).fetchone()[0]
        # Back to the footprint of the process before the SQL plan, then pandas.
        Path("/proc/self/clear_refs").write_text("5")
        figures["pandas_start_rss_mib"] = mib(_status_kib("self", "VmRSS"))
        t0 = time.perf_counter()
        frames = pandas_inputs(con)
        figures["pandas_load_s"] = round(time.perf_counter() - t0, 2)
        t1 = time.perf_counter()
        figures["pandas_counts"] = pandas_plan(frames, stages, pipeline)
        figures["pandas_diff_s"] = round(time.perf_counter() - t1, 2)
        figures["pandas_s"] = round(time.perf_counter() - t0, 2)
        figures["pandas_peak_rss_mib"] = mib(_status_kib("self", "VmHWM"))
    finally:
        con.close()
    sql_counts, pd_counts = figures["sql_counts"], figures["pandas_counts"]
    figures["agree"] = all(sql_counts.get(m, {}).get(a, 0) == pd_counts[m][a]
                           for m in pd_counts for a in pd_counts[m])
    figures["python_baseline_rss_mib"] = mib(baseline_kib)
    out.write_text(json.dumps(figures, default=str))
    return 0


def pandas_inputs(con: Any) -> dict[str, Any]:
    """The plan's inputs as DataFrames; DuckDB only reads columns and JSON fields out (no logic)."""
    def frame(sql: str) -> Any:
        return con.execute(sql).df()

    return {
        "customers": frame("SELECT id, first_name, last_name, email, phone, company, coalesce(deleted, false) AS "
                           "deleted FROM cb_customers"),
        "subscriptions": frame("SELECT id, customer_id, status, currency_code, mrr, created_at, "
                               "coalesce(deleted, false) AS deleted FROM cb_subscriptions"),
        "contacts": frame("""SELECT id, data->>'First_Name' AS First_Name, data->>'Last_Name' AS Last_Name,
                                    data->>'Email' AS Email, data->>'Phone' AS Phone,
                                    data->'Account_Name'->>'id' AS account_id
                             FROM zoho_records WHERE module = 'Contacts'"""),
        "accounts": frame("SELECT id, data->>'Account_Name' AS name FROM zoho_records WHERE module = 'Accounts'"),
        "deals": frame("""SELECT id, data->>'Deal_Name' AS Deal_Name, TRY_CAST(data->>'Amount' AS DOUBLE) AS Amount,
                                 data->>'Stage' AS Stage, data->>'Pipeline' AS Pipeline,
                                 data->>'Closing_Date' AS Closing_Date, data->'Contact_Name'->>'id' AS contact_id,
                                 data->'Account_Name'->>'id' AS account_id
                          FROM zoho_records WHERE module = 'Deals'"""),
        "links": frame("SELECT module, source_key, zoho_id FROM links"),
    }


def pandas_plan(f: dict[str, Any], stages: dict[str, str], pipeline: str) -> dict[str, dict[str, int]]:
    """The same diff as the SQL plan, reduced to its core (no error rules), in pandas: creates and updates."""
    import pandas as pd

    def clean(s: Any) -> Any:
        s = s.astype("object").where(s.notna(), None)
        s = s.str.strip()
        return s.where(s != "", None)

    def folded(s: Any) -> Any:
        return clean(s).str.replace(r"\s+", " ", regex=True).str.lower()

    def differs(ours: Any, theirs: Any) -> Any:
        """Ours is set and not equal to theirs (missing counts as different)."""
        return ours.notna() & (theirs.isna() | (ours != theirs))

    def linked(module: str) -> Any:
        lk = f["links"]
        return lk.loc[lk.module == module, ["source_key", "zoho_id"]]

    def unique_by(frame: Any, key: str) -> Any:
        grouped = frame.dropna(subset=[key]).groupby(key)["id"].agg(["first", "count"])
        return grouped.loc[grouped["count"] == 1, "first"].rename("by_key")

    cust = f["customers"].loc[~f["customers"].deleted.astype(bool)].copy()
    cust["email_n"] = clean(cust.email).str.lower()
    cust["company_key"] = folded(cust.company)

    # Accounts: one per company key; linked, else matched by name, else created.
    za = f["accounts"].copy()
    za["name_key"] = folded(za.name)
    acc = cust.dropna(subset=["company_key"]).drop_duplicates("company_key")[["company_key"]]
    acc = acc.merge(linked("Accounts"), left_on="company_key", right_on="source_key", how="left")
    acc = acc.merge(unique_by(za.rename(columns={"name_key": "k"}), "k"), left_on="company_key", right_index=True,
                    how="left")
    acc["account_id"] = acc.zoho_id.fillna(acc.by_key)
    account_of = acc.set_index("company_key")["account_id"]

    # Contacts: the link, else the one Zoho contact with the email; compare the mapped fields.
    zc = f["contacts"].copy()
    zc["email_n"] = clean(zc.Email).str.lower()
    con = cust.merge(linked("Contacts"), left_on="id", right_on="source_key", how="left")
    con = con.merge(unique_by(zc.rename(columns={"email_n": "k"}), "k"), left_on="email_n", right_index=True,
                    how="left")
    con["zoho_id"] = con.zoho_id.fillna(con.by_key)
    con = con.merge(zc.drop(columns=["email_n"]).add_prefix("z_"), left_on="zoho_id", right_on="z_id", how="left")
    con["account_id"] = con.company_key.map(account_of)
    change = differs(clean(con.first_name), clean(con.z_First_Name))
    change |= differs(clean(con.last_name), clean(con.z_Last_Name))
    change |= differs(con.email_n, clean(con.z_Email).str.lower())
    change |= differs(clean(con.phone), clean(con.z_Phone))
    change |= differs(con.account_id, con.z_account_id)
    contact_create = con.zoho_id.isna()
    contact_update = ~contact_create & change
    contact_of = con.set_index("id")["zoho_id"]

    # Deals: the link, else the one deal named after the subscription; compare amount, stage, pipeline, date.
    subs = f["subscriptions"]
    subs = subs.loc[~subs.deleted.astype(bool) & subs.status.isin(list(stages))].copy()
    zd = f["deals"].copy()
    zd["name_key"] = clean(zd.Deal_Name)
    deal = subs.merge(linked("Deals"), left_on="id", right_on="source_key", how="left")
    deal = deal.merge(unique_by(zd.rename(columns={"name_key": "k"}), "k"), left_on="id", right_index=True,
                      how="left")
    deal["zoho_id"] = deal.zoho_id.fillna(deal.by_key)
    deal = deal.merge(zd.add_prefix("z_"), left_on="zoho_id", right_on="z_id", how="left")
    amount = (deal.mrr.astype("float64") / 100).round(2)
    closing = pd.to_datetime(deal.created_at, unit="s").dt.strftime("%Y-%m-%d")
    company_of = cust.set_index("id")["company_key"]
    change = (deal.z_Amount.isna() | ((amount - deal.z_Amount).abs() >= 0.005))
    change |= differs(deal.status.map(stages), deal.z_Stage)
    change |= differs(pd.Series(pipeline, index=deal.index), deal.z_Pipeline)
    change |= differs(closing, deal.z_Closing_Date)
    change |= differs(deal.customer_id.map(contact_of), deal.z_contact_id)
    change |= differs(deal.customer_id.map(company_of).map(account_of), deal.z_account_id)
    deal_create = deal.zoho_id.isna()
    return {"Accounts": {"create": int(acc.account_id.isna().sum())},
            "Contacts": {"create": int(contact_create.sum()), "update": int(contact_update.sum())},
            "Deals": {"create": int(deal_create.sum()), "update": int((~deal_create & change).sum())}}


def run_plan_child(warehouse: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / f"plan-{warehouse.stem}.json"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--plan-child", str(warehouse), str(out)], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"plan child failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    figures = json.loads(out.read_text())
    figures["child_wall_s"] = round(time.perf_counter() - t0, 1)
    figures["ratio"] = round(figures["pandas_s"] / figures["sql_s"], 1) if figures["sql_s"] else None
    figures["ratio_diff_only"] = (round(figures["pandas_diff_s"] / figures["sql_s"], 1) if figures["sql_s"]
                                  else None)
    return figures


def build_synthetic_warehouse(path: Path, n: int, metadata_from: Path) -> dict[str, Any]:
    """A site after many syncs, straight in DuckDB: n customers and n subscriptions against n contacts, n/20
    accounts and n deals in the Zoho snapshot, linked. Per 100 customers: one new (no contact, no deal), one
    matched by email and deal name but not linked yet, one with a new phone, one deal with another amount."""
    sys.path.insert(0, str(REPO))
    from cbzoho_pipeline.warehouse.db import open_warehouse

    t0 = time.perf_counter()
    path.unlink(missing_ok=True)
    with open_warehouse(path) as wh:
        wh.con.execute(f"ATTACH '{metadata_from}' AS src (READ_ONLY)")
        wh.con.execute("INSERT INTO zoho_meta SELECT * FROM src.zoho_meta")
        wh.con.execute("DETACH src")
        q = f"""
        CREATE TEMP TABLE g AS
        SELECT i, format('cust_{{:07d}}', i) AS cid, format('sub_{{:07d}}', i) AS sid,
               ['Ada','Grace','Alan','Edsger','Barbara'][1 + i % 5] AS first_name,
               ['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth'][1 + (i // 5) % 6] AS last_name,
               format('Company {{:06d}} Ltd', i // {PER_COMPANY}) AS company,
               1700000000 + i AS stamp, (2900 + 100 * (i % 3))::BIGINT AS mrr,
               i % 100 AS r, (4000000000 + i)::VARCHAR AS contact_id, (6000000000 + i)::VARCHAR AS deal_id,
               (3000000000 + i // {PER_COMPANY})::VARCHAR AS account_id
        FROM range({n}) t(i)"""
        wh.con.execute(q)
        wh.con.execute("""ALTER TABLE g ADD COLUMN email VARCHAR; UPDATE g SET email =
                          lower(first_name || '.' || last_name || '.' || i || '@example.com')""")
        wh.con.execute("ALTER TABLE g ADD COLUMN phone VARCHAR; UPDATE g SET phone = format('+1 555 {:07d}', i)")
        wh.con.execute("""
            INSERT INTO cb_customers (id, data, created_at, updated_at, resource_version, deleted, extracted_at,
                                      first_name, last_name, email, phone, company, billing_last_name)
            SELECT cid, json_object('id', cid, 'first_name', first_name, 'last_name', last_name, 'email', email,
                                    'phone', CASE WHEN r = 50 THEN replace(phone, '555', '556') ELSE phone END,
                                    'company', company, 'created_at', stamp, 'updated_at', stamp,
                                    'resource_version', stamp * 1000, 'deleted', false, 'object', 'customer'),
                   stamp, stamp, stamp * 1000, false, now(), first_name, last_name, email,
                   CASE WHEN r = 50 THEN replace(phone, '555', '556') ELSE phone END, company, last_name
            FROM g""")
        wh.con.execute("""
            INSERT INTO cb_subscriptions (id, customer_id, data, created_at, updated_at, resource_version, deleted,
                                          extracted_at, status, currency_code, mrr)
            SELECT sid, cid, json_object('id', sid, 'customer_id', cid, 'status', 'active', 'currency_code', 'USD',
                                         'mrr', mrr, 'created_at', stamp, 'updated_at', stamp,
                                         'resource_version', stamp * 1000, 'deleted', false, 'object', 'subscription'),
                   stamp, stamp, stamp * 1000, false, now(), 'active', 'USD', mrr
            FROM g""")
        modified = "'2026-01-01T00:00:00+00:00'"
        wh.con.execute(f"""
            INSERT INTO zoho_records (module, id, data, modified_time)
            SELECT 'Accounts', account_id, json_object('id', account_id, 'Account_Name', company,
                                                       'Modified_Time', {modified}), {modified}
            FROM g WHERE i % {PER_COMPANY} = 0""")
        wh.con.execute(f"""
            INSERT INTO zoho_records (module, id, data, modified_time)
            SELECT 'Contacts', contact_id, json_object('id', contact_id, 'First_Name', first_name, 'Last_Name',
                       last_name, 'Email', email, 'Phone', phone,
                       'Account_Name', json_object('name', company, 'id', account_id), 'Modified_Time', {modified}),
                   {modified}
            FROM g WHERE r <> 99""")
        wh.con.execute(f"""
            INSERT INTO zoho_records (module, id, data, modified_time)
            SELECT 'Deals', deal_id, json_object('id', deal_id, 'Deal_Name', sid,
                       'Amount', CASE WHEN r = 25 THEN mrr / 100.0 + 1 ELSE mrr / 100.0 END,
                       'Closing_Date', strftime(make_timestamp(stamp * 1000000), '%Y-%m-%d'),
                       'Pipeline', 'Standard (Standard)', 'Stage', 'Closed Won',
                       'Contact_Name', json_object('name', first_name || ' ' || last_name, 'id', contact_id),
                       'Account_Name', json_object('name', company, 'id', account_id), 'Modified_Time', {modified}),
                   {modified}
            FROM g WHERE r <> 99""")
        wh.retype_zoho()  # the typed columns and content keys a sync stores with every Zoho record
        wh.con.execute("""
            INSERT INTO links (module, source_key, zoho_id, linked_at)
            SELECT 'Accounts', lower(company), account_id, now() FROM g WHERE i % 20 = 0
            UNION ALL SELECT 'Contacts', cid, contact_id, now() FROM g WHERE r NOT IN (98, 99)
            UNION ALL SELECT 'Deals', sid, deal_id, now() FROM g WHERE r NOT IN (98, 99)""")
        wh.con.execute("DROP TABLE g")
        counts = {t: wh.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("cb_customers", "cb_subscriptions", "zoho_records", "links")}
        counts.update({m: wh.con.execute("SELECT count(*) FROM zoho_records WHERE module = ?", [m]).fetchone()[0]
                       for m in MODULES})
    return {"seconds": round(time.perf_counter() - t0, 1), "rows": counts, "bytes": path.stat().st_size}


# ============================================================================================== one size
@dataclass
class SizeState:
    n: int
    root: Path  # the size's working folder
    saved: Path | None  # --reuse: where the state right after the first sync is kept
    plan_copy: Path | None = None  # where to copy the warehouse as it is right after the first sync
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def sync_env(sandbox: Sandbox, home: Path, dagster_home: Path, settings_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBZOHO_")}
    env.update(CBZOHO_SANDBOX_INFO=str(sandbox.info_file), CBZOHO_HOME=str(home),
               CBZOHO_SETTINGS=str(settings_file), DAGSTER_HOME=str(dagster_home))
    return env


def change_one_percent(sandbox: Sandbox, n: int) -> dict[str, Any]:
    """A new phone number for every 100th customer, through the sandbox's Chargebee API."""
    from cbzoho_sandbox.chargebee_writer import ChargebeeWriter

    entry = sandbox.info["chargebee"][SITE]
    ids = changed_customers(n)
    t0 = time.perf_counter()
    with ChargebeeWriter(entry["base_url"], entry["api_key"]) as writer:
        for i in ids:
            writer.update_customer(f"cust_{i:07d}", {"phone": phone(i, 1)})
    return {"changed": len(ids), "seconds": round(time.perf_counter() - t0, 1)}


def measure_size(state: SizeState, settings_file: Path, settle: float = 0.0) -> dict[str, Any]:
    n = state.n
    state.root.mkdir(parents=True, exist_ok=True)
    home, dagster_home = state.root / "home", state.root / "dagster_home"
    for folder in (home, dagster_home):
        shutil.rmtree(folder, ignore_errors=True)
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    saved_first = state.saved / "first.json" if state.saved else None
    reuse = saved_first is not None and saved_first.exists()
    figures: dict[str, Any] = {"customers": n, "reused_first_sync": reuse}
    sandbox = Sandbox(state.root)
    try:
        sandbox.raise_limits()
        env = sync_env(sandbox, home, dagster_home, settings_file)
        runs = []
        if reuse:
            first = json.loads(saved_first.read_text())
            log(f"{n:,}: reusing the state after the first sync saved {first['saved_at']}")
            shutil.copytree(state.saved / "home", home)
            (home / "sites" / SITE / "zoho_token.json").unlink(missing_ok=True)  # minted by another sandbox
            figures["restore"] = restore_site(sandbox, state.saved / "home" / "sites" / SITE / "cbzoho.duckdb")
            log(f"{n:,}: sandbox restored in {figures['restore']['seconds']} s: {figures['restore']['loaded']}")
            if state.plan_copy:
                shutil.copy(state.saved / "home" / "sites" / SITE / "cbzoho.duckdb", state.plan_copy)
            first_row = first["row"]
            first_row["reused_from"] = first["saved_at"]
            runs.append(first_row)
            figures["dataset"] = first["dataset"]
        else:
            figures["dataset"] = load_clean_site(sandbox, n)
            log(f"{n:,}: loaded in {figures['dataset']['seconds']} s {figures['dataset']['counts']}; "
                f"sandbox RSS {sandbox.rss_mib()} MiB")
        for kind in SYNC_KINDS:
            if kind == "first" and reuse:
                continue
            if kind == "no-change" and settle and not reuse:
                log(f"{n:,}: waiting {settle:g} s for the first sync's writes to pass the Zoho cursor's margin")
                time.sleep(settle)
            if kind == "1%-changed":
                figures["change"] = change_one_percent(sandbox, n)
                log(f"{n:,}: changed {figures['change']['changed']} customers' phone in "
                    f"{figures['change']['seconds']} s")
            log(f"{n:,}: {kind} sync ...")
            run = run_sync(kind, env, state.root, sandbox)
            steps, metadata = dagster_steps(dagster_home, run["run_id"]) if run["run_id"] else ([], {})
            run["steps"] = step_figures(run, steps)
            run["per_module"] = per_module(run["steps"], metadata)
            run.update(summarise_calls(run["calls"]))
            run["sandbox_rss_mib"] = sandbox.rss_mib()
            change = changes_for(kind, n, len(changed_customers(n)))
            run["kind"], run["changed"] = kind, change
            run["floor"] = floor_for(kind, change)
            run["naive_calls"] = naive_for(n, change)
            run["our_calls"] = run["chargebee_calls"] + run["zoho_reads"] + run["zoho_writes"] + run["token_calls"]
            run["naive_ratio"] = round(run["naive_calls"] / run["our_calls"], 1) if run["our_calls"] else None
            for private in ("_polls", "_samples"):
                run.pop(private)
            log(f"{n:,}: {kind}: {run['wall_s']} s wall, {run['cpu_s']} s CPU, {run['peak_rss_mib']} MiB, "
                f"CB {run['chargebee_calls']}, Zoho {run['zoho_reads']} reads / {run['zoho_writes']} writes, "
                f"{run['credits']} credits; counts {run['counts']}")
            runs.append(run)
            if kind == "first" and state.plan_copy:
                shutil.copy(home / "sites" / SITE / "cbzoho.duckdb", state.plan_copy)
            if kind == "first" and state.saved is not None:
                shutil.rmtree(state.saved, ignore_errors=True)
                state.saved.mkdir(parents=True)
                shutil.copytree(home, state.saved / "home")
                saved_first.write_text(json.dumps({"saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                                   "row": run, "dataset": figures["dataset"]}))
        figures["sandbox_rss_mib"] = sandbox.rss_mib()
    finally:
        sandbox.stop()
    figures["runs"] = runs
    figures["warehouse"] = str(home / "sites" / SITE / "cbzoho.duckdb")
    return figures


# ============================================================================================== issue 9
STANDARD_CONCURRENCY = 10  # calls in flight a Standard edition org allows (reference §20); also its sub-concurrency
BUDGET_SHARE = 0.4  # the budget scenario's budget, as a share of what the unbudgeted first sync spent
VOLATILE = {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By", "Owner"}


def zoho_state(sandbox: Sandbox) -> dict[str, Counter]:
    """Zoho's records as comparable values: ids, stamps and owner left out, lookups by the name they show."""
    state: dict[str, Counter] = {}
    for module in MODULES:
        rows: Counter = Counter()
        for record in sandbox.call("GET", f"zoho/{ORG}/records/{module}")["data"]:
            rows[tuple(sorted(
                (k, json.dumps((v.get("name") or v.get("id")) if isinstance(v, dict) else v, sort_keys=True,
                               default=str))
                for k, v in record.items() if k not in VOLATILE and v not in (None, "", [], {})))] += 1
        state[module] = rows
    return state


def state_diff(got: dict[str, Counter], want: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Per module: records held more often than wanted, wanted but missing, and held but not wanted."""
    return {m: {"duplicates": sum(got[m][k] - want[m][k] for k in want[m] if got[m][k] > want[m][k]),
                "missing": sum(want[m][k] - got[m][k] for k in want[m] if got[m][k] < want[m][k]),
                "extra": sum(n for k, n in got[m].items() if k not in want[m])} for m in MODULES}


def fresh_site(root: Path, zoho: dict[str, Any]) -> tuple[Path, Path, Path]:
    """A new CBZOHO_HOME, DAGSTER_HOME and settings file (the benchmark's site with these zoho settings)."""
    shutil.rmtree(root, ignore_errors=True)
    home, dagster_home = root / "home", root / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    settings = json.loads(json.dumps(SETTINGS))
    settings["sites"][SITE]["zoho"].update(zoho)
    settings_file = root / "cbzoho.yaml"
    settings_file.write_text(json.dumps(settings))
    return home, dagster_home, settings_file


def measured_run(label: str, env: dict[str, str], root: Path, sandbox: Sandbox, dagster_home: Path) -> dict[str, Any]:
    run = run_sync(label, env, root, sandbox)
    stats = sandbox.call("GET", "stats")["zoho"][ORG]  # statistics were reset when the run started
    steps, metadata = dagster_steps(dagster_home, run["run_id"]) if run["run_id"] else ([], {})
    run["steps"] = step_figures(run, steps)
    run["per_module"] = per_module(run["steps"], metadata)
    run.update(summarise_calls(run["calls"]))
    run["max_in_flight"] = stats["max_in_flight"]
    for private in ("_polls", "_samples"):
        run.pop(private)
    return run


def measure_latency(n: int, latency_ms: float, concurrency: int, root: Path) -> dict[str, Any]:
    """A first sync of the clean site with every Chargebee and Zoho call `latency_ms` late, against a
    Standard org (10 calls at once) and a site allowed `concurrency` calls in flight, next to its floor."""
    home, dagster_home, settings_file = fresh_site(root, {"max_concurrency": concurrency})
    sandbox = Sandbox(root)
    try:
        sandbox.raise_limits()
        sandbox.call("POST", f"zoho/{ORG}/settings", {"concurrency_limit": STANDARD_CONCURRENCY,
                                                      "sub_concurrency_limit": STANDARD_CONCURRENCY})
        dataset = load_clean_site(sandbox, n)
        for api in ("chargebee", "zoho"):
            sandbox.call("POST", "faults", {"api": api, "latency_ms": latency_ms})
        log(f"{n:,} at {latency_ms:g} ms per call: first sync ...")
        run = measured_run("first-latency", sync_env(sandbox, home, dagster_home, settings_file), root, sandbox,
                           dagster_home)
    finally:
        sandbox.stop()
    change = changes_for("first", n, 0)
    floor = floor_for("first", change)
    allowed = min(concurrency, STANDARD_CONCURRENCY)
    seconds = latency_ms / 1000
    floor_s = (floor["chargebee"] + (floor["zoho_reads"] + floor["zoho_writes"]) / allowed) * seconds
    push_s = round(sum(s["wall_s"] for s in run["steps"] if s["step"].startswith("synced_")), 1)
    run.update(kind="first", changed=change, floor=floor, customers=n, latency_ms=latency_ms, concurrency=allowed,
               dataset=dataset, floor_s=round(floor_s, 1), ratio=round(run["wall_s"] / floor_s, 2),
               push_s=push_s, push_floor_s=round(floor["zoho_writes"] / allowed * seconds, 1))
    log(f"{n:,} at {latency_ms:g} ms: {run['wall_s']} s against a floor of {run['floor_s']} s ({run['ratio']}x); "
        f"push {push_s} s (floor {run['push_floor_s']} s); {run['max_in_flight']} calls in flight at most")
    return run


def age_ledger(warehouse: Path, hours: int = 25) -> None:
    """A day passes for the site's credit ledger."""
    import duckdb

    con = duckdb.connect(str(warehouse))
    try:
        con.execute(f"UPDATE credit_ledger SET spent_at = spent_at - INTERVAL {int(hours)} HOUR")
    finally:
        con.close()


def measure_budget(n: int, budget: int, root: Path, max_runs: int = 30) -> dict[str, Any]:
    """An unbudgeted first sync of the clean site, then the same site from scratch with a daily credit budget
    smaller than that sync: one run after another, a day passing between them (the site's ledger moved back
    25 hours, the sandbox's credit window zeroed with its statistics), until a run is not stopped by the
    budget; then Zoho's records against the unbudgeted sync's."""
    out: dict[str, Any] = {"customers": n}
    home, dagster_home, settings_file = fresh_site(root / "unbudgeted", {})
    sandbox = Sandbox(root / "unbudgeted")
    try:
        sandbox.raise_limits()
        out["base"] = base = sandbox.now() - 40 * 86400
        load_clean_site(sandbox, n, base)
        log(f"budget scenario, {n:,}: the unbudgeted first sync ...")
        reference = measured_run("unbudgeted", sync_env(sandbox, home, dagster_home, settings_file),
                                 root / "unbudgeted", sandbox, dagster_home)
        want = zoho_state(sandbox)
    finally:
        sandbox.stop()
    out["budget"] = budget = budget or max(1, round(reference["credits"] * BUDGET_SHARE))
    out["unbudgeted"] = {"wall_s": reference["wall_s"], "credits": reference["credits"],
                         "open_errors": reference["open_errors"], "zoho_writes": reference["zoho_writes"]}
    home, dagster_home, settings_file = fresh_site(root / "budgeted", {"daily_credit_budget": budget})
    sandbox = Sandbox(root / "budgeted")
    runs = []
    try:
        sandbox.raise_limits()
        load_clean_site(sandbox, n, base)
        env = sync_env(sandbox, home, dagster_home, settings_file)
        for i in range(1, max_runs + 1):
            run = measured_run(f"budget-{i}", env, root / "budgeted", sandbox, dagster_home)
            counts = run["counts"]
            row = {"run": i, "wall_s": run["wall_s"], "credits": run["credits"], "exit_code": run["exit_code"],
                   "failure": run["failure"], "open_errors": run["open_errors"], "zoho_writes": run["zoho_writes"],
                   "writes_per_module": {m: run["per_module"][m]["writes"] for m in MODULES},
                   "stopped": any(bool(c.get("budget_stopped")) for c in counts.values() if isinstance(c, dict)),
                   "deferred": sum(int(c.get("deferred") or 0) for c in counts.values() if isinstance(c, dict)),
                   "created": sum(int(c.get("created") or 0) for c in counts.values() if isinstance(c, dict))}
            runs.append(row)
            log(f"budget scenario, run {i}: {row['credits']} credits of {budget}, {row['created']} created, "
                f"{row['deferred']} left for the next run")
            if row["exit_code"] not in (0, 1) or not row["stopped"]:
                break
            age_ledger(home / "sites" / SITE / "cbzoho.duckdb")
        out["diff"] = state_diff(zoho_state(sandbox), want)
    finally:
        sandbox.stop()
    out["runs"] = runs
    out["identical"] = all(v == 0 for d in out["diff"].values() for v in d.values())
    return out


# ============================================================================================== report
def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(sizes: list[dict[str, Any]], plans: list[dict[str, Any]]) -> list[str]:
    header = ("customers", "sync", "wall s", "CPU s", "peak RSS MiB", "Chargebee calls (cust/subs)",
              "Zoho reads (meta)", "Zoho writes (A/C/D)", "credits", "floor CB/reads/writes", "ours total",
              "naive calls", "naive/ours")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size in sizes:
        for r in size["runs"]:
            pm = r["per_module"]
            sync = r["kind"] + (f" (saved {r['reused_from'][:10]})" if r.get("reused_from") else "")
            if r.get("failure"):
                sync += f" **FAILED**: {r['failure']}"
            lines.append("| " + " | ".join([
                fmt(size["customers"]), sync, fmt(r["wall_s"]), fmt(r["cpu_s"]), fmt(r["peak_rss_mib"]),
                f"{fmt(r['chargebee_calls'])} ({r['chargebee_pages']['customers']:,}/"
                f"{r['chargebee_pages']['subscriptions']:,})",
                f"{fmt(r['zoho_reads'])} ({r['zoho_metadata_reads']})",
                f"{fmt(r['zoho_writes'])} ({'/'.join(fmt(pm[m]['writes']) for m in MODULES)})",
                fmt(r["credits"]),
                f"{r['floor']['chargebee']:,}/{r['floor']['zoho_reads']}/{r['floor']['zoho_writes']:,}",
                fmt(r["our_calls"]), fmt(r["naive_calls"]), fmt(r["naive_ratio"])]) + " |")
    for p in plans:
        inputs = p["inputs"]
        what = (f"{inputs['customers']:,} customers + {inputs['subscriptions']:,} subs vs "
                f"{inputs['Contacts']:,} contacts / {inputs['Accounts']:,} accounts / {inputs['Deals']:,} deals")
        parts = ", ".join(f"{k} {fmt(v)}" for k, v in p["sql_breakdown_s"].items() if v >= 0.05)
        lines.append(f"| {what} | plan, SQL: plan_site ({p['source']}) | {fmt(p['sql_s'])} ({parts}) | - | "
                     f"{fmt(p['sql_peak_rss_mib'])} | | | | | | | | |")
        lines.append(f"| | plan, pandas (load {fmt(p['pandas_load_s'])} + diff {fmt(p['pandas_diff_s'])}) | "
                     f"{fmt(p['pandas_s'])} | - | {fmt(p['pandas_peak_rss_mib'])} | | | | | | | | "
                     f"pandas/SQL {fmt(p['ratio'])}x (diff only {fmt(p['ratio_diff_only'])}x); same counts: "
                     f"{'yes' if p['agree'] else 'NO'} |")
    return lines


def step_lines(sizes: list[dict[str, Any]]) -> list[str]:
    lines = ["Per step (wall s / peak RSS MiB; peak RSS per step sampled from /proc every 0.1 s, exact where the "
             "process's high-water mark rose in the step):", ""]
    for size in sizes:
        for r in size["runs"]:
            parts = [f"{s['step']} {fmt(s['wall_s'])}/{fmt(s['peak_rss_mib'])}" for s in r.get("steps", [])]
            saved = f" (saved {r['reused_from'][:10]})" if r.get("reused_from") else ""
            lines.append(f"- {size['customers']:,} {r['kind']}{saved}: " + ", ".join(parts))
    return lines


def extraction_from_results() -> dict[str, Any] | None:
    """bench/extract_bench.py's table in bench/RESULTS.md, if there: {customers: (wall s, peak RSS MiB)}."""
    path = BENCH / "RESULTS.md"
    if not path.exists():
        return None
    rows = {}
    in_section = False
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            in_section = line.strip() == "## Extraction"
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if in_section and len(cells) >= 6 and cells[0].replace(",", "").isdigit():
            with contextlib.suppress(ValueError):
                rows[int(cells[0].replace(",", ""))] = {"wall_s": float(cells[3].split()[0]),
                                                        "cpu_s": float(cells[4].split()[0]),
                                                        "peak_rss_mib": float(cells[5].split()[0])}
    return rows or None


def targets(sizes: list[dict[str, Any]], plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, value: str) -> None:
        out.append({"target": name, "met": met, "value": value})

    by_n = {s["customers"]: {r["kind"]: r for r in s["runs"]} for s in sizes}
    at_1m = [p for p in plans if p["inputs"]["customers"] >= 1_000_000]
    for plan in at_1m:  # the real site after its first sync and / or the synthetic warehouse
        where = plan["source"]
        add(f"plan 1M+1M vs 1M contacts/accounts/deals ({where}): <= 5 s", plan["sql_s"] <= 5,
            f"{plan['sql_s']} s for plan_site (" + ", ".join(f"{k} {v} s" for k, v in plan["sql_breakdown_s"].items()
                                                     if v >= 0.05) + ")")
        add(f"plan 1M ({where}): peak RSS <= 1 GB", plan["sql_peak_rss_mib"] <= TARGET_RSS_MIB,
            f"{plan['sql_peak_rss_mib']} MiB")
        add(f"plan 1M ({where}): >= 5x faster than pandas", plan["ratio"] >= 5,
            f"{plan['ratio']}x (pandas {plan['pandas_s']} s vs plan_site {plan['sql_s']} s; pandas diff alone vs "
            f"plan_site {plan['ratio_diff_only']}x; pandas diff vs run_plan alone "
            f"{round(plan['pandas_diff_s'] / plan['sql_run_plan_s'], 1) if plan['sql_run_plan_s'] else '-'}x)")
    if not at_1m:
        add("plan at 1M", None, "run with --plan-size 1000000")
    big, small = by_n.get(1_000_000), by_n.get(10_000)
    if big and small:
        nc, nc10 = big["no-change"], small["no-change"]
        add("no-change 1M: wall <= 1.5x no-change 10k", nc["wall_s"] <= 1.5 * nc10["wall_s"],
            f"{nc['wall_s']} s vs 1.5 x {nc10['wall_s']} s = {1.5 * nc10['wall_s']:.1f} s")
    elif big:
        add("no-change 1M: wall <= 1.5x no-change 10k", None, "10k not run in this run")
    if big:
        nc = big["no-change"]
        add("no-change 1M: peak RSS <= 1 GB", nc["peak_rss_mib"] <= TARGET_RSS_MIB, f"{nc['peak_rss_mib']} MiB")
        add("no-change 1M: 0 Zoho writes", nc["zoho_writes"] == 0, str(nc["zoho_writes"]))
        worst = max(nc["per_module"].values(), key=lambda m: m["reads"])["reads"]
        add("no-change 1M: <= 2 Zoho reads per module", worst <= 2,
            ", ".join(f"{m} {nc['per_module'][m]['reads']}" for m in MODULES)
            + f" (+ {nc['zoho_metadata_reads']} metadata, {nc['zoho_reads']} reads in all)")
        pages = nc["chargebee_pages"]
        add("no-change 1M: <= 1 Chargebee page per object", max(pages.values()) <= 1,
            f"customers {pages['customers']}, subscriptions {pages['subscriptions']}")
    else:
        add("no-change sync at 1M", None, "1M not run")
    for n in (100_000, 1_000_000):
        run = by_n.get(n, {}).get("1%-changed")
        if not run:
            add(f"1%-changed at {n:,}", None, "not run")
            continue
        limits = {m: math.ceil(run["changed"][m] / 100) + 1 for m in MODULES}
        ok = all(run["per_module"][m]["writes"] <= limits[m] for m in MODULES)
        add(f"1%-changed {n:,}: Zoho writes <= ceil(changed/100)+1 per module", ok,
            ", ".join(f"{m} {run['per_module'][m]['writes']} (<= {limits[m]})" for m in MODULES))
        add(f"1%-changed {n:,}: >= 100x fewer calls than naive", (run["naive_ratio"] or 0) >= 100,
            f"{run['naive_ratio']}x ({run['our_calls']:,} vs {run['naive_calls']:,})")
    extraction = extraction_from_results()
    if extraction and 1_000_000 in extraction:
        peak = extraction[1_000_000]["peak_rss_mib"]
        add("extraction 1M: peak RSS <= 1 GB (bench/RESULTS.md, extract_bench.py)", peak <= TARGET_RSS_MIB,
            f"{peak} MiB")
        walls = [extraction[k]["wall_s"] for k in sorted(extraction)]
        ratios = [round(b / a, 1) for a, b in zip(walls, walls[1:], strict=False)]
        add("extraction: time linear in N (bench/RESULTS.md)", all(r <= 10.5 for r in ratios),
            f"wall ratio per 10x N: {ratios}")
    # The same, measured here: the first syncs' chargebee_* steps (a first load of N customers and N
    # subscriptions), their wall summed and the process's peak RSS while they ran.
    measured = []
    for size in sizes:
        run = size["runs"][0]
        steps = [st for st in run.get("steps", []) if st["step"].startswith("chargebee_")]
        if run["kind"] == "first" and steps:
            measured.append((size["customers"], round(sum(st["wall_s"] for st in steps), 1),
                             max(st["peak_rss_mib"] or 0 for st in steps), bool(run.get("reused_from"))))
    if measured:
        add("extraction in the first syncs of this table: peak RSS <= 1 GB (chargebee_* steps; wall s, process "
            "peak RSS MiB)", all(p <= TARGET_RSS_MIB for _, _, p, _ in measured),
            "; ".join(f"{n:,}{' (saved)' if saved else ''}: {w} s, {p} MiB" for n, w, p, saved in measured))
    if len(measured) > 1:
        steps_up = [(b[0] / a[0], b[1] / a[1]) for a, b in zip(measured, measured[1:], strict=False)]
        saved = [f"{n:,}" for n, _, _, was_saved in measured if was_saved]
        add("extraction in the first syncs of this table: time linear in N", all(t <= 1.05 * k for k, t in steps_up),
            ", ".join(f"x{t:.1f} wall for x{k:g} N" for k, t in steps_up)
            + (f" (the first sync of {', '.join(saved)} is a saved one, run at another time and load)" if saved
               else ""))
    return out


def issue9_targets(sizes: list[dict[str, Any]], latency: list[dict[str, Any]],
                   budget: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, met: bool | None, value: str) -> None:
        out.append({"target": name, "met": met, "value": value})

    for r in latency:
        add(f"first sync {r['customers']:,} at {r['latency_ms']:g} ms per call: <= 1.25 x floor",
            r["ratio"] <= 1.25, f"{r['wall_s']} s vs floor {r['floor_s']} s = {r['ratio']}x (push steps "
                                f"{r['push_s']} s vs {r['push_floor_s']} s; {r['max_in_flight']} calls in flight "
                                f"at most, {r['served_429']} answered 429)")
    if not any(r["customers"] >= 100_000 for r in latency):
        add("first sync 100,000 at 100 ms per call: <= 1.25 x floor", None, "not run")
    checked = [(f"{s['customers']:,} {r['kind']}", r) for s in sizes for r in s["runs"] if not r.get("failure")]
    checked += [(f"{r['customers']:,} first at {r['latency_ms']:g} ms", r) for r in latency]
    worst = []
    for label, r in checked:
        over = [f"{m} {r['per_module'][m]['writes']} > {math.ceil(r['changed'][m] / 100) + 1}" for m in MODULES
                if r["per_module"][m]["writes"] > math.ceil(r["changed"][m] / 100) + 1]
        worst += [f"{label}: {o}" for o in over]
    if checked:
        add("Zoho write calls <= ceil(changed/100) + 1 per module in every scenario", not worst,
            "; ".join(worst) if worst else f"{len(checked)} syncs checked, per module at most "
            + str(max(r["per_module"][m]["writes"] - math.ceil(r["changed"][m] / 100) for _, r in checked
                      for m in MODULES)) + " call over ceil(changed/100)")
    if budget:
        runs = budget["runs"]
        add(f"budgeted first sync ({budget['customers']:,}, budget {budget['budget']:,}): credits used per run <= "
            "the budget", all(r["credits"] <= budget["budget"] for r in runs),
            f"{[r['credits'] for r in runs]} over {len(runs)} runs")
        add("budgeted first sync: final Zoho state identical to the unbudgeted run", budget["identical"],
            "; ".join(f"{m} {d}" for m, d in budget["diff"].items()))
        clean = all(r["exit_code"] == 0 and r["open_errors"] == budget["unbudgeted"]["open_errors"] for r in runs)
        add("budgeted first sync: 0 errors from the budget", clean,
            f"exit codes {[r['exit_code'] for r in runs]}, open errors {[r['open_errors'] for r in runs]} (the "
            f"unbudgeted run: {budget['unbudgeted']['open_errors']})")
    else:
        add("budgeted first sync", None, "not run")
    return out


def site_lines(result: dict[str, Any]) -> list[str]:
    """How each size's site was built (or restored), so the table can be read without the JSON."""
    lines = []
    for size in result["sizes"]:
        n, ds = size["customers"], size["dataset"]
        if size["reused_first_sync"]:
            first = size["runs"][0]
            load = first.get("load_average_1m") or []
            restored = ", ".join(f"{v:,} {k}" for k, v in size["restore"]["loaded"].items())
            lines.append(f"- {n:,}: first sync not run here — its figures and state are those an earlier run of this "
                         f"command saved at {first['reused_from']} (`--reuse`; that first sync took "
                         f"{fmt(first['wall_s'])} s" + (f", 1-minute load average {min(load):g}–{max(load):g}"
                                                        if load else "") + "). A fresh sandbox was loaded from the "
                         f"saved warehouse (opened read-only: the raw Chargebee objects and the Zoho snapshot) in "
                         f"{size['restore']['seconds']} s ({restored}); the site's CBZOHO_HOME is a copy of the "
                         "saved one (its Zoho access token dropped: another sandbox minted it); sandbox RSS "
                         f"{fmt(size.get('sandbox_rss_mib'))} MiB after the syncs.")
        else:
            counts = ds["counts"]
            lines.append(f"- {n:,}: loaded in {ds['seconds']} s through `/_sandbox/load` ({counts['customers']:,} "
                         f"customers, {counts['subscriptions']:,} subscriptions); sandbox RSS "
                         f"{fmt(size.get('sandbox_rss_mib'))} MiB after the syncs.")
        change = size.get("change")
        if change:
            lines.append(f"  1 %-change: {change['changed']:,} customers given a new phone number through the "
                         f"Chargebee API in {change['seconds']} s. Whole size: {fmt(size.get('seconds'))} s.")
    return lines


def throughput_lines(runs: list[dict[str, Any]]) -> list[str]:
    if not runs:
        return []
    header = ("customers", "latency ms", "calls in flight (allowed / seen)", "wall s", "floor s", "wall / floor",
              "Chargebee pages", "Zoho reads (meta) / writes (A/C/D)", "push steps s (floor)", "429s", "credits")
    lines = ["## First sync at the APIs' latency (issue 9)", "",
             "A fresh sandbox with the clean site; every Chargebee and Zoho call answered `latency ms` late; the "
             f"Zoho org a Standard edition one ({STANDARD_CONCURRENCY} calls at once), the site's "
             "`zoho.max_concurrency` at the allowed concurrency. Floor = Chargebee pages in sequence x latency + "
             "Zoho calls of the floor (1 read per module, ceil(changed/100) writes per module) / allowed "
             "concurrency x latency.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in runs:
        pm = r["per_module"]
        lines.append("| " + " | ".join([
            fmt(r["customers"]), fmt(r["latency_ms"]), f"{r['concurrency']} / {r['max_in_flight']}",
            fmt(r["wall_s"]), fmt(r["floor_s"]), fmt(r["ratio"]),
            f"{r['chargebee_pages']['customers']:,} + {r['chargebee_pages']['subscriptions']:,}",
            f"{fmt(r['zoho_reads'])} ({r['zoho_metadata_reads']}) / {fmt(r['zoho_writes'])} "
            f"({'/'.join(fmt(pm[m]['writes']) for m in MODULES)})",
            f"{fmt(r['push_s'])} ({fmt(r['push_floor_s'])})", fmt(r["served_429"]), fmt(r["credits"])]) + " |")
    lines += ["", "Per step (wall s): " + "; ".join(
        f"{r['customers']:,}: " + ", ".join(f"{st['step']} {fmt(st['wall_s'])}" for st in r["steps"]) for r in runs),
        ""]
    return lines


def budget_lines(scenario: dict[str, Any] | None) -> list[str]:
    if not scenario:
        return []
    ref, budget = scenario["unbudgeted"], scenario["budget"]
    lines = ["## A daily credit budget smaller than the first sync (issue 9)", "",
             f"The clean site of {scenario['customers']:,} customers. Unbudgeted, its first sync spent "
             f"{ref['credits']:,} credits ({ref['zoho_writes']:,} Zoho writes, {fmt(ref['wall_s'])} s). The same site "
             f"from scratch with `zoho.daily_credit_budget: {budget:,}`, one run after another with a day passing "
             "in between (the site's ledger moved back 25 hours; the sandbox's credit window zeroed with its "
             "statistics), until a run was not stopped by the budget:", "",
             "| run | wall s | credits (sandbox) | created | left for the next run | stopped at the budget | "
             "exit | open errors | Zoho writes (A/C/D) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in scenario["runs"]:
        lines.append(f"| {r['run']} | {fmt(r['wall_s'])} | {fmt(r['credits'])} | {fmt(r['created'])} | "
                     f"{fmt(r['deferred'])} | {'yes' if r['stopped'] else 'no'} | {r['exit_code']} | "
                     f"{r['open_errors']} | {fmt(r['zoho_writes'])} "
                     f"({'/'.join(fmt(r['writes_per_module'][m]) for m in MODULES)}) |")
    diff = ", ".join(f"{m}: {d['duplicates']} duplicated, {d['missing']} missing, {d['extra']} extra"
                     for m, d in scenario["diff"].items())
    lines += ["", f"Zoho's records after the last run against the unbudgeted sync's: "
                  f"{'identical' if scenario['identical'] else 'DIFFERENT'} ({diff}).", ""]
    return lines


def report(result: dict[str, Any]) -> str:
    loads = [x for s in result["sizes"] for r in s["runs"] if not r.get("reused_from")
             for x in r.get("load_average_1m", [])]
    lines = [
        "# Scale benchmark (issues 8 and 9)", "",
        f"`{result['command']}` — {result['date']}; {result['machine']}; whole run {fmt(result['total_seconds'])} s"
        + (f"; 1-minute load average around the syncs run here {min(loads):g}–{max(loads):g}" if loads else "")
        + ".", "",
        "Each size: a fresh sandbox with a clean site (N customers with distinct emails, one active USD "
        f"subscription each, a company per {PER_COMPANY} customers; Zoho empty), then three headless "
        "`cbzoho sync --site acme-test` processes: **first**; **no-change** "
        + (f"({result['settle_s']:g} s later; nothing changed in between)" if result["settle_s"]
           else "(right after it; nothing changed in between)")
        + "; **1%-changed** (every 100th customer has a new phone number). Sandbox limits lifted (Chargebee "
        "10M requests/minute; Zoho 25 concurrent calls, 1e9 credits/day). The demo generator "
        "(`/_sandbox/generate`) is not used: its deliberate mess (deleted and cancelled records, bad and shared "
        "emails, contacts already in Zoho) would make what changes, and so the floor, depend on the data "
        "rather than on N.", "",
        *site_lines(result), "",
    ]
    lines += table(result["sizes"], result["plans"])
    baseline = fmt(result["plans"][0]["baseline_rss_mib"]) if result["plans"] else "-"
    lines += ["", "- " + NAIVE_FORMULA + ".", "- " + FLOOR_NOTE + ".",
              "- wall: the process from start to exit (imports included); CPU: its user + system time from "
              "`os.wait4` on that process; peak RSS: its own VmHWM, sampled every 0.1 s until it exits (its "
              "ru_maxrss would include this benchmark's own peak, carried into the child through fork + exec); "
              "Zoho reads include the metadata reads (in "
              "brackets); writes per module (Accounts/Contacts/Deals) are the write calls made while that module's "
              "push step ran (calls are attributed to steps by polling `/_sandbox/stats` every 50 ms); 'ours "
              "total' = Chargebee + Zoho calls + token calls.",
              "- plan rows: `inputs.plan_site` on a copy of the warehouse (full plan), timed by part; then, in the "
              "same process after its peak-RSS counter is reset (`/proc/self/clear_refs`), the same diff in "
              "pandas (load = DuckDB to DataFrames, diff = the merges and comparisons). Peak RSS includes the "
              f"interpreter and imports (about {baseline} MiB). 'same counts' compares the creates and updates "
              "per module of both.", ""]
    lines += step_lines(result["sizes"])
    lines += [""] + throughput_lines(result.get("latency", [])) + budget_lines(result.get("budget"))
    lines += ["## Targets", ""]
    for t in result["targets"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"- {t['target']}: **{mark}** — {t['value']}")
    return "\n".join(lines) + "\n"


# ============================================================================================== main
def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--plan-child":
        return plan_child(Path(sys.argv[2]), Path(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="customer counts, comma-separated")
    parser.add_argument("--reuse", help="keep / reuse the state right after each size's first sync in this folder")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--plan-size", type=int, default=1_000_000,
                        help="customers of the synthetic warehouse the plan is timed on (0: none)")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds between the first sync and the no-change sync (default 0: back to back; a "
                             "sync reads back its own writes before it ends, so the next one has nothing to catch "
                             "up on)")
    parser.add_argument("--workdir", help="working folder (default: a temporary one, removed at the end)")
    parser.add_argument("--latency-sizes", default="10000,100000",
                        help="customer counts of the first sync with every call late (issue 9); empty: none")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="how late every call is answered")
    parser.add_argument("--concurrency", type=int, default=STANDARD_CONCURRENCY,
                        help="the site's zoho.max_concurrency in the latency runs")
    parser.add_argument("--budget-size", type=int, default=10_000,
                        help="customers of the credit-budget scenario (issue 9); 0: none")
    parser.add_argument("--budget", type=int, default=0,
                        help=f"its daily credit budget (default {BUDGET_SHARE:.0%} of what its unbudgeted first "
                             "sync spends)")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    latency_sizes = [int(s.replace("_", "")) for s in args.latency_sizes.split(",") if s.strip()]
    command = "python bench/scale.py " + " ".join(sys.argv[1:])

    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cbzoho-scale-")))
        settings_file = workdir / "cbzoho.yaml"
        settings_file.write_text(json.dumps(SETTINGS))  # JSON is YAML
        results = []
        started = time.perf_counter()
        plan_copy = workdir / "plan-largest.duckdb"
        for n in sizes:
            saved = Path(args.reuse).resolve() / str(n) if args.reuse else None
            t0 = time.perf_counter()
            state = SizeState(n, workdir / str(n), saved, plan_copy=plan_copy if n == sizes[-1] else None)
            figures = measure_size(state, settings_file, args.settle)
            figures["seconds"] = round(time.perf_counter() - t0, 1)
            log(f"{n:,}: done in {figures['seconds']} s")
            results.append(figures)
        plans = []
        largest = results[-1] if results else None
        if largest:
            log(f"plan vs pandas on a copy of the {largest['customers']:,} warehouse after its first sync ...")
            plan = run_plan_child(plan_copy, workdir)
            plan["source"] = f"site of {largest['customers']:,} after its first sync"
            plans.append(plan)
            plan_copy.unlink()
            log(f"  SQL {plan['sql_s']} s / {plan['sql_peak_rss_mib']} MiB, pandas {plan['pandas_s']} s / "
                f"{plan['pandas_peak_rss_mib']} MiB")
            if args.plan_size:
                synthetic = workdir / "plan-synthetic.duckdb"
                log(f"building a synthetic warehouse of {args.plan_size:,} customers ...")
                built = build_synthetic_warehouse(synthetic, args.plan_size, Path(largest["warehouse"]))
                log(f"  built in {built['seconds']} s: {built['rows']}")
                plan = run_plan_child(synthetic, workdir)
                plan["source"] = "synthetic warehouse"
                plan["built"] = built
                plans.append(plan)
                synthetic.unlink()
                log(f"  SQL {plan['sql_s']} s / {plan['sql_peak_rss_mib']} MiB, pandas {plan['pandas_s']} s / "
                    f"{plan['pandas_peak_rss_mib']} MiB")
        latency = []
        for n in latency_sizes:
            latency.append(measure_latency(n, args.latency_ms, args.concurrency, workdir / f"latency-{n}"))
        budget = None
        if args.budget_size:
            budget = measure_budget(args.budget_size, args.budget, workdir / "budget")
        result = {
            "command": command, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} cores, "
                       f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
            "total_seconds": round(time.perf_counter() - started, 1),
            "naive_formula": NAIVE_FORMULA, "floor": FLOOR_NOTE, "settle_s": args.settle,
            "sizes": results, "plans": plans, "latency": latency, "budget": budget,
        }
        result["targets"] = targets(results, plans) + issue9_targets(results, latency, budget)
        text = report(result)
        print(text, end="")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
