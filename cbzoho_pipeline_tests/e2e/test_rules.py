"""The sync's global rules, end to end: Chargebee in the sandbox -> Dagster job -> records in Zoho."""

from __future__ import annotations

import itertools

import pytest

from .conftest import by, site_settings

RULE_COMBINATIONS = list(itertools.product(("create", "skip"), ("overwrite", "fill_blanks", "link_only"),
                                           ("create", "leave_empty")))


@pytest.mark.parametrize("no_match, on_match, no_account", RULE_COMBINATIONS)
def test_every_rule_combination(e2e, no_match, on_match, no_account):
    e2e.configure(no_matching_contact=no_match, matching_contact=on_match, company_without_account=no_account)
    e2e.sandbox.load(zoho={"sandbox": {
        "Contacts": [{"Last_Name": "Zoho-Last", "First_Name": "", "Email": "match@example.com", "Phone": "+1 111"}],
        "Accounts": [{"Account_Name": "Existing Co"}],
    }})
    e2e.add_customer(id="c_match", first_name="Mia", last_name="Match", email="Match@Example.com",
                     phone="+1 999", company="existing co")
    e2e.add_customer(id="c_new", first_name="Nia", last_name="New", email="new@example.com", company="Brand New Ltd")

    outcome = e2e.sync()
    assert outcome.success

    contacts = by(e2e.zoho("Contacts"), "Email")
    matched = contacts["match@example.com"]
    existing_account = by(e2e.zoho("Accounts"), "Account_Name")["Existing Co"]
    # the matching contact: rule decides which fields change; it is linked whatever the rule
    assert e2e.links("Contacts")["c_match"] == matched["id"]
    if on_match == "overwrite":
        assert (matched["Last_Name"], matched["First_Name"], matched["Phone"]) == ("Match", "Mia", "+1 999")
        assert matched["Account_Name"]["id"] == existing_account["id"]
    elif on_match == "fill_blanks":
        assert (matched["Last_Name"], matched["First_Name"], matched["Phone"]) == ("Zoho-Last", "Mia", "+1 111")
        assert matched["Account_Name"]["id"] == existing_account["id"]  # was blank
    else:
        assert (matched["Last_Name"], matched["First_Name"], matched["Phone"]) == ("Zoho-Last", "", "+1 111")
        assert not matched.get("Account_Name")

    # the customer without a match: created or skipped
    if no_match == "create":
        new = contacts["new@example.com"]
        assert (new["First_Name"], new["Last_Name"]) == ("Nia", "New")
        accounts = by(e2e.zoho("Accounts"), "Account_Name")
        if no_account == "create":
            assert new["Account_Name"]["id"] == accounts["Brand New Ltd"]["id"]
        else:
            assert "Brand New Ltd" not in accounts
            assert not new.get("Account_Name")
    else:
        assert "new@example.com" not in contacts
        assert outcome.counts["Contacts"]["skipped"] == 1
    assert outcome.check("synced_contacts", "sync_errors").passed


def test_email_not_unique_in_zoho_is_a_sync_error_and_nothing_is_written(e2e):
    # the production org allows duplicate emails
    e2e.configure(sites={"acme": site_settings("acme")})
    e2e.sandbox.load(zoho={"production": {"Contacts": [
        {"Last_Name": "One", "Email": "dup@example.com"}, {"Last_Name": "Two", "Email": "DUP@example.com"}]}})
    e2e.add_customer(site="acme", id="c_dup", last_name="Chargebee", email="dup@example.com")
    e2e.add_customer(site="acme", id="c_ok", last_name="Fine", email="fine@example.com")

    outcome = e2e.sync("acme")
    assert outcome.success
    contacts = e2e.zoho("Contacts", org="production")
    assert sorted(c["Last_Name"] for c in contacts) == ["Fine", "One", "Two"]  # nothing written for c_dup
    check = outcome.check("synced_contacts", "sync_errors")
    assert not check.passed
    rows = check.metadata["errors_json"].value
    assert [(r["chargebee_id"], r["message"]) for r in rows] == [("c_dup", "email not unique in Zoho CRM")]
    dupes = outcome.check("zoho_contacts", "duplicate_emails_in_zoho")
    assert not dupes.passed and dupes.metadata["duplicate_emails"].value == 1


def test_email_shared_by_chargebee_customers_errors_for_each(e2e):
    e2e.add_customer(id="c_a", last_name="A", email="shared@example.com")
    e2e.add_customer(id="c_b", last_name="B", email="Shared@Example.com")
    outcome = e2e.sync()
    assert e2e.zoho("Contacts") == []
    errors = {e["source_key"]: e["code"] for e in e2e.errors()}
    assert errors == {"c_a": "EMAIL_SHARED_IN_CHARGEBEE", "c_b": "EMAIL_SHARED_IN_CHARGEBEE"}
    assert not outcome.check("synced_contacts", "sync_errors").passed


def test_field_filled_in_chargebee_reaches_zoho_next_run(e2e):
    e2e.add_customer(id="c1", last_name="Lovelace", email="ada@example.com")
    e2e.sync()
    assert "Phone" not in e2e.zoho("Contacts")[0] or not e2e.zoho("Contacts")[0]["Phone"]
    e2e.cb("POST", "customers/c1", phone="+44 20 7946 0000", first_name="Ada")
    outcome = e2e.sync()
    (contact,) = e2e.zoho("Contacts")
    assert (contact["Phone"], contact["First_Name"]) == ("+44 20 7946 0000", "Ada")
    assert outcome.counts["Contacts"]["updated"] == 1


@pytest.mark.parametrize("rule, expected_first_name", [("overwrite", "Ada"), ("fill_blanks", "Countess")])
def test_zoho_side_edit(e2e, rule, expected_first_name):
    e2e.configure(matching_contact=rule)
    e2e.add_customer(id="c1", first_name="Ada", last_name="Lovelace", email="ada@example.com")
    e2e.sync()
    (contact,) = e2e.zoho("Contacts")
    # someone edits the contact in Zoho
    with e2e.zoho_client() as person:
        assert person.update("Contacts", [{"id": contact["id"], "First_Name": "Countess"}])[0].ok
    e2e.cb("POST", "customers/c1", phone="+1 555 0100")  # and something changes in Chargebee too
    e2e.sync()
    (contact,) = e2e.zoho("Contacts")
    assert contact["First_Name"] == expected_first_name
    assert contact["Phone"] == "+1 555 0100"


def test_last_name_fallback_creates_a_valid_contact(e2e):
    e2e.add_customer(id="c_noname", email="nameless@example.com", company="Solo GmbH")
    e2e.add_customer(id="c_nothing")
    e2e.sync()
    names = sorted(c["Last_Name"] for c in e2e.zoho("Contacts"))
    assert names == ["Solo GmbH", "c_nothing"]  # company before the email local part, then the id
    assert e2e.errors() == []
