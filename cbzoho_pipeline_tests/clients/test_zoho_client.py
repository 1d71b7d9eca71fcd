"""The Zoho CRM client against the sandbox over real HTTP.

Why these tests exist: the client's promises (one token for many calls, one refresh when a token dies,
complete paging past Zoho's ceilings, retries that neither lose nor duplicate records, a concurrency
cap that keeps Zoho from answering 429) are only worth something if they hold on the wire. Each test
therefore asserts what the sandbox saw or holds afterwards — its records, its call counts, its
credits — not merely that no exception was raised. The only pure tests are the date-time and COQL
literal helpers.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cbzoho_pipeline.zoho.client import (
    ZohoAuthError,
    ZohoClient,
    ZohoError,
    ZohoOutcomeUnknown,
    coql_literal,
    format_zoho_datetime,
    parse_zoho_datetime,
)

ORG = "sandbox"
CREDENTIAL_KEYS = ("accounts_url", "api_domain", "client_id", "client_secret", "refresh_token")


class SleepRecorder:
    """Stands in for time.sleep: records each requested delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.delays.append(seconds)


def make_client(sandbox, org: str = ORG, *, from_token: bool = False, **overrides) -> ZohoClient:
    creds = {k: v for k, v in sandbox.zoho(org).items() if k in CREDENTIAL_KEYS}
    if from_token:
        creds["api_domain"] = None
    kwargs = {"sleep": SleepRecorder(), "timeout": 20.0, **creds, **overrides}
    return ZohoClient(**kwargs)


def contact(i: int, prefix: str = "c") -> dict:
    return {"First_Name": f"First{i}", "Last_Name": f"Last{i}", "Email": f"{prefix}{i}@example.com"}


def zoho_stats(sandbox, org: str = ORG) -> dict:
    return sandbox.stats()["zoho"][org]


def token_calls(sandbox) -> int:
    return sandbox.stats()["zoho_accounts"]["calls"].get("POST /oauth/v2/token", 0)


def endpoint_calls(sandbox, key: str, org: str = ORG) -> int:
    return zoho_stats(sandbox, org)["calls"].get(key, 0)


def all_ids(pages) -> list[str]:
    return [str(row["id"]) for page in pages for row in page]


# ------------------------------------------------------------------------------------------ tokens


def test_one_token_serves_many_calls_and_names_the_api_domain(sandbox):
    client = make_client(sandbox, from_token=True)
    client.users()
    client.fields("Contacts")
    client.insert("Contacts", [contact(1)])
    assert list(client.iter_records("Contacts", ["Last_Name", "Email"]))
    client.coql("select Last_Name from Contacts where Last_Name = 'Last1'")

    assert token_calls(sandbox) == 1
    assert client.calls[("POST", "/oauth/v2/token")] == 1
    assert client.api_domain == sandbox.zoho(ORG)["api_domain"]
    assert sum(zoho_stats(sandbox)["calls"].values()) == 5


def test_token_expired_mid_use_is_refreshed_exactly_once(sandbox):
    client = make_client(sandbox)
    client.insert("Contacts", [contact(1)])
    sandbox.control("POST", f"zoho/{ORG}/expire_tokens")
    sandbox.faults(api="zoho", tenant=ORG, latency_ms=50)  # API calls only; the accounts server stays fast

    # Several threads hit the dead token at once; one refresh must serve them all.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: client.users(), range(8)))

    assert all(users for users in results)
    assert token_calls(sandbox) == 2
    assert client.calls[("POST", "/oauth/v2/token")] == 2


def test_token_rejected_again_after_the_one_refresh_raises(sandbox):
    sandbox.settings_zoho(ORG, token_expires_in=0)  # every token is dead on arrival
    client = make_client(sandbox)

    with pytest.raises(ZohoError) as caught:
        client.users()

    assert not isinstance(caught.value, ZohoAuthError)
    assert (caught.value.status, caught.value.code) == (401, "INVALID_TOKEN")
    assert token_calls(sandbox) == 2  # the first token and exactly one refresh
    assert endpoint_calls(sandbox, "GET /crm/v8/users") == 2


