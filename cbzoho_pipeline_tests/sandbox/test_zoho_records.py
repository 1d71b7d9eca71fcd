"""Contract tests of the sandbox's Zoho record writes (insert, update, upsert, delete), over real HTTP.

Why these tests exist: the sync pushes Chargebee data through these endpoints and reads its own
results per record. The sandbox must answer like Zoho: one result per input record in input order,
201/200/207/400 by outcome, the documented per-record codes (MANDATORY_NOT_FOUND, INVALID_DATA with
maximum_length / expected_data_type, DUPLICATE_DATA, MULTIPLE_OR_MULTI_ERRORS), upsert matching by
system and unique fields, and real state changes visible in the org afterwards. Each test asserts the
wire and/or the dumped records.
"""

from __future__ import annotations

import pytest

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp

PIPE = "Standard (Standard)"


@pytest.fixture
def zoho(sandbox):
    return ZohoHttp(sandbox)


def codes(response):
    return [item["code"] for item in response.json()["data"]]


def test_insert_success_shape_and_stored_record(sandbox, zoho):
    account_id = zoho.ok_id("Accounts", {"Account_Name": "Analytical Engines"})
    response = zoho.insert("Contacts", {"First_Name": "Ada", "Last_Name": "Lovelace", "Email": "ada@example.com",
                                        "Account_Name": {"id": account_id}, "Unknown_Field": "ignored"})
    assert response.status_code == 201
    item = response.json()["data"][0]
    assert item["code"] == "SUCCESS" and item["status"] == "success" and item["message"] == "record added"
    assert set(item["details"]) == {"Modified_Time", "Modified_By", "Created_Time", "id", "Created_By"}
    record_id = item["details"]["id"]
    assert len(record_id) == 19 and record_id.isdigit() and record_id != account_id
    assert item["details"]["Created_By"]["name"] == "Ada Admin"
    assert item["details"]["Created_Time"].endswith("+05:30")
    [stored] = sandbox.dump("sandbox", "Contacts")
    assert stored["id"] == record_id
    assert stored["Full_Name"] == "Ada Lovelace"
    assert stored["Account_Name"] == {"name": "Analytical Engines", "id": account_id}
    assert stored["Owner"]["email"] == "admin@acme.example"
    assert stored["Created_Time"] == item["details"]["Created_Time"]
    assert "Unknown_Field" not in stored


