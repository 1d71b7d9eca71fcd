"""Contract tests of the sandbox's Chargebee API v2, spoken to with plain `requests` over real HTTP.

Why these tests exist: the extractor, the demo and every end-to-end test trust the sandbox to behave
like a real Chargebee site on the wire: Basic auth with the site key, the recorded error bodies, opaque
offsets, filters that never match records lacking the attribute, the 150-per-minute test-site limit with
`Retry-After`, idempotency keys. They use no product code, so a mistake in the client cannot hide a
mistake here. Each test asserts what came back on the wire or what the site holds afterwards.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

SITE = "acme-test"
LIVE_SITE = "acme"


class Api:
    """A bare HTTP caller for one site: Basic auth with the key as user name, nothing else."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.auth = (api_key, "")

    def get(self, path: str, params: Any = None) -> requests.Response:
        return self.http.get(self.base_url + path, params=params, timeout=60)

    def post(self, path: str, data: Any = None, headers: dict | None = None) -> requests.Response:
        return self.http.post(self.base_url + path, data=data, headers=headers, timeout=60)

    def list_all(self, path: str, params: dict | None = None, limit: int = 100) -> list[dict]:
        query = {**(params or {}), "limit": limit}
        entries: list[dict] = []
        while True:
            response = self.get(path, query)
            assert response.status_code == 200, response.text
            body = response.json()
            entries.extend(body["list"])
            if "next_offset" not in body:
                return entries
            query["offset"] = body["next_offset"]


@pytest.fixture
def api(sandbox) -> Api:
    return Api(*sandbox.chargebee(SITE))


def customer(i: int, created_at: int | None = 1_700_000_000, updated_at: int | None = None, **extra: Any) -> dict:
    obj: dict[str, Any] = {"id": f"cust_{i:03d}", "email": f"c{i}@example.com"}
    if created_at is not None:
        obj["created_at"] = created_at
    if updated_at is not None:
        obj["updated_at"] = updated_at
    obj.update({"deleted": False, "object": "customer", **extra})
    return obj


def ids(entries: list[dict], key: str = "customer") -> list[str]:
    return [entry[key]["id"] for entry in entries]


