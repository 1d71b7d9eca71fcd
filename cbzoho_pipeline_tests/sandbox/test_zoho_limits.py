"""Contract tests of the sandbox's Zoho API credits, 429s and injected faults, over real HTTP.

Why these tests exist: the sync budgets its calls against Zoho's daily credits (1 per call, 1 per 10
records written, COQL by LIMIT) and must back off on HTTP 429 TOO_MANY_REQUESTS. The sandbox must count
credits the documented way, warn with X-API-CREDITS-REMAINING past half the allowance, refuse with 429
when the rolling 24-hour allowance is spent, and answer injected faults with Zoho's error bodies.
"""

from __future__ import annotations

import pytest

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp

PIPE = "Standard (Standard)"


@pytest.fixture
def zoho(sandbox):
    client = ZohoHttp(sandbox)
    client.login()
    return client


def contacts(n, start=0):
    return [{"Last_Name": f"L{i}", "Email": f"u{i}@example.com"} for i in range(start, start + n)]


@pytest.mark.parametrize("records, credits", [(1, 1), (10, 1), (11, 2), (25, 3), (100, 10)])
def test_write_credits_are_one_per_ten_records(zoho, records, credits):
    before = zoho.credits()
    assert zoho.insert("Contacts", *contacts(records)).status_code == 201
    inserted = zoho.credits()
    assert inserted - before == credits
    upsert = zoho.post("Contacts/upsert", json={"data": contacts(records)})
    assert upsert.status_code == 200 and zoho.credits() - inserted == credits


def test_other_calls_cost_one_credit(sandbox, zoho):
    record_id = zoho.ok_id("Contacts", {"Last_Name": "A"})
    calls = [
        lambda: zoho.get("Contacts", params={"fields": "Last_Name"}),
        lambda: zoho.get(f"Contacts/{record_id}"),
        lambda: zoho.get("Contacts/actions/count"),
        lambda: zoho.put(f"Contacts/{record_id}", json={"data": [{"Last_Name": "B"}]}),
        lambda: zoho.get("users"),
        lambda: zoho.get("settings/fields", params={"module": "Deals"}),
        lambda: zoho.get("settings/layouts", params={"module": "Deals"}),
        lambda: zoho.delete("Contacts", params={"ids": record_id}),
        lambda: zoho.get("Contacts/deleted"),
        lambda: zoho.insert("Contacts", *contacts(101)),  # rejected as a whole: still one call
    ]
    for call in calls:
        before = zoho.credits()
        call()
        assert zoho.credits() - before == 1


def test_credit_header_and_429_when_exhausted(sandbox, zoho):
    sandbox.settings_zoho("sandbox", daily_credits=10)
    headers = []
    for _ in range(10):
        response = zoho.get("Contacts/actions/count")
        assert response.status_code == 200
        headers.append(response.headers.get("X-API-CREDITS-REMAINING"))
    assert headers == [None, None, None, None, "5", "4", "3", "2", "1", "0"]
    refused = zoho.get("Contacts/actions/count")
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_REQUESTS" and refused.json()["status"] == "error"
    assert zoho.insert("Contacts", {"Last_Name": "x"}).status_code == 429
    assert sandbox.dump("sandbox", "Contacts") == []
    stats = sandbox.stats()["zoho"]["sandbox"]
    assert stats["credits_used"] == 10 and stats["credit_limited"] == 2 and stats["served_429"] == 2
    # the window is rolling: a day later the allowance is back
    sandbox.control("POST", "clock", {"advance_seconds": 86401})
    zoho.login()
    assert zoho.get("Contacts/actions/count").status_code == 200
    # credits belong to one org
    assert ZohoHttp(sandbox, "production").get("Contacts/actions/count").status_code == 200


@pytest.mark.parametrize("kind, status, code", [("p429", 429, "TOO_MANY_REQUESTS"), ("p500", 500, "INTERNAL_ERROR")])
def test_injected_faults_use_zoho_bodies(sandbox, zoho, kind, status, code):
    sandbox.faults("zoho", "sandbox", **{kind: 1.0})
    response = zoho.insert("Contacts", {"Last_Name": "x"})
    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["details"] == {}
    assert sandbox.dump("sandbox", "Contacts") == []


def test_concurrency_limit_setting_reaches_the_middleware(sandbox, zoho):
    sandbox.settings_zoho("sandbox", concurrency_limit=0)
    response = zoho.get("Contacts/actions/count")
    assert response.status_code == 429 and response.json()["code"] == "TOO_MANY_REQUESTS"
    sandbox.settings_zoho("sandbox", concurrency_limit=10)
    assert zoho.get("Contacts/actions/count").status_code == 200


def test_stats_report_the_most_calls_in_flight_at_once(sandbox, zoho):
    """What lets a test see a client's concurrency from the server's side: calls overlapping in time."""
    import threading

    import requests

    token = zoho.login()
    sandbox.faults("zoho", "sandbox", latency_ms=300)
    sandbox.reset_stats()

    def call() -> None:
        requests.get(f"{zoho.api}/Contacts/actions/count", headers={"Authorization": f"Zoho-oauthtoken {token}"},
                     timeout=30)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = sandbox.stats()["zoho"]["sandbox"]
    assert stats["max_in_flight"] == 4 and stats["served_429"] == 0
    sandbox.reset_stats()
    assert sandbox.stats()["zoho"]["sandbox"]["max_in_flight"] == 0
    call()  # one at a time is one
    assert sandbox.stats()["zoho"]["sandbox"]["max_in_flight"] == 1
