"""The Chargebee client against the sandbox over real HTTP.

Why these tests exist: the extractor relies on the client for three promises that only mean something on
the wire: it reads every record exactly once across pages (including records that lack `updated_at`),
it survives 429s, 5xx answers, timeouts and dropped connections by waiting as told (`Retry-After`) and
retrying only what is safe to retry, and it never leaks the API key. Faults are injected by the sandbox;
`sleep` is replaced by a recorder, which is how a test sees the delays the client chose. Most recorders
also lift the fault while "sleeping", so the retry that follows succeeds deterministically.

The product client only reads. The writes made here (to test retries of writes and to set up data) go
through the sandbox's `ChargebeeWriter`, a subclass that sends them through the same transport.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from cbzoho_pipeline.chargebee.client import ChargebeeClient, ChargebeeError, encode_params
from cbzoho_sandbox.chargebee_writer import ChargebeeWriter

SITE = "acme-test"
T = 1_704_067_200  # 2024-01-01T00:00:00Z


class SleepRecorder:
    """Stands in for time.sleep: records each delay, optionally runs an action (e.g. lift a fault)."""

    def __init__(self, action: Callable[[], Any] | None = None, *, really: bool = False) -> None:
        self.delays: list[float] = []
        self.action = action
        self.really = really

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.action is not None:
            self.action()
        if self.really:
            time.sleep(seconds)


def make_client(sandbox, sleep: SleepRecorder | None = None, *, kind: type[ChargebeeClient] = ChargebeeClient,
                **overrides: Any) -> ChargebeeClient:
    base_url, api_key = sandbox.chargebee(SITE)
    return kind(base_url, api_key, sleep=sleep or SleepRecorder(), **{"timeout": 20.0, **overrides})


def make_writer(sandbox, sleep: SleepRecorder | None = None, **overrides: Any) -> ChargebeeWriter:
    writer = make_client(sandbox, sleep, kind=ChargebeeWriter, **overrides)
    assert isinstance(writer, ChargebeeWriter)
    return writer


def customer(i: int, *, created_at: int = T, updated_at: int | None = T, deleted: bool = False) -> dict:
    obj: dict[str, Any] = {"id": f"cust_{i:04d}", "email": f"c{i}@example.com", "created_at": created_at}
    if updated_at is not None:
        obj["updated_at"] = updated_at
    obj.update(deleted=deleted, object="customer")
    return obj


def server_calls(sandbox) -> dict[str, int]:
    return sandbox.stats()["chargebee"][SITE]["calls"]


# --------------------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"billing_address": {"city": "Paris", "zip": "75001"}},
         [("billing_address[city]", "Paris"), ("billing_address[zip]", "75001")]),
        ({"subscription_items": [{"item_price_id": "a", "quantity": 2}, {"item_price_id": "b"}]},
         [("subscription_items[item_price_id][0]", "a"), ("subscription_items[quantity][0]", "2"),
          ("subscription_items[item_price_id][1]", "b")]),
        ({"allow_direct_debit": True, "auto_close_invoices": False, "po_number": None},
         [("allow_direct_debit", "true"), ("auto_close_invoices", "false"), ("po_number", "")]),
        ({"meta_data": {"a": [1, 2]}}, [("meta_data", '{"a":[1,2]}')]),
        ({"status[in]": ["active", "in_trial"]}, [("status[in]", '["active","in_trial"]')]),
        ({"updated_at": {"between": [1, 2]}}, [("updated_at[between]", "[1,2]")]),
        ({"coupon_ids": ["x", "y"]}, [("coupon_ids[0]", "x"), ("coupon_ids[1]", "y")]),
        ({"cf_tier": "gold", "limit": 100}, [("cf_tier", "gold"), ("limit", "100")]),
    ],
)
def test_params_are_encoded_like_the_sdk(params: dict, expected: list) -> None:
    assert encode_params(params) == expected


# ------------------------------------------------------------------------------------- pagination


def test_list_customers_pages_through_everything_once(sandbox) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(i, created_at=T + i % 7) for i in range(250)]}})
    with make_client(sandbox) as client:
        pages = list(client.list_customers())
        assert [len(p) for p in pages] == [100, 100, 50]
        records = [r for p in pages for r in p]
        assert len({r["id"] for r in records}) == 250
        assert all(r["object"] == "customer" for r in records)  # bare objects, not list entries
        assert [(r["created_at"], r["id"]) for r in records] == sorted((r["created_at"], r["id"]) for r in records)
        assert client.calls == {("GET", "/customers"): 3}
    assert server_calls(sandbox) == {"GET /api/v2/customers": 3}


def test_iter_pages_yields_raw_entries_and_passes_filters(sandbox) -> None:
    subs = [{"id": f"sub_{i}", "customer_id": "cust_0001", "status": "active" if i % 2 else "cancelled",
             "created_at": T + i, "deleted": False, "object": "subscription"} for i in range(12)]
    sandbox.load(chargebee={SITE: {"customers": [customer(1)], "subscriptions": subs}})
    with make_client(sandbox) as client:
        pages = list(client.iter_pages("subscriptions", {"status[in]": ["active"]}, page_size=5))
    assert [len(p) for p in pages] == [5, 1]
    assert all(e["customer"]["id"] == "cust_0001" and e["subscription"]["status"] == "active"
               for p in pages for e in p)


def test_page_size_is_bounded_by_chargebee_limit(sandbox) -> None:
    with make_client(sandbox) as client, pytest.raises(ValueError):
        next(client.iter_pages("customers", page_size=101))


# ------------------------------------------------------------------------------------ time windows


@pytest.fixture
def history(sandbox) -> None:
    records = [customer(i, created_at=T - 1000 + i, updated_at=T + i * 10) for i in range(10)]
    records.append(customer(98, created_at=T - 5000, updated_at=None))  # changed before 2016: no updated_at
    records.append(customer(99, created_at=T - 4000, updated_at=T + 45, deleted=True))
    sandbox.load(chargebee={SITE: {"customers": records}})


def ids_of(pages: Any) -> list[str]:
    return [r["id"] for page in pages for r in page]


def test_full_scan_sends_no_updated_at_filter_and_keeps_records_without_it(sandbox, history: None) -> None:
    with make_client(sandbox) as client:
        everything = ids_of(client.list_customers(page_size=3))
        assert everything[:2] == ["cust_0098", "cust_0099"]  # oldest created first
        assert len(everything) == 12
        assert "cust_0099" not in ids_of(client.list_customers(include_deleted=False))


def test_updated_after_is_a_server_side_window_in_update_order(sandbox, history: None) -> None:
    with make_client(sandbox) as client:
        changed = list(client.list_customers(updated_after=T + 40, page_size=2))
        assert [len(p) for p in changed] == [2, 2, 2]
        assert ids_of(changed) == ["cust_0099", "cust_0005", "cust_0006", "cust_0007", "cust_0008", "cust_0009"]
        window = ids_of(client.list_customers(updated_after=T + 10, updated_before=T + 40))
        assert window == ["cust_0002", "cust_0003"]
        assert ids_of(client.list_customers(updated_after=T + 90)) == []


def test_updated_before_alone_keeps_records_without_updated_at(sandbox, history: None) -> None:
    with make_client(sandbox) as client:
        early = ids_of(client.list_customers(updated_before=T + 20))
    assert early == ["cust_0098", "cust_0000", "cust_0001"]


def test_list_subscriptions_yields_bare_subscriptions_in_windows(sandbox) -> None:
    subs = [{"id": f"sub_{i}", "customer_id": "cust_0001", "status": "active", "created_at": T,
             "updated_at": T + i, "deleted": False, "object": "subscription"} for i in range(5)]
    sandbox.load(chargebee={SITE: {"customers": [customer(1)], "subscriptions": subs}})
    with make_client(sandbox) as client:
        pages = list(client.list_subscriptions(updated_after=T + 1))
    assert ids_of(pages) == ["sub_2", "sub_3", "sub_4"]
    assert all(r["object"] == "subscription" for r in pages[0])


# ------------------------------------------------------------------------------------------ retries


def test_429_is_retried_after_exactly_retry_after(sandbox) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(1)]}})
    sandbox.faults("chargebee", p429=1.0)
    sleep = SleepRecorder(action=sandbox.clear_faults)
    with make_client(sandbox, sleep) as client:
        assert ids_of(client.list_customers()) == ["cust_0001"]
        assert client.calls == {("GET", "/customers"): 2}
    assert sleep.delays == [1.0]  # the injected 429 says Retry-After: 1; the first backoff would be 0.5
    assert sandbox.stats()["chargebee"][SITE]["served_429"] == 1


def test_the_site_rate_limit_is_waited_out_for_real(sandbox) -> None:
    sandbox.settings_chargebee(SITE, rate_limit_per_minute=2, rate_limit_window_seconds=1)
    sandbox.load(chargebee={SITE: {"customers": [customer(i) for i in range(5)]}})
    sleep = SleepRecorder(really=True)
    with make_client(sandbox, sleep) as client:
        started = time.monotonic()
        records = ids_of(client.list_customers(page_size=1))
        elapsed = time.monotonic() - started
    assert records == [f"cust_{i:04d}" for i in range(5)]
    assert sleep.delays and all(d == 1.0 for d in sleep.delays)
    assert elapsed >= 1.0
    assert sandbox.stats()["chargebee"][SITE]["served_429"] == len(sleep.delays)


def test_a_long_retry_after_is_honoured_not_shortened(sandbox) -> None:
    sandbox.settings_chargebee(SITE, rate_limit_per_minute=1)  # 60-second window
    raise_limit = lambda: sandbox.settings_chargebee(SITE, rate_limit_per_minute=100)  # noqa: E731
    sleep = SleepRecorder(action=raise_limit)
    with make_client(sandbox, sleep) as client:
        assert list(client.list_customers()) == []  # first call admitted
        assert list(client.list_customers()) == []  # second one waits as told, then succeeds
    assert len(sleep.delays) == 1 and 50 <= sleep.delays[0] <= 60


def test_5xx_is_retried_with_exponential_backoff_until_the_budget_runs_out(sandbox) -> None:
    sandbox.faults("chargebee", p500=1.0)
    sleep = SleepRecorder()
    with make_client(sandbox, sleep, max_retries=3, backoff_factor=0.5) as client:
        with pytest.raises(ChargebeeError) as raised:
            list(client.list_customers())
        assert client.calls == {("GET", "/customers"): 4}
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert (raised.value.status, raised.value.api_error_code) == (500, "internal_error")


def test_backoff_is_capped(sandbox) -> None:
    sandbox.faults("chargebee", p500=1.0)
    sleep = SleepRecorder()
    with make_client(sandbox, sleep, max_retries=5, backoff_factor=1.0, max_backoff=4.0) as client:
        with pytest.raises(ChargebeeError):
            client.retrieve_customer("x")
    assert sleep.delays == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_dropped_connections_on_reads_are_retried(sandbox) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(1)]}})
    sandbox.faults("chargebee", pdrop=1.0)
    sleep = SleepRecorder(action=sandbox.clear_faults)
    with make_client(sandbox, sleep) as client:
        assert client.retrieve_customer("cust_0001")["email"] == "c1@example.com"
        assert client.calls == {("GET", "/customers/{id}"): 2}
    assert sleep.delays == [0.5]


def test_timeouts_are_retried(sandbox) -> None:
    sandbox.load(chargebee={SITE: {"customers": [customer(1)]}})
    sandbox.faults("chargebee", pslow=1.0, slow_seconds=2.0)
    sleep = SleepRecorder(action=sandbox.clear_faults)
    with make_client(sandbox, sleep, timeout=0.5) as client:
        started = time.monotonic()
        assert ids_of(client.list_customers()) == ["cust_0001"]
        assert time.monotonic() - started < 2.0  # the slow answer was abandoned, not waited for
    assert sleep.delays == [0.5]


def test_a_write_without_idempotency_key_is_not_retried_after_a_5xx(sandbox) -> None:
    sandbox.faults("chargebee", p500=1.0)
    sleep = SleepRecorder(action=sandbox.clear_faults)
    with make_client(sandbox, sleep) as client:
        with pytest.raises(ChargebeeError) as raised:
            client._request("POST", "/customers", params={"id": "once"})
        assert raised.value.status == 500
        assert client.calls == {("POST", "/customers"): 1}
    assert sleep.delays == []


def test_writes_carry_an_idempotency_key_and_are_retried_safely(sandbox) -> None:
    sandbox.faults("chargebee", p500=1.0)
    sleep = SleepRecorder(action=sandbox.clear_faults)
    with make_writer(sandbox, sleep) as client:
        created = client.create_customer({"id": "once", "email": "once@example.com"})
        assert created["id"] == "once"
        assert client.calls == {("POST", "/customers"): 2}
        # the same key again is a replay, not a second customer
        first = client.create_customer({"id": "twice"}, idempotency_key="k-twice")
        second = client.create_customer({"id": "twice"}, idempotency_key="k-twice")
        assert first == second
        assert sorted(ids_of(client.list_customers())) == ["once", "twice"]
        with pytest.raises(ChargebeeError) as raised:
            client.create_customer({"id": "other"}, idempotency_key="k-twice")
        assert (raised.value.status, raised.value.api_error_code) == (422, "unable_to_process_request")


def test_a_429_on_a_write_is_retried_even_without_a_key(sandbox) -> None:
    sandbox.faults("chargebee", p429=1.0)
    sleep = SleepRecorder(action=sandbox.clear_faults)
    with make_client(sandbox, sleep) as client:
        client._request("POST", "/customers", params={"id": "refused-then-made"})
        assert [r["id"] for p in client.list_customers() for r in p] == ["refused-then-made"]
    assert sleep.delays == [1.0]


# ------------------------------------------------------------------------------------------- errors


def test_errors_carry_chargebee_fields_and_never_the_key(sandbox) -> None:
    base_url, api_key = sandbox.chargebee(SITE)
    with make_writer(sandbox) as client:
        with pytest.raises(ChargebeeError) as missing:
            client.retrieve_customer("nobody")
        assert (missing.value.status, missing.value.api_error_code) == (404, "resource_not_found")
        with pytest.raises(ChargebeeError) as invalid:
            client.create_customer({"email": "not-an-email"})
        assert (invalid.value.status, invalid.value.api_error_code, invalid.value.param) == (
            400, "param_wrong_value", "email")
        assert api_key not in repr(client)
    wrong = ChargebeeClient(base_url, "test_wrong_key_123", sleep=SleepRecorder())
    with pytest.raises(ChargebeeError) as refused:
        wrong.retrieve_customer("nobody")
    assert (refused.value.status, refused.value.api_error_code) == (401, "api_authentication_failed")
    for error in (missing.value, invalid.value, refused.value):
        assert api_key not in str(error) and "test_wrong_key_123" not in str(error)


def test_an_unreachable_server_is_a_chargebee_error_without_the_key(sandbox) -> None:
    _, api_key = sandbox.chargebee(SITE)
    sleep = SleepRecorder()
    client = ChargebeeClient("http://127.0.0.1:9/api/v2", api_key, sleep=sleep, max_retries=2, timeout=2)
    with pytest.raises(ChargebeeError) as raised:
        client.retrieve_customer("x")
    assert raised.value.status is None and api_key not in str(raised.value)
    assert sleep.delays == [0.5, 1.0]


# ------------------------------------------------------------------------------------------- writes


def test_the_product_client_only_reads() -> None:
    public = {name for name in vars(ChargebeeClient) if not name.startswith("_")}
    assert public == {"close", "iter_pages", "list_customers", "list_subscriptions", "retrieve_customer",
                      "retrieve_subscription"}
    assert {"create_customer", "delete_customer", "cancel_subscription_for_items"} <= set(dir(ChargebeeWriter))


def test_demo_writes_round_trip(sandbox) -> None:
    with make_writer(sandbox) as client:
        created = client.create_customer({
            "id": "ada", "first_name": "Ada", "email": "ada@example.com", "cf_tier": "gold",
            "billing_address": {"city": "London", "country": "GB"}, "meta_data": {"source": "demo"},
        })
        assert (created["billing_address"]["city"], created["cf_tier"], created["meta_data"]) == (
            "London", "gold", {"source": "demo"})
        updated = client.update_customer("ada", {"last_name": "Lovelace"})
        assert updated["last_name"] == "Lovelace" and updated["resource_version"] > created["resource_version"]
        sub = client.create_subscription_for_items("ada", {
            "id": "sub_ada", "subscription_items": [{"item_price_id": "enterprise-EUR-yearly", "quantity": 1}]})
        assert (sub["status"], sub["currency_code"], sub["mrr"]) == ("active", "EUR", 41583)  # 499000 / 12
        assert client.retrieve_subscription("sub_ada")["id"] == "sub_ada"
        cancelled = client.cancel_subscription_for_items("sub_ada", {"cancel_option": "end_of_term"})
        assert cancelled["status"] == "non_renewing"
        deleted = client.delete_customer("ada")
        assert deleted["deleted"] is True
        assert ids_of(client.list_customers(include_deleted=False)) == []
        subs = [r for p in client.list_subscriptions() for r in p]
        assert [(s["id"], s["deleted"]) for s in subs] == [("sub_ada", True)]
        assert client.calls[("POST", "/customers/{id}/subscription_for_items")] == 1
