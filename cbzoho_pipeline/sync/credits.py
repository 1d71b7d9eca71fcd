"""A site's daily budget of Zoho API credits, and the gate that holds the push to it.

Why it exists: Zoho allows each org a number of API credits per rolling 24 hours (reference §19), shared by
every integration of the org, and answers 429 once they are gone. A first sync of a large site needs more
than many orgs have in a day (1 credit per 10 records written): it would run into that wall half-way. With
a budget the push stops cleanly *before* the call that would exceed it, leaves the rest of its plan
unpushed (the next run plans it again) and says so; nothing is marked failed.

How much: `zoho.daily_credit_budget` in the site's settings, or by default half of the org's allowance.
Zoho's `X-API-CREDITS-REMAINING` header cannot tell the allowance (it appears only once half of it is used,
and says what is left, not of what), so the allowance is estimated from the org's edition and licensed
users, read from `GET /crm/v8/org` (once a day, 1 credit) with the table of §19.1. Add-on credits are not
visible there, so the estimate errs low. Whenever Zoho does send the header during a push, the push also
never spends more than Zoho says is left (other integrations of the org spend from the same allowance).

What is counted: every call of the site's client, reads included (`ZohoClient.credits_spent`), written to the
site's ledger (warehouse `credit_ledger`) when the push starts and as its answers are stored. Reads are
counted but never stopped (a run must read to plan); the budget stops writes.

What it must never do: mark a record failed because of the budget, or send a call it would refuse.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cbzoho_pipeline.warehouse import push_store
from cbzoho_pipeline.warehouse.db import Warehouse, utcnow

# The share of the org's estimated daily allowance a site spends by default.
DEFAULT_SHARE = 0.5
WINDOW = timedelta(hours=24)
ORG_MAX_AGE = timedelta(hours=24)

# Daily allowance by edition (reference §19.1): base, per licensed user, maximum (None: unlimited).
_STANDARD = (50_000, 250, 100_000)
_ENTERPRISE = (50_000, 1_000, 5_000_000)
_ULTIMATE = (50_000, 2_000, None)
EDITION_ALLOWANCE: dict[str, tuple[int, int, int | None]] = {
    "free": (5_000, 0, 5_000),
    "standard": _STANDARD, "starter": _STANDARD,
    "professional": (50_000, 500, 3_000_000),
    "enterprise": _ENTERPRISE, "zohoone": _ENTERPRISE,
    "ultimate": _ULTIMATE, "crmplus": _ULTIMATE,
}


class BudgetReached(Exception):
    """The call would take the site past its credit budget (or past what Zoho says is left); not sent."""


def estimated_allowance(org: dict[str, Any]) -> tuple[int, str]:
    """(credits per 24 h, how it was derived) from the org as GET /crm/v8/org describes it. An edition we do
    not know counts as Free: a budget from it is too small rather than too large."""
    licence = org.get("license_details") or {}
    raw = str(licence.get("paid_type") or "free")
    edition = "".join(ch for ch in raw.lower() if ch.isalnum())
    users = int(licence.get("users_license_purchased") or 0)
    known = edition in EDITION_ALLOWANCE
    base, per_user, cap = EDITION_ALLOWANCE[edition if known else "free"]
    allowance = base + per_user * users
    if cap is not None:
        allowance = min(allowance, cap)
    what = (f"{raw} edition, {users} user licence(s)" if known
            else f"edition {raw!r} unknown, counted as Free")
    return allowance, f"{allowance:,} credits a day ({what}; add-ons not included)"


def org_details(wh: Warehouse, client: Any, log=lambda _m: None) -> dict[str, Any]:
    """The org's edition and licences, read from Zoho at most once a day and kept in the warehouse."""
    kept = wh.get_state("zoho_org") or {}
    at = kept.get("at")
    if at and utcnow() - datetime.fromisoformat(at) < ORG_MAX_AGE:
        return kept["org"]
    org = client.org()
    details = {"license_details": {k: (org.get("license_details") or {}).get(k)
                                   for k in ("paid", "paid_type", "users_license_purchased")}}
    wh.set_state("zoho_org", {"at": utcnow().isoformat(), "org": details})
    log(f"zoho: org edition {details['license_details'].get('paid_type')!r} read for the credit budget")
    return details


