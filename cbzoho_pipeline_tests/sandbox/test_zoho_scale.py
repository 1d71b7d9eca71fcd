"""Scale test of the sandbox Zoho org: 100,050 Contacts loaded and read back over real HTTP.

Why this test exists: the sync must read orgs past Zoho's 100,000-record page-token ceiling by paging
COQL on id, and the sandbox must hold such an org and answer fast enough for CI. It asserts the page
token ceiling (PAGINATION_LIMIT_EXCEEDED after 100,000 records), that COQL id paging returns every
record exactly once, and that the whole round trip stays well under a minute.
"""

from __future__ import annotations

import time

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp

TOTAL = 100_050


def test_hundred_thousand_contacts_round_trip(sandbox):
    started = time.monotonic()
    records = [{"First_Name": f"F{i}", "Last_Name": f"L{i:06d}", "Email": f"user{i}@example.com"}
               for i in range(TOTAL)]
    loaded = sandbox.load(zoho={"sandbox": {"Contacts": records}})
    assert loaded["loaded"]["zoho"]["sandbox"]["Contacts"] == TOTAL
    load_seconds = time.monotonic() - started

    zoho = ZohoHttp(sandbox)
    assert zoho.get("Contacts/actions/count").json() == {"count": TOTAL}

    # Get Records with page tokens: 100,000 records, then the documented ceiling
    read_started = time.monotonic()
    token, seen = None, set()
    while True:
        params = {"fields": "Last_Name,Email", "per_page": 200}
        if token:
            params["page_token"] = token
        response = zoho.get("Contacts", params=params)
        if response.status_code == 400:
            assert response.json()["code"] == "PAGINATION_LIMIT_EXCEEDED"
            break
        body = response.json()
        seen.update(r["id"] for r in body["data"])
        assert body["info"]["more_records"], "the ceiling must be reached before the end"
        token = body["info"]["next_page_token"]
    assert len(seen) == 100_000
    token_seconds = time.monotonic() - read_started

    # COQL paged by id reaches everything
    coql_started = time.monotonic()
    last, rows, calls = 0, [], 0
    while True:
        response = zoho.coql(f"select Last_Name, Email from Contacts where id > {last} order by id limit 2000")
        calls += 1
        if response.status_code == 204:
            break
        data = response.json()["data"]
        rows += data
        last = data[-1]["id"]
        if not response.json()["info"]["more_records"]:
            break
    assert calls == 51 and len(rows) == TOTAL and len({r["id"] for r in rows}) == TOTAL
    assert sorted(r["Last_Name"] for r in rows) == [f"L{i:06d}" for i in range(TOTAL)]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    coql_seconds = time.monotonic() - coql_started

    total = time.monotonic() - started
    print(f"\nload {load_seconds:.1f}s, page tokens {token_seconds:.1f}s, coql {coql_seconds:.1f}s, "
          f"total {total:.1f}s")
    assert total < 60, f"100k round trip took {total:.1f}s"
    # credits: 1 count + 501 pages + 51 COQL calls at 3 credits
    assert sandbox.stats()["zoho"]["sandbox"]["credits_used"] == 1 + 501 + 51 * 3