def assert_error(response: requests.Response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["api_error_code"] == code
    assert body["http_status_code"] == status
    assert body["message"] and body["error_msg"] and body["error_code"]
    if param is not None:
        assert body["param"] == param
    return body


# ------------------------------------------------------------------------------------------- auth


def test_missing_or_malformed_auth_gets_the_recorded_401_body(sandbox, fixtures_dir: Path) -> None:
    base, key = sandbox.chargebee(SITE)
    recorded = json.loads((fixtures_dir / "401.json").read_text())
    no_header = requests.get(base + "/customers", timeout=30)
    bearer = requests.get(base + "/customers", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    not_base64 = requests.get(base + "/customers", headers={"Authorization": "Basic !!!"}, timeout=30)
    for response in (no_header, bearer, not_base64):
        assert response.status_code == 401
        assert response.json() == recorded


def test_wrong_key_is_refused_and_keys_are_per_site(sandbox) -> None:
    base, key = sandbox.chargebee(SITE)
    _, live_key = sandbox.chargebee(LIVE_SITE)
    for wrong in ("test_not_the_key", live_key):
        body = assert_error(requests.get(base + "/customers", auth=(wrong, ""), timeout=30), 401,
                            "api_authentication_failed")
        assert body["error_code"] == "api_authentication_invalid_key"
    header = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    assert requests.get(base + "/customers", headers={"Authorization": header}, timeout=30).status_code == 200


def test_unknown_site_is_404_site_not_found(sandbox) -> None:
    base, key = sandbox.chargebee(SITE)
    response = requests.get(base.replace(f"/{SITE}/", "/nosuch-test/") + "/customers", auth=(key, ""), timeout=30)
    assert_error(response, 404, "site_not_found")


def test_unknown_path_is_404_and_wrong_method_is_405(api: Api) -> None:
    assert_error(api.get("/invoices_of_nothing"), 404, "resource_not_found")
    assert_error(api.get("/customers/x/delete"), 405, "http_method_not_supported")


# ---------------------------------------------------------------------------------- recorded data

LIST_FIXTURES = [
    ("customer.json", "customers"),
    ("customer_multiple.json", "customers"),
    ("customer_page1.json", "customers"),
    ("customer_page2.json", "customers"),
    ("subscription.json", "subscriptions"),
    ("subscription_multiple.json", "subscriptions"),
    ("subscription_page1.json", "subscriptions"),
    ("subscription_page2.json", "subscriptions"),
]


@pytest.mark.parametrize(("name", "collection"), LIST_FIXTURES)
def test_recorded_list_entries_load_and_list_back_unchanged(sandbox, api: Api, fixtures_dir: Path, name: str,
                                                             collection: str) -> None:
    entries = json.loads((fixtures_dir / name).read_text())["list"]
    sandbox.load(chargebee={SITE: {collection: entries}})
    listed = api.list_all(f"/{collection}")
    key = collection[:-1]
    by_id = {entry[key]["id"]: entry for entry in listed}
    assert sorted(by_id) == sorted(entry[key]["id"] for entry in entries)
    for entry in entries:
        assert by_id[entry[key]["id"]] == entry
        # same keys in the same order, nothing added: the serialised objects are identical
        assert json.dumps(by_id[entry[key]["id"]][key]) == json.dumps(entry[key])
        retrieved = api.get(f"/{collection}/{entry[key]['id']}").json()
        assert retrieved == entry


@pytest.mark.parametrize(
    ("name", "collection", "key"),
    [("test_site_customers.json", "customers", "customer"), ("test_site_subscriptions.json", "subscriptions",
                                                              "subscription")],
)
def test_recorded_test_site_records_load_and_list_back_unchanged(sandbox, api: Api, fixtures_dir: Path, name: str,
                                                                 collection: str, key: str) -> None:
    records = json.loads((fixtures_dir / name).read_text())
    counts = sandbox.load(chargebee={SITE: {collection: records}})["loaded"]["chargebee"][SITE]
    assert counts[collection] == len(records)
    listed = api.list_all(f"/{collection}")
    oldest_first = sorted(records, key=lambda r: (r["created_at"], r["id"]))  # the default order
    assert [e[key]["id"] for e in listed] == [r["id"] for r in oldest_first]
    by_id = {e[key]["id"]: e[key] for e in listed}
    for record in records:
        assert json.dumps(by_id[record["id"]]) == json.dumps(record)


def test_a_subscription_entry_brings_its_customer_and_a_loaded_card_stays_with_it(sandbox, api: Api,
                                                                                  fixtures_dir: Path) -> None:
    entry = json.loads((fixtures_dir / "subscription.json").read_text())["list"][0]
    card = {"status": "valid", "last4": "1111", "object": "card"}
    sandbox.load(chargebee={SITE: {"subscriptions": [entry],
                                   "customers": [{"customer": customer(1), "card": card}]}})
    customers = api.list_all("/customers")
    assert {e["customer"]["id"] for e in customers} == {"cust_001", entry["customer"]["id"]}
    assert api.get("/customers/cust_001").json() == {"customer": customer(1), "card": card}
    scheduled = json.loads((fixtures_dir / "subscription_with_scheduled_changes.json").read_text())
    sandbox.load(chargebee={SITE: {"subscriptions": [scheduled]}})
    # its customer cust_001 is known now, so the answer carries it, as real retrieve answers do
    assert api.get("/subscriptions/sub_001").json() == {**scheduled, "customer": customer(1)}


# ------------------------------------------------------------------------------------- pagination


def test_pages_follow_an_opaque_offset_in_created_at_order_with_ties_by_id(sandbox, api: Api) -> None:
    # 25 customers, created in 5 distinct seconds, loaded in scrambled order
    records = [customer(i, created_at=1_700_000_000 + (i * 7) % 5) for i in range(25)]
    sandbox.load(chargebee={SITE: {"customers": list(reversed(records))}})
    expected = [r["id"] for r in sorted(records, key=lambda r: (r["created_at"], r["id"]))]

    first = api.get("/customers").json()
    assert len(first["list"]) == 10  # default limit
    offset = first["next_offset"]
    assert isinstance(json.loads(offset), list)  # a JSON-encoded array string, like real sites

    pages, query = [], {"limit": 10}
    while True:
        body = api.get("/customers", query).json()
        pages.append(ids(body["list"]))
        if "next_offset" not in body:
            break
        query["offset"] = body["next_offset"]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == expected


def test_next_offset_is_absent_on_an_exactly_full_last_page(sandbox, api: Api) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(i) for i in range(20)]}})
    first = api.get("/customers", {"limit": 10}).json()
    second = api.get("/customers", {"limit": 10, "offset": first["next_offset"]}).json()
    assert len(second["list"]) == 10 and "next_offset" not in second
    assert api.get("/customers", {"limit": 100}).json().keys() == {"list"}


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten"])
def test_limit_out_of_range_is_param_wrong_value(api: Api, limit: str) -> None:
    assert_error(api.get("/customers", {"limit": limit}), 400, "param_wrong_value", "limit")