@dataclass
class BudgetInfo:
    limit: int
    source: str


def site_budget(wh: Warehouse, client: Any, configured: int | None, log=lambda _m: None) -> BudgetInfo:
    """The site's daily credit budget: the configured one, else DEFAULT_SHARE of the estimated allowance."""
    if configured is not None:
        return BudgetInfo(configured, "zoho.daily_credit_budget in the site's settings")
    allowance, how = estimated_allowance(org_details(wh, client, log))
    return BudgetInfo(max(1, int(allowance * DEFAULT_SHARE)), f"{DEFAULT_SHARE:.0%} of the org's {how}")


def open_budget(wh: Warehouse, client: Any, configured: int | None, run_id: str, step: str,
                log=lambda _m: None) -> tuple[CreditBudget, BudgetInfo]:
    """The site's budget for what `step` is about to spend: what the site spent in the last 24 hours (this
    process's calls so far written to the ledger first) against its daily budget."""
    info = site_budget(wh, client, configured, log)
    record_spend(wh, client, run_id, step)
    spent = push_store.credits_spent_since(wh, utcnow() - WINDOW)
    log(f"credit budget: {spent:,} of {info.limit:,} spent in the last 24 hours ({info.source})")
    return CreditBudget(info.limit, spent, client), info


# The part of each client's `credits_spent` already written to a ledger (clients are kept per site).
_RECORDED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_RECORDED_LOCK = threading.Lock()


def record_spend(wh: Warehouse, client: Any, run_id: str, step: str) -> int:
    """Write what the site's client spent since the last record to the site's ledger; returns it."""
    with _RECORDED_LOCK:
        spent = int(client.credits_spent)
        delta = spent - _RECORDED.get(client, 0)
        _RECORDED[client] = spent
    push_store.record_credits(wh, run_id, step, delta)
    return delta


class CreditBudget:
    """The gate a push puts on its client (`ZohoClient.credit_gate`): before each call, refuse it if what
    the site spent in the last 24 hours, plus the calls in flight, plus this one would exceed the budget,
    or exceed what Zoho last said is left. Thread-safe: the push's calls run in several threads."""

    def __init__(self, limit: int, spent_before: int, client: Any) -> None:
        self.limit = limit
        self.spent_before = spent_before
        self._client = client
        self._mark = int(client.credits_spent)
        self._header_mark = client.credits_remaining_at  # the header counts only once seen during this push
        self._in_flight = 0
        self._lock = threading.Lock()
        self.stopped = False

    def spent(self) -> int:
        """Credits of the last 24 hours, this push's calls included (those in flight not yet)."""
        return self.spent_before + int(self._client.credits_spent) - self._mark

    def left(self) -> int:
        with self._lock:
            return self._left()

    def _left(self) -> int:
        left = self.limit - self.spent() - self._in_flight
        remaining, at = self._client.credits_remaining, self._client.credits_remaining_at
        if remaining is not None and at is not None and at != self._header_mark:
            left = min(left, int(remaining) - self._in_flight)
        return left

    def affords(self, credits: int) -> bool:
        with self._lock:
            ok = credits <= self._left()
            if not ok:
                self.stopped = True
            return ok

    def before(self, credits: int) -> None:
        with self._lock:
            if credits > self._left():
                self.stopped = True
                raise BudgetReached(f"a call of {credits} credit(s) would exceed the daily credit budget "
                                    f"({self.spent()} of {self.limit} spent in the last 24 hours)")
            self._in_flight += credits

    def after(self, credits: int) -> None:
        with self._lock:
            self._in_flight -= credits