def test_revoked_refresh_token_raises_auth_error(sandbox):
    revoker, bystander = make_client(sandbox), make_client(sandbox)
    revoker.users()
    bystander.users()  # holds a cached access token minted from the same refresh token
    revoker.revoke_refresh_token()

    # The revoker dropped its own access token, so it goes straight to the accounts server.
    with pytest.raises(ZohoAuthError) as first:
        revoker.users()
    assert first.value.code == "invalid_code"

    # The bystander's access token died with the refresh token: 401, one refresh attempt, refused.
    with pytest.raises(ZohoAuthError) as second:
        bystander.users()
    assert second.value.code == "invalid_code"
    assert endpoint_calls(sandbox, "GET /crm/v8/users") == 3
    assert token_calls(sandbox) == 4  # two good ones, then one refused per client, none retried


def test_wrong_secret_raises_auth_error_without_leaking_it(sandbox):
    secret = "wrong-" + sandbox.zoho(ORG)["client_secret"]
    lines: list[str] = []
    client = make_client(sandbox, client_secret=secret, log=lines.append)

    with pytest.raises(ZohoAuthError) as caught:
        client.insert("Contacts", [contact(1)])

    error = caught.value
    assert error.code == "invalid_client"
    refresh_token = sandbox.zoho(ORG)["refresh_token"]
    for text in (str(error), repr(error), error.message, repr(client), *lines):
        assert secret not in text
        assert refresh_token not in text
    assert token_calls(sandbox) == 1  # refused, not retried
    assert sandbox.dump(ORG, "Contacts") == []


def test_access_token_is_renewed_before_it_expires(sandbox):
    sandbox.settings_zoho(ORG, token_expires_in=100)
    local = [0.0]
    client = make_client(sandbox, clock=lambda: local[0])
    client.users()
    local[0] = 50.0
    client.users()
    assert token_calls(sandbox) == 1

    # 95 s later the token has 5 s left: inside the safety margin, so it is replaced up front.
    sandbox.control("POST", "clock", {"advance_seconds": 95})
    local[0] = 95.0
    client.users()
    assert token_calls(sandbox) == 2
    assert zoho_stats(sandbox)["unauthorized"] == 0  # no call was sent with a dying token


def test_throttled_token_requests_back_off_and_then_give_up(sandbox):
    sandbox.settings_zoho(ORG, token_rate_limit=1)
    make_client(sandbox).users()  # uses up the one token allowed in this window

    # A patient client: its "sleep" lets the sandbox clock run past the 10-minute window.
    waited: list[float] = []

    def sleep_past_window(seconds: float) -> None:
        waited.append(seconds)
        sandbox.control("POST", "clock", {"advance_seconds": 601})

    patient = make_client(sandbox, sleep=sleep_past_window)
    assert patient.users()
    assert len(waited) == 1
    assert zoho_stats(sandbox)["token_requests_denied"] == 1

    # An impatient one, in the same window as the patient client's token: backs off, then gives up.
    slept = SleepRecorder()
    impatient = make_client(sandbox, max_retries=2, sleep=slept)
    with pytest.raises(ZohoAuthError) as caught:
        impatient.users()
    assert caught.value.code == "Access Denied"
    assert len(slept.delays) == 2
    assert impatient.calls[("POST", "/oauth/v2/token")] == 3


def test_credits_remaining_is_tracked_and_exhaustion_is_not_retried(sandbox):
    sandbox.settings_zoho(ORG, daily_credits=10)
    slept = SleepRecorder()
    client = make_client(sandbox, sleep=slept)
    for _ in range(4):
        client.users()
    assert client.credits_remaining is None  # Zoho stays silent below half of the allowance
    client.users()
    assert client.credits_remaining == 5 == zoho_stats(sandbox)["credits_remaining"]
    for _ in range(5):
        client.users()
    assert client.credits_remaining == 0

    with pytest.raises(ZohoError) as caught:
        client.users()
    assert (caught.value.status, caught.value.code) == (429, "TOO_MANY_REQUESTS")
    assert slept.delays == []
    assert endpoint_calls(sandbox, "GET /crm/v8/users") == 11


