"""The sync's rules as tables of cases, on plain data: no Dagster, no HTTP, no DuckDB.

Each row is one rule or edge of DESIGN.md's behaviour table; a failure names the rule that broke.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from cbzoho_pipeline.settings import Rules
from cbzoho_pipeline.sync import mapping
from cbzoho_pipeline.sync.plan import PlanInputs, PlanRow, build_plan, reconcile_pending, summarize

PIPELINES = {"Standard (Standard)": ["Qualification", "Negotiation/Review", "Closed Won", "Closed Lost"]}
LENGTHS = {"Contacts": {"First_Name": 40, "Last_Name": 80, "Email": 100}, "Accounts": {"Account_Name": 100}}


def customer(cid: str, **kw) -> dict:
    base = {"id": cid, "first_name": "Ada", "last_name": "Lovelace", "email": f"{cid}@example.com",
            "created_at": 1_700_000_000, "deleted": False, "object": "customer"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def contact(zid: str, **kw) -> dict:
    return {"id": zid, "Last_Name": "Lovelace", "First_Name": "Ada", **kw}


def sub(sid: str, cid: str, **kw) -> dict:
    base = {"id": sid, "customer_id": cid, "status": "active", "currency_code": "USD", "mrr": 2900,
            "created_at": 1_700_000_000, "deleted": False}
    base.update(kw)
    return base


def inputs(**kw) -> PlanInputs:
    defaults = dict(customers=[], subscriptions=[], zoho_contacts=[], zoho_accounts=[], zoho_deals=[],
                    rules=Rules(deal_owner_email="admin@acme.example"), pipelines=PIPELINES,
                    field_lengths=LENGTHS, owner_id="u1")
    defaults.update(kw)
    return PlanInputs(**defaults)


def row(rows: list[PlanRow], module: str, key: str) -> PlanRow:
    matches = [r for r in rows if r.module == module and r.source_key == key]
    assert len(matches) == 1, f"expected one {module} row for {key}, got {matches}"
    return matches[0]


# --------------------------------------------------------------------------------------------- contacts
@pytest.mark.parametrize(
    "rule_no_match, rule_match, zoho, expected_action, expected_fields",
    [
        ("create", "overwrite", [], "create",
         {"First_Name": "Ada", "Last_Name": "Lovelace", "Email": "c1@example.com"}),
        ("skip", "overwrite", [], "skip", None),
        # matched by email, Zoho differs -> overwrite takes Chargebee's values
        ("create", "overwrite", [contact("z1", Email="C1@Example.com ", First_Name="Adah")], "update",
         {"First_Name": "Ada"}),
        # fill_blanks only fills empty Zoho fields
        ("create", "fill_blanks", [contact("z1", Email="c1@example.com", First_Name="Adah", Last_Name="")], "update",
         {"Last_Name": "Lovelace"}),
        ("create", "fill_blanks", [contact("z1", Email="c1@example.com", First_Name="Adah")], "noop", None),
        # link_only never changes fields
        ("create", "link_only", [contact("z1", Email="c1@example.com", First_Name="Zed")], "noop", None),
        # identical -> noop
        ("create", "overwrite", [contact("z1", Email="c1@example.com")], "noop", None),
    ],
)
def test_contact_rules(rule_no_match, rule_match, zoho, expected_action, expected_fields):
    rules = Rules(no_matching_contact=rule_no_match, matching_contact=rule_match)
    rows = build_plan(inputs(customers=[customer("c1")], zoho_contacts=zoho, rules=rules))
    r = row(rows, "Contacts", "c1")
    assert r.action == expected_action, r.reason
    if expected_fields is not None:
        assert r.payload == expected_fields
    if zoho and expected_action in ("update", "noop"):
        assert r.zoho_id == "z1"
        assert r.refs and r.refs.get("link") is True  # a new match is linked even when nothing changes


def test_overwrite_never_blanks_zoho_fields():
    zoho = [contact("z1", Email="c1@example.com", Phone="+1 555", First_Name="Ada")]
    rows = build_plan(inputs(customers=[customer("c1", phone=None, first_name="  ")], zoho_contacts=zoho))
    r = row(rows, "Contacts", "c1")
    assert r.action == "noop", (r.payload, r.reason)


def test_stored_link_wins_over_email():
    zoho = [contact("z1", Email="old@example.com"), contact("z2", Email="c1@example.com")]
    rows = build_plan(inputs(customers=[customer("c1")], zoho_contacts=zoho, contact_links={"c1": "z1"}))
    r = row(rows, "Contacts", "c1")
    assert r.zoho_id == "z1" and r.action == "update" and r.payload == {"Email": "c1@example.com"}


def test_link_to_a_record_deleted_in_zoho_falls_back_to_email_then_create():
    rows = build_plan(inputs(customers=[customer("c1")], zoho_contacts=[], contact_links={"c1": "gone"}))
    assert row(rows, "Contacts", "c1").action == "create"


def test_external_id_field_matches_before_email():
    zoho = [contact("z1", Email="other@example.com", Chargebee_Id="c1"), contact("z2", Email="c1@example.com")]
    rows = build_plan(inputs(customers=[customer("c1")], zoho_contacts=zoho, contact_external_field="Chargebee_Id"))
    assert row(rows, "Contacts", "c1").zoho_id == "z1"


def test_email_held_by_several_zoho_contacts_is_an_error_and_writes_nothing():
    zoho = [contact("z1", Email="c1@example.com"), contact("z2", Email="C1@example.com")]
    rows = build_plan(inputs(customers=[customer("c1")], zoho_contacts=zoho, subscriptions=[sub("s1", "c1")]))
    r = row(rows, "Contacts", "c1")
    assert (r.action, r.reason) == ("error", "email not unique in Zoho CRM")
    assert r.payload is None
    assert row(rows, "Deals", "s1").action == "error"


def test_email_shared_by_two_chargebee_customers_is_an_error_for_each_never_a_merge():
    rows = build_plan(inputs(customers=[customer("c1", email="x@y.com"), customer("c2", email=" X@Y.com")]))
    for cid in ("c1", "c2"):
        assert row(rows, "Contacts", cid).action == "error"
        assert row(rows, "Contacts", cid).code == "EMAIL_SHARED_IN_CHARGEBEE"


def test_deleted_and_rejected_customers():
    rows = build_plan(inputs(customers=[customer("c1", deleted=True), customer("c2")],
                             rejected_customers={"c2": "email: not an address"}))
    assert row(rows, "Contacts", "c1").action == "skip"
    assert row(rows, "Contacts", "c2").action == "error"
    assert "validation" in row(rows, "Contacts", "c2").reason


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"last_name": "Hopper"}, ("Hopper", "last_name")),
        ({"last_name": None, "billing_address": {"last_name": "Bill"}}, ("Bill", "billing_address.last_name")),
        ({"last_name": " ", "first_name": "Grace"}, ("Grace", "first_name")),
        ({"last_name": None, "first_name": None, "company": "ACME"}, ("ACME", "company")),
        ({"last_name": None, "first_name": None, "email": "g.h@navy.mil"}, ("g.h", "email")),
        ({"last_name": None, "first_name": None, "email": None}, ("c9", "id")),
    ],
)
def test_last_name_fallback_always_yields_a_value(fields, expected):
    c = {"id": "c9", **fields}
    assert mapping.last_name_fallback(c) == expected
    rows = build_plan(inputs(customers=[customer("c9", **{"first_name": None, "email": None, **fields})]))
    assert row(rows, "Contacts", "c9").payload["Last_Name"] == expected[0]


def test_value_longer_than_zoho_allows_is_an_error_before_any_call():
    rows = build_plan(inputs(customers=[customer("c1", last_name="x" * 120)]))
    r = row(rows, "Contacts", "c1")
    assert r.action == "error" and r.code == "VALUE_TOO_LONG" and "80" in r.reason


def test_extra_mappings_reach_zoho_fields():
    rules = Rules(extra_contact_fields={"billing_address.city": "Mailing_City", "cf_tier": "Description"})
    c = customer("c1", billing_address={"city": "London"}, cf_tier="gold")
    rows = build_plan(inputs(customers=[c], rules=rules))
    payload = row(rows, "Contacts", "c1").payload
    assert payload["Mailing_City"] == "London" and payload["Description"] == "gold"


# --------------------------------------------------------------------------------------------- accounts
@pytest.mark.parametrize(
    "rule, zoho_accounts, expected_action, contact_account",
    [
        ("create", [], "create", ("ref", "acme inc")),
        ("leave_empty", [], "skip", None),
        ("create", [{"id": "a1", "Account_Name": "ACME  Inc"}], "noop", ("id", "a1")),
        ("create", [{"id": "a1", "Account_Name": "Acme Inc"}, {"id": "a2", "Account_Name": "acme inc"}], "error", None),
    ],
)
def test_account_rules(rule, zoho_accounts, expected_action, contact_account):
    rules = Rules(company_without_account=rule)
    customers = [customer("c1", company="Acme Inc"), customer("c2", company="ACME INC ")]
    rows = build_plan(inputs(customers=customers, zoho_accounts=zoho_accounts, rules=rules))
    accounts = [r for r in rows if r.module == "Accounts"]
    assert len(accounts) == 1, "companies differing only in case are one account"
    assert accounts[0].action == expected_action
    c = row(rows, "Contacts", "c1")
    if contact_account is None:
        assert "Account_Name" not in (c.payload or {}) and not (c.refs or {}).get("Account_Name")
    elif contact_account[0] == "ref":
        assert c.refs["Account_Name"] == contact_account[1]
    else:
        assert c.payload["Account_Name"] == {"id": contact_account[1]}


@pytest.mark.parametrize(
    "zoho_accounts, lengths, code",
    [
        ([{"id": "a1", "Account_Name": "Acme Inc"}, {"id": "a2", "Account_Name": "acme inc"}], LENGTHS,
         "ACCOUNT_NAME_NOT_UNIQUE_IN_ZOHO"),
        ([], {**LENGTHS, "Accounts": {"Account_Name": 4}}, "VALUE_TOO_LONG"),
    ],
)
def test_an_account_problem_names_its_customers_and_warns_on_each_contact(zoho_accounts, lengths, code):
    customers = [customer("c1", company="Acme Inc"), customer("c2", company="ACME INC "), customer("c3")]
    rows = build_plan(inputs(customers=customers, zoho_accounts=zoho_accounts, field_lengths=lengths))
    (account,) = [r for r in rows if r.module == "Accounts"]
    assert (account.action, account.code) == ("error", code)
    assert account.refs["customers"] == ["c1", "c2"] and "affects customers c1, c2" in account.reason
    for cid in ("c1", "c2"):  # still created, without the account, and saying so
        contact_row = row(rows, "Contacts", cid)
        assert contact_row.action == "create" and contact_row.refs["warning"]["code"] == code
        assert contact_row.refs["warning"]["message"].startswith("synced without its account: ")
    assert "warning" not in (row(rows, "Contacts", "c3").refs or {})  # no company, nothing to warn about


# --------------------------------------------------------------------------------------------- deals
def test_new_deal_fields():
    rows = build_plan(inputs(customers=[customer("c1", company="Acme")],
                             subscriptions=[sub("s1", "c1", mrr=123456, created_at=1_704_067_200)]))
    d = row(rows, "Deals", "s1")
    assert d.action == "create"
    assert d.payload["Deal_Name"] == "s1"
    assert d.payload["Amount"] == 1234.56
    assert d.payload["Closing_Date"] == "2024-01-01"
    assert (d.payload["Pipeline"], d.payload["Stage"]) == ("Standard (Standard)", "Closed Won")
    assert d.payload["Owner"] == {"id": "u1"}
    assert d.refs == {"Contact_Name": "c1", "Account_Name": "acme"}


@pytest.mark.parametrize(
    "subscription, kw, action, code",
    [
        (sub("s1", "c1", status="cancelled"), {}, "skip", None),
        (sub("s1", "c1", deleted=True), {}, "skip", None),
        (sub("s1", "c1", status="non_renewing"), {}, "create", None),
        (sub("s1", "c1"), {"rules": Rules(deal_stages={"active": "Won Big"})}, "error", "STAGE_NOT_IN_PIPELINE"),
        (sub("s1", "c1"), {"rules": Rules(deal_pipeline="Nope")}, "error", "PIPELINE_NOT_FOUND"),
        (sub("s1", "c1", currency_code="EUR"), {}, "error", "CURRENCY_NEEDS_MULTI_CURRENCY"),
        (sub("s1", "c1", currency_code="EUR"), {"multi_currency": True}, "create", None),
        (sub("s1", "c1"), {"owner_id": None, "owner_error": "deal owner x is not a Zoho CRM user"}, "error",
         "OWNER_NOT_FOUND"),
    ],
)
def test_deal_rules(subscription, kw, action, code):
    rows = build_plan(inputs(customers=[customer("c1")], subscriptions=[subscription], **kw))
    d = row(rows, "Deals", "s1")
    assert (d.action, d.code) == (action, code), d.reason


def test_jpy_amount_is_in_major_units():
    assert mapping.to_major_units(3900, "JPY") == 3900
    assert mapping.to_major_units(3900, "USD") == 39.0
    assert mapping.to_major_units(1, "EUR") == 0.01


def test_deal_follows_mrr_and_status_changes():
    existing = {"id": "d1", "Deal_Name": "s1", "Amount": 29.0, "Closing_Date": "2023-11-14",
                "Pipeline": "Standard (Standard)", "Stage": "Closed Won", "Contact_Name": {"id": "z1"}}
    common = dict(customers=[customer("c1")], zoho_contacts=[contact("z1", Email="c1@example.com")],
                  contact_links={"c1": "z1"}, zoho_deals=[existing], deal_links={"s1": "d1"})
    same = build_plan(inputs(subscriptions=[sub("s1", "c1")], **common))
    assert row(same, "Deals", "s1").action == "noop"
    changed = build_plan(inputs(subscriptions=[sub("s1", "c1", mrr=9900, status="non_renewing")], **common))
    d = row(changed, "Deals", "s1")
    assert d.action == "update" and d.payload == {"Amount": 99.0, "Stage": "Negotiation/Review"}


def test_deal_of_a_skipped_contact_is_skipped_with_the_rule_named():
    rows = build_plan(inputs(customers=[customer("c1")], subscriptions=[sub("s1", "c1")],
                             rules=Rules(no_matching_contact="skip")))
    assert row(rows, "Deals", "s1").action == "skip"
    assert "no_matching_contact=skip" in row(rows, "Deals", "s1").reason


def test_every_record_in_scope_gets_exactly_one_row():
    customers = [customer(f"c{i}") for i in range(20)]
    subs = [sub(f"s{i}", f"c{i % 20}", status=["active", "cancelled"][i % 2]) for i in range(40)]
    rows = build_plan(inputs(customers=customers, subscriptions=subs))
    counts = summarize(rows)
    assert sum(counts["Contacts"].values()) == 20
    assert sum(counts["Deals"].values()) == 40


def test_plan_is_deterministic():
    data = inputs(customers=[customer("c1", company="B"), customer("c2", company="a")],
                  subscriptions=[sub("s1", "c1"), sub("s2", "c2")])
    assert [r.as_dict() for r in build_plan(data)] == [r.as_dict() for r in build_plan(replace(data))]


def test_reconcile_pending_links_records_a_lost_answer_created():
    pending = [("c1", {"Last_Name": "Nobody", "First_Name": "Ann"}), ("c2", {"Last_Name": "Never"})]
    records = [{"id": "z9", "Last_Name": "Nobody", "First_Name": "Ann"}, {"id": "z8", "Last_Name": "Nobody"}]
    assert reconcile_pending(pending, records, linked_ids=set()) == [("c1", "z9")]
    assert reconcile_pending(pending, records, linked_ids={"z9"}) == []
