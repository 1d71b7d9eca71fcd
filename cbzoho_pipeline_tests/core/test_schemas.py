"""The pandera contract and row rules on Chargebee pages, as the recorded payloads and edge cases show them."""

from __future__ import annotations

import json

import pytest

from cbzoho_pipeline.chargebee.schemas import contract_problems, row_rejects


def test_recorded_payloads_honour_the_contract(fixtures_dir):
    for name, stream, key in (("customer.json", "customers", "customer"),
                              ("customer_multiple.json", "customers", "customer"),
                              ("customer_page1.json", "customers", "customer"),
                              ("subscription.json", "subscriptions", "subscription"),
                              ("subscription_multiple.json", "subscriptions", "subscription")):
        page = [entry[key] for entry in json.loads((fixtures_dir / name).read_text())["list"]]
        assert contract_problems(stream, page) == [], name
    records = json.loads((fixtures_dir / "test_site_customers.json").read_text())
    assert contract_problems("customers", records) == []


@pytest.mark.parametrize("page, column", [
    ([{"id": "a", "created_at": "yesterday"}], "created_at"),
    ([{"id": "a"}, {"id": "a"}], "id"),
    ([{"first_name": "no id"}], "id"),
    ([{"id": "a", "deleted": "no"}], "deleted"),
    ([{"id": "a", "email": 42}], "email"),
])
def test_contract_breaches_name_the_column(page, column):
    problems = contract_problems("customers", page)
    assert problems and {p["column"] for p in problems} >= {column}


@pytest.mark.parametrize("email, rejected", [
    ("ada@example.com", False), (None, False), ("   ", False), ("not-an-email", True), ("a@b", True),
    ("two@@example.com", True),
])
def test_row_rule_sets_aside_emails_zoho_rejects(email, rejected):
    customer = {"id": "c1", "resource_version": 7, **({"email": email} if email is not None else {})}
    rejects = row_rejects("customers", [customer])
    assert bool(rejects) is rejected
    if rejected:
        assert rejects[0][:2] == ("c1", 7) and "email" in rejects[0][2]


def test_subscription_contract_and_rows():
    good = {"id": "s1", "customer_id": "c1", "status": "active", "currency_code": "USD", "mrr": 100}
    assert contract_problems("subscriptions", [good]) == []
    assert {p["column"] for p in contract_problems("subscriptions", [{**good, "status": "exploded"}])} == {"status"}
    assert row_rejects("subscriptions", [{**good, "mrr": -1}])[0][0] == "s1"