# ------------------------------------------------------------------------------------------ reads


def test_get_records_pages_past_2000_with_page_token(sandbox):
    sandbox.load(zoho={ORG: {"Contacts": [contact(i) for i in range(2500)]}})
    client = make_client(sandbox)

    pages = list(client.iter_records("Contacts", ["Last_Name", "Email"]))

    ids = all_ids(pages)
    assert len(ids) == 2500
    assert ids == sorted(ids, key=int)
    assert set(ids) == {str(r["id"]) for r in sandbox.dump(ORG, "Contacts")}
    assert {row["Email"] for page in pages for row in page} == {f"c{i}@example.com" for i in range(2500)}
    # 10 numbered pages up to 2,000, then 3 by token (2,200 / 2,400 / 2,500); never an error.
    assert endpoint_calls(sandbox, "GET /crm/v8/{module}") == 13


def test_get_records_refuses_more_than_50_fields_before_calling(sandbox):
    client = make_client(sandbox)
    with pytest.raises(ValueError):
        list(client.iter_records("Contacts", [f"Field_{i}" for i in range(51)]))
    assert sum(client.calls.values()) == 0


def test_if_modified_since_returns_only_changed_records(sandbox):
    old = "2024-01-01T00:00:00+00:00"
    sandbox.load(
        zoho={ORG: {"Contacts": [{**contact(i), "Created_Time": old, "Modified_Time": old} for i in range(5)]}}
    )
    client = make_client(sandbox)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    assert list(client.iter_records("Contacts", ["Last_Name"], modified_since=since)) == []
    assert endpoint_calls(sandbox, "GET /crm/v8/{module}") == 1  # a single 304, no paging

    target = sandbox.dump(ORG, "Contacts")[2]["id"]
    [result] = client.update("Contacts", [{"id": target, "Last_Name": "Changed"}])
    assert result.ok

    pages = list(client.iter_records("Contacts", ["Last_Name"], modified_since=since))
    assert [(row["id"], row["Last_Name"]) for page in pages for row in page] == [(target, "Changed")]
    long_ago = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    everything = list(client.iter_records("Contacts", ["Last_Name"], modified_since=long_ago))
    assert len(all_ids(everything)) == 5


def test_coql_pages_by_id_are_complete(sandbox):
    sandbox.load(zoho={ORG: {"Contacts": [contact(i) for i in range(2500)]}})
    client = make_client(sandbox)

    pages = list(client.iter_coql("Contacts", ["Last_Name", "Email"], page_size=1000))

    ids = all_ids(pages)
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert len(set(ids)) == 2500
    assert set(ids) == {str(r["id"]) for r in sandbox.dump(ORG, "Contacts")}
    assert endpoint_calls(sandbox, "POST /crm/v8/coql") == 3


def test_coql_where_is_bracketed_against_the_id_bound_and_quotes_are_escaped(sandbox):
    names = ["O'Brien", "Smith", "O'Brien", "Jones", "O'Brien", "Brown", "Smith"]
    loaded = [{"Last_Name": n, "Email": f"w{i}@example.com"} for i, n in enumerate(names)]
    sandbox.load(zoho={ORG: {"Contacts": loaded}})
    client = make_client(sandbox)

    # An "or" condition over several small pages: unbracketed, "id > N and A or B" is refused by COQL
    # or, read as "(id > N and A) or B", re-reads the B rows on every page.
    obrien, smith = coql_literal("O'Brien"), coql_literal("Smith")
    where = f"Last_Name = {obrien} or Last_Name = {smith}"
    pages = list(client.iter_coql("Contacts", ["Last_Name"], where=where, page_size=2))

    rows = [row for page in pages for row in page]
    assert sorted(r["Last_Name"] for r in rows) == ["O'Brien", "O'Brien", "O'Brien", "Smith", "Smith"]
    assert len({r["id"] for r in rows}) == 5
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int)


