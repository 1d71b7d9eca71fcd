"""The push's two pure decisions, as tables: how a module's changes are cut into calls, and how much a site
may spend. The e2e tests (e2e/test_push_throughput.py) show both on the wire."""

from __future__ import annotations

import math

import pytest

from cbzoho_pipeline.sync.credits import BudgetReached, CreditBudget, estimated_allowance
from cbzoho_pipeline.sync.push import plan_batches
from cbzoho_pipeline.warehouse.push_store import Staged


@pytest.mark.parametrize("keyed, keyless, upsertable, other, calls", [
    (150, 0, 30, 0, [("upsert", 100), ("upsert", 80)]),  # the 30 updates ride with the last 50 creates
    (150, 0, 20, 10, [("upsert", 100), ("upsert", 70), ("update", 10)]),  # 10 cannot: one call over the floor
    (150, 0, 80, 0, [("upsert", 100), ("upsert", 100), ("update", 30)]),
    (0, 0, 30, 20, [("update", 50)]),  # updates alone go by id
    (200, 0, 30, 0, [("upsert", 100), ("upsert", 100), ("update", 30)]),  # no free place to share
    (250, 0, 0, 0, [("upsert", 100), ("upsert", 100), ("upsert", 50)]),
    (0, 0, 0, 0, []),
])
def test_creates_and_updates_share_the_floor_where_upsert_can_carry_the_update(keyed, keyless, upsertable, other,
                                                                              calls):
    staged = Staged(keyed_creates=keyed, keyless_creates=keyless, upsertable_updates=upsertable,
                    other_updates=other)
    batches = plan_batches(staged)
    assert [("upsert" if b.upsert else "update", b.size) for b in batches] == calls
    changed = keyed + keyless + upsertable + other
    assert len(batches) <= math.ceil(changed / 100) + 1
    if other == 0 and upsertable <= (-(keyed + keyless)) % 100:
        assert len(batches) == math.ceil(changed / 100)  # the floor
    assert [b.first for b in batches] == [1 + sum(b.size for b in batches[:i]) for i in range(len(batches))]


def test_batches_with_creates_that_have_no_key_are_marked_to_go_one_at_a_time():
    batches = plan_batches(Staged(keyed_creates=230, keyless_creates=80, upsertable_updates=0, other_updates=5))
    assert [(b.size, b.serial) for b in batches] == [(100, False), (100, False), (100, True), (10, True),
                                                     (5, False)]


def edition(paid_type, users=0):
    return {"license_details": {"paid_type": paid_type, "users_license_purchased": users}}


@pytest.mark.parametrize("org, allowance", [
    (edition("free", 3), 5_000),
    (edition("standard", 2), 50_500),
    (edition("standard", 400), 100_000),  # capped
    (edition("Professional", 20), 60_000),
    (edition("enterprise", 100), 150_000),
    (edition("zoho_one", 10), 60_000),
    (edition("ultimate", 10), 70_000),
    (edition("something new", 50), 5_000),  # unknown: counted as Free, the safe side
    ({}, 5_000),
])
def test_the_allowance_is_estimated_from_edition_and_licences(org, allowance):
    assert estimated_allowance(org)[0] == allowance


class FakeClient:
    def __init__(self) -> None:
        self.credits_spent = 0
        self.credits_remaining: int | None = None
        self.credits_remaining_at: float | None = None


def test_the_gate_counts_what_is_spent_and_in_flight_and_refuses_what_would_exceed():
    client = FakeClient()
    client.credits_spent = 7  # before the push: already in the ledger's 24 hours
    budget = CreditBudget(limit=40, spent_before=25, client=client)
    budget.before(10)  # 25 + 10 in flight
    assert budget.left() == 5 and budget.affords(5) and not budget.affords(6)
    with pytest.raises(BudgetReached):
        budget.before(6)
    assert budget.stopped
    client.credits_spent += 10
    budget.after(10)
    assert budget.spent() == 35 and budget.left() == 5


def test_what_zoho_says_is_left_wins_once_seen_during_the_push():
    client = FakeClient()
    client.credits_remaining, client.credits_remaining_at = 3, 1.0  # from before the push: stale
    budget = CreditBudget(limit=1000, spent_before=0, client=client)
    assert budget.left() == 1000
    client.credits_remaining, client.credits_remaining_at = 12, 2.0  # other integrations spent the rest
    assert budget.left() == 12 and not budget.affords(13)