@pytest.mark.parametrize("offset", ["garbage", "[1,2]", '["x","y"]', "[\"1\"]", "x" * 1001])
def test_a_garbage_offset_is_refused(api: Api, offset: str) -> None:
    assert_error(api.get("/customers", {"offset": offset}), 400, "param_wrong_value", "offset")


def test_sort_by_updated_at_both_ways_and_records_without_updated_at(sandbox, api: Api) -> None:
    records = [customer(i, updated_at=1_700_000_100 + i % 3) for i in range(6)]
    records.append(customer(90, updated_at=None))  # last changed before 2016: no updated_at at all
    sandbox.load(chargebee={SITE: {"customers": records}})
    with_ts = [r for r in records if "updated_at" in r]
    ascending = [r["id"] for r in sorted(with_ts, key=lambda r: (r["updated_at"], r["id"]))]
    listed_asc = ids(api.list_all("/customers", {"sort_by[asc]": "updated_at"}, limit=4))
    assert listed_asc == ["cust_090"] + ascending  # listed without a filter, ahead of every timestamp
    listed_desc = ids(api.list_all("/customers", {"sort_by[desc]": "updated_at"}, limit=4))
    assert listed_desc == list(reversed(ascending)) + ["cust_090"]
    assert_error(api.get("/customers", {"sort_by[asc]": "email"}), 400, "param_wrong_value", "sort_by[asc]")


# ---------------------------------------------------------------------------------------- filters


@pytest.fixture
def timeline(sandbox) -> list[dict]:
    """Customers updated at 1000, 1001, ..., 1009 (offset from T) plus one without updated_at."""
    records = [customer(i, created_at=T - 100 + i, updated_at=T + i) for i in range(10)]
    records.append(customer(50, created_at=T - 500, updated_at=None))
    sandbox.load(chargebee={SITE: {"customers": records}})
    return records


T = 1_704_067_200  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"updated_at[after]": T + 5}, [6, 7, 8, 9]),  # strictly after
        ({"updated_at[before]": T + 2}, [0, 1]),  # strictly before
        ({"updated_at[between]": f"[{T + 2},{T + 4}]"}, [2, 3, 4]),  # inclusive, JSON style
        ({"updated_at[between]": f"[{T + 2}, {T + 4}]"}, [2, 3, 4]),  # Airbyte's spelling
        ({"updated_at[between]": f"['{T + 2}', '{T + 4}']"}, [2, 3, 4]),  # Python SDK's str(list)
        ({"updated_at[after]": T + 1, "updated_at[before]": T + 4}, [2, 3]),
        ({"updated_at[on]": T + 3}, list(range(10))),  # the whole UTC day
        ({"updated_at[on]": T - 1}, []),
        ({"updated_at[is_present]": "false"}, [50]),
        ({"updated_at[is_present]": "true"}, list(range(10))),
        ({"created_at[after]": T - 92}, [9]),
        ({"created_at[before]": T - 99}, [50, 0]),
    ],
)
def test_timestamp_filters(api: Api, timeline: list[dict], params: dict, expected: list[int]) -> None:
    for sort in ("created_at", "updated_at"):
        listed = ids(api.list_all("/customers", {**params, "sort_by[asc]": sort}, limit=3))
        assert sorted(listed) == sorted(f"cust_{i:03d}" for i in expected)


