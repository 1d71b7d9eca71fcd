"""Subscriptions -> Deals, end to end: Chargebee in the sandbox -> Dagster job -> Deals in Zoho CRM.

Amounts come from the catalog the sandbox starts with: basic is 29.00 a month in USD/EUR/GBP and 3,900 a
month in JPY (a zero-decimal currency); a yearly price is ten months' worth, so its MRR is 29000 / 12 cents.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from .conftest import by

STANDARD = "Standard (Standard)"
DEFAULT_STAGES = {"active": "Closed Won", "non_renewing": "Negotiation/Review"}


def created_date(subscription: dict) -> str:
    return datetime.fromtimestamp(subscription["created_at"], tz=UTC).strftime("%Y-%m-%d")


def user_id(e2e, email: str) -> str:
    users = e2e.sandbox.control("GET", "zoho/sandbox/settings")["users"]
    return next(u["id"] for u in users if u["email"] == email)


def deals(e2e) -> dict[str, dict]:
    return by(e2e.zoho("Deals"), "Deal_Name")


def error_codes(e2e, module: str = "Deals") -> dict[str, str]:
    return {e["source_key"]: e["code"] for e in e2e.errors() if e["module"] == module}


def customer_with(e2e, cid: str, item_price_id: str = "basic-USD-monthly", *, sub_id: str | None = None,
                  **customer: object) -> dict:
    e2e.add_customer(id=cid, last_name=cid.title(), email=f"{cid}@example.com", **customer)
    return e2e.add_subscription(cid, item_price_id, id=sub_id or f"sub_{cid}")


# ------------------------------------------------------------------------------------------------ creation
def test_new_active_subscription_becomes_a_deal(e2e):
    monthly = customer_with(e2e, "ann", company="Ann Corp")
    yearly = customer_with(e2e, "bob", "basic-USD-yearly")
    assert monthly["status"] == yearly["status"] == "active"

    outcome = e2e.sync()
    assert outcome.success
    assert outcome.counts["Deals"]["created"] == 2
    assert outcome.check("synced_deals", "sync_errors").passed

    contacts = by(e2e.zoho("Contacts"), "Email")
    account = by(e2e.zoho("Accounts"), "Account_Name")["Ann Corp"]
    found = deals(e2e)
    assert set(found) == {"sub_ann", "sub_bob"}

    ann = found["sub_ann"]
    assert ann["Amount"] == 29.00  # 2900 cents
    assert ann["Closing_Date"] == created_date(monthly)
    assert ann["Contact_Name"]["id"] == contacts["ann@example.com"]["id"]
    assert ann["Account_Name"]["id"] == account["id"]
    assert ann["Owner"]["id"] == user_id(e2e, "admin@acme.example")
    assert (ann["Pipeline"], ann["Stage"]) == (STANDARD, "Closed Won")

    bob = found["sub_bob"]
    assert bob["Amount"] == 24.17  # 290.00 a year, normalised to a month (2416.67 cents, rounded)
    assert bob["Contact_Name"]["id"] == contacts["bob@example.com"]["id"]
    assert not bob.get("Account_Name")  # no company, no account
    assert (bob["Pipeline"], bob["Stage"]) == (STANDARD, "Closed Won")

    assert e2e.links("Deals") == {"sub_ann": ann["id"], "sub_bob": bob["id"]}


def test_deal_owner_is_the_configured_user_not_the_connected_one(e2e):
    # The refresh token belongs to the admin, so Zoho would default the owner to the admin by itself.
    e2e.configure(deal_owner_email="Sales@Acme.example")
    customer_with(e2e, "ann")
    assert e2e.sync().success
    (deal,) = e2e.zoho("Deals")
    assert deal["Owner"]["id"] == user_id(e2e, "sales@acme.example")
    assert deal["Owner"]["id"] != user_id(e2e, "admin@acme.example")


# ------------------------------------------------------------------------------------------------ changes
def test_deals_follow_subscription_changes_on_the_next_run(e2e):
    customer_with(e2e, "ann")  # will be cancelled at the end of its term
    customer_with(e2e, "bob")  # quantity goes to 3
    customer_with(e2e, "cat")  # moves to another plan
    customer_with(e2e, "dan")  # does not change
    assert e2e.sync().success
    before = deals(e2e)
    assert {k: (d["Stage"], d["Amount"]) for k, d in before.items()} == {
        k: ("Closed Won", 29.0) for k in ("sub_ann", "sub_bob", "sub_cat", "sub_dan")}

    ann = e2e.cb("POST", "subscriptions/sub_ann/cancel_for_items", cancel_option="end_of_term")["subscription"]
    assert ann["status"] == "non_renewing"
    bob = e2e.cb("POST", "subscriptions/sub_bob/update_for_items", **{
        "subscription_items[item_price_id][0]": "basic-USD-monthly",
        "subscription_items[quantity][0]": 3})["subscription"]
    assert bob["mrr"] == 8700
    cat = e2e.cb("POST", "subscriptions/sub_cat/update_for_items", replace_items_list="true", **{
        "subscription_items[item_price_id][0]": "pro-USD-yearly"})["subscription"]
    assert cat["mrr"] == 8250  # 990.00 a year

    e2e.sandbox.reset_stats()
    outcome = e2e.sync()
    assert outcome.success
    after = deals(e2e)
    assert (after["sub_ann"]["Stage"], after["sub_ann"]["Amount"]) == ("Negotiation/Review", 29.0)
    assert (after["sub_bob"]["Stage"], after["sub_bob"]["Amount"]) == ("Closed Won", 87.0)
    assert (after["sub_cat"]["Stage"], after["sub_cat"]["Amount"]) == ("Closed Won", 82.5)
    assert after["sub_dan"] == before["sub_dan"]
    # updated in place: same records, nothing created, one update call for the three of them
    assert {k: d["id"] for k, d in after.items()} == {k: d["id"] for k, d in before.items()}
    assert outcome.counts["Deals"]["updated"] == 3
    assert outcome.counts["Deals"]["created"] == 0
    assert outcome.counts["Deals"]["unchanged"] == 0  # dan's subscription did not change: not even planned
    assert e2e.write_calls() == {"PUT /crm/v8/{module}": 1}


def test_cancelled_subscription_is_skipped_by_default_and_closed_lost_when_mapped(e2e):
    sub = customer_with(e2e, "ann")
    customer_with(e2e, "bob")
    assert e2e.sync().success
    original = deals(e2e)["sub_ann"]

    cancelled = e2e.cb("POST", "subscriptions/sub_ann/cancel_for_items", cancel_option="immediately")["subscription"]
    assert cancelled["status"] == "cancelled"
    e2e.sandbox.reset_stats()
    outcome = e2e.sync()
    assert outcome.success
    assert deals(e2e)["sub_ann"] == original  # left as it was: still Closed Won, still 29.00
    assert outcome.counts["Deals"]["skipped"] == 1
    assert e2e.writes() == 0
    with e2e.warehouse() as wh:
        (reason,) = wh.df("SELECT reason FROM plan WHERE module = 'Deals' AND source_key = 'sub_ann'")["reason"]
    assert "cancelled" in reason and "deal_stages" in reason

    e2e.configure(deal_stages={**DEFAULT_STAGES, "cancelled": "Closed Lost"})
    outcome = e2e.sync()
    assert outcome.success
    lost = deals(e2e)["sub_ann"]
    assert lost["id"] == original["id"]
    assert lost["Stage"] == "Closed Lost"
    assert lost["Amount"] == cancelled["mrr"] / 100  # MRR in major units, as Chargebee reports it
    assert lost["Closing_Date"] == created_date(sub)
    assert deals(e2e)["sub_bob"]["Stage"] == "Closed Won"
    assert outcome.counts["Deals"]["updated"] == 1


# ------------------------------------------------------------------------------------------------ errors
def test_stage_missing_from_the_pipeline_fails_those_deals_and_writes_none(e2e):
    e2e.configure(deal_stages={"active": "Not A Stage"})
    customer_with(e2e, "ann")
    customer_with(e2e, "bob")
    outcome = e2e.sync()
    assert outcome.success  # sync errors are reported, the run goes on

    assert error_codes(e2e) == {"sub_ann": "STAGE_NOT_IN_PIPELINE", "sub_bob": "STAGE_NOT_IN_PIPELINE"}
    check = outcome.check("synced_deals", "sync_errors")
    assert not check.passed
    listed = {r["chargebee_id"]: r for r in check.metadata["errors_json"].value}
    assert set(listed) == {"sub_ann", "sub_bob"}
    assert all(r["code"] == "STAGE_NOT_IN_PIPELINE" and "Not A Stage" in r["message"] for r in listed.values())
    assert check.metadata["error_count"].value == 2

    assert e2e.zoho("Deals") == []
    assert outcome.counts["Deals"]["calls"] == 0
    # the rest of the run is unaffected
    assert set(by(e2e.zoho("Contacts"), "Email")) == {"ann@example.com", "bob@example.com"}
    assert outcome.check("synced_contacts", "sync_errors").passed


def test_foreign_currency_without_multi_currency_is_a_sync_error(e2e):
    customer_with(e2e, "eve", "basic-EUR-monthly")
    customer_with(e2e, "ann")
    outcome = e2e.sync()
    assert outcome.success
    assert error_codes(e2e) == {"sub_eve": "CURRENCY_NEEDS_MULTI_CURRENCY"}
    assert set(deals(e2e)) == {"sub_ann"}
    (row,) = outcome.check("synced_deals", "sync_errors").metadata["errors_json"].value
    assert "EUR" in row["message"]


def test_multi_currency_org_gets_the_subscription_currency_and_amount(e2e):
    e2e.sandbox.settings_zoho("sandbox", multi_currency=True, currencies=["USD", "EUR", "JPY"])
    eur = customer_with(e2e, "eve", "basic-EUR-monthly")
    jpy = customer_with(e2e, "jun", "basic-JPY-monthly")
    customer_with(e2e, "ann")
    customer_with(e2e, "gus", "basic-GBP-monthly")  # GBP is not among the org's currencies
    assert (eur["mrr"], jpy["mrr"]) == (2900, 3900)

    outcome = e2e.sync()
    assert outcome.success
    found = deals(e2e)
    assert (found["sub_eve"]["Currency"], found["sub_eve"]["Amount"]) == ("EUR", 29.0)
    assert (found["sub_jun"]["Currency"], found["sub_jun"]["Amount"]) == ("JPY", 3900.0)  # yen: no division
    assert (found["sub_ann"]["Currency"], found["sub_ann"]["Amount"]) == ("USD", 29.0)
    assert "sub_gus" not in found
    assert error_codes(e2e) == {"sub_gus": "CURRENCY_NEEDS_MULTI_CURRENCY"}

    e2e.sandbox.reset_stats()
    assert e2e.sync().success
    assert e2e.writes() == 0  # currency and amounts compare equal next time


def test_multi_currency_switched_on_later_applies_once_metadata_is_read_again(e2e):
    customer_with(e2e, "eve", "basic-EUR-monthly")
    assert e2e.sync().success
    assert error_codes(e2e) == {"sub_eve": "CURRENCY_NEEDS_MULTI_CURRENCY"}

    e2e.sandbox.settings_zoho("sandbox", multi_currency=True)
    from cbzoho_pipeline.definitions import defs

    result = defs.resolve_job_def("cbzoho_sync").execute_in_process(
        partition_key="acme-test", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"ops": {"zoho_metadata": {"config": {"max_age_minutes": 0}}}})
    assert result.success
    (deal,) = e2e.zoho("Deals")
    assert (deal["Deal_Name"], deal["Currency"], deal["Amount"]) == ("sub_eve", "EUR", 29.0)
    assert e2e.errors() == []  # the failed record was planned again and its error cleared


def test_deal_owner_who_is_not_a_zoho_user_is_a_sync_error(e2e):
    e2e.configure(deal_owner_email="nobody@acme.example")
    customer_with(e2e, "ann")
    customer_with(e2e, "bob")
    outcome = e2e.sync()
    assert outcome.success
    assert error_codes(e2e) == {"sub_ann": "OWNER_NOT_FOUND", "sub_bob": "OWNER_NOT_FOUND"}
    rows = outcome.check("synced_deals", "sync_errors").metadata["errors_json"].value
    assert all("nobody@acme.example" in r["message"] for r in rows)
    assert e2e.zoho("Deals") == []
    assert len(e2e.zoho("Contacts")) == 2