def test_deleted_records_are_listed(sandbox):
    client = make_client(sandbox)
    inserted = client.insert("Contacts", [contact(i) for i in range(3)])
    ids = [r.id for r in inserted]

    results = client.delete("Contacts", ids[:2])

    assert [(r.index, r.ok, r.id) for r in results] == [(0, True, ids[0]), (1, True, ids[1])]
    assert [r["id"] for r in sandbox.dump(ORG, "Contacts")] == [ids[2]]
    deleted = [row for page in client.iter_deleted("Contacts") for row in page]
    assert sorted(str(row["id"]) for row in deleted) == sorted(ids[:2])


def test_metadata_reads(sandbox):
    client = make_client(sandbox)
    users = client.users()
    assert {u["email"] for u in users} >= {"admin@acme.example"}
    field_names = {f["api_name"] for f in client.fields("Contacts")}
    assert {"Last_Name", "Email"} <= field_names
    layouts = client.layouts("Deals")
    assert layouts
    pipelines = client.pipelines(layouts[0]["id"])
    stages = {m["display_value"] for p in pipelines for m in p["maps"]}
    assert {"Closed Won", "Closed Lost"} <= stages


# ------------------------------------------------------------------------------------------ writes


def test_partial_batch_results_come_back_in_request_order(sandbox):
    client = make_client(sandbox)
    batch = [
        contact(0),
        {"First_Name": "NoLast", "Email": "nolast@example.com"},  # Last_Name is mandatory
        contact(2),
        {**contact(3), "Last_Name": "x" * 81},  # Last_Name is 80 characters at most
    ]

    results = client.upsert("Contacts", batch, duplicate_check_fields=["Email"])

    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.ok for r in results] == [True, False, True, False]
    assert [r.code for r in results] == ["SUCCESS", "MANDATORY_NOT_FOUND", "SUCCESS", "INVALID_DATA"]
    assert results[0].action == "insert" and results[0].duplicate_field is None
    assert results[3].details.get("api_name") == "Last_Name"
    stored = {r["Email"]: str(r["id"]) for r in sandbox.dump(ORG, "Contacts")}
    assert stored == {"c0@example.com": results[0].id, "c2@example.com": results[2].id}

    # Upserting again matches by Email and updates; a batch where every record fails still parses.
    again = client.upsert("Contacts", [{**contact(0), "First_Name": "Again"}], duplicate_check_fields=["Email"])
    assert (again[0].action, again[0].duplicate_field, again[0].id) == ("update", "Email", results[0].id)
    failed = client.insert("Contacts", [{"First_Name": "a"}, {"First_Name": "b"}])
    assert [(r.index, r.ok, r.code) for r in failed] == [(i, False, "MANDATORY_NOT_FOUND") for i in (0, 1)]
    assert len(sandbox.dump(ORG, "Contacts")) == 2


def test_delete_reports_unknown_ids_per_record(sandbox):
    client = make_client(sandbox)
    [kept] = client.insert("Contacts", [contact(1)])
    results = client.delete("Contacts", ["1", kept.id])
    assert [(r.index, r.ok) for r in results] == [(0, False), (1, True)]
    assert results[1].id == kept.id
    assert sandbox.dump(ORG, "Contacts") == []