def test_records_without_updated_at_never_match_an_updated_at_filter(api: Api, timeline: list[dict]) -> None:
    everything = ids(api.list_all("/customers"))
    assert "cust_050" in everything and len(everything) == 11
    for params in ({"updated_at[after]": 0}, {"updated_at[before]": T + 100},
                   {"updated_at[between]": f"[0,{T + 100}]"}):
        assert "cust_050" not in ids(api.list_all("/customers", params))


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"updated_at[after]": "yesterday"}, "updated_at[after]"),
        ({"updated_at[between]": f"[{T}]"}, "updated_at[between]"),
        ({"updated_at[between]": str(T)}, "updated_at[between]"),
        ({"created_at[is]": str(T)}, "created_at[is]"),
        ({"status[is]": "active"}, "status[is]"),  # customers have no status filter
        ({"email[gt]": "a"}, "email[gt]"),
        ({"include_deleted": "yes"}, "include_deleted"),
    ],
)
def test_malformed_filters_are_param_wrong_value(api: Api, params: dict, param: str) -> None:
    assert_error(api.get("/customers", params), 400, "param_wrong_value", param)


def _subscription(i: int, status: str, customer_id: str, created_at: int) -> dict:
    return {"id": f"sub_{i:03d}", "customer_id": customer_id, "status": status, "currency_code": "USD",
            "created_at": created_at, "updated_at": created_at, "deleted": False, "object": "subscription"}


@pytest.fixture
def subscriptions(sandbox) -> None:
    statuses = ["active", "in_trial", "non_renewing", "cancelled", "future", "active"]
    subs = [_subscription(i, s, f"cust_{i % 2:03d}", T + i) for i, s in enumerate(statuses)]
    sandbox.load(chargebee={SITE: {"customers": [customer(0), customer(1)], "subscriptions": subs}})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status[is]=active", [0, 5]),
        ("status[is_not]=active", [1, 2, 3, 4]),
        ('status[in]=["active","in_trial"]', [0, 1, 5]),
        ("status[in]=[active,in_trial]", [0, 1, 5]),
        ("status[in]=['active', 'in_trial']", [0, 1, 5]),
        ('status[not_in]=["active","cancelled"]', [1, 2, 4]),
        ("customer_id[is]=cust_001", [1, 3, 5]),
        ('customer_id[in]=["cust_000"]', [0, 2, 4]),
        ('id[in]=["sub_002","sub_004","nope"]', [2, 4]),
        ("id[starts_with]=sub_00", [0, 1, 2, 3, 4, 5]),
        (f"created_at[after]={T + 3}&status[is]=active", [5]),
    ],
)
def test_subscription_filters_on_the_raw_query_string(api: Api, subscriptions: None, query: str,
                                                      expected: list[int]) -> None:
    response = api.get("/subscriptions?" + query)
    assert response.status_code == 200, response.text
    assert ids(response.json()["list"], "subscription") == [f"sub_{i:03d}" for i in expected]


def test_unknown_enum_value_is_refused(api: Api, subscriptions: None) -> None:
    assert_error(api.get("/subscriptions", {"status[is]": "alive"}), 400, "param_wrong_value", "status[is]")


def test_customer_string_filters(sandbox, api: Api) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(1, company="Acme"), customer(2), customer(3)]}})
    assert ids(api.get("/customers", {"email[is]": "c2@example.com"}).json()["list"]) == ["cust_002"]
    assert ids(api.get("/customers", {"company[is_present]": "true"}).json()["list"]) == ["cust_001"]
    assert ids(api.get("/customers", {"company[is_not]": "Other"}).json()["list"]) == ["cust_001"]


def test_deleted_records_are_listed_only_with_include_deleted(sandbox, api: Api) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(1), customer(2, deleted=True)]}})
    assert ids(api.list_all("/customers")) == ["cust_001"]
    assert ids(api.list_all("/customers", {"include_deleted": "false"})) == ["cust_001"]
    everything = api.list_all("/customers", {"include_deleted": "true"})
    assert [(e["customer"]["id"], e["customer"]["deleted"]) for e in everything] == [
        ("cust_001", False), ("cust_002", True)]


