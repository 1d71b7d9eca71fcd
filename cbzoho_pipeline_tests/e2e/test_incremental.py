"""A run plans only what can have changed: cost follows the change, not the site.

Each test reads the plan's own account of its scope (the sync_plan asset's metadata) and what reached Zoho:
a run with nothing new plans nothing and writes nothing; one changed customer is planned with what depends
on it and nothing else; a changed rule, or a full resync, plans everything again.
"""

from __future__ import annotations

import time

from .conftest import by


def plan_meta(outcome) -> dict:
    (materialization,) = outcome.result.asset_materializations_for_node("sync_plan")
    return {k: v.value for k, v in materialization.metadata.items()}


def planned(meta: dict, module: str) -> int:
    return sum(meta[f"{module}_{a}"] for a in ("create", "update", "noop", "skip", "error"))


def test_nothing_new_plans_nothing(e2e):
    for i in range(40):
        e2e.add_customer(id=f"c{i}", last_name=f"Last{i}", email=f"c{i}@example.com", company=f"Co {i % 7}")
        e2e.add_subscription(f"c{i}", id=f"s{i}")
    first = e2e.sync()
    assert first.success and plan_meta(first)["scope"] == "full"
    e2e.sandbox.reset_stats()
    quiet = e2e.sync()
    meta = plan_meta(quiet)
    assert meta["scope"] == "incremental"
    assert {m: planned(meta, m) for m in ("accounts", "contacts", "deals")} == {
        "accounts": 0, "contacts": 0, "deals": 0}
    assert e2e.writes() == 0


def test_a_sync_reads_back_its_own_writes_so_the_next_costs_two_reads_per_module(e2e):
    now = int(time.time())
    customers = [{"id": f"c{i}", "object": "customer", "last_name": f"Last{i}", "email": f"c{i}@example.com",
                  "company": f"Co {i % 13}", "created_at": now - 600 + i, "updated_at": now - 600 + i,
                  "resource_version": (now - 600 + i) * 1000, "deleted": False} for i in range(260)]
    subscriptions = [{"id": f"s{i}", "object": "subscription", "customer_id": f"c{i}", "status": "active",
                      "currency_code": "USD", "mrr": 2900, "created_at": now - 600 + i, "updated_at": now - 600 + i,
                      "resource_version": (now - 600 + i) * 1000, "deleted": False,
                      "subscription_items": [{"item_price_id": "basic-USD-monthly", "item_type": "plan",
                                              "quantity": 1, "unit_price": 2900, "amount": 2900,
                                              "object": "subscription_item"}]} for i in range(260)]
    e2e.sandbox.load(chargebee={"acme-test": {"customers": customers, "subscriptions": subscriptions}})
    first = e2e.sync()
    assert first.success
    (read_back,) = first.result.asset_materializations_for_node("zoho_read_back")
    # 260 contacts and deals are read back now; 13 accounts fit in the next run's changes call.
    assert {k: v.value for k, v in read_back.metadata.items()} == {
        "read_back_accounts": 0, "read_back_contacts": 260, "read_back_deals": 260}

    e2e.sandbox.reset_stats()
    quiet = e2e.sync()  # right away: nothing changed since the first sync ended
    meta = plan_meta(quiet)
    assert meta["scope"] == "incremental"
    assert {m: planned(meta, m) for m in ("accounts", "contacts", "deals")} == {
        "accounts": 0, "contacts": 0, "deals": 0}
    calls = e2e.sandbox.stats()["zoho"]["sandbox"]["calls"]
    assert "POST /crm/v8/coql" not in calls, calls
    assert calls.get("GET /crm/v8/{module}", 0) == 3, calls  # the changes since the cursor, per module
    assert sum(calls.values()) <= 6, calls  # and the deleted records per module; metadata is cached
    assert e2e.writes() == 0


def test_open_errors_are_planned_again_every_run_and_nothing_else(e2e):
    e2e.sandbox.generate(120, seed=9)  # messy: some records fail, e.g. deals in currencies the org lacks
    e2e.sync()
    e2e.sync()
    errors = {(e["module"], e["source_key"]) for e in e2e.errors()}
    assert errors
    meta = plan_meta(e2e.sync())
    assert meta["scope"] == "incremental"
    deal_errors = sum(m == "Deals" for m, _ in errors)
    assert deal_errors <= planned(meta, "deals") < 120
    assert planned(meta, "contacts") < 120


def test_one_changed_customer_is_planned_with_what_depends_on_it(e2e):
    for i in range(30):
        e2e.add_customer(id=f"c{i}", last_name=f"Last{i}", email=f"c{i}@example.com", company=f"Company {i}")
        e2e.add_subscription(f"c{i}", id=f"s{i}")
    e2e.add_customer(id="c_team", last_name="Team", email="team@example.com", company="Company 3")
    assert e2e.sync().success
    e2e.sync()
    e2e.cb("POST", "customers/c3", phone="+44 20 7946 0000")
    e2e.sandbox.reset_stats()
    outcome = e2e.sync()
    meta = plan_meta(outcome)
    assert meta["scope"] == "incremental"
    # c3, the other customer of its company, and their subscriptions and account; nobody else
    assert planned(meta, "contacts") == 2 and planned(meta, "deals") == 1 and planned(meta, "accounts") == 1
    assert meta["contacts_update"] == 1
    assert by(e2e.zoho("Contacts"), "Email")["c3@example.com"]["Phone"] == "+44 20 7946 0000"
    assert e2e.write_calls() == {"PUT /crm/v8/{module}": 1}


def test_a_changed_rule_plans_every_record_again(e2e):
    for i in range(5):
        e2e.add_customer(id=f"c{i}", last_name=f"Last{i}", email=f"c{i}@example.com", first_name="Ann")
    assert e2e.sync().success
    e2e.sync()
    e2e.zoho_client().update("Contacts", [{"id": str(c["id"]), "First_Name": "Edited"}
                                          for c in e2e.zoho("Contacts")])
    e2e.sync()  # overwrite: Chargebee's value wins again
    e2e.configure(matching_contact="fill_blanks")
    outcome = e2e.sync()
    meta = plan_meta(outcome)
    assert meta["scope"] == "full" and "rules" in meta["scope_reason"]
    assert planned(meta, "contacts") == 5


def test_full_resync_plans_everything(e2e):
    e2e.sandbox.generate(40, seed=3)
    assert e2e.sync().success
    outcome = e2e.sync(full_resync=True)
    meta = plan_meta(outcome)
    assert meta["scope"] == "full" and planned(meta, "contacts") == 40