def test_more_than_100_records_is_refused_before_any_call(sandbox):
    client = make_client(sandbox)
    records = [contact(i) for i in range(101)]
    for call in (
        lambda: client.insert("Contacts", records),
        lambda: client.upsert("Contacts", records),
        lambda: client.update("Contacts", [{**r, "id": str(i + 1)} for i, r in enumerate(records)]),
        lambda: client.delete("Contacts", [str(i + 1) for i in range(101)]),
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        client.update("Contacts", [{"Last_Name": "no id"}])
    assert sum(client.calls.values()) == 0
    assert token_calls(sandbox) == 0
    assert zoho_stats(sandbox)["calls_total"] == 0


def test_top_level_error_raises(sandbox):
    client = make_client(sandbox)
    with pytest.raises(ZohoError) as caught:
        client.insert("Widgets", [{"Name": "x"}])
    assert caught.value.status == 400
    assert caught.value.code == "INVALID_MODULE"


def test_credits_spent_counts_what_zoho_charged_and_a_gate_can_refuse_a_call_before_it_is_sent(sandbox):
    client = make_client(sandbox)
    client.users()  # 1
    client.upsert("Contacts", [contact(i) for i in range(25)], duplicate_check_fields=["Email"])  # 3
    list(client.iter_coql("Contacts", ["Email"], page_size=300))  # LIMIT 300: 2
    client.update("Contacts", [{"id": "1", "Last_Name": "x"}])  # an invalid id is still charged: 1
    assert client.credits_spent == zoho_stats(sandbox)["credits_used"] == 7

    class Gate:
        def __init__(self, allow: int) -> None:
            self.allow, self.asked, self.open = allow, [], 0

        def before(self, credits: int) -> None:
            self.asked.append(credits)
            if credits > self.allow:
                raise RuntimeError("over budget")
            self.allow -= credits
            self.open += 1

        def after(self, credits: int) -> None:
            self.open -= 1

    gate = client.credit_gate = Gate(allow=5)
    sandbox.reset_stats()
    client.upsert("Contacts", [contact(i, "g") for i in range(40)], duplicate_check_fields=["Email"])  # 4
    with pytest.raises(RuntimeError):
        client.upsert("Contacts", [contact(i, "h") for i in range(20)], duplicate_check_fields=["Email"])  # 2 > 1
    assert gate.asked == [4, 2] and gate.open == 0
    assert endpoint_calls(sandbox, "POST /crm/v8/{module}/upsert") == 1  # the refused call never left
    assert zoho_stats(sandbox)["credits_used"] == 4 and client.credits_spent == 11
    assert not any(c["Email"].startswith("h") for c in sandbox.dump(ORG, "Contacts"))


def test_the_org_call_names_the_edition(sandbox):
    org = make_client(sandbox).org()
    assert org["license_details"]["paid_type"] == "standard"  # the sandbox's default limit of 10 calls


def test_a_full_upsert_batch_costs_ten_credits(sandbox):
    client = make_client(sandbox)
    before = zoho_stats(sandbox)["credits_used"]
    client.upsert("Contacts", [contact(i) for i in range(100)], duplicate_check_fields=["Email"])
    assert zoho_stats(sandbox)["credits_used"] - before == 10  # 1 credit per 10 records
    assert len(sandbox.dump(ORG, "Contacts")) == 100


# ------------------------------------------------------------------------------------------ faults


def test_retries_on_429_and_500_lose_and_duplicate_nothing(sandbox):
    slept = SleepRecorder()
    client = make_client(sandbox, max_retries=20, sleep=slept)
    client.users()  # token first, so the dice below only hit API calls of this org
    client.upsert("Contacts", [contact(i) for i in range(300)][:100], duplicate_check_fields=["Email"])
    client.upsert("Contacts", [contact(i) for i in range(300)][100:200], duplicate_check_fields=["Email"])
    client.upsert("Contacts", [contact(i) for i in range(300)][200:], duplicate_check_fields=["Email"])
    sandbox.faults(api="zoho", tenant=ORG, p429=0.3, p500=0.2)

    for start in range(0, 300, 100):  # updates by id are safe to send again, so 429 and 500 are retried
        ids = [str(r["id"]) for r in sandbox.dump(ORG, "Contacts")][start:start + 100]
        results = client.update("Contacts", [{"id": i, "Title": "retried"} for i in ids])
        assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    pages = list(client.iter_records("Contacts", ["Email"], per_page=10))  # many calls, many dice rolls

    injected = zoho_stats(sandbox)["faults_injected"]
    assert injected.get("429", 0) > 0 and injected.get("500", 0) > 0
    sleeps = slept.delays
    assert len(sleeps) == injected.get("429", 0) + injected.get("500", 0)
    assert all(0 < d <= client.max_backoff for d in sleeps)
    emails = [r["Email"] for r in sandbox.dump(ORG, "Contacts")]
    assert sorted(emails) == sorted(f"c{i}@example.com" for i in range(300))
    assert len(all_ids(pages)) == 300


def test_backoff_grows_exponentially_then_gives_up(sandbox):
    slept = SleepRecorder()
    client = make_client(sandbox, max_retries=3, backoff_factor=0.5, sleep=slept)
    client.users()
    sandbox.faults(api="zoho", tenant=ORG, p500=1.0)

    with pytest.raises(ZohoError) as caught:
        client.users()

    assert caught.value.status == 500
    assert caught.value.code == "INTERNAL_ERROR"
    delays = slept.delays
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        base = 0.5 * 2**attempt
        assert base / 2 <= delay <= base  # exponential with jitter in [50 %, 100 %]
    assert endpoint_calls(sandbox, "GET /crm/v8/users") == 1 + 4


def test_dropped_connections_are_retried(sandbox):
    slept = SleepRecorder()
    client = make_client(sandbox, max_retries=20, sleep=slept)
    client.users()
    for start in range(0, 200, 100):
        client.upsert("Contacts", [contact(i) for i in range(start, start + 100)], duplicate_check_fields=["Email"])
    sandbox.faults(api="zoho", tenant=ORG, pdrop=0.3)

    pages = list(client.iter_records("Contacts", ["Email"], per_page=20))

    assert zoho_stats(sandbox)["faults_injected"].get("drop", 0) > 0
    assert len(slept.delays) == zoho_stats(sandbox)["faults_injected"]["drop"]
    assert len(sandbox.dump(ORG, "Contacts")) == 200
    assert len(set(all_ids(pages))) == 200


def test_token_endpoint_faults_are_retried(sandbox):
    sandbox.faults(api="zoho", p500=1.0)  # no tenant: the accounts server fails too
    client = make_client(sandbox, max_retries=2)
    with pytest.raises(ZohoError) as caught:
        client.users()
    assert not isinstance(caught.value, ZohoAuthError)  # an outage, not a refusal of the credentials
    assert (caught.value.status, caught.value.code) == (500, "INTERNAL_ERROR")
    assert token_calls(sandbox) == 3
    sandbox.clear_faults()
    assert client.users()
    assert token_calls(sandbox) == 4


# ------------------------------------------------------------------------------------------ concurrency


def _hammer(client: ZohoClient, threads: int, calls: int) -> list[object]:
    def one(_):
        try:
            return client.users()
        except ZohoError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(calls)))