def test_item_prices_default_catalog(api: Api) -> None:
    prices = [e["item_price"] for e in api.list_all("/item_prices")]
    assert len(prices) == 24
    jpy = [p for p in prices if p["currency_code"] == "JPY"]
    assert {p["id"]: p["price"] for p in jpy if p["period_unit"] == "month"} == {
        "basic-JPY-monthly": 3900, "pro-JPY-monthly": 12900, "enterprise-JPY-monthly": 64900}
    yearly = api.get("/item_prices/pro-EUR-yearly").json()["item_price"]
    assert (yearly["price"], yearly["period_unit"], yearly["item_type"], yearly["object"]) == (99000, "year", "plan",
                                                                                               "item_price")
    filtered = api.get("/item_prices", {"currency_code[is]": "GBP", "limit": 100}).json()["list"]
    assert len(filtered) == 6


# ------------------------------------------------------------------------------------------ writes


def test_create_customer_from_a_bracketed_form(sandbox, api: Api) -> None:
    before = time.time()
    response = api.post("/customers", {
        "id": "cust_ada", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "company": "Analytical Engines", "billing_address[line1]": "12 Acre Lane",
        "billing_address[city]": "London", "billing_address[country]": "GB", "cf_tier": "gold",
        "meta_data": json.dumps({"source": "demo"}), "allow_direct_debit": "true", "net_term_days": "30",
    })
    assert response.status_code == 200, response.text
    created = response.json()["customer"]
    assert created["billing_address"] == {"line1": "12 Acre Lane", "city": "London", "country": "GB",
                                          "validation_status": "not_validated", "object": "billing_address"}
    assert (created["cf_tier"], created["meta_data"], created["allow_direct_debit"], created["net_term_days"]) == (
        "gold", {"source": "demo"}, True, 30)
    assert created["object"] == "customer" and created["deleted"] is False
    assert before - 2 <= created["created_at"] == created["updated_at"] <= time.time() + 2
    assert created["resource_version"] // 1000 == created["created_at"]
    assert api.get("/customers/cust_ada").json() == {"customer": created}


def test_record_timestamps_follow_the_sandbox_clock(sandbox, api: Api) -> None:
    sandbox.control("POST", "clock", {"advance_seconds": 10 * 86400})
    created = api.post("/customers", {"email": "later@example.com"}).json()["customer"]
    assert abs(created["created_at"] - (time.time() + 10 * 86400)) < 5
    assert created["id"]  # generated when not given


@pytest.mark.parametrize(
    ("data", "code", "param"),
    [
        ({"email": "not-an-email"}, "param_wrong_value", "email"),
        ({"email": "x" * 60 + "@example.com"}, "param_wrong_value", "email"),  # over 70 characters
        ({"first_name": "a" * 151}, "param_wrong_value", "first_name"),
        ({"company": "c" * 251}, "param_wrong_value", "company"),
        ({"id": "i" * 51}, "param_wrong_value", "id"),
        ({"billing_address[zip]": "9" * 21}, "param_wrong_value", "billing_address[zip]"),
        ({"auto_collection": "sometimes"}, "param_wrong_value", "auto_collection"),
        ({"meta_data": "{not json"}, "param_wrong_value", "meta_data"),
        ({"favourite_colour": "blue"}, "param_wrong_value", "favourite_colour"),
    ],
)
def test_create_customer_validation(api: Api, data: dict, code: str, param: str) -> None:
    assert_error(api.post("/customers", data), 400, code, param)
    assert api.get("/customers").json()["list"] == []


def test_duplicate_customer_id_is_refused(api: Api) -> None:
    assert api.post("/customers", {"id": "dup"}).status_code == 200
    assert_error(api.post("/customers", {"id": "dup"}), 400, "duplicate_entry", "id")


def test_update_moves_updated_at_and_resource_version(sandbox, api: Api) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(1, updated_at=T, resource_version=T * 1000)]}})
    versions = []
    for name in ("Ada", "Grace", "Edsger"):
        updated = api.post("/customers/cust_001", {"first_name": name}).json()["customer"]
        versions.append(updated["resource_version"])
        assert updated["first_name"] == name and updated["updated_at"] > T
    assert versions == sorted(set(versions))  # strictly increasing
    assert api.get("/customers", {"updated_at[after]": T}).json()["list"][0]["customer"]["first_name"] == "Edsger"
    # the billing address is not part of "update a customer"
    assert_error(api.post("/customers/cust_001", {"billing_address[city]": "Paris"}), 400, "param_wrong_value",
                 "billing_address")
    assert_error(api.post("/customers/nobody", {"first_name": "X"}), 404, "resource_not_found")


