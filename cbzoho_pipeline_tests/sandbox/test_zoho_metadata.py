"""Contract tests of the sandbox's Zoho metadata endpoints: users, fields, layouts, pipelines, modules.

Why these tests exist: the sync validates its field mapping against `settings/fields` (lengths, unique
and external-ID flags, custom fields), resolves owners through `users` and checks deal stages against
the pipelines from `settings/layouts` and `settings/pipeline`. The metadata must reflect the org's
settings, and what it announces must be what record writes enforce.
"""

from __future__ import annotations

import pytest

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp

PIPE = "Standard (Standard)"


@pytest.fixture
def zoho(sandbox):
    return ZohoHttp(sandbox)


def fields_of(zoho, module):
    response = zoho.get("settings/fields", params={"module": module})
    assert response.status_code == 200
    return {f["api_name"]: f for f in response.json()["fields"]}


def test_users_by_type(sandbox, zoho):
    sandbox.settings_zoho("sandbox", users=[
        {"email": "admin@acme.example", "full_name": "Ada Admin", "profile": {"name": "Administrator"}},
        {"email": "gone@acme.example", "full_name": "Gone User", "status": "inactive"},
        {"email": "new@acme.example", "full_name": "New User", "confirm": False},
    ])
    def emails(kind):
        response = zoho.get("users", params={"type": kind})
        return [] if response.status_code == 204 else [u["email"] for u in response.json()["users"]]
    assert emails("AllUsers") == ["admin@acme.example", "gone@acme.example", "new@acme.example"]
    assert emails("ActiveUsers") == ["admin@acme.example", "new@acme.example"]
    assert emails("DeactiveUsers") == ["gone@acme.example"]
    assert emails("NotConfirmedUsers") == ["new@acme.example"]
    assert emails("ActiveConfirmedUsers") == ["admin@acme.example"]
    assert emails("AdminUsers") == ["admin@acme.example"]
    assert emails("CurrentUser") == ["admin@acme.example"]
    assert emails("DeletedUsers") == []
    body = zoho.get("users", params={"type": "AllUsers", "per_page": 2}).json()
    assert body["info"] == {"per_page": 2, "count": 2, "page": 1, "more_records": True}
    user = body["users"][0]
    assert {"id", "full_name", "first_name", "last_name", "email", "status", "role", "profile", "zuid",
            "confirm", "time_zone", "locale"} <= set(user)
    assert zoho.get(f"users/{user['id']}").json()["users"][0]["email"] == "admin@acme.example"
    assert zoho.get("users", params={"type": "Everyone"}).status_code == 400
    # an inactive user cannot own records
    gone = next(u for u in zoho.get("users").json()["users"] if u["status"] == "inactive")
    owned = zoho.insert("Contacts", {"Last_Name": "L", "Owner": {"id": gone["id"]}})
    assert owned.json()["data"][0]["details"]["api_name"] == "Owner"


def test_standard_fields_of_each_module(zoho):
    contacts = fields_of(zoho, "Contacts")
    for name in ("First_Name", "Last_Name", "Email", "Phone", "Mobile", "Account_Name", "Mailing_Street",
                 "Mailing_City", "Mailing_State", "Mailing_Zip", "Mailing_Country", "Description", "Owner",
                 "Full_Name", "Created_Time", "Modified_Time"):
        assert name in contacts, name
    assert contacts["Last_Name"]["length"] == 80 and contacts["Last_Name"]["system_mandatory"] is True
    assert contacts["Email"]["data_type"] == "email" and contacts["Email"]["unique"] == {"case_sensitive": False}
    assert contacts["Full_Name"]["read_only"] is True
    assert contacts["Account_Name"]["lookup"]["module"]["api_name"] == "Accounts"
    assert contacts["Account_Name"]["json_type"] == "jsonobject"
    accounts = fields_of(zoho, "Accounts")
    assert accounts["Account_Name"]["length"] == 100 and "Billing_City" in accounts and "Website" in accounts
    deals = fields_of(zoho, "Deals")
    assert deals["Deal_Name"]["length"] == 120
    assert deals["Amount"]["data_type"] == "currency" and deals["Amount"]["json_type"] == "double"
    assert deals["Closing_Date"]["data_type"] == "date"
    assert [p["display_value"] for p in deals["Pipeline"]["pick_list_values"]] == [PIPE]
    assert "Closed Won" in [p["display_value"] for p in deals["Stage"]["pick_list_values"]]
    assert deals["Contact_Name"]["lookup"]["module"]["api_name"] == "Contacts"
    assert "Currency" not in deals


