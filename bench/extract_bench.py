"""Benchmark: a first load of Chargebee customers and subscriptions into a fresh warehouse, at several sizes.

For each size N it starts a fresh sandbox, seeds N customers (about 1.1 subscriptions each) with the
sandbox's generator, then runs the real extraction - `extract()` with a real `ChargebeeClient` over HTTP,
both streams, into a new DuckDB file - in a child process of its own, so that process's peak RSS is the
extractor's alone (the sandbox, which holds the whole site in memory, is another process). Prints one table
and the same figures as JSON: wall and CPU seconds of the extraction, the child's peak RSS (VmHWM), pages,
records per second, and the wall time ratio to the previous size (linear in N means about 10 for a 10x
step). Usage:

    .venv/bin/python bench/extract_bench.py --sizes 10000,100000,1000000 [--seed 42] [--json out.json]

The Chargebee site's request limit is lifted (`--chargebee-rpm`) so the figures measure us, not the
limiter; a million customers take several minutes and about 10 GB of memory in the sandbox.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
TARGET_RSS_MIB = 1024


def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(info_file: Path, warehouse: Path) -> int:
    """Extract both streams into `warehouse`; print one JSON line of figures measured in this process."""
    sys.path.insert(0, str(REPO))
    from cbzoho_pipeline.chargebee.client import ChargebeeClient
    from cbzoho_pipeline.chargebee.extract import extract, rows_set_aside
    from cbzoho_pipeline.warehouse.db import open_warehouse

    entry = json.loads(info_file.read_text())["chargebee"]["acme-test"]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    streams = {}
    with ChargebeeClient(entry["base_url"], entry["api_key"]) as client, open_warehouse(warehouse) as wh:
        for stream in ("customers", "subscriptions"):
            t0 = time.perf_counter()
            result = extract(wh, client, stream)
            if not result.ok:
                print(json.dumps({"error": f"{stream}: contract broken: {result.contract_problems[:3]}"}))
                return 1
            streams[stream] = {"seconds": round(time.perf_counter() - t0, 2), "pages": result.pages,
                               "read": result.fetched, "new": result.new, "checked": result.checked,
                               "set_aside": len(rows_set_aside(wh, stream)),
                               "stored": wh.count(f"cb_{stream}")}
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "wall_s": round(wall, 2),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
        "peak_rss_mib": round(_status_kib("self", "VmHWM") / 1024, 1),
        "streams": streams,
    }))
    return 0


def run_size(customers: int, seed: int, rpm: int, tmp: Path) -> dict:
    info_file = tmp / f"sandbox-{customers}.json"
    sandbox = subprocess.Popen([sys.executable, "-m", "cbzoho_pipeline.cli", "sandbox", "--port", "0",
                                "--info-file", str(info_file), "--quiet"], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not info_file.exists():
            if sandbox.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.05)
        control = json.loads(info_file.read_text())["control_url"]
        requests.post(f"{control}/chargebee/acme-test/settings", json={"rate_limit_per_minute": rpm},
                      timeout=30).raise_for_status()
        t0 = time.perf_counter()
        requests.post(f"{control}/generate", json={"customers": customers, "seed": seed}, timeout=3600
                      ).raise_for_status()
        seeded = time.perf_counter() - t0
        sandbox_rss = _status_kib(sandbox.pid, "VmRSS")
        warehouse = tmp / f"wh-{customers}.duckdb"
        done = subprocess.run([sys.executable, __file__, "--child", str(info_file), str(warehouse)],
                              cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"extraction of {customers} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(30)
        except subprocess.TimeoutExpired:
            sandbox.kill()
            sandbox.wait()
    records = sum(s["read"] for s in figures["streams"].values())
    return {"customers": customers, "seed_s": round(seeded, 1), "sandbox_rss_mib": round(sandbox_rss / 1024),
            **figures, "pages": sum(s["pages"] for s in figures["streams"].values()), "records": records,
            "records_per_s": round(records / figures["wall_s"]) if figures["wall_s"] else None}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return child(Path(sys.argv[2]), Path(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="customer counts, comma-separated")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chargebee-rpm", type=int, default=1_000_000,
                        help="the sandbox site's request limit per minute (default: effectively none)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    rows = []
    with tempfile.TemporaryDirectory(prefix="cbzoho-extract-bench-") as tmp:
        for customers in sizes:
            print(f"extracting {customers:,} customers ...", file=sys.stderr, flush=True)
            row = run_size(customers, args.seed, args.chargebee_rpm, Path(tmp))
            if rows:
                previous = rows[-1]
                step = customers / previous["customers"]
                row["wall_ratio"] = round(row["wall_s"] / previous["wall_s"], 2)
                row["size_ratio"] = round(step, 2)
            rows.append(row)
            print(f"  {row['wall_s']} s wall, {row['cpu_s']} s CPU, peak RSS {row['peak_rss_mib']} MiB",
                  file=sys.stderr, flush=True)

    header = ("customers", "records", "pages", "wall s", "CPU s", "peak RSS MiB", "records/s", "wall ratio",
              "sandbox RSS MiB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        ratio = f"{r['wall_ratio']} (x{r['size_ratio']:g} N)" if "wall_ratio" in r else "-"
        print(f"| {r['customers']:,} | {r['records']:,} | {r['pages']:,} | {r['wall_s']} | {r['cpu_s']} | "
              f"{r['peak_rss_mib']} | {r['records_per_s']:,} | {ratio} | {r['sandbox_rss_mib']:,} |")
    largest = rows[-1]
    verdict = {
        "peak_rss_le_1gb": all(r["peak_rss_mib"] <= TARGET_RSS_MIB for r in rows),
        "largest_peak_rss_mib": largest["peak_rss_mib"],
        "wall_ratios": [r.get("wall_ratio") for r in rows[1:]],
    }
    print(f"\ntarget peak RSS <= {TARGET_RSS_MIB} MiB at every size: "
          f"{'met' if verdict['peak_rss_le_1gb'] else 'NOT met'} (largest: {largest['peak_rss_mib']} MiB)")
    print(f"target time linear in N: wall ratios per step {verdict['wall_ratios']} (linear: the size ratio)")
    out = {"runs": rows, "targets": verdict}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