def test_update_billing_info_assigns_the_whole_address(api: Api) -> None:
    api.post("/customers", {"id": "c1", "vat_number": "GB123", "billing_address[city]": "London",
                            "billing_address[zip]": "N1"})
    updated = api.post("/customers/c1/update_billing_info", {"billing_address[line1]": "1 Main St"}).json()["customer"]
    assert updated["billing_address"] == {"line1": "1 Main St", "validation_status": "not_validated",
                                          "object": "billing_address"}
    assert "vat_number" not in updated  # omitted, therefore removed


def test_delete_marks_customer_and_its_subscriptions_deleted(api: Api) -> None:
    created = api.post("/customers", {"id": "gone"}).json()["customer"]
    sub = api.post("/customers/gone/subscription_for_items",
                   {"subscription_items[item_price_id][0]": "basic-USD-monthly"}).json()["subscription"]
    deleted = api.post("/customers/gone/delete").json()["customer"]
    assert deleted["deleted"] is True and deleted["resource_version"] > created["resource_version"]
    assert api.get("/customers").json()["list"] == []
    assert api.get("/subscriptions").json()["list"] == []
    listed = api.get("/subscriptions", {"include_deleted": "true"}).json()["list"][0]
    assert listed["subscription"]["deleted"] is True
    assert listed["subscription"]["resource_version"] > sub["resource_version"]
    assert listed["customer"]["deleted"] is True
    assert_error(api.get("/customers/gone"), 404, "resource_not_found")


def _subscribe(api: Api, customer_id: str, *items: tuple[str, int], **extra: str) -> requests.Response:
    data = dict(extra)
    for index, (price, quantity) in enumerate(items):
        data[f"subscription_items[item_price_id][{index}]"] = price
        data[f"subscription_items[quantity][{index}]"] = str(quantity)
    return api.post(f"/customers/{customer_id}/subscription_for_items", data)


@pytest.mark.parametrize(
    ("price", "quantity", "amount", "mrr"),
    [
        ("pro-USD-monthly", 2, 19800, 19800),
        ("pro-USD-yearly", 1, 99000, 8250),
        ("basic-GBP-yearly", 1, 29000, 2417),  # 2416.67 rounded
        ("basic-JPY-monthly", 3, 11700, 11700),  # zero-decimal: major units
    ],
)
def test_subscription_for_items_computes_amounts_and_mrr(api: Api, price: str, quantity: int, amount: int,
                                                         mrr: int) -> None:
    api.post("/customers", {"id": "c1"})
    response = _subscribe(api, "c1", (price, quantity), id="sub_1")
    assert response.status_code == 200, response.text
    body = response.json()
    sub = body["subscription"]
    assert body["customer"]["id"] == "c1"
    assert sub["id"] == "sub_1" and sub["status"] == "active" and sub["customer_id"] == "c1"
    assert sub["currency_code"] == price.split("-")[1]
    assert sub["subscription_items"][0]["amount"] == amount and sub["mrr"] == mrr
    assert sub["current_term_end"] > sub["current_term_start"] == sub["created_at"]
    listed = api.get("/subscriptions").json()["list"]
    assert [(e["subscription"]["id"], e["customer"]["id"]) for e in listed] == [("sub_1", "c1")]
    assert api.get("/subscriptions/sub_1").json() == {"subscription": sub, "customer": body["customer"]}


def test_trial_and_future_subscriptions(api: Api) -> None:
    api.post("/customers", {"id": "c1"})
    now = int(time.time())
    trial = _subscribe(api, "c1", ("pro-USD-monthly", 1), trial_end=str(now + 14 * 86400)).json()["subscription"]
    assert (trial["status"], trial["mrr"], trial["trial_end"]) == ("in_trial", 0, now + 14 * 86400)
    future = _subscribe(api, "c1", ("pro-USD-monthly", 1), start_date=str(now + 86400)).json()["subscription"]
    assert (future["status"], future["start_date"]) == ("future", now + 86400)


