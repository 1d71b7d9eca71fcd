"""The scale benchmark (`bench/scale.py`, issues 8 and 9) end to end on a tiny site, as part of the suite.

It runs in its own process with its own sandbox (the session's sandbox is left alone): 300 customers, the
three syncs through the real CLI, the plan against pandas on that site and on a small synthetic warehouse, a
first sync with every call late, and a first sync larger than a daily credit budget.
What must hold whatever the speed of the machine: the table and the JSON carry every column and every
target, the pandas diff agrees with the SQL plan, and the no-change sync writes nothing to Zoho.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

COLUMNS = ("customers", "sync", "wall s", "CPU s", "peak RSS MiB", "Chargebee calls (cust/subs)",
           "Zoho reads (meta)", "Zoho writes (A/C/D)", "credits", "floor CB/reads/writes", "ours total",
           "naive calls", "naive/ours")
RUN_KEYS = ("wall_s", "cpu_s", "peak_rss_mib", "chargebee_calls", "chargebee_pages", "zoho_reads", "zoho_writes",
            "credits", "floor", "naive_calls", "our_calls", "naive_ratio", "steps", "per_module")


@pytest.mark.timeout(240)
def test_scale_benchmark_on_300_customers(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "scale.py"), "--sizes", "300", "--plan-size", "2000",
         "--settle", "0", "--latency-sizes", "300", "--latency-ms", "20", "--budget-size", "300", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=230,
    )
    context = f"exit {done.returncode}\n{done.stdout}\n--- stderr (tail) ---\n{done.stderr[-3000:]}"
    assert done.returncode == 0, context

    header = next(line for line in done.stdout.splitlines() if line.startswith("| customers"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(COLUMNS), context
    for kind in ("first", "no-change", "1%-changed"):
        assert f"| 300 | {kind} |" in done.stdout, context
    assert "plan, SQL" in done.stdout and "plan, pandas" in done.stdout, context
    assert "## Targets" in done.stdout and "naive = " in done.stdout, context

    report = json.loads(out.read_text())
    runs = {r["kind"]: r for r in report["sizes"][0]["runs"]}
    assert sorted(runs) == sorted(["first", "no-change", "1%-changed"]), context
    for kind, run in runs.items():
        assert not run["failure"], f"{kind}: {run['failure']}\n{context}"
        missing = [k for k in RUN_KEYS if k not in run]
        assert not missing, f"{kind} lacks {missing}"
        assert {s["step"] for s in run["steps"]} >= {"chargebee_customers", "sync_plan", "synced_contacts"}
    assert runs["no-change"]["zoho_writes"] == 0, runs["no-change"]["zoho_by_endpoint"]
    assert runs["1%-changed"]["per_module"]["Contacts"]["writes"] >= 1
    assert runs["first"]["counts"]["Contacts"]["created"] == 300
    assert len(report["plans"]) == 2 and all(p["agree"] for p in report["plans"]), report["plans"]
    assert {t["target"].split(":")[0] for t in report["targets"]}, report["targets"]

    # issue 9: the first sync at the APIs' latency next to its floor, and the credit budget's runs
    assert "## First sync at the APIs' latency" in done.stdout and "## A daily credit budget" in done.stdout, context
    (latency,) = report["latency"]
    assert latency["floor_s"] > 0 and latency["max_in_flight"] >= 1 and latency["served_429"] == 0, latency
    budget = report["budget"]
    assert len(budget["runs"]) >= 2 and budget["runs"][0]["stopped"], budget["runs"]
    assert budget["identical"], budget["diff"]
    met = {t["target"]: t["met"] for t in report["targets"]}
    assert met["budgeted first sync: final Zoho state identical to the unbudgeted run"], report["targets"]
    assert met["Zoho write calls <= ceil(changed/100) + 1 per module in every scenario"], report["targets"]
