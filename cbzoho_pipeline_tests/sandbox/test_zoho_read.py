"""Contract tests of the sandbox's Zoho record reads (Get Records, single record, count, deleted records).

Why these tests exist: the sync snapshots Zoho with Get Records and must cope with its real limits:
`fields` is mandatory and capped at 50, 200 per page, no page beyond record 2,000 without a page token,
page tokens bound to their parameters and valid 24 hours, If-Modified-Since with 304, and 204 with an
empty body when nothing is left. Each test asserts what the wire returned for data the test loaded.
"""

from __future__ import annotations

import pytest

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp


@pytest.fixture
def zoho(sandbox):
    return ZohoHttp(sandbox)


def load_contacts(sandbox, count, **extra):
    records = [{"Last_Name": f"L{i:05d}", "Email": f"u{i}@example.com", **extra} for i in range(count)]
    sandbox.load(zoho={"sandbox": {"Contacts": records}})
    return sandbox.dump("sandbox", "Contacts")


def test_fields_param_is_mandatory_and_capped(sandbox, zoho):
    load_contacts(sandbox, 3)
    missing = zoho.get("Contacts")
    assert missing.status_code == 400 and missing.json()["code"] == "REQUIRED_PARAM_MISSING"
    assert missing.json()["details"] == {"param_name": "fields"}
    too_many = zoho.get("Contacts", params={"fields": ",".join(f"F{i}" for i in range(51))})
    assert too_many.status_code == 400 and too_many.json()["code"] == "LIMIT_EXCEEDED"
    assert zoho.get("Contacts", params={"fields": "Last_Name", "per_page": 201}).status_code == 400


def test_page_shape_and_default_order(sandbox, zoho):
    dumped = load_contacts(sandbox, 3)
    response = zoho.get("Contacts", params={"fields": "Last_Name,Email,Owner"})
    assert response.status_code == 200
    body = response.json()
    assert [r["id"] for r in body["data"]] == [r["id"] for r in reversed(dumped)]  # id, descending
    assert set(body["data"][0]) == {"Last_Name", "Email", "Owner", "id"}
    assert body["data"][0]["Owner"]["name"] == "Ada Admin"
    assert body["info"] == {"per_page": 200, "count": 3, "page": 1, "sort_by": "id", "sort_order": "desc",
                            "more_records": False, "next_page_token": None, "previous_page_token": None,
                            "page_token_expiry": None, "call": False, "email": False}
    asc = zoho.get("Contacts", params={"fields": "Last_Name", "sort_order": "asc", "per_page": 2}).json()
    assert [r["Last_Name"] for r in asc["data"]] == ["L00000", "L00001"]
    assert asc["info"]["more_records"] is True and asc["info"]["next_page_token"]


def test_no_records_is_204_with_empty_body(sandbox, zoho):
    empty = zoho.get("Deals", params={"fields": "Deal_Name"})
    assert empty.status_code == 204 and empty.content == b""
    load_contacts(sandbox, 3)
    beyond = zoho.get("Contacts", params={"fields": "Last_Name", "page": 2})
    assert beyond.status_code == 204 and beyond.content == b""


def test_discrete_paging_stops_at_2000(sandbox, zoho):
    load_contacts(sandbox, 2300)
    page10 = zoho.get("Contacts", params={"fields": "Last_Name", "page": 10, "sort_order": "asc"})
    assert page10.status_code == 200 and page10.json()["data"][-1]["Last_Name"] == "L01999"
    page11 = zoho.get("Contacts", params={"fields": "Last_Name", "page": 11})
    assert page11.status_code == 400
    assert page11.json() == {"code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED", "details": {"limit": 2000},
                             "message": "You can only get the first 2000 records without using page_token param",
                             "status": "error"}
    token = page10.json()["info"]["next_page_token"]
    after = zoho.get("Contacts", params={"fields": "Last_Name", "page_token": token, "sort_order": "asc"})
    assert after.status_code == 200
    assert [r["Last_Name"] for r in after.json()["data"]][:2] == ["L02000", "L02001"]
    assert after.json()["info"]["page"] == 11
    both = zoho.get("Contacts", params={"fields": "Last_Name", "page_token": token, "page": 11,
                                        "sort_order": "asc"})
    assert both.status_code == 400 and both.json()["code"] == "AMBIGUITY_DURING_PROCESSING"