@pytest.mark.parametrize(
    ("items", "status", "code", "param"),
    [
        ([("nope-USD-monthly", 1)], 404, "resource_not_found", "subscription_items[item_price_id][0]"),
        ([("pro-USD-monthly", 1), ("basic-USD-monthly", 1)], 400, "param_wrong_value",
         "subscription_items[item_price_id][1]"),
        ([("pro-USD-monthly", 0)], 400, "param_wrong_value", "subscription_items[quantity][0]"),
        ([], 400, "param_wrong_value", "subscription_items[item_price_id][0]"),
    ],
)
def test_subscription_for_items_validation(api: Api, items: list, status: int, code: str, param: str) -> None:
    api.post("/customers", {"id": "c1"})
    assert_error(_subscribe(api, "c1", *items), status, code, param)
    assert api.get("/subscriptions").json()["list"] == []


def test_subscription_currency_must_match_the_customer(api: Api) -> None:
    api.post("/customers", {"id": "eur", "preferred_currency_code": "EUR"})
    assert_error(_subscribe(api, "eur", ("pro-USD-monthly", 1)), 400, "param_wrong_value")
    assert _subscribe(api, "eur", ("pro-EUR-monthly", 1)).status_code == 200
    assert_error(_subscribe(api, "nobody", ("pro-EUR-monthly", 1)), 404, "resource_not_found")


def test_cancel_for_items_immediately_and_end_of_term(api: Api) -> None:
    api.post("/customers", {"id": "c1"})
    now_sub = _subscribe(api, "c1", ("pro-USD-monthly", 1), id="s_now").json()["subscription"]
    later = _subscribe(api, "c1", ("pro-USD-monthly", 1), id="s_later").json()["subscription"]

    cancelled = api.post("/subscriptions/s_now/cancel_for_items", {"cancel_option": "immediately"}).json()
    sub = cancelled["subscription"]
    assert (sub["status"], sub["mrr"], cancelled["customer"]["id"]) == ("cancelled", 0, "c1")
    assert sub["cancelled_at"] >= now_sub["created_at"] and sub["updated_at"] >= now_sub["updated_at"]
    assert sub["resource_version"] > later["resource_version"]

    scheduled = api.post("/subscriptions/s_later/cancel_for_items", {"cancel_option": "end_of_term"}).json()
    sub = scheduled["subscription"]
    assert (sub["status"], sub["cancelled_at"], sub["mrr"]) == ("non_renewing", later["current_term_end"], 9900)

    assert_error(api.post("/subscriptions/s_now/cancel_for_items", {"cancel_option": "immediately"}), 409,
                 "invalid_state_for_request")
    assert_error(api.post("/subscriptions/missing/cancel_for_items"), 404, "resource_not_found")
    statuses = {e["subscription"]["id"]: e["subscription"]["status"] for e in api.get("/subscriptions").json()["list"]}
    assert statuses == {"s_now": "cancelled", "s_later": "non_renewing"}


