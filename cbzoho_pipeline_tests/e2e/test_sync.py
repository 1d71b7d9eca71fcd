"""Invariants of the sync, end to end: idempotence, nothing lost, one-way, limits, failures and recovery."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from cbzoho_pipeline.warehouse.resources import site_lock

from .conftest import by, site_settings


def test_second_run_with_no_changes_makes_no_write_call(e2e):
    e2e.sandbox.generate(200, seed=7)
    first = e2e.sync()
    assert first.success
    assert e2e.writes() > 0
    contacts_after_first = e2e.zoho("Contacts")
    e2e.sandbox.reset_stats()
    second = e2e.sync()
    assert second.success
    assert e2e.writes() == 0, e2e.write_calls()
    assert e2e.zoho("Contacts") == contacts_after_first
    assert second.counts["Contacts"]["created"] == second.counts["Contacts"]["updated"] == 0


def test_sync_writes_never_fire_zoho_automations(e2e):
    e2e.sandbox.generate(60, seed=4)
    e2e.sync()
    zoho = e2e.sandbox.stats()["zoho"]["sandbox"]
    assert sum(n for e, n in zoho["calls"].items() if e.startswith(("POST", "PUT"))) > 0
    assert zoho["writes_with_automations"] == 0  # every write sent trigger: []


def test_nothing_is_ever_written_to_chargebee(e2e):
    e2e.sandbox.generate(100, seed=3)
    e2e.sandbox.reset_stats()
    e2e.sync()
    e2e.sync(full_resync=True)
    stats = e2e.sandbox.stats()["chargebee"]
    assert all(endpoint.startswith("GET ") for site in stats.values() for endpoint in site["calls"]), stats
    assert stats["acme-test"]["calls_total"] > 0


def test_every_record_ends_synced_skipped_or_error(e2e):
    e2e.sandbox.generate(300, seed=11)
    e2e.sync()
    with e2e.warehouse() as wh:
        customers = wh.count("cb_customers")
        subscriptions = wh.count("cb_subscriptions")
        plan = wh.df("SELECT module, action, count(*) n FROM plan GROUP BY ALL")
        unpushed = wh.count("plan", "WHERE NOT pushed")
        errors = wh.count("sync_errors")
        planned_errors = wh.count("plan", "WHERE action = 'error'")
    per_module = plan.groupby("module")["n"].sum().to_dict()
    assert per_module["Contacts"] == customers
    assert per_module["Deals"] == subscriptions
    assert unpushed == 0
    assert errors >= planned_errors > 0  # the generated mess yields errors; each is recorded


def test_batches_never_exceed_100_records(e2e):
    e2e.sandbox.load(chargebee={"acme-test": {"customers": [{
        "id": f"c{i:03d}", "last_name": f"Name{i}", "email": f"p{i}@example.com", "created_at": 1_700_000_000 + i,
        "updated_at": 1_700_000_000 + i, "resource_version": (1_700_000_000 + i) * 1000, "deleted": False,
        "object": "customer"} for i in range(250)]}})
    outcome = e2e.sync()
    assert len(e2e.zoho("Contacts")) == 250
    assert e2e.write_calls() == {"POST /crm/v8/{module}/upsert": 3}  # 100 + 100 + 50
    assert outcome.counts["Contacts"]["created"] == 250


def test_token_expiry_mid_run_refreshes_once_and_finishes(e2e):
    e2e.sandbox.generate(120, seed=5)
    e2e.sync()  # warm up: the next run reuses a live token
    e2e.add_customer(id="c_late", last_name="Late", email="late@example.com")
    e2e.sandbox.reset_stats()
    e2e.sandbox.control("POST", "zoho/sandbox/expire_tokens", {"after_calls": 3})
    outcome = e2e.sync()
    assert outcome.success
    stats = e2e.sandbox.stats()
    assert stats["zoho_accounts"]["calls"] == {"POST /oauth/v2/token": 1}
    assert stats["zoho"]["sandbox"]["unauthorized"] == 1
    assert "late@example.com" in by(e2e.zoho("Contacts"), "Email")


def test_partial_batch_failures_are_recorded_per_record_and_retried(e2e):
    e2e.add_customer(id="c_short", last_name="Short", email="short@example.com")
    e2e.sync()  # Zoho's metadata is now cached (Last_Name up to 80)
    e2e.sandbox.settings_zoho("sandbox", field_lengths={"Contacts": {"Last_Name": 10}})
    e2e.add_customer(id="c_ok", last_name="Brief", email="ok@example.com")
    e2e.add_customer(id="c_long", last_name="Longer-than-ten", email="long@example.com")
    outcome = e2e.sync()
    assert outcome.success
    emails = by(e2e.zoho("Contacts"), "Email")
    assert "ok@example.com" in emails and "long@example.com" not in emails
    check = outcome.check("synced_contacts", "sync_errors")
    assert not check.passed
    (row,) = check.metadata["errors_json"].value
    assert (row["chargebee_id"], row["code"]) == ("c_long", "INVALID_DATA")
    assert e2e.write_calls() == {"POST /crm/v8/{module}/upsert": 2}

    # the failed record is planned again; once it is fixed in Chargebee it syncs and its error clears
    e2e.cb("POST", "customers/c_long", last_name="Fixed")
    outcome = e2e.sync()
    assert "long@example.com" in by(e2e.zoho("Contacts"), "Email")
    assert outcome.check("synced_contacts", "sync_errors").passed
    assert e2e.errors() == []


def test_transient_faults_are_retried_and_lose_nothing(e2e):
    e2e.sandbox.generate(150, seed=9)
    e2e.sandbox.faults("zoho", p429=0.15, p500=0.1)
    e2e.sandbox.faults("chargebee", p429=0.2, p500=0.1)
    outcome = e2e.sync()
    assert outcome.success
    e2e.sandbox.clear_faults()
    injected = e2e.sandbox.stats()["zoho"]["sandbox"]["faults_injected"]
    assert sum(injected.values()) > 0
    # the same end state as a clean run would reach: a second run has nothing to write
    e2e.sandbox.reset_stats()
    e2e.sync()
    assert e2e.writes() == 0


def test_crash_after_zoho_applied_a_create_does_not_duplicate_on_rerun(e2e, monkeypatch):
    e2e.add_customer(id="c_mail", last_name="Mail", email="mail@example.com")
    e2e.add_customer(id="c_nomail", last_name="Nomail", first_name="Only")
    from cbzoho_pipeline.sync import push

    real = push.Warehouse.set_links

    def crash_after_write(self, module, pairs):
        pairs = list(pairs)
        if module == "Contacts" and pairs:
            raise RuntimeError("simulated crash after Zoho answered")
        return real(self, module, pairs)

    monkeypatch.setattr(push.Warehouse, "set_links", crash_after_write)
    crashed = e2e.sync()
    assert not crashed.success
    assert len(e2e.zoho("Contacts")) == 2  # Zoho applied the creates; we lost the answers
    monkeypatch.setattr(push.Warehouse, "set_links", real)

    rerun = e2e.sync()
    assert rerun.success
    contacts = e2e.zoho("Contacts")
    assert sorted(c["Last_Name"] for c in contacts) == ["Mail", "Nomail"]  # no duplicate
    assert set(e2e.links("Contacts")) == {"c_mail", "c_nomail"}


def test_contract_break_stops_the_sync_before_anything_is_pushed(e2e):
    e2e.add_customer(id="c_fine", last_name="Fine", email="fine@example.com")
    e2e.sandbox.load(chargebee={"acme-test": {"customers": [
        {"id": "c_broken", "last_name": "Broken", "created_at": "yesterday", "object": "customer"}]}})
    outcome = e2e.sync()
    assert not outcome.success
    contract = outcome.check("chargebee_customers", "contract")
    assert not contract.passed
    assert "created_at" in {r.data["column"] for r in contract.metadata["problems"].value.records}
    assert e2e.zoho("Contacts") == []
    assert e2e.writes() == 0
    planned = [m for m in outcome.result.get_asset_materialization_events()
               if m.asset_key == dg.AssetKey("sync_plan")]
    assert planned == []


def test_bad_row_is_set_aside_reported_and_retried_when_it_changes(e2e):
    e2e.add_customer(id="c_good", last_name="Good", email="good@example.com")
    e2e.sandbox.load(chargebee={"acme-test": {"customers": [
        {"id": "c_bad", "last_name": "Bad", "email": "not-an-email", "created_at": 1_700_000_000,
         "updated_at": 1_700_000_000, "resource_version": 1_700_000_000_000, "deleted": False,
         "object": "customer"}]}})
    outcome = e2e.sync()
    assert outcome.success
    assert [c["Email"] for c in e2e.zoho("Contacts")] == ["good@example.com"]
    set_aside = outcome.check("chargebee_customers", "rows_set_aside")
    assert not set_aside.passed and set_aside.metadata["rows_set_aside"].value == 1
    assert [r.data["id"] for r in set_aside.metadata["rows"].value.records] == ["c_bad"]
    assert {e["source_key"]: e["code"] for e in e2e.errors()} == {"c_bad": "VALIDATION_FAILED"}

    e2e.cb("POST", "customers/c_bad", email="bad.fixed@example.com")
    outcome = e2e.sync()
    assert outcome.check("chargebee_customers", "rows_set_aside").passed
    assert "bad.fixed@example.com" in by(e2e.zoho("Contacts"), "Email")
    assert e2e.errors() == []


def test_records_without_updated_at_are_not_lost_on_the_first_load(e2e):
    e2e.sandbox.load(chargebee={"acme-test": {"customers": [
        {"id": "c_2015", "last_name": "Old", "email": "old@example.com", "created_at": 1_420_070_400,
         "deleted": False, "object": "customer"}]}})
    e2e.add_customer(id="c_new", last_name="New", email="new@example.com")
    e2e.sync()
    assert set(by(e2e.zoho("Contacts"), "Email")) == {"old@example.com", "new@example.com"}


def test_two_sites_are_kept_apart(e2e):
    e2e.configure(sites={"acme-test": site_settings("acme-test"), "acme": site_settings("acme")})
    e2e.add_customer(site="acme-test", id="t1", last_name="Test", email="t@example.com")
    e2e.add_customer(site="acme", id="l1", last_name="Live", email="l@example.com")
    e2e.sync("acme-test")
    assert [c["Last_Name"] for c in e2e.zoho("Contacts", org="sandbox")] == ["Test"]
    assert e2e.zoho("Contacts", org="production") == []
    e2e.sync("acme")
    assert [c["Last_Name"] for c in e2e.zoho("Contacts", org="production")] == ["Live"]
    assert set(e2e.links("Contacts", site="acme-test")) == {"t1"}
    assert set(e2e.links("Contacts", site="acme")) == {"l1"}
    assert (e2e.home / "sites" / "acme-test" / "cbzoho.duckdb").exists()
    assert (e2e.home / "sites" / "acme" / "cbzoho.duckdb").exists()


def test_disconnect_revokes_the_token_stops_syncs_and_keeps_history(e2e):
    from cbzoho_pipeline.disconnect import disconnect

    e2e.add_customer(id="c1", last_name="Kept", email="kept@example.com")
    assert e2e.sync().success
    token_file = e2e.home / "sites" / "acme-test" / "zoho_token.json"
    assert token_file.exists()  # the access token kept for the next runs...
    result = disconnect("acme-test")
    assert result["status"] == "disconnected" and result["token_revoked"] is True
    assert not token_file.exists()  # ...goes with the disconnect
    z = e2e.sandbox.zoho("sandbox")
    import requests

    refused = requests.post(z["accounts_url"] + "/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": z["client_id"], "client_secret": z["client_secret"],
        "refresh_token": z["refresh_token"]}, timeout=10).json()
    assert "access_token" not in refused
    e2e.sandbox.reset_stats()
    stopped = e2e.sync()
    assert not stopped.success
    failure = [e for e in stopped.result.all_events if e.is_step_failure][0]
    assert "disconnected" in failure.event_specific_data.error.message
    assert e2e.sandbox.stats()["zoho"]["sandbox"]["calls_total"] == 0
    assert e2e.links("Contacts") == {"c1": by(e2e.zoho("Contacts"), "Email")["kept@example.com"]["id"]}


def test_thirty_syncs_in_ten_minutes_mint_one_access_token(e2e):
    """Every `cbzoho sync` is a new process; the site's token file is what they share."""
    from cbzoho_pipeline.zoho import resources

    e2e.add_customer(id="c1", last_name="Often", email="often@example.com")
    for _ in range(30):
        resources._CLIENTS.clear()  # as a new process would start: no client in memory
        assert e2e.sync().success
    assert e2e.sandbox.stats()["zoho_accounts"]["calls"].get("POST /oauth/v2/token") == 1


