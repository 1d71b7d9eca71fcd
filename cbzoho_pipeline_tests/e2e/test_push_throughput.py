"""The push at the API's floor, and within the day's API credits.

Batches of one module are in flight together (seen at the sandbox as calls overlapping in time, never more
than the site's `zoho.max_concurrency`); creates and updates of a module share their calls (180 changed
contacts cost 2 calls, not 3), but an update that upsert could send to the wrong record (an email that
changed) still goes by id; lost answers with batches in flight together still duplicate nothing; and a site
whose first sync needs more credits than its daily budget stops at the budget, succeeds, says so, and ends
after the next runs exactly where an unbudgeted sync ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from cbzoho_pipeline.warehouse.db import open_warehouse
from cbzoho_pipeline.warehouse.resources import warehouse_path

from .conftest import by, error_keys, reference, site_settings, state_diff

ZERO = {"duplicates": 0, "missing": 0, "extra": 0}
UPSERT, UPDATE = "POST /crm/v8/{module}/upsert", "PUT /crm/v8/{module}"


def configure(e2e, **zoho: Any) -> None:
    settings = site_settings("acme-test")
    settings["zoho"].update(zoho)
    e2e.configure(sites={"acme-test": settings, "acme": site_settings("acme")})


def customers(first: int, count: int, **fields: Any) -> list[dict]:
    """Plain customers (no company, no subscription: only contacts to write), changed just now."""
    now = int(time.time())
    return [{"id": f"c{i:04d}", "object": "customer", "last_name": f"Last{i}", "email": f"c{i}@example.com",
             "created_at": now - 60, "updated_at": now - 60, "resource_version": (now - 60) * 1000 + i,
             "deleted": False, **fields} for i in range(first, first + count)]


def load(e2e, rows: list[dict]) -> None:
    e2e.sandbox.load(chargebee={"acme-test": {"customers": rows}})


def zoho_stats(e2e) -> dict:
    return e2e.sandbox.stats()["zoho"]["sandbox"]


# ------------------------------------------------------------------------------------------- concurrency
def test_batches_of_a_module_are_in_flight_together_within_the_setting(e2e):
    configure(e2e, max_concurrency=3)
    load(e2e, customers(0, 1000))
    e2e.sandbox.faults("zoho", writes_only=True, latency_ms=150)
    outcome = e2e.sync()
    assert outcome.success
    stats = zoho_stats(e2e)
    assert 1 < stats["max_in_flight"] <= 3, stats["max_in_flight"]
    assert stats["served_429"] == 0
    assert e2e.write_calls() == {UPSERT: 10}
    assert len(e2e.zoho("Contacts")) == 1000 and outcome.counts["Contacts"]["created"] == 1000
    assert outcome.counts["Contacts"]["concurrency"] == 3


def test_creates_and_updates_of_a_module_share_the_write_floor(e2e):
    load(e2e, customers(0, 30))
    assert e2e.sync().success
    for i in range(30):
        e2e.cb("POST", f"customers/c{i:04d}", phone=f"+1 555 01{i:02d}")
    load(e2e, customers(30, 150))
    e2e.sandbox.reset_stats()
    outcome = e2e.sync()
    assert outcome.success
    # 150 creates and 30 updates: 180 changed contacts, 2 calls (the floor), not 100 + 50 creates + 30 updates
    assert e2e.write_calls() == {UPSERT: 2}
    assert (outcome.counts["Contacts"]["created"], outcome.counts["Contacts"]["updated"]) == (150, 30)
    contacts = by(e2e.zoho("Contacts"), "Email")
    assert len(e2e.zoho("Contacts")) == 180
    assert contacts["c7@example.com"]["Phone"] == "+1 555 0107"
    e2e.sandbox.reset_stats()
    assert e2e.sync().success and e2e.writes() == 0  # what Zoho holds is what was planned


def test_an_update_whose_email_changed_updates_its_own_contact(e2e):
    load(e2e, customers(0, 30))
    assert e2e.sync().success
    before = e2e.links("Contacts")
    for i in range(30):
        if i < 10:  # a new email: upsert on Email would create a second contact
            e2e.cb("POST", f"customers/c{i:04d}", email=f"renamed{i}@example.com")
        else:
            e2e.cb("POST", f"customers/c{i:04d}", phone=f"+1 555 02{i:02d}")
    load(e2e, customers(30, 150))
    e2e.sandbox.reset_stats()
    outcome = e2e.sync()
    assert outcome.success
    calls = e2e.write_calls()
    assert sum(calls.values()) <= 3 and calls.get(UPDATE) == 1, calls  # ⌈180/100⌉ + 1; the renamed go by id
    assert (outcome.counts["Contacts"]["created"], outcome.counts["Contacts"]["updated"]) == (150, 30)
    records = e2e.zoho("Contacts")
    assert len(records) == 180  # no contact created for a new email
    by_id = {str(r["id"]): r for r in records}
    for i in range(10):
        assert by_id[before[f"c{i:04d}"]]["Email"] == f"renamed{i}@example.com"
    assert {k: v for k, v in e2e.links("Contacts").items() if k in before} == before


# ------------------------------------------------------------------------------------------- lost answers
@pytest.mark.parametrize("fault", [
    {"papply_drop": 0.5},
    {"p500": 0.3, "papply_drop": 0.3, "papply_late": 0.2, "late_seconds": 2.0},
])
def test_lost_answers_with_batches_in_flight_together_duplicate_nothing(e2e, fault):
    at = int(time.time())
    want, _ = reference(e2e, 600, seed=23, at=at)
    configure(e2e, max_concurrency=6)
    e2e.sandbox.generate(600, seed=23, now=at)
    e2e.sandbox.faults("zoho", writes_only=True, latency_ms=40, **fault)
    first = e2e.sync(zoho={"timeout_seconds": 1.0})
    stats = zoho_stats(e2e)
    e2e.sandbox.clear_faults()
    assert sum(stats["faults_injected"].values()) >= 3, stats["faults_injected"]
    assert stats["max_in_flight"] > 1
    assert first.success
    assert e2e.sync().success  # whatever the first left journalled is found, not created again
    assert state_diff(e2e.state(), want) == {m: ZERO for m in ("Accounts", "Contacts", "Deals")}


def test_a_sync_killed_with_batches_in_flight_is_completed_by_the_next_without_duplicates(e2e):
    at = int(time.time())
    want, _ = reference(e2e, 600, seed=29, at=at)
    configure(e2e, max_concurrency=4)
    e2e.sandbox.generate(600, seed=29, now=at)
    e2e.sandbox.faults("zoho", writes_only=True, latency_ms=400)
    victim = subprocess.Popen([sys.executable, "-m", "cbzoho_pipeline.cli", "sync", "--site", "acme-test"],
                              env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while zoho_stats(e2e)["calls"].get(UPSERT, 0) < 6:  # several batches sent, more in flight
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert zoho_stats(e2e)["max_in_flight"] > 1
    time.sleep(1.0)  # the sandbox finishes the writes the dead process sent
    e2e.sandbox.clear_faults()
    assert e2e.sync().success
    assert e2e.sync().success
    assert state_diff(e2e.state(), want) == {m: ZERO for m in ("Accounts", "Contacts", "Deals")}


# ------------------------------------------------------------------------------------------- credit budget
def age_ledger(site: str = "acme-test", hours: int = 25) -> None:
    """A day passes for the site's credit ledger (the sandbox's own window is zeroed with its statistics)."""
    with open_warehouse(warehouse_path(site)) as wh:
        wh.con.execute(f"UPDATE credit_ledger SET spent_at = spent_at - INTERVAL {int(hours)} HOUR")


def test_a_budget_smaller_than_the_first_sync_stops_at_it_and_later_runs_finish_the_same(e2e):
    at = int(time.time())
    want, want_errors = reference(e2e, 300, seed=31, at=at)
    budget = 35
    configure(e2e, daily_credit_budget=budget)
    e2e.sandbox.generate(300, seed=31, now=at)
    runs = []
    for _ in range(12):
        e2e.sandbox.reset_stats()  # also zeroes the sandbox's 24-hour credit window
        outcome = e2e.sync()
        used = zoho_stats(e2e)["credits_used"]
        assert outcome.success
        assert used <= budget, (len(runs), used)
        assert error_keys(e2e) <= want_errors  # the budget is never an error
        runs.append((outcome, used))
        if not any(c.get("budget_stopped") for c in outcome.counts.values()):
            break
        age_ledger()
    first = runs[0][0].counts
    assert len(runs) >= 3, [u for _, u in runs]  # e.g. credits per run [25, 27, 35, 12]
    assert any(c["budget_stopped"] for c in first.values())
    assert sum(c["deferred"] for c in first.values()) > 0
    assert all(c["credit_budget"] == budget for c in first.values())
    assert state_diff(e2e.state(), want) == {m: ZERO for m in ("Accounts", "Contacts", "Deals")}
    assert error_keys(e2e) == want_errors


def test_the_cli_says_when_the_budget_stopped_a_sync(e2e):
    configure(e2e, daily_credit_budget=30)
    load(e2e, customers(0, 300))
    cli = [sys.executable, "-m", "cbzoho_pipeline.cli", "sync", "--site", "acme-test"]
    human = subprocess.run(cli, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert human.returncode == 0, human.stderr
    assert "credit budget reached:" in human.stdout and "left for the next run" in human.stdout, human.stdout
    assert 0 < len(e2e.zoho("Contacts")) < 300
    again = subprocess.run([*cli, "--json"], env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert answer["budget"]["stopped"] is True and answer["budget"]["credit_budget"] == 30
    assert answer["budget"]["deferred"] == 300 - len(e2e.zoho("Contacts")) > 0
    assert answer["errors"] == []