def test_semaphore_keeps_within_the_org_concurrency_limit(sandbox):
    sandbox.settings_zoho(ORG, concurrency_limit=2)
    sandbox.faults(api="zoho", tenant=ORG, latency_ms=40)  # requests overlap for certain
    client = make_client(sandbox, max_concurrency=2, max_retries=0)

    outcomes = _hammer(client, threads=12, calls=36)

    assert not [o for o in outcomes if isinstance(o, Exception)]
    assert zoho_stats(sandbox)["served_429"] == 0
    assert endpoint_calls(sandbox, "GET /crm/v8/users") == 36


def test_without_the_cap_the_same_load_is_refused(sandbox):
    """Control for the test above: it would catch a missing semaphore."""
    sandbox.settings_zoho(ORG, concurrency_limit=2)
    sandbox.faults(api="zoho", tenant=ORG, latency_ms=40)
    client = make_client(sandbox, max_concurrency=12, max_retries=0)

    outcomes = _hammer(client, threads=12, calls=36)

    refused = [o for o in outcomes if isinstance(o, ZohoError)]
    assert refused and all(o.status == 429 and o.code == "TOO_MANY_REQUESTS" for o in refused)
    assert zoho_stats(sandbox)["served_429"] == len(refused)


# ------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-07-14T10:54:15+05:30", dt.datetime(2024, 7, 14, 5, 24, 15, tzinfo=dt.UTC)),
        ("2024-07-14T10:54:15-07:00", dt.datetime(2024, 7, 14, 17, 54, 15, tzinfo=dt.UTC)),
        ("2024-07-14T10:54:15Z", dt.datetime(2024, 7, 14, 10, 54, 15, tzinfo=dt.UTC)),
        ("2024-07-14T10:54:15.123+00:00", dt.datetime(2024, 7, 14, 10, 54, 15, 123000, tzinfo=dt.UTC)),
    ],
)
def test_parse_zoho_datetime(text, expected):
    parsed = parse_zoho_datetime(text)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            dt.datetime(2024, 7, 14, 10, 54, 15, 999, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
            "2024-07-14T10:54:15+05:30",
        ),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2024-01-02T03:04:05+00:00"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(-dt.timedelta(hours=8))), "2024-01-02T03:04:05-08:00"),
    ],
)
def test_format_zoho_datetime(value, expected):
    assert format_zoho_datetime(value) == expected
    assert parse_zoho_datetime(expected) == value.replace(microsecond=0)