def test_results_follow_input_order_with_207_and_400(sandbox, zoho):
    mixed = zoho.insert("Contacts", {"Last_Name": "One"}, {"First_Name": "NoLast"}, {"Last_Name": "Three"})
    assert mixed.status_code == 207
    assert codes(mixed) == ["SUCCESS", "MANDATORY_NOT_FOUND", "SUCCESS"]
    assert mixed.json()["data"][1]["details"] == {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"}
    failed = zoho.insert("Contacts", {"First_Name": "a"}, {"Last_Name": ""})
    assert failed.status_code == 400 and codes(failed) == ["MANDATORY_NOT_FOUND", "MANDATORY_NOT_FOUND"]
    assert sorted(r["Last_Name"] for r in sandbox.dump("sandbox", "Contacts")) == ["One", "Three"]


@pytest.mark.parametrize("module, record, api_name", [
    ("Accounts", {"Phone": "1"}, "Account_Name"),
    ("Deals", {"Stage": "Qualification", "Pipeline": PIPE}, "Deal_Name"),
    ("Deals", {"Deal_Name": "D", "Pipeline": PIPE}, "Stage"),
    ("Deals", {"Deal_Name": "D", "Stage": "Qualification"}, "Pipeline"),
])
def test_mandatory_fields_per_module(zoho, module, record, api_name):
    response = zoho.insert(module, record)
    assert response.status_code == 400
    assert response.json()["data"][0] == {"code": "MANDATORY_NOT_FOUND", "message": "required field not found",
                                          "status": "error",
                                          "details": {"api_name": api_name, "json_path": f"$.data[0].{api_name}"}}


@pytest.mark.parametrize("module, record, details", [
    ("Contacts", {"Last_Name": "x" * 81}, {"maximum_length": 80, "api_name": "Last_Name"}),
    ("Contacts", {"Last_Name": "L", "First_Name": "f" * 41}, {"maximum_length": 40, "api_name": "First_Name"}),
    ("Contacts", {"Last_Name": "L", "Phone": "1" * 31}, {"maximum_length": 30, "api_name": "Phone"}),
    ("Contacts", {"Last_Name": "L", "Email": "not-an-email"}, {"expected_data_type": "email", "api_name": "Email"}),
    ("Contacts", {"Last_Name": "L", "Email": "a@b"}, {"expected_data_type": "email", "api_name": "Email"}),
    ("Contacts", {"Last_Name": 42}, {"expected_data_type": "text", "api_name": "Last_Name"}),
    ("Accounts", {"Account_Name": "a" * 101}, {"maximum_length": 100, "api_name": "Account_Name"}),
    ("Deals", {"Deal_Name": "d" * 121, "Stage": "Qualification", "Pipeline": PIPE},
     {"maximum_length": 120, "api_name": "Deal_Name"}),
    ("Deals", {"Deal_Name": "D", "Stage": "Qualification", "Pipeline": PIPE, "Amount": "12.50"},
     {"expected_data_type": "double", "api_name": "Amount"}),
    ("Deals", {"Deal_Name": "D", "Stage": "Qualification", "Pipeline": PIPE, "Closing_Date": "31/07/2024"},
     {"expected_data_type": "date", "api_name": "Closing_Date"}),
    ("Deals", {"Deal_Name": "D", "Stage": "Qualification", "Pipeline": PIPE, "Closing_Date": "2024-02-30"},
     {"expected_data_type": "date", "api_name": "Closing_Date"}),
    ("Contacts", {"Last_Name": "L", "Account_Name": "123"}, {"expected_data_type": "jsonobject",
                                                             "api_name": "Account_Name"}),
])
def test_invalid_data_details(zoho, module, record, details):
    response = zoho.insert(module, record)
    assert response.status_code == 400
    item = response.json()["data"][0]
    assert item["code"] == "INVALID_DATA" and item["status"] == "error"
    assert item["details"] == {**details, "json_path": f"$.data[0].{details['api_name']}"}


def test_field_lengths_follow_settings(sandbox, zoho):
    sandbox.settings_zoho("sandbox", field_lengths={"Contacts": {"Last_Name": 5}})
    assert zoho.insert("Contacts", {"Last_Name": "Sixsix"}).json()["data"][0]["details"]["maximum_length"] == 5
    assert zoho.insert("Contacts", {"Last_Name": "Five5"}).status_code == 201


def test_lookups_and_owner_must_exist(sandbox, zoho):
    contact_id = zoho.ok_id("Contacts", {"Last_Name": "C"})
    bad_account = zoho.insert("Contacts", {"Last_Name": "L", "Account_Name": {"id": "1234567890123456789"}})
    assert bad_account.json()["data"][0]["code"] == "INVALID_DATA"
    assert bad_account.json()["data"][0]["details"]["api_name"] == "Account_Name"
    # a Contact id is not an Account
    wrong_module = zoho.insert("Deals", {"Deal_Name": "D", "Stage": "Qualification", "Pipeline": PIPE,
                                         "Account_Name": {"id": contact_id}})
    assert wrong_module.json()["data"][0]["details"]["api_name"] == "Account_Name"
    bad_owner = zoho.insert("Contacts", {"Last_Name": "L", "Owner": {"id": contact_id}})
    assert bad_owner.json()["data"][0]["details"]["api_name"] == "Owner"
    sales = next(u for u in sandbox.control("GET", "zoho/sandbox/settings")["users"]
                 if u["email"] == "sales@acme.example")
    deal = zoho.insert("Deals", {"Deal_Name": "D", "Stage": "Qualification", "Pipeline": PIPE,
                                 "Contact_Name": {"id": contact_id}, "Owner": {"id": sales["id"]}})
    assert deal.status_code == 201
    [stored] = sandbox.dump("sandbox", "Deals")
    assert stored["Contact_Name"] == {"name": "C", "id": contact_id}
    assert stored["Owner"] == {"name": "Sam Sales", "id": sales["id"], "email": "sales@acme.example"}


def test_stage_must_belong_to_the_pipeline(sandbox, zoho):
    sandbox.settings_zoho("sandbox", pipelines={PIPE: ["Qualification", "Closed Won"],
                                                "Renewals": ["Renewal Due", "Renewed"]})
    wrong_stage = zoho.insert("Deals", {"Deal_Name": "D", "Stage": "Renewed", "Pipeline": PIPE})
    item = wrong_stage.json()["data"][0]
    assert item["code"] == "INVALID_DATA" and item["details"]["api_name"] == "Stage"
    unknown = zoho.insert("Deals", {"Deal_Name": "D", "Stage": "Renewed", "Pipeline": "Nope"})
    assert unknown.json()["data"][0]["details"]["api_name"] == "Pipeline"
    deal_id = zoho.ok_id("Deals", {"Deal_Name": "D", "Stage": "Renewed", "Pipeline": "Renewals"})
    moved = zoho.put("Deals", json={"data": [{"id": deal_id, "Stage": "Closed Won"}]})
    assert moved.status_code == 400 and moved.json()["data"][0]["details"]["api_name"] == "Stage"
    both = zoho.put("Deals", json={"data": [{"id": deal_id, "Stage": "Closed Won", "Pipeline": PIPE}]})
    assert both.status_code == 200
    assert sandbox.dump("sandbox", "Deals")[0]["Stage"] == "Closed Won"


def test_currency_follows_multi_currency_setting(sandbox, zoho):
    deal = {"Deal_Name": "D", "Stage": "Qualification", "Pipeline": PIPE, "Amount": 99}
    assert zoho.insert("Deals", {**deal, "Currency": "EUR"}).json()["data"][0]["details"]["api_name"] == "Currency"
    assert zoho.insert("Deals", {**deal, "Currency": "USD"}).status_code == 201
    assert "Currency" not in sandbox.dump("sandbox", "Deals")[0]
    sandbox.settings_zoho("sandbox", multi_currency=True)
    assert zoho.insert("Deals", {**deal, "Currency": "EUR"}).status_code == 201
    assert zoho.insert("Deals", {**deal, "Currency": "CHF"}).status_code == 400
    assert zoho.insert("Deals", deal).status_code == 201
    currencies = [d["Currency"] for d in sandbox.dump("sandbox", "Deals")[1:]]
    assert currencies == ["EUR", "USD"]
    assert sandbox.dump("sandbox", "Deals")[1]["Amount"] == 99.0


def test_unique_email_is_case_insensitive_and_a_setting(sandbox, zoho):
    first = zoho.ok_id("Contacts", {"Last_Name": "A", "Email": "Ada@Example.com"})
    dup = zoho.insert("Contacts", {"Last_Name": "B", "Email": "ada@example.COM"})
    assert dup.status_code == 400
    item = dup.json()["data"][0]
    assert item["code"] == "DUPLICATE_DATA" and item["message"] == "duplicate data"
    assert item["details"]["api_name"] == "Email" and item["details"]["json_path"] == "$.data[0].Email"
    assert item["details"]["duplicate_record"]["id"] == first
    assert item["details"]["duplicate_record"]["module"]["api_name"] == "Contacts"
    assert item["details"]["duplicate_record"]["Owner"]["name"] == "Ada Admin"
    # the production org allows duplicate emails by default
    prod = ZohoHttp(sandbox, "production")
    assert prod.insert("Contacts", {"Last_Name": "A", "Email": "x@example.com"},
                       {"Last_Name": "B", "Email": "X@example.com"}).status_code == 201


def test_several_unique_fields_colliding_give_multiple_errors(sandbox, zoho):
    sandbox.settings_zoho("sandbox", external_id_fields={"Contacts": "Chargebee_Customer_ID"})
    zoho.ok_id("Contacts", {"Last_Name": "A", "Email": "a@example.com", "Chargebee_Customer_ID": "cb_1"})
    both = zoho.insert("Contacts", {"Last_Name": "B", "Email": "a@example.com", "Chargebee_Customer_ID": "cb_1"})
    item = both.json()["data"][0]
    assert item["code"] == "MULTIPLE_OR_MULTI_ERRORS"
    assert sorted(e["details"]["api_name"] for e in item["details"]["errors"]) == ["Chargebee_Customer_ID", "Email"]
    assert all(e["code"] == "DUPLICATE_DATA" for e in item["details"]["errors"])
    one = zoho.insert("Contacts", {"Last_Name": "B", "Email": "b@example.com", "Chargebee_Customer_ID": "cb_1"})
    assert one.json()["data"][0]["code"] == "DUPLICATE_DATA"


def test_update_by_body_and_by_url_moves_modified_time(sandbox, zoho):
    record_id = zoho.ok_id("Contacts", {"Last_Name": "Old", "Phone": "1"})
    before = sandbox.dump("sandbox", "Contacts")[0]
    sandbox.control("POST", "clock", {"advance_seconds": 90})
    response = zoho.put("Contacts", json={"data": [{"id": record_id, "Last_Name": "New"},
                                                    {"Last_Name": "no id"},
                                                    {"id": "1234567890123456789", "Last_Name": "x"}]})
    assert response.status_code == 207
    assert codes(response) == ["SUCCESS", "MANDATORY_NOT_FOUND", "INVALID_DATA"]
    assert response.json()["data"][0]["message"] == "record updated"
    after = sandbox.dump("sandbox", "Contacts")[0]
    assert after["Last_Name"] == "New" and after["Phone"] == "1" and after["Full_Name"] == "New"
    assert after["Created_Time"] == before["Created_Time"]
    assert after["Modified_Time"] != before["Modified_Time"]
    sandbox.control("POST", "clock", {"advance_seconds": 90})
    same = zoho.put(f"Contacts/{record_id}", json={"data": [{"Last_Name": "New"}]})
    assert same.status_code == 200
    assert sandbox.dump("sandbox", "Contacts")[0]["Modified_Time"] != after["Modified_Time"]
    cleared = zoho.put(f"Contacts/{record_id}", json={"data": [{"Phone": None}]})
    assert cleared.status_code == 200 and sandbox.dump("sandbox", "Contacts")[0]["Phone"] is None
    emptied = zoho.put(f"Contacts/{record_id}", json={"data": [{"Last_Name": None}]})
    assert codes(emptied) == ["MANDATORY_NOT_FOUND"]


def test_update_into_an_existing_unique_value_is_duplicate(sandbox, zoho):
    zoho.ok_id("Contacts", {"Last_Name": "A", "Email": "a@example.com"})
    b = zoho.ok_id("Contacts", {"Last_Name": "B", "Email": "b@example.com"})
    assert codes(zoho.put(f"Contacts/{b}", json={"data": [{"Email": "A@example.com"}]})) == ["DUPLICATE_DATA"]
    # keeping its own value is not a duplicate
    assert zoho.put(f"Contacts/{b}", json={"data": [{"Email": "B@example.com"}]}).status_code == 200


def test_upsert_matches_system_field_then_inserts(sandbox, zoho):
    existing = zoho.ok_id("Contacts", {"Last_Name": "Old", "Email": "ada@example.com"})
    response = zoho.post("Contacts/upsert", json={"data": [
        {"Last_Name": "Lovelace", "Email": "ADA@example.com"},
        {"Last_Name": "Babbage", "Email": "charles@example.com"},
        {"Email": "nolast@example.com"},
    ], "trigger": []})
    assert response.status_code == 207
    updated, inserted, failed = response.json()["data"]
    assert (updated["action"], updated["duplicate_field"], updated["message"]) == ("update", "Email", "record updated")
    assert updated["details"]["id"] == existing
    assert (inserted["action"], inserted["duplicate_field"], inserted["message"]) == ("insert", None, "record added")
    assert failed["code"] == "MANDATORY_NOT_FOUND" and "action" not in failed
    by_email = {r["Email"]: r for r in sandbox.dump("sandbox", "Contacts")}
    assert by_email["ADA@example.com"]["Last_Name"] == "Lovelace"
    assert by_email["ADA@example.com"]["id"] == existing
    assert len(by_email) == 2
    again = zoho.post("Contacts/upsert", json={"data": [{"Last_Name": "Lovelace", "Email": "ada@example.com"}]})
    assert again.status_code == 200 and again.json()["data"][0]["action"] == "update"


def test_upsert_by_external_id_and_check_order(sandbox, zoho):
    sandbox.settings_zoho("sandbox", external_id_fields={"Contacts": "Chargebee_Customer_ID"})
    a = zoho.ok_id("Contacts", {"Last_Name": "A", "Email": "a@example.com", "Chargebee_Customer_ID": "cb_1"})
    b = zoho.ok_id("Contacts", {"Last_Name": "B", "Email": "b@example.com"})
    # external id only: the system field is not consulted
    ext = zoho.post("Contacts/upsert", json={"data": [{"Last_Name": "A2", "Email": "b@example.com",
                                                        "Chargebee_Customer_ID": "cb_1"}],
                                             "duplicate_check_fields": ["Chargebee_Customer_ID"]})
    item = ext.json()["data"][0]
    # matched A by external id, but B already owns the email: a duplicate, not an update of B
    assert item["code"] == "DUPLICATE_DATA" and item["details"]["duplicate_record"]["id"] == b
    ok = zoho.post("Contacts/upsert", json={"data": [{"Last_Name": "A2", "Chargebee_Customer_ID": "cb_1"},
                                                      {"Last_Name": "B2", "Email": "b@example.com",
                                                       "Chargebee_Customer_ID": "cb_2"}]})
    first, second = ok.json()["data"]
    assert (first["action"], first["duplicate_field"], first["details"]["id"]) == ("update", "Chargebee_Customer_ID", a)
    assert (second["action"], second["duplicate_field"], second["details"]["id"]) == ("update", "Email", b)
    by_id = {r["id"]: r for r in sandbox.dump("sandbox", "Contacts")}
    assert by_id[a]["Last_Name"] == "A2" and by_id[b]["Chargebee_Customer_ID"] == "cb_2"
    bad = zoho.post("Contacts/upsert", json={"data": [{"Last_Name": "x"}], "duplicate_check_fields": ["Phone"]})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_DATA"


def test_upsert_without_check_fields_uses_external_id_after_email(sandbox, zoho):
    sandbox.settings_zoho("sandbox", external_id_fields={"Contacts": "Chargebee_Customer_ID"})
    a = zoho.ok_id("Contacts", {"Last_Name": "A", "Chargebee_Customer_ID": "cb_1"})
    response = zoho.post("Contacts/upsert", json={"data": [{"Last_Name": "A3", "Email": "new@example.com",
                                                             "Chargebee_Customer_ID": "cb_1"}]})
    item = response.json()["data"][0]
    assert (item["action"], item["duplicate_field"], item["details"]["id"]) == ("update", "Chargebee_Customer_ID", a)
    assert sandbox.dump("sandbox", "Contacts")[0]["Email"] == "new@example.com"


def test_upsert_accounts_and_deals_by_name(sandbox, zoho):
    acc = zoho.ok_id("Accounts", {"Account_Name": "Acme Corp"})
    response = zoho.post("Accounts/upsert", json={"data": [{"Account_Name": "ACME corp", "Website": "acme.example"}]})
    assert response.json()["data"][0]["duplicate_field"] == "Account_Name"
    assert response.json()["data"][0]["details"]["id"] == acc
    deal = {"Deal_Name": "Acme – Pro", "Stage": "Qualification", "Pipeline": PIPE}
    assert zoho.post("Deals/upsert", json={"data": [deal]}).json()["data"][0]["action"] == "insert"
    assert zoho.post("Deals/upsert", json={"data": [deal]}).json()["data"][0]["action"] == "update"
    assert len(sandbox.dump("sandbox", "Deals")) == 1


def test_top_level_errors(sandbox, zoho):
    too_many = zoho.insert("Contacts", *[{"Last_Name": str(i)} for i in range(101)])
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "LIMIT_EXCEEDED"
    assert too_many.json()["details"] == {"limit": 100, "param_name": "data"}
    assert zoho.insert("Leads", {"Last_Name": "x"}).json()["code"] == "INVALID_MODULE"
    bad_json = zoho.post("Contacts", data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["code"] == "INVALID_DATA"
    assert bad_json.json()["status"] == "error"
    assert zoho.post("Contacts", json={"records": []}).status_code == 400
    assert zoho.call("PATCH", "Contacts").json()["code"] == "INVALID_REQUEST_METHOD"
    assert zoho.get("nothing/here/at/all").status_code == 404
    assert sandbox.dump("sandbox", "Contacts") == []


def test_exactly_100_records_are_accepted(sandbox, zoho):
    response = zoho.insert("Contacts", *[{"Last_Name": f"L{i}", "Email": f"u{i}@example.com"} for i in range(100)])
    assert response.status_code == 201 and len(response.json()["data"]) == 100
    ids = [item["details"]["id"] for item in response.json()["data"]]
    assert len(set(ids)) == 100 and ids == sorted(ids)


def test_delete_moves_records_to_the_deleted_list(sandbox, zoho):
    a = zoho.ok_id("Contacts", {"Last_Name": "A", "First_Name": "Ann"})
    b = zoho.ok_id("Contacts", {"Last_Name": "B"})
    response = zoho.delete("Contacts", params={"ids": f"{a},1234567890123456789"})
    assert response.status_code == 207
    assert response.json()["data"] == [
        {"code": "SUCCESS", "details": {"id": a}, "message": "record deleted", "status": "success"},
        {"code": "INVALID_DATA", "details": {"id": "1234567890123456789"}, "message": "record not deleted",
         "status": "error"}]
    assert zoho.delete(f"Contacts/{b}").status_code == 200
    assert sandbox.dump("sandbox", "Contacts") == []
    assert zoho.get(f"Contacts/{a}").status_code == 204
    deleted = zoho.get("Contacts/deleted", params={"type": "all"}).json()["data"]
    assert [(d["id"], d["display_name"], d["type"]) for d in deleted] == [(b, "B", "recycle"), (a, "Ann A", "recycle")]
    assert deleted[0]["deleted_by"]["name"] == "Ada Admin" and deleted[0]["created_by"]["name"] == "Ada Admin"
    assert zoho.delete("Contacts").json()["code"] == "REQUIRED_PARAM_MISSING"


def test_deleting_an_account_empties_lookups_to_it(sandbox, zoho):
    acc = zoho.ok_id("Accounts", {"Account_Name": "Gone Inc"})
    zoho.ok_id("Contacts", {"Last_Name": "C", "Account_Name": {"id": acc}})
    zoho.delete(f"Accounts/{acc}")
    assert sandbox.dump("sandbox", "Contacts")[0]["Account_Name"] is None


def test_ids_are_unique_across_modules_and_loaded_ids_are_respected(sandbox, zoho):
    loaded_id = "4150868000000376008"
    sandbox.load(zoho={"sandbox": {"Accounts": [{"id": loaded_id, "Account_Name": "Loaded"}]}})
    acc = zoho.ok_id("Accounts", {"Account_Name": "New"})
    con = zoho.ok_id("Contacts", {"Last_Name": "New", "Account_Name": {"id": loaded_id}})
    assert len({loaded_id, acc, con}) == 3
    assert sandbox.dump("sandbox", "Contacts")[0]["Account_Name"] == {"name": "Loaded", "id": loaded_id}
