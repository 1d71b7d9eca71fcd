"""Writes Zoho carried out whose answers never came back: the sync must neither duplicate nor lose a record.

The sandbox applies a write and then drops the connection (or answers after the client gave up), exactly
the failure that once created contacts without an email twice. Each test compares Zoho's final state with
a clean run of the same data: same records, none twice, none missing, none extra.
"""

from __future__ import annotations

import time

import pytest

from .conftest import reference, state_diff

ZERO = {"duplicates": 0, "missing": 0, "extra": 0}


def keyless_contacts(state) -> int:
    return sum(n for record, n in state["Contacts"].items() if "Email" not in dict(record))


@pytest.mark.parametrize("fault, zoho", [
    ({"papply_drop": 0.5}, None),
    ({"papply_late": 0.5, "late_seconds": 2.0}, {"timeout_seconds": 1.0}),
    ({"p500": 0.3, "papply_drop": 0.3}, None),
])
def test_lost_write_answers_create_no_duplicate(e2e, fault, zoho):
    at = int(time.time())
    want, _errors = reference(e2e, 220, seed=11, at=at)
    assert keyless_contacts(want) > 0  # the case that once duplicated: contacts with nothing to upsert on

    e2e.sandbox.generate(220, seed=11, now=at)
    e2e.sandbox.faults("zoho", writes_only=True, **fault)
    first = e2e.sync(zoho=zoho)
    injected = e2e.sandbox.stats()["zoho"]["sandbox"]["faults_injected"]
    assert sum(injected.values()) >= 2, injected
    e2e.sandbox.clear_faults()
    assert first.success
    second = e2e.sync()  # whatever the first left journalled is found, not created again
    assert second.success

    assert state_diff(e2e.state(), want) == {m: ZERO for m in ("Accounts", "Contacts", "Deals")}


def test_a_lost_answer_is_looked_for_before_anything_is_sent_again(e2e):
    e2e.add_customer(id="c_nomail", last_name="Nomail", first_name="Only")
    e2e.sandbox.faults("zoho", writes_only=True, papply_drop=1.0)
    outcome = e2e.sync(zoho={"max_retries": 1})
    # every answer was lost, but the contact was created once, found by the values sent, and linked
    contacts = e2e.zoho("Contacts")
    assert [c["Last_Name"] for c in contacts] == ["Nomail"]
    assert e2e.links("Contacts") == {"c_nomail": str(contacts[0]["id"])}
    calls = e2e.sandbox.stats()["zoho"]["sandbox"]["calls"]
    assert calls.get("POST /crm/v8/{module}/upsert") == 1  # sent once, never re-sent
    assert calls.get("POST /crm/v8/coql", 0) >= 1  # looked for
    assert outcome.success