def test_datetime_helpers_refuse_naive_values():
    with pytest.raises(ValueError):
        format_zoho_datetime(dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        parse_zoho_datetime("2024-01-01T00:00:00")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("O'Brien", "'O''Brien'"),
        ("plain", "'plain'"),
        (42, "42"),
        (True, "true"),
        (None, "null"),
        (dt.date(2024, 7, 1), "'2024-07-01'"),
        (dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC), "'2024-07-01T12:00:00+00:00'"),
    ],
)
def test_coql_literal(value, expected):
    assert coql_literal(value) == expected



# ------------------------------------------------------------------------------------------ lost answers


@pytest.mark.parametrize("fault", [{"papply_drop": 1.0}, {"papply_late": 1.0, "late_seconds": 1.5}, {"p500": 1.0}])
@pytest.mark.parametrize("method", ["insert", "upsert"])
def test_a_create_whose_outcome_is_unknown_is_never_sent_again(sandbox, fault, method):
    client = make_client(sandbox, timeout=0.5)
    client.users()
    sandbox.faults(api="zoho", tenant=ORG, writes_only=True, **fault)
    no_email = {"Last_Name": "Nobody"}  # nothing an upsert could match on
    with pytest.raises(ZohoOutcomeUnknown) as caught:
        getattr(client, method)("Contacts", [no_email])
    assert caught.value.code == "OUTCOME_UNKNOWN"
    write = "POST /crm/v8/{module}" + ("/upsert" if method == "upsert" else "")
    assert endpoint_calls(sandbox, write) == 1  # sent once, never re-sent blindly
    applied = 0 if "p500" in fault else 1  # the 500 fault strikes before the API acts
    assert len(sandbox.dump(ORG, "Contacts")) == applied


def test_an_update_whose_answer_is_lost_is_sent_again_and_converges(sandbox):
    client = make_client(sandbox, max_retries=5)
    [created] = client.insert("Contacts", [contact(1)])
    sandbox.faults(api="zoho", tenant=ORG, papply_drop=1.0, writes_only=True)
    with pytest.raises(ZohoError) as caught:
        client.update("Contacts", [{"id": created.id, "Title": "CEO"}])
    assert caught.value.code == "CONNECTION_ERROR"  # retried until the retries ran out: no OUTCOME_UNKNOWN
    assert endpoint_calls(sandbox, "PUT /crm/v8/{module}") == 6
    [held] = sandbox.dump(ORG, "Contacts")
    assert held["Title"] == "CEO"