def test_page_tokens_walk_everything_once(sandbox, zoho):
    dumped = load_contacts(sandbox, 950)
    seen, token, pages = [], None, 0
    while True:
        params = {"fields": "Last_Name", "per_page": 200, "sort_by": "Modified_Time", "sort_order": "asc"}
        if token:
            params["page_token"] = token
        body = zoho.get("Contacts", params=params).json()
        pages += 1
        seen += [r["id"] for r in body["data"]]
        if not body["info"]["more_records"]:
            assert body["info"]["next_page_token"] is None
            break
        token = body["info"]["next_page_token"]
        assert body["info"]["page_token_expiry"].endswith("+05:30")
    assert pages == 5 and sorted(seen) == sorted(r["id"] for r in dumped) and len(set(seen)) == 950


def test_page_token_is_bound_to_params_and_expires(sandbox, zoho):
    load_contacts(sandbox, 5)
    token = zoho.get("Contacts", params={"fields": "Last_Name", "per_page": 2}).json()["info"]["next_page_token"]
    other_sort = zoho.get("Contacts", params={"fields": "Last_Name", "per_page": 2, "page_token": token,
                                              "sort_order": "asc"})
    assert other_sort.status_code == 400 and other_sort.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
    bogus = zoho.get("Contacts", params={"fields": "Last_Name", "page_token": "nonsense"})
    assert bogus.status_code == 400
    assert zoho.get("Contacts", params={"fields": "Last_Name", "per_page": 2, "page_token": token}).status_code == 200
    sandbox.control("POST", "clock", {"advance_seconds": 24 * 3600 + 1})
    zoho.login()
    expired = zoho.get("Contacts", params={"fields": "Last_Name", "per_page": 2, "page_token": token})
    assert expired.status_code == 400 and expired.json()["code"] == "EXPIRED_VALUE"


def test_if_modified_since_filters_and_304(sandbox, zoho):
    sandbox.load(zoho={"sandbox": {"Contacts": [
        {"Last_Name": "old", "Modified_Time": "2024-07-01T10:00:00+05:30", "Created_Time": "2024-06-01T10:00:00+05:30"},
        {"Last_Name": "new", "Modified_Time": "2024-07-14T10:54:15+05:30", "Created_Time": "2024-06-01T10:00:00+05:30"},
    ]}})
    # same instant as 2024-07-10T00:00:00+05:30, written in UTC
    since = zoho.get("Contacts", params={"fields": "Last_Name,Modified_Time"},
                     headers={"If-Modified-Since": "2024-07-09T18:30:00+00:00"})
    assert since.status_code == 200
    assert [(r["Last_Name"], r["Modified_Time"]) for r in since.json()["data"]] == \
        [("new", "2024-07-14T10:54:15+05:30")]
    # strictly after: the record's own Modified_Time excludes it
    exact = zoho.get("Contacts", params={"fields": "Last_Name"},
                     headers={"If-Modified-Since": "2024-07-14T10:54:15+05:30"})
    assert exact.status_code == 304 and exact.content == b""
    bad = zoho.get("Contacts", params={"fields": "Last_Name"}, headers={"If-Modified-Since": "yesterday"})
    assert bad.status_code == 400


def test_sort_by_modified_time_and_ids_filter(sandbox, zoho):
    sandbox.load(zoho={"sandbox": {"Contacts": [
        {"Last_Name": "b", "Modified_Time": "2024-07-02T00:00:00+05:30"},
        {"Last_Name": "c", "Modified_Time": "2024-07-03T00:00:00+05:30"},
        {"Last_Name": "a", "Modified_Time": "2024-07-01T00:00:00+05:30"},
    ]}})
    by_time = zoho.get("Contacts", params={"fields": "Last_Name", "sort_by": "Modified_Time"}).json()
    assert [r["Last_Name"] for r in by_time["data"]] == ["c", "b", "a"]
    assert zoho.get("Contacts", params={"fields": "Last_Name", "sort_by": "Last_Name"}).status_code == 400
    ids = [r["id"] for r in sandbox.dump("sandbox", "Contacts")]
    chosen = zoho.get("Contacts", params={"ids": f"{ids[0]},{ids[2]},1234567890123456789",
                                          "fields": "Last_Name"}).json()
    assert sorted(r["Last_Name"] for r in chosen["data"]) == ["a", "b"]