def test_update_for_items_recomputes_mrr(api: Api) -> None:
    api.post("/customers", {"id": "c1"})
    _subscribe(api, "c1", ("basic-USD-monthly", 1), id="s1")
    updated = api.post("/subscriptions/s1/update_for_items", {
        "subscription_items[item_price_id][0]": "basic-USD-monthly", "subscription_items[quantity][0]": "3"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["subscription"]["mrr"] == 3 * 2900
    switched = api.post("/subscriptions/s1/update_for_items", {
        "subscription_items[item_price_id][0]": "pro-USD-yearly", "replace_items_list": "true"}).json()
    sub = switched["subscription"]
    assert ([i["item_price_id"] for i in sub["subscription_items"]], sub["billing_period_unit"], sub["mrr"]) == (
        ["pro-USD-yearly"], "year", 8250)


# ------------------------------------------------------------------------------------ idempotency


def test_idempotency_key_replays_and_refuses_a_different_payload(sandbox, api: Api) -> None:
    headers = {"chargebee-idempotency-key": "create-ada-1"}
    first = api.post("/customers", {"id": "ada", "first_name": "Ada"}, headers)
    again = api.post("/customers", {"id": "ada", "first_name": "Ada"}, headers)
    assert first.status_code == again.status_code == 200
    assert "chargebee-idempotency-replayed" not in first.headers
    assert again.headers["chargebee-idempotency-replayed"] == "true"
    assert again.json() == first.json()
    other = api.post("/customers", {"id": "bob", "first_name": "Bob"}, headers)
    assert_error(other, 422, "unable_to_process_request")
    assert ids(api.list_all("/customers")) == ["ada"]
    # once the 30-minute window has passed the key is free again: the create runs and finds the id taken
    sandbox.control("POST", "clock", {"advance_seconds": 31 * 60})
    assert_error(api.post("/customers", {"id": "ada", "first_name": "Ada"}, headers), 400, "duplicate_entry", "id")


# ------------------------------------------------------------------------------------- rate limit


def test_test_site_blocks_every_request_over_150_per_minute(sandbox, fixtures_dir: Path) -> None:
    api = Api(*sandbox.chargebee(SITE))
    recorded = json.loads((fixtures_dir / "429.json").read_text())
    statuses = [api.get("/customers", {"limit": 1}).status_code for _ in range(150)]
    assert statuses == [200] * 150
    refused = api.get("/customers")
    assert refused.status_code == 429 and refused.json() == recorded
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert api.post("/customers", {"id": "blocked"}).status_code == 429  # writes are blocked too
    assert sandbox.stats()["chargebee"][SITE]["served_429"] == 2
    sandbox.settings_chargebee(SITE, rate_limit_per_minute=1000)
    assert api.get("/customers").status_code == 200


def test_live_site_allows_more_than_the_test_site(sandbox) -> None:
    api = Api(*sandbox.chargebee(LIVE_SITE))
    assert {api.get("/customers", {"limit": 1}).status_code for _ in range(200)} == {200}


def test_rate_limit_window_uses_real_time_and_retry_after_is_enough(sandbox) -> None:
    api = Api(*sandbox.chargebee(SITE))
    sandbox.settings_chargebee(SITE, rate_limit_per_minute=5, rate_limit_window_seconds=2)
    assert [api.get("/customers").status_code for _ in range(5)] == [200] * 5
    refused = api.get("/customers")
    assert refused.status_code == 429
    assert refused.json()["api_error_code"] == "api_request_limit_exceeded"
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 2
    time.sleep(wait)
    assert api.get("/customers").status_code == 200


# ---------------------------------------------------------------------------------- injected faults


def test_injected_faults_use_chargebee_bodies(sandbox, api: Api, fixtures_dir: Path) -> None:
    sandbox.faults("chargebee", p500=1.0)
    response = api.get("/customers")
    assert response.status_code == 500
    assert response.json() == json.loads((fixtures_dir / "500.json").read_text())
    sandbox.faults("chargebee", p429=1.0)
    response = api.get("/customers")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert response.json() == json.loads((fixtures_dir / "429.json").read_text())


# --------------------------------------------------------------------------------------------- scale


def test_100k_customers_load_and_page_through_quickly(sandbox) -> None:
    api = Api(*sandbox.chargebee(SITE))
    sandbox.settings_chargebee(SITE, rate_limit_per_minute=1_000_000)
    total = 100_000
    started = time.perf_counter()
    records = [{"id": f"c{i:06d}", "email": f"u{i}@example.com", "created_at": T + i // 10,
                "updated_at": T + (i * 7919) % total, "deleted": False, "object": "customer"} for i in range(total)]
    loaded = sandbox.load(chargebee={SITE: {"customers": records}})["loaded"]["chargebee"][SITE]
    loaded_at = time.perf_counter()
    seen: list[str] = []
    pages = 0
    query: dict[str, Any] = {"limit": 100}
    while True:
        body = api.get("/customers", query).json()
        pages += 1
        seen.extend(entry["customer"]["id"] for entry in body["list"])
        if "next_offset" not in body:
            break
        query["offset"] = body["next_offset"]
    finished = time.perf_counter()
    print(f"\n100k customers: load {loaded_at - started:.2f} s, {pages} pages {finished - loaded_at:.2f} s, "
          f"total {finished - started:.2f} s")
    assert loaded["customers"] == total
    assert pages == total // 100
    assert len(seen) == total and len(set(seen)) == total
    assert seen == sorted(seen)  # created_at ascending matches id order in this data set
    assert finished - started < 30