def test_fields_follow_settings(sandbox, zoho):
    prod = ZohoHttp(sandbox, "production")
    assert fields_of(prod, "Contacts")["Email"]["unique"] == {}
    sandbox.settings_zoho("sandbox", external_id_fields={"Contacts": "Chargebee_Customer_ID"},
                          custom_fields={"Deals": [{"api_name": "Subscription_ID", "data_type": "text",
                                                    "length": 50, "unique": True},
                                                   {"api_name": "MRR", "data_type": "currency"}]},
                          field_lengths={"Contacts": {"Phone": 20}}, multi_currency=True)
    contacts = fields_of(zoho, "Contacts")
    ext = contacts["Chargebee_Customer_ID"]
    assert ext["custom_field"] is True and ext["external"]["show"] is True and ext["unique"]
    assert contacts["Phone"]["length"] == 20
    deals = fields_of(zoho, "Deals")
    assert deals["Subscription_ID"]["length"] == 50 and deals["Subscription_ID"]["unique"]
    assert deals["MRR"]["data_type"] == "currency"
    assert [p["display_value"] for p in deals["Currency"]["pick_list_values"]] == ["USD", "EUR", "GBP", "JPY"]
    # what the metadata announces, writes enforce
    deal = {"Deal_Name": "D", "Stage": "Qualification", "Pipeline": PIPE, "Subscription_ID": "sub_1", "MRR": 10}
    assert zoho.insert("Deals", deal).status_code == 201
    assert zoho.insert("Deals", deal).json()["data"][0]["code"] == "DUPLICATE_DATA"
    assert zoho.insert("Deals", {**deal, "Subscription_ID": "s" * 51}).json()["data"][0]["details"][
        "maximum_length"] == 50
    assert zoho.insert("Deals", {**deal, "Subscription_ID": "sub_2", "MRR": "10"}).status_code == 400


def test_fields_needs_a_known_module(zoho):
    assert zoho.get("settings/fields").json()["code"] == "REQUIRED_PARAM_MISSING"
    assert zoho.get("settings/fields", params={"module": "Widgets"}).json()["code"] == "INVALID_MODULE"


def test_layout_and_pipelines(sandbox, zoho):
    sandbox.settings_zoho("sandbox", pipelines={PIPE: ["Qualification", "Closed Won", "Closed Lost"],
                                                "Renewals": ["Renewal Due", "Renewed", "Churned"]})
    layouts = zoho.get("settings/layouts", params={"module": "Deals"}).json()["layouts"]
    assert len(layouts) == 1 and layouts[0]["name"] == "Standard"
    fields = {f["api_name"]: f for s in layouts[0]["sections"] for f in s["fields"]}
    pipeline_field = fields["Pipeline"]
    assert [(p["display_value"], [m["display_value"] for m in p["maps"]])
            for p in pipeline_field["pick_list_values"]] == [
        (PIPE, ["Qualification", "Closed Won", "Closed Lost"]), ("Renewals", ["Renewal Due", "Renewed", "Churned"])]
    layout_id = layouts[0]["id"]
    assert zoho.get(f"settings/layouts/{layout_id}", params={"module": "Deals"}).json()["layouts"][0]["id"] == layout_id
    pipelines = zoho.get("settings/pipeline", params={"layout_id": layout_id}).json()["pipeline"]
    assert [(p["display_value"], p["default"]) for p in pipelines] == [(PIPE, True), ("Renewals", False)]
    stages = {m["display_value"]: m for m in pipelines[0]["maps"]}
    assert set(stages["Closed Won"]) >= {"id", "display_value", "actual_value", "sequence_number",
                                         "forecast_type", "forecast_category"}
    assert (stages["Closed Won"]["forecast_type"], stages["Closed Lost"]["forecast_type"],
            stages["Qualification"]["forecast_type"]) == ("Closed Won", "Closed Lost", "Open")
    assert [m["sequence_number"] for m in pipelines[1]["maps"]] == [1, 2, 3]
    assert zoho.get("settings/pipeline").json()["code"] == "REQUIRED_PARAM_MISSING"
    assert zoho.get("settings/pipeline", params={"layout_id": "1"}).status_code == 400


def test_modules_listing(zoho):
    modules = zoho.get("settings/modules").json()["modules"]
    assert [m["api_name"] for m in modules] == ["Accounts", "Contacts", "Deals"]
    assert all(m["api_supported"] for m in modules)


def test_bad_settings_are_refused(sandbox):
    for bad in ({"unique_emails": True}, {"daily_credits": "many"},
                {"custom_fields": {"Contacts": [{"api_name": "Email"}]}}, {"pipelines": {}}):
        with pytest.raises(AssertionError):
            sandbox.control("POST", "zoho/sandbox/settings", bad)
    assert sandbox.control("GET", "zoho/sandbox/settings")["daily_credits"] == 50000