def test_a_create_that_never_reached_the_server_is_retried(sandbox):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the connection is refused, nothing was sent
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slept = SleepRecorder()
    client = make_client(sandbox, api_domain=f"http://127.0.0.1:{port}", max_retries=2, sleep=slept)
    with pytest.raises(ZohoError) as caught:
        client.insert("Contacts", [contact(1)])
    assert caught.value.code == "CONNECTION_ERROR" and len(slept.delays) == 2


# ------------------------------------------------------------------------------------------ shared tokens


def cached_client(sandbox, path, **overrides) -> ZohoClient:
    from cbzoho_pipeline.zoho.tokens import FileTokenCache, credentials_fingerprint

    creds = sandbox.zoho(ORG)
    cache = FileTokenCache(path, credentials_fingerprint(creds["accounts_url"], creds["client_id"],
                                                         creds["refresh_token"]))
    return make_client(sandbox, token_cache=cache, **overrides)


def test_clients_of_one_site_share_one_token_through_an_owner_only_file(sandbox, tmp_path):
    path = tmp_path / "zoho_token.json"
    for _ in range(12):  # twelve runs: Zoho would refuse the eleventh new token within ten minutes
        client = cached_client(sandbox, path)
        client.users()
        client.close()
    assert token_calls(sandbox) == 1
    assert path.stat().st_mode & 0o777 == 0o600
    stored = path.read_text()
    creds = sandbox.zoho(ORG)
    assert creds["refresh_token"] not in stored and creds["client_secret"] not in stored


def test_processes_starting_together_mint_one_token(sandbox, tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "zoho_token.json"
    script = (
        "import json, sys\n"
        "from cbzoho_pipeline.zoho.client import ZohoClient\n"
        "from cbzoho_pipeline.zoho.tokens import FileTokenCache, credentials_fingerprint\n"
        "c = json.loads(sys.argv[1])\n"
        "cache = FileTokenCache(sys.argv[2], credentials_fingerprint(c['accounts_url'], c['client_id'], "
        "c['refresh_token']))\n"
        "ZohoClient(accounts_url=c['accounts_url'], api_domain=c['api_domain'], client_id=c['client_id'], "
        "client_secret=c['client_secret'], refresh_token=c['refresh_token'], token_cache=cache).users()\n"
    )
    creds = json.dumps({k: v for k, v in sandbox.zoho(ORG).items() if k in CREDENTIAL_KEYS})
    procs = [subprocess.Popen([sys.executable, "-c", script, creds, str(path)]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    assert token_calls(sandbox) == 1


def test_a_token_about_to_expire_or_rejected_is_replaced_in_the_file(sandbox, tmp_path):
    path = tmp_path / "zoho_token.json"
    cached_client(sandbox, path).users()
    first = json.loads(path.read_text())["access_token"]
    sandbox.control("POST", "zoho/sandbox/expire_tokens", {})  # Zoho kills it early: 401 INVALID_TOKEN
    cached_client(sandbox, path).users()
    second = json.loads(path.read_text())["access_token"]
    assert second != first and token_calls(sandbox) == 2

    data = json.loads(path.read_text())
    data["expires_at"] = time.time() + 30  # inside the refresh margin: not worth adopting
    path.write_text(json.dumps(data))
    cached_client(sandbox, path).users()
    assert token_calls(sandbox) == 3


def test_new_credentials_never_pick_up_the_old_token(sandbox, tmp_path):
    from cbzoho_pipeline.zoho.tokens import FileTokenCache

    path = tmp_path / "zoho_token.json"
    cached_client(sandbox, path).users()
    other = FileTokenCache(path, "another-refresh-token's-fingerprint")
    assert other.load() is None
