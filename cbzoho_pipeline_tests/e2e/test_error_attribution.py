"""Every sync error names the Chargebee records it concerns, and Zoho's own words about the field.

An account is keyed by a company name, but people look for customers: an account problem is reported
against each customer whose company it is, and each of their contacts, synced without the account, carries a
warning saying so. Zoho names the field it refused and what it expected; the message keeps that.
"""

from __future__ import annotations

from .conftest import by


def test_an_ambiguous_account_names_its_customers_and_warns_on_their_contacts(e2e):
    e2e.sandbox.load(zoho={"sandbox": {"Accounts": [{"Account_Name": "Globex"}, {"Account_Name": "globex"}]}})
    e2e.add_customer(id="c1", last_name="One", email="one@example.com", company="Globex")
    e2e.add_customer(id="c2", last_name="Two", email="two@example.com", company="GLOBEX")
    outcome = e2e.sync()
    assert outcome.success

    rows = {(r["module"], r["chargebee_id"]): r for r in e2e.errors()}
    account = rows[("Accounts", "c1, c2")]
    assert account["code"] == "ACCOUNT_NAME_NOT_UNIQUE_IN_ZOHO" and account["severity"] == "error"
    assert "not unique in Zoho CRM" in account["message"] and "affects customers c1, c2" in account["message"]
    for cid in ("c1", "c2"):
        warning = rows[("Contacts", cid)]
        assert (warning["code"], warning["severity"]) == ("ACCOUNT_NAME_NOT_UNIQUE_IN_ZOHO", "warning")
        assert warning["message"].startswith("synced without its account: account name 'Globex' not unique")
    contacts = by(e2e.zoho("Contacts"), "Email")
    assert set(contacts) == {"one@example.com", "two@example.com"}
    assert not any(c.get("Account_Name") for c in contacts.values())  # created, but without the account

    # Once the accounts are merged in Zoho, the next run links them and the warnings go away.
    keep, drop = sorted(e2e.zoho("Accounts"), key=lambda a: a["Account_Name"])
    e2e.zoho_client().delete("Accounts", [str(drop["id"])])
    assert e2e.sync().success
    assert e2e.errors() == []
    assert {str(c["Account_Name"]["id"]) for c in e2e.zoho("Contacts")} == {str(keep["id"])}


def test_zohos_refusal_keeps_the_field_and_the_limit_it_named(e2e):
    e2e.add_customer(id="c_short", last_name="Short", email="short@example.com")
    e2e.sync()  # Zoho's metadata is now cached (Last_Name up to 80)
    e2e.sandbox.settings_zoho("sandbox", field_lengths={"Contacts": {"Last_Name": 10}})
    e2e.add_customer(id="c_long", last_name="Longer-than-ten", email="long@example.com")
    outcome = e2e.sync()
    (row,) = outcome.check("synced_contacts", "sync_errors").metadata["errors_json"].value
    assert (row["chargebee_id"], row["code"]) == ("c_long", "INVALID_DATA")
    assert "field Last_Name" in row["message"] and "at most 10 characters" in row["message"], row["message"]


def test_warnings_alone_make_the_check_a_warning_not_a_failure(e2e):
    e2e.sandbox.load(zoho={"sandbox": {"Accounts": [{"Account_Name": "Initech"}, {"Account_Name": "INITECH"}]}})
    e2e.add_customer(id="c1", last_name="One", email="one@example.com", company="Initech")
    outcome = e2e.sync()
    contacts = outcome.check("synced_contacts", "sync_errors")
    assert not contacts.passed and contacts.severity.value == "WARN"
    assert contacts.metadata["error_count"].value == 0 and contacts.metadata["warning_count"].value == 1
    (row,) = contacts.metadata["errors_json"].value
    assert (row["chargebee_id"], row["severity"]) == ("c1", "warning")
    accounts = outcome.check("synced_accounts", "sync_errors")
    assert not accounts.passed and accounts.severity.value == "ERROR"
    assert accounts.metadata["errors_json"].value[0]["chargebee_id"] == "c1"
