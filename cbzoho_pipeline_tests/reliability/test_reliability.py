"""The reliability command's short profile, as part of the suite.

`bench/reliability.py` runs in its own process with its own sandbox, so the session's sandbox (and the
tests that share it) are left alone. Every count of its table must be zero and every scenario must have
run; on failure the table and the anomalies it saw are the message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

COUNTS = ("duplicates", "missing", "extra", "wrong_errors", "bad_exits", "reader_failures", "failed_polls",
          "overlapped", "stuck", "secrets")
SCENARIOS = ("storm", "lost", "kill", "overlap", "status", "secrets")


@pytest.mark.timeout(900)
def test_short_reliability_profile_counts_nothing_wrong(tmp_path: Path) -> None:
    report_file = tmp_path / "reliability.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "reliability.py"), "--profile", "short", "--json",
         str(report_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=880,
    )
    context = f"exit {done.returncode}\n{done.stdout}\n--- stderr (tail) ---\n{done.stderr[-3000:]}"
    assert report_file.exists(), context
    report = json.loads(report_file.read_text())
    assert "error" not in report, context
    rows = {row["scenario"]: row for row in report["rows"]}

    assert sorted(rows) == sorted(SCENARIOS), context
    assert all(rows[name]["trials"] >= 1 for name in SCENARIOS), context
    nonzero = {name: {k: row[k] for k in COUNTS if row[k]} for name, row in rows.items() if any(row[k] for k in COUNTS)}
    assert not nonzero, f"{nonzero}\n{context}\nanomalies: {json.dumps(report['anomalies'], indent=1)[:4000]}"
    assert done.returncode == 0, context
