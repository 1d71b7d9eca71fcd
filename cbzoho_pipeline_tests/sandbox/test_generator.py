"""The dataset generator is the ground every sandbox demo, test and benchmark stands on.

These tests pin what callers rely on: the same arguments give the same bytes (and nothing else — no
clock, no global randomness — can change them); the objects have the shapes the Chargebee and Zoho
references give, with Chargebee's optional keys absent rather than null; every promised kind of mess
is really in the data, in exactly the number the summary reports (counted again here from the records
themselves, not from the summary); money follows the catalog, with JPY in major units; and 100,000
customers stay cheap enough to generate on every sandbox start.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict

import pytest

from cbzoho_sandbox import generator
from cbzoho_sandbox.generator import (
    CUSTOMER_SHARES,
    ITEM_PRICES,
    LEGACY_CUTOFF,
    ZOHO_SHARES,
    generate_dataset,
)

NOW = 1_760_000_000  # 2025-10-09T08:53:20Z
USERS = ["5725767000000411001", "5725767000000411002"]

CUSTOMER_REQUIRED = {
    "id", "auto_collection", "net_term_days", "allow_direct_debit", "created_at", "deleted",
    "promotional_credits", "refundable_credits", "excess_payments", "unbilled_charges", "object",
}
SUBSCRIPTION_REQUIRED = {
    "id", "customer_id", "status", "currency_code", "deleted", "has_scheduled_changes",
    "has_scheduled_advance_invoices", "billing_period", "billing_period_unit", "subscription_items",
    "mrr", "created_at", "object",
}
ITEM_KEYS = {"item_price_id", "item_type", "quantity", "unit_price", "amount", "free_quantity", "object"}
CONTACT_KEYS = {"First_Name", "Last_Name", "Email", "Phone", "Mailing_Street", "Mailing_City",
                "Mailing_State", "Mailing_Zip", "Mailing_Country"}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _is_emoji(ch: str) -> bool:
    return 0x2600 <= ord(ch) <= 0x27BF or 0x1F300 <= ord(ch) <= 0x1FAFF


def _norm(email: str) -> str:
    return email.strip().lower()


@pytest.fixture(scope="module")
def data() -> dict:
    return generate_dataset(2000, seed=42, now=NOW, zoho_user_ids=USERS)


@pytest.fixture(scope="module")
def customers_by_id(data) -> dict:
    return {c["id"]: c for c in data["chargebee"]["customers"]}


# ---- determinism ------------------------------------------------------------------------------------

def test_same_arguments_give_identical_bytes():
    a = generate_dataset(300, seed=7, now=NOW, zoho_user_ids=USERS)
    b = generate_dataset(300, seed=7, now=NOW, zoho_user_ids=USERS)
    assert json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)  # key order included


def test_other_seed_or_now_gives_other_data():
    base = generate_dataset(300, seed=7, now=NOW)
    other_seed = generate_dataset(300, seed=8, now=NOW)
    later = generate_dataset(300, seed=7, now=NOW + 86400)
    assert base["chargebee"]["customers"] != other_seed["chargebee"]["customers"]
    assert base["zoho"]["Contacts"] != other_seed["zoho"]["Contacts"]
    assert base["chargebee"]["customers"] != later["chargebee"]["customers"]


def test_no_clock_and_no_global_randomness(monkeypatch):
    expected = generate_dataset(300, seed=3, now=NOW)

    def forbidden(*_a, **_k):
        raise AssertionError("generator must not read the clock or the global random generator")

    with monkeypatch.context() as m:
        for name in ("time", "time_ns", "localtime", "gmtime", "monotonic", "perf_counter"):
            m.setattr(time, name, forbidden)
        for name in ("random", "randint", "randrange", "choice", "choices", "shuffle", "sample",
                     "uniform", "getrandbits", "seed"):
            m.setattr(generator.random, name, forbidden)
        got = generate_dataset(300, seed=3, now=NOW)
    assert got == expected


def test_sizes_zero_one_and_small():
    empty = generate_dataset(0, now=NOW)
    assert empty["chargebee"] == {"customers": [], "subscriptions": []}
    assert empty["zoho"]["Contacts"] == [] and empty["zoho"]["Deals"] == []
    one = generate_dataset(1, now=NOW)
    assert len(one["chargebee"]["customers"]) == 1
    assert one["summary"]["totals"]["customers"] == 1
    with pytest.raises(ValueError):
        generate_dataset(-1, now=NOW)
    for bad_now in (0, NOW * 1000):  # an unset clock, or milliseconds instead of seconds
        with pytest.raises(ValueError):
            generate_dataset(10, now=bad_now)


def test_every_category_present_from_one_hundred_customers():
    s = generate_dataset(generator.ALWAYS_PRESENT_FROM, seed=1, now=NOW)["summary"]
    for name in CUSTOMER_SHARES:
        if name.startswith("currency_"):
            assert s["currencies"][name[-3:]] >= 1, name
        else:
            assert s["counts"][name] >= 1, name
    for name in ZOHO_SHARES:
        assert s["zoho"][name] >= 1, name
    assert s["zoho"]["account_ambiguous_name"]


# ---- Chargebee shapes -------------------------------------------------------------------------------

def _no_nulls(value, path="") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nulls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_nulls(v, f"{path}[{i}]")
    else:
        assert value is not None, f"null at {path}: Chargebee leaves optional keys out"


def test_customer_shape(data):
    customers = data["chargebee"]["customers"]
    assert len(customers) == 2000
    assert len({c["id"] for c in customers}) == 2000
    for c in customers:
        assert CUSTOMER_REQUIRED <= c.keys(), c["id"]
        _no_nulls(c, c["id"])
        assert c["object"] == "customer"
        assert c["auto_collection"] in ("on", "off")
        assert c["taxability"] in ("taxable", "exempt", "zero_rated")
        assert c["pii_cleared"] == "active"
        assert isinstance(c["deleted"], bool) and isinstance(c["allow_direct_debit"], bool)
        assert c["preferred_currency_code"] in ("USD", "EUR", "GBP", "JPY")
        for money in ("promotional_credits", "refundable_credits", "excess_payments", "unbilled_charges"):
            assert isinstance(c[money], int) and c[money] >= 0
        # Chargebee's own maxima hold even for the "too long for Zoho" values
        assert len(c["id"]) <= 50
        assert len(c.get("first_name", "")) <= 150 and len(c.get("last_name", "")) <= 150
        assert len(c.get("email", "")) <= 70 and len(c.get("phone", "")) <= 50
        assert len(c.get("company", "")) <= 250
        for key in c:
            assert key in CUSTOMER_REQUIRED or key in {
                "first_name", "last_name", "email", "phone", "company", "taxability", "updated_at",
                "locale", "pii_cleared", "resource_version", "billing_address", "card_status",
                "preferred_currency_code"} or key.startswith("cf_"), key
        if "billing_address" in c:
            addr = c["billing_address"]
            assert addr["object"] == "billing_address"
            assert {"line1", "city", "country", "zip", "validation_status"} <= addr.keys()
            assert len(addr["city"]) <= 50 and len(addr["line1"]) <= 150 and len(addr["zip"]) <= 20


def test_subscription_shape_and_links(data, customers_by_id):
    subs = data["chargebee"]["subscriptions"]
    assert len({s["id"] for s in subs}) == len(subs)
    for s in subs:
        assert SUBSCRIPTION_REQUIRED <= s.keys(), s["id"]
        _no_nulls(s, s["id"])
        assert s["id"].startswith("sub_") and s["object"] == "subscription"
        assert s["status"] in ("active", "non_renewing", "in_trial", "cancelled", "future", "paused")
        assert s["has_scheduled_changes"] is False and s["has_scheduled_advance_invoices"] is False
        assert s["billing_period"] == 1 and s["billing_period_unit"] in ("month", "year")
        customer = customers_by_id[s["customer_id"]]  # every subscription's customer exists
        assert s["currency_code"] == customer["preferred_currency_code"]
        assert s["deleted"] is customer["deleted"]
        (item,) = s["subscription_items"]
        assert item.keys() == ITEM_KEYS and item["object"] == "subscription_item"
        assert item["item_type"] == "plan" and item["quantity"] == 1 and item["free_quantity"] == 0
        plan, currency, period = item["item_price_id"].split("-")
        assert plan in ("basic", "pro", "enterprise") and currency == s["currency_code"]
        assert period == {"month": "monthly", "year": "yearly"}[s["billing_period_unit"]]
        assert item["unit_price"] == item["amount"] == ITEM_PRICES[item["item_price_id"]]
    assert len({s["customer_id"] for s in subs}) < len(customers_by_id)  # some have none
    per_customer = Counter(s["customer_id"] for s in subs)
    assert max(per_customer.values()) == 3


def test_catalog_matches_contract():
    assert len(ITEM_PRICES) == 3 * 4 * 2
    assert ITEM_PRICES["basic-USD-monthly"] == 2900 and ITEM_PRICES["enterprise-GBP-yearly"] == 499000
    assert ITEM_PRICES["pro-JPY-monthly"] == 12900 and ITEM_PRICES["enterprise-JPY-yearly"] == 649000


def test_mrr_from_catalog_with_jpy_in_major_units(data):
    subs = data["chargebee"]["subscriptions"]
    for s in subs:
        amount = s["subscription_items"][0]["amount"]
        monthly = amount if s["billing_period_unit"] == "month" else int(amount / 12 + 0.5)
        assert s["mrr"] == (monthly if s["status"] in ("active", "non_renewing") else 0), s["id"]
    jpy = {s["mrr"] for s in subs if s["currency_code"] == "JPY" and s["mrr"]}
    # JPY is zero-decimal: 3,900 yen a month is 3900, not 390000
    assert jpy <= {3900, 12900, 64900, 3250, 10750, 54083}
    assert 3900 in jpy or 12900 in jpy
    usd = {s["mrr"] for s in subs if s["currency_code"] == "USD" and s["mrr"]}
    assert usd <= {2900, 9900, 49900, 2417, 8250, 41583}


def test_timestamps_follow_now_and_lifecycle(data, customers_by_id):
    for c in data["chargebee"]["customers"]:
        if "updated_at" in c:
            assert c["created_at"] <= c["updated_at"] <= NOW
            assert c["resource_version"] // 1000 == c["updated_at"]
            assert c["created_at"] >= LEGACY_CUTOFF
        else:  # legacy: before Chargebee recorded updated_at
            assert "resource_version" not in c and c["created_at"] < LEGACY_CUTOFF
    for s in data["chargebee"]["subscriptions"]:
        customer = customers_by_id[s["customer_id"]]
        assert customer["created_at"] <= s["created_at"] <= NOW
        if "updated_at" in s:
            assert s["created_at"] <= s["updated_at"] <= NOW
            assert s["resource_version"] // 1000 == s["updated_at"]
        else:
            assert "resource_version" not in s and s["status"] == "cancelled"
            assert s["cancelled_at"] < LEGACY_CUTOFF
        if s["status"] in ("active", "non_renewing"):
            assert s["current_term_start"] <= NOW < s["current_term_end"]
            assert s["current_term_start"] >= s["started_at"]
        if s["status"] == "active":
            assert s["next_billing_at"] == s["current_term_end"]
        if s["status"] == "non_renewing":
            assert "next_billing_at" not in s and s["cancelled_at"] == s["current_term_end"]
        if s["status"] == "in_trial":
            assert s["trial_start"] <= NOW < s["trial_end"] == s["next_billing_at"]
        if s["status"] == "future":
            assert s["start_date"] > NOW and "started_at" not in s
        if s["status"] == "cancelled":
            assert s["started_at"] <= s["cancelled_at"] <= NOW
            assert "next_billing_at" not in s
        if s["status"] == "paused":
            assert s["pause_date"] <= NOW


def test_deleted_customers_take_their_subscriptions_with_them(data, customers_by_id):
    deleted_subs = [s for s in data["chargebee"]["subscriptions"] if s["deleted"]]
    assert deleted_subs
    for s in data["chargebee"]["subscriptions"]:
        if customers_by_id[s["customer_id"]]["deleted"]:
            assert s["deleted"] is True and s["status"] == "cancelled" and s["mrr"] == 0
    assert data["summary"]["totals"]["subscriptions_deleted"] == len(deleted_subs)


# ---- the mess, counted again from the records -------------------------------------------------------

def _recount(customers: list[dict], subs: list[dict]) -> dict:
    counts = Counter()
    by_email = defaultdict(list)
    by_company = defaultdict(list)
    for c in customers:
        first, last = c.get("first_name"), c.get("last_name")
        if first is None and last is None:
            counts["missing_both_names"] += 1
        elif first is None:
            counts["missing_first_name"] += 1
        elif last is None:
            counts["missing_last_name"] += 1
        names = (first or "") + (last or "")
        if any(_is_emoji(ch) for ch in names):
            counts["emoji_names"] += 1
        elif not names.isascii():
            counts["unicode_names"] += 1
        if last is not None and len(last) == 120:
            counts["long_last_name"] += 1
        email = c.get("email")
        if email is None:
            counts["missing_email"] += 1
        elif email != email.strip():
            counts["email_odd_case_spaces"] += 1
            assert email.strip() != email.strip().lower()
        elif not EMAIL_RE.match(email):
            counts["invalid_email"] += 1
        else:
            by_email[_norm(email)].append(c["id"])
        company = c.get("company")
        if company is None:
            counts["missing_company"] += 1
        elif len(company) == 150:
            counts["long_company_name"] += 1
        else:
            by_company[company.lower()].append(company)
        counts["deleted"] += c["deleted"]
        counts["legacy_without_updated_at"] += "updated_at" not in c
        counts["chargebee_style_id"] += not c["id"].startswith("cust_")
        counts["long_phone"] += len(c.get("phone", "")) > 30
        counts["cf_tier"] += "cf_tier" in c
    dup_groups = [ids for ids in by_email.values() if len(ids) > 1]
    counts["duplicate_email"] = sum(len(ids) for ids in dup_groups)
    counts["duplicate_email_pairs"] = len(dup_groups)
    shared = [spellings for spellings in by_company.values() if len(spellings) > 1]
    counts["shared_companies"] = len(shared)
    counts["shared_company"] = sum(len(s) for s in shared)
    counts["shared_company_case_variant"] = sum(
        1 for spellings in shared for s in spellings if s in (s.upper(), s.lower()))
    counts["legacy_subscriptions_without_updated_at"] = sum("updated_at" not in s for s in subs)
    return counts


def test_every_messy_category_is_present_and_counted_exactly(data):
    customers, subs = data["chargebee"]["customers"], data["chargebee"]["subscriptions"]
    summary = data["summary"]
    recount = _recount(customers, subs)
    for name, value in summary["counts"].items():
        assert recount[name] == value, name
        assert value > 0, f"category {name} missing from a 2,000-customer dataset"
    for name, share in CUSTOMER_SHARES.items():
        if name.startswith("currency_"):
            assert summary["currencies"][name[-3:]] == round(share * 2000)
        elif name not in ("shared_company", "duplicate_email"):
            assert summary["counts"][name] == round(share * 2000), name
    assert Counter(c["preferred_currency_code"] for c in customers) == summary["currencies"]
    assert Counter(s["status"] for s in subs) == summary["subscription_statuses"]
    # the over-long values really exceed Zoho's limits
    assert any(len(c.get("last_name", "")) > 80 for c in customers)
    assert any(len(c.get("company", "")) > 100 for c in customers)
    assert "not-an-email" in {c.get("email") for c in customers}
    # example ids point at customers that have the problem
    by_id = {c["id"]: c for c in customers}
    for cid in summary["examples"]["long_last_name"]:
        assert len(by_id[cid]["last_name"]) == 120
    for cid in summary["examples"]["missing_email"]:
        assert "email" not in by_id[cid]


def test_shared_companies_vary_only_in_case(data):
    spellings = defaultdict(set)
    for c in data["chargebee"]["customers"]:
        if "company" in c:
            spellings[c["company"].lower()].add(c["company"])
    assert any(len(s) >= 2 for s in spellings.values())
    acme = spellings.get("acme inc")
    assert acme and {"Acme Inc"} < acme


# ---- Zoho records -----------------------------------------------------------------------------------

def test_zoho_records_are_in_get_shape_and_within_limits(data):
    zoho = data["zoho"]
    assert zoho["Deals"] == []
    for rec in zoho["Contacts"] + zoho["Contacts_duplicates"]:
        assert rec.keys() == CONTACT_KEYS | {"Owner"}
        assert rec["Owner"] == {"id": USERS[0]}
        assert rec["Last_Name"] and len(rec["Last_Name"]) <= 80
        assert rec["First_Name"] is None or len(rec["First_Name"]) <= 40
        assert rec["Email"] is None or (len(rec["Email"]) <= 100 and EMAIL_RE.match(rec["Email"]))
        assert rec["Phone"] is None or len(rec["Phone"]) <= 30
    for rec in zoho["Accounts"]:
        assert rec["Account_Name"] and len(rec["Account_Name"]) <= 100
        assert rec["Owner"] == {"id": USERS[0]}
    # without users there is no Owner: the sandbox assigns one
    bare = generate_dataset(200, now=NOW)["zoho"]
    assert all("Owner" not in r for r in bare["Contacts"] + bare["Accounts"])


def test_zoho_contacts_match_chargebee_as_reported(data):
    customers, zoho, summary = data["chargebee"]["customers"], data["zoho"], data["summary"]["zoho"]
    live_by_email = defaultdict(list)
    for c in customers:
        if "email" in c and not c["deleted"]:
            live_by_email[_norm(c["email"])].append(c)
    emails = [_norm(r["Email"]) for r in zoho["Contacts"] if r["Email"]]
    assert len(emails) == len(set(emails)), "Contacts alone must load into an org with unique emails"
    twins = {_norm(r["Email"]) for r in zoho["Contacts_duplicates"]}
    assert len(twins) == len(zoho["Contacts_duplicates"]) == summary["contact_email_ambiguous"]
    assert twins <= set(emails)
    seen = Counter()
    for rec in zoho["Contacts"]:
        if rec["Email"] is None or rec["Email"].endswith("@prospects.example"):
            seen["contact_unrelated"] += 1
            assert rec["Email"] is None or _norm(rec["Email"]) not in live_by_email
            continue
        (cust,) = live_by_email[_norm(rec["Email"])]
        if _norm(rec["Email"]) in twins:
            seen["contact_email_ambiguous"] += 1
        elif cust["email"] != _norm(cust["email"]):
            seen["contact_chargebee_email_messy"] += 1
            assert rec["Email"] == _norm(cust["email"])
        elif rec["Email"] != cust["email"]:
            seen["contact_email_case_differs"] += 1
        elif rec["First_Name"] is None and "first_name" in cust:
            seen["contact_blank_fields"] += 1
            assert rec["Phone"] is None and "phone" in cust
        elif rec["Last_Name"] == cust.get("last_name"):
            seen["contact_same"] += 1
            assert rec["First_Name"] == cust.get("first_name")
        else:
            seen["contact_different_values"] += 1
            assert rec["Phone"] != cust.get("phone")
    for name in ZOHO_SHARES:
        if name.startswith("contact_"):
            assert seen[name] == summary[name] == round(ZOHO_SHARES[name] * 2000), name


def test_zoho_accounts_match_companies_as_reported(data):
    customers, accounts, summary = data["chargebee"]["customers"], data["zoho"]["Accounts"], data["summary"]["zoho"]
    spellings = defaultdict(set)
    for c in customers:
        if "company" in c:
            spellings[c["company"].lower()].add(c["company"])
    names = Counter(a["Account_Name"].lower() for a in accounts)
    ambiguous = [name for name, k in names.items() if k > 1]
    assert ambiguous == [summary["account_ambiguous_name"].lower()]
    assert ambiguous[0] in spellings and summary["account_ambiguous_records"] == 2
    seen = Counter()
    for a in accounts:
        key = a["Account_Name"].lower()
        if key == ambiguous[0]:
            continue
        if key not in spellings:
            seen["account_unrelated"] += 1
        elif a["Account_Name"] in spellings[key]:
            seen["account_same"] += 1
        else:
            seen["account_case_differs"] += 1
    for name in ("account_same", "account_case_differs", "account_unrelated"):
        assert seen[name] == summary[name] == round(ZOHO_SHARES[name] * 2000), name
    # at least one Account is a company several Chargebee customers share
    shared = {k for k, s in spellings.items() if sum(c.get("company", "").lower() == k for c in customers) > 1}
    assert shared & set(names)


def test_summary_totals(data):
    totals = data["summary"]["totals"]
    assert totals == {
        "customers": 2000,
        "customers_deleted": sum(c["deleted"] for c in data["chargebee"]["customers"]),
        "subscriptions": len(data["chargebee"]["subscriptions"]),
        "subscriptions_deleted": sum(s["deleted"] for s in data["chargebee"]["subscriptions"]),
        "zoho_contacts": len(data["zoho"]["Contacts"]),
        "zoho_contacts_duplicates": len(data["zoho"]["Contacts_duplicates"]),
        "zoho_accounts": len(data["zoho"]["Accounts"]),
        "zoho_deals": 0,
    }
    assert data["summary"]["shares"] == {"customers": CUSTOMER_SHARES, "zoho": ZOHO_SHARES}
    json.dumps(data["summary"])  # printable as is


# ---- size ---------------------------------------------------------------------------------------------

def test_one_hundred_thousand_customers_are_cheap():
    started = time.perf_counter()
    big = generate_dataset(100_000, seed=42, now=NOW, zoho_user_ids=USERS)
    elapsed = time.perf_counter() - started
    totals = big["summary"]["totals"]
    print(f"\ngenerated 100,000 customers, {totals['subscriptions']:,} subscriptions, "
          f"{totals['zoho_contacts']:,} Zoho contacts in {elapsed:.2f} s")
    assert totals["customers"] == 100_000
    assert len({c["id"] for c in big["chargebee"]["customers"]}) == 100_000
    assert elapsed < 60