def test_two_launches_of_one_site_never_overlap(e2e, tmp_path):
    """Two headless launches (say, cron and a person) of one site at once: the second waits for the first."""
    e2e.sandbox.generate(150, seed=2)
    e2e.sandbox.faults("zoho", latency_ms=15)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()  # create its storage once, before the race
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    launches = [subprocess.Popen([sys.executable, "-m", "cbzoho_pipeline.cli", "sync", "--site", "acme-test"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in launches]
    assert all(p.returncode in (0, 1) for p in launches), outputs  # finished (1: with sync errors)
    e2e.sandbox.clear_faults()

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_run_records()
        assert len(runs) == 2
        windows = []
        for record in runs:
            stamps = [e.timestamp for e in instance.all_logs(record.dagster_run.run_id)
                      if e.dagster_event and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")]
            windows.append((min(stamps), max(stamps)))
    (a_start, a_end), (b_start, b_end) = sorted(windows)
    assert a_end <= b_start, f"steps of the two runs overlapped: {windows}"
    # and the data shows no interleaving: no duplicate contacts or deals
    emails = [c["Email"].lower() for c in e2e.zoho("Contacts") if c.get("Email")]
    assert len(emails) == len(set(emails))
    names = [d["Deal_Name"] for d in e2e.zoho("Deals")]
    assert len(names) == len(set(names))


def test_site_lock_makes_a_second_sync_wait(tmp_path, monkeypatch):
    monkeypatch.setenv("CBZOHO_HOME", str(tmp_path))
    order: list[str] = []
    with site_lock("acme-test", timeout=5, holder="first"):
        waiter = threading.Thread(target=lambda: _hold(order))
        waiter.start()
        time.sleep(0.5)
        order.append("first done")
    waiter.join(10)
    assert order == ["first done", "second got the lock"]
    with site_lock("acme-test", timeout=1, holder="x"):
        from cbzoho_pipeline.warehouse.resources import SiteBusy

        with pytest.raises(SiteBusy, match="another sync of site 'acme-test' is running"):
            with site_lock("acme-test", timeout=0.3, holder="y"):
                pass


def _hold(order: list[str]) -> None:
    with site_lock("acme-test", timeout=5, holder="second"):
        order.append("second got the lock")


def test_disconnect_job_for_ui_users(e2e):
    from cbzoho_pipeline.definitions import defs
    from cbzoho_pipeline.warehouse.resources import disconnection

    e2e.add_customer(id="c1", last_name="Before", email="before@example.com")
    assert e2e.sync().success
    result = defs.resolve_job_def("cbzoho_disconnect").execute_in_process(
        run_config={"ops": {"disconnect_site": {"config": {"site": "acme-test"}}}},
        instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert disconnection("acme-test")["token_revoked"] is True
    assert not e2e.sync().success
    assert disconnection("acme") is None  # the other site is untouched
    assert e2e.sync("acme").success


def test_reading_back_a_large_push_uses_the_cheaper_coql(e2e):
    e2e.sandbox.load(chargebee={"acme-test": {"customers": [{
        "id": f"c{i:04d}", "last_name": f"Name{i}", "email": f"p{i}@example.com", "created_at": 1_700_000_000 + i,
        "updated_at": 1_700_000_000 + i, "resource_version": (1_700_000_000 + i) * 1000, "deleted": False,
        "object": "customer"} for i in range(700)]}})
    first = e2e.sync()
    (read_back,) = first.result.asset_materializations_for_node("zoho_read_back")
    assert read_back.metadata["read_back_contacts"].value == 700
    calls = e2e.sandbox.stats()["zoho"]["sandbox"]["calls"]
    # The first read of the three empty modules, then the 700 contacts written, read back in one COQL page
    # (3 credits) instead of four Get Records pages.
    assert calls.get("POST /crm/v8/coql") == 4, calls
    with e2e.warehouse() as wh:
        assert wh.count("zoho_records", "WHERE module = 'Contacts'") == 700
    e2e.sandbox.reset_stats()
    e2e.sync()
    calls = e2e.sandbox.stats()["zoho"]["sandbox"]["calls"]
    assert "POST /crm/v8/coql" not in calls and e2e.writes() == 0
    assert calls.get("GET /crm/v8/{module}") == 3, calls  # nothing left to catch up on


def test_recorded_chargebee_payloads_sync_as_they_are(e2e, fixtures_dir):
    import json as _json

    customers = _json.loads((fixtures_dir / "test_site_customers.json").read_text())
    customers += [e["customer"] for e in _json.loads((fixtures_dir / "customer.json").read_text())["list"]]
    subscriptions = _json.loads((fixtures_dir / "test_site_subscriptions.json").read_text())
    subscriptions += [e["subscription"] for e in _json.loads((fixtures_dir / "subscription_multiple.json").read_text())["list"]]
    e2e.sandbox.load(chargebee={"acme-test": {"customers": customers, "subscriptions": subscriptions}})
    outcome = e2e.sync()
    assert outcome.success
    assert outcome.check("chargebee_customers", "contract").passed
    assert outcome.check("chargebee_subscriptions", "contract").passed
    live = [c for c in customers if not c.get("deleted")]
    assert len(e2e.zoho("Contacts")) + outcome.counts["Contacts"]["errors"] == len(live)
    # every subscription is accounted for: synced, skipped with a reason, or an error naming why
    with e2e.warehouse() as wh:
        assert wh.count("plan", "WHERE module = 'Deals'") == len(subscriptions)
