"""Benchmark: a first sync and a no-change second sync of a generated dataset, against the sandbox.

Prints, per sync: wall time, API calls per endpoint (from the sandbox's own counters), Zoho credits spent,
token calls, and the peak memory of the sync process. Each sync runs as its own `cbzoho sync` process so
its peak RSS is its own. It needs the sandbox (the `sandbox` extra, part of `dev`), which it starts with
`cbzoho sandbox`. Usage:

    .venv/bin/python bench/sync_bench.py --customers 500 [--seed 42] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to wait between syncs; over 60 shows the hourly steady state, where change "
                             "cursors have passed the previous sync's own writes (default: 0)")
    parser.add_argument("--multi-currency", action="store_true",
                        help="turn on multi-currency in the Zoho org, as `cbzoho demo` does")
    parser.add_argument("--chargebee-rpm", type=int, default=1000,
                        help="the Chargebee site's request limit per minute (a test site has 150; default: 1000, "
                             "a Performance live site)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cbzoho-bench-") as tmp:
        tmp_path = Path(tmp)
        info_file = tmp_path / "sandbox.json"
        sandbox = subprocess.Popen([sys.executable, "-m", "cbzoho_pipeline.cli", "sandbox", "--port", "0",
                                    "--info-file", str(info_file), "--quiet"], cwd=REPO)
        try:
            while not info_file.exists():
                if sandbox.poll() is not None:  # e.g. the sandbox extra is not installed (it said so)
                    print(f"the sandbox exited with {sandbox.returncode} before it was ready", file=sys.stderr)
                    return 2
                time.sleep(0.05)
            info = json.loads(info_file.read_text())
            control = info["control_url"]
            requests.post(f"{control}/chargebee/acme-test/settings",
                          json={"rate_limit_per_minute": args.chargebee_rpm}, timeout=30)
            if args.multi_currency:
                requests.post(f"{control}/zoho/sandbox/settings", json={"multi_currency": True}, timeout=30)
            started = time.perf_counter()
            seeded = requests.post(f"{control}/generate", json={"customers": args.customers, "seed": args.seed},
                                   timeout=600).json()
            print(f"seeded {args.customers} customers in {time.perf_counter() - started:.1f} s: "
                  f"{seeded['loaded']}")
            env = {**os.environ, "CBZOHO_SANDBOX_INFO": str(info_file), "CBZOHO_HOME": str(tmp_path / "home")}
            env.pop("CBZOHO_SETTINGS", None)
            env.pop("DAGSTER_HOME", None)
            figures = {}
            for number, label in enumerate(("first sync", "second sync (no change)", "third sync (no change)")):
                if number and args.pause:
                    time.sleep(args.pause)
                requests.post(f"{control}/stats/reset", timeout=30)
                before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                t0 = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "cbzoho_pipeline.cli", "sync", "--site", "acme-test",
                                       "--json", "--log-level", "WARNING"], env=env, cwd=tmp_path,
                                      capture_output=True, text=True)
                elapsed = time.perf_counter() - t0
                peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                if done.returncode == 2:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 2
                stats = requests.get(f"{control}/stats", timeout=30).json()
                result = json.loads(done.stdout)
                zoho = stats["zoho"]["sandbox"]
                figures[label] = {
                    "seconds": round(elapsed, 2),
                    "exit_code": done.returncode,
                    "peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
                    "chargebee_calls": stats["chargebee"]["acme-test"]["calls"],
                    "zoho_calls": zoho["calls"],
                    "zoho_calls_total": zoho["calls_total"],
                    "zoho_credits": zoho["credits_used"],
                    "token_calls": stats["zoho_accounts"]["calls_total"],
                    "counts": result["counts"],
                    "open_errors": len(result["errors"]),
                }
                f = figures[label]
                print(f"\n== {label}: {f['seconds']} s, peak RSS {f['peak_rss_mib']} MiB (max so far over syncs), "
                      f"exit {f['exit_code']}")
                print(f"   Chargebee calls: {f['chargebee_calls']}")
                print(f"   Zoho calls ({f['zoho_calls_total']}, {f['zoho_credits']} credits): {f['zoho_calls']}")
                print(f"   token calls: {f['token_calls']}; open sync errors: {f['open_errors']}")
                for module, c in f["counts"].items():
                    print(f"   {module:<9} " + ", ".join(f"{k} {c.get(k, 0)}" for k in
                                                     ("created", "updated", "unchanged", "skipped", "errors")))
            if args.json:
                Path(args.json).write_text(json.dumps(figures, indent=2))
        finally:
            sandbox.terminate()
            sandbox.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
