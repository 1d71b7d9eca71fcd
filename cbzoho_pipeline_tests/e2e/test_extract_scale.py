"""Extraction through the real Chargebee client and the sandbox: a killed run, and a run with nothing new.

Why these tests exist: the promise "a crash mid-stream loses nothing and duplicates nothing" is about a
process that dies between two pages, with its DuckDB transaction open - not about an exception that
unwinds politely. Here the extracting process kills itself after a few pages of a real HTTP stream; the
next run must find the table and the cursor as the last finished run left them and end complete. Sizes
stay small (a few hundred customers); `bench/extract_bench.py` covers a million.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import requests

from cbzoho_pipeline.chargebee.client import ChargebeeClient
from cbzoho_pipeline.chargebee.extract import extract
from cbzoho_pipeline.warehouse.db import open_warehouse

# Runs in a child process: extract `stream` into `path`, and die (no cleanup, no rollback) after `pages`.
DYING_EXTRACT = textwrap.dedent("""
    import os, sys
    from cbzoho_pipeline.chargebee.client import ChargebeeClient
    from cbzoho_pipeline.chargebee.extract import extract
    from cbzoho_pipeline.warehouse.db import open_warehouse

    base_url, api_key, path, stream, pages = sys.argv[1:6]
    real = ChargebeeClient.iter_pages

    def dying(self, *args, **kwargs):
        for number, page in enumerate(real(self, *args, **kwargs)):
            if number == int(pages):
                os._exit(9)
            yield page

    ChargebeeClient.iter_pages = dying
    with ChargebeeClient(base_url, api_key) as client, open_warehouse(__import__("pathlib").Path(path)) as wh:
        extract(wh, client, stream)
    sys.exit(0)
""")


def _die_after(sandbox, path, stream: str, pages: int) -> None:
    base_url, api_key = sandbox.chargebee("acme-test")
    done = subprocess.run([sys.executable, "-c", DYING_EXTRACT, base_url, api_key, str(path), stream, str(pages)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr[-2000:]


def _sandbox_ids(sandbox, resource: str) -> set[str]:
    base_url, api_key = sandbox.chargebee("acme-test")
    with ChargebeeClient(base_url, api_key) as client:
        lister = client.list_customers if resource == "customers" else client.list_subscriptions
        return {o["id"] for page in lister(include_deleted=True) for o in page}


def _extract(sandbox, path, stream: str):
    base_url, api_key = sandbox.chargebee("acme-test")
    with ChargebeeClient(base_url, api_key) as client, open_warehouse(path) as wh:
        result = extract(wh, client, stream)
        state = {"ids": [r[0] for r in wh.con.execute(f"SELECT id FROM cb_{stream}").fetchall()],
                 "cursor": wh.get_cursor(f"chargebee.{stream}"),
                 "versions": dict(wh.con.execute(f"SELECT id, resource_version FROM cb_{stream}").fetchall())}
    return result, state


def _state(path, stream: str) -> dict:
    with open_warehouse(path) as wh:
        return {"ids": [r[0] for r in wh.con.execute(f"SELECT id FROM cb_{stream}").fetchall()],
                "cursor": wh.get_cursor(f"chargebee.{stream}"),
                "versions": dict(wh.con.execute(f"SELECT id, resource_version FROM cb_{stream}").fetchall()),
                "staged": wh.con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '%_stage'"
                                         ).fetchall()}


def test_a_killed_first_load_and_a_killed_incremental_run_lose_and_duplicate_nothing(sandbox, tmp_path):
    sandbox.settings_chargebee("acme-test", rate_limit_per_minute=100_000)
    sandbox.generate(450, seed=3)
    path = tmp_path / "site.duckdb"
    expected = _sandbox_ids(sandbox, "customers")

    _die_after(sandbox, path, "customers", pages=2)
    assert _state(path, "customers") == {"ids": [], "cursor": None, "versions": {}, "staged": []}
    result, state = _extract(sandbox, path, "customers")
    assert result.full and result.new == len(expected) == len(state["ids"])
    assert set(state["ids"]) == expected
    before = state

    # Change 150 customers in Chargebee, then kill the incremental run that reads them, part-way.
    base_url, api_key = sandbox.chargebee("acme-test")
    sandbox.control("POST", "clock", {"advance_seconds": 600})
    with open_warehouse(path) as wh:
        live = [r[0] for r in wh.con.execute("SELECT id FROM cb_customers WHERE NOT deleted ORDER BY id").fetchall()]
    changed = live[:150]
    with requests.Session() as http:
        for cid in changed:
            answer = http.post(f"{base_url}/customers/{cid}", data={"email": f"{cid}@changed.example.com"},
                               auth=(api_key, ""), timeout=30)
            assert answer.status_code == 200, answer.text
    _die_after(sandbox, path, "customers", pages=1)
    after_kill = _state(path, "customers")
    assert after_kill["cursor"] == before["cursor"] and after_kill["versions"] == before["versions"]
    assert sorted(after_kill["ids"]) == sorted(before["ids"])

    result, state = _extract(sandbox, path, "customers")
    assert not result.full and (result.new, result.changed) == (0, 150) and result.checked == 150
    assert sorted(state["ids"]) == sorted(expected)
    assert [cid for cid in changed if state["versions"][cid] <= (before["versions"][cid] or -1)] == []
    assert int(state["cursor"]) > int(before["cursor"])
    with open_warehouse(path) as wh:
        emails = dict(wh.con.execute("SELECT id, email FROM cb_customers").fetchall())
    assert all(emails[cid] == f"{cid}@changed.example.com" for cid in changed)


def test_a_run_with_nothing_new_merges_and_checks_nothing(sandbox, tmp_path):
    sandbox.generate(250, seed=5)
    path = tmp_path / "site.duckdb"
    for stream in ("customers", "subscriptions"):
        first, _ = _extract(sandbox, path, stream)
        assert first.full and first.new == first.checked > 0
        again, _ = _extract(sandbox, path, stream)
        assert not again.full and (again.new, again.changed, again.checked) == (0, 0, 0), json.dumps(again.__dict__)