def test_single_record_and_count(sandbox, zoho):
    dumped = load_contacts(sandbox, 4)
    one = zoho.get(f"Contacts/{dumped[1]['id']}")
    assert one.status_code == 200 and one.json()["data"] == [dumped[1]]
    assert zoho.get("Contacts/1234567890123456789").status_code == 204
    assert zoho.get("Contacts/actions/count").json() == {"count": 4}
    assert zoho.get("Accounts/actions/count").json() == {"count": 0}


def test_deleted_records_types_paging_and_since(sandbox, zoho):
    dumped = load_contacts(sandbox, 3)
    assert zoho.get("Contacts/deleted").status_code == 204
    zoho.delete("Contacts", params={"ids": dumped[0]["id"]})
    sandbox.control("POST", "clock", {"advance_seconds": 61 * 86400})
    zoho.login()
    zoho.delete("Contacts", params={"ids": f"{dumped[1]['id']},{dumped[2]['id']}"})
    every = zoho.get("Contacts/deleted", params={"type": "all"}).json()
    # newest deletion first; older than 60 days means gone from the recycle bin
    assert [(d["id"], d["type"]) for d in every["data"]] == [
        (dumped[2]["id"], "recycle"), (dumped[1]["id"], "recycle"), (dumped[0]["id"], "permanent")]
    assert set(every["data"][0]) == {"id", "display_name", "type", "deleted_by", "created_by", "deleted_time"}
    recycle = zoho.get("Contacts/deleted", params={"type": "recycle"}).json()["data"]
    assert {d["id"] for d in recycle} == {dumped[1]["id"], dumped[2]["id"]}
    permanent = zoho.get("Contacts/deleted", params={"type": "permanent"}).json()["data"]
    assert [d["id"] for d in permanent] == [dumped[0]["id"]]
    paged = zoho.get("Contacts/deleted", params={"per_page": 2, "page": 2}).json()
    assert paged["info"] == {"per_page": 2, "count": 1, "page": 2, "more_records": False}
    since = zoho.get("Contacts/deleted", headers={"If-Modified-Since": recycle[0]["deleted_time"]})
    assert since.status_code == 304
    sandbox.control("POST", "clock", {"advance_seconds": 61 * 86400})
    zoho.login()
    aged = zoho.get("Contacts/deleted").json()["data"]
    # past 120 days a deletion is no longer listed at all
    assert [(d["id"], d["type"]) for d in aged] == [(dumped[2]["id"], "permanent"), (dumped[1]["id"], "permanent")]


def test_times_use_the_org_offset_setting(sandbox, zoho):
    sandbox.load(zoho={"sandbox": {"Contacts": [{"Last_Name": "a", "Created_Time": "2024-07-14T10:54:15+05:30",
                                                 "Modified_Time": "2024-07-14T10:54:15+05:30"}]}})
    sandbox.settings_zoho("sandbox", utc_offset="+00:00")
    row = zoho.get("Contacts", params={"fields": "Created_Time,Modified_Time"}).json()["data"][0]
    assert row["Created_Time"] == row["Modified_Time"] == "2024-07-14T05:24:15+00:00"


def test_load_fills_ids_times_and_owner(sandbox, zoho):
    before = zoho.get("users", params={"type": "CurrentUser"}).json()["users"][0]
    sandbox.load(zoho={"sandbox": {"Accounts": [{"Account_Name": "Filled"}]}})
    [account] = sandbox.dump("sandbox", "Accounts")
    assert len(account["id"]) == 19 and account["id"].isdigit()
    assert account["Owner"]["id"] == account["Created_By"]["id"] == before["id"]
    assert account["Created_Time"] == account["Modified_Time"] and account["Created_Time"].endswith("+05:30")
    assert account["Phone"] is None  # every known field is present, empty ones null
