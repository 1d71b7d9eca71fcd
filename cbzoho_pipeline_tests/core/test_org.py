"""Reading a Zoho org's metadata into what the plan needs (pure)."""

from __future__ import annotations

import pytest

from cbzoho_pipeline.sync.org import describe_org, resolve_owner

METADATA = {
    "users": [{"id": "u1", "email": "Admin@Acme.example", "status": "active"},
              {"id": "u2", "email": "gone@acme.example", "status": "inactive"}],
    "fields": {
        "Contacts": [{"api_name": "Last_Name", "data_type": "text", "length": 80},
                     {"api_name": "Email", "data_type": "email", "length": 100},
                     {"api_name": "Chargebee_Customer_ID", "data_type": "text", "length": 50,
                      "external": {"type": "org"}}],
        "Deals": [{"api_name": "Amount", "data_type": "currency", "length": 16},
                  {"api_name": "Currency", "data_type": "picklist",
                   "pick_list_values": [{"actual_value": "USD"}, {"actual_value": "EUR"}]}],
    },
    "pipelines": {"Standard (Standard)": ["Closed Won"]},
}


def test_describe_org_reads_lengths_currency_external_field_and_pipelines():
    org = describe_org(METADATA)
    assert org["field_lengths"]["Contacts"] == {"Last_Name": 80, "Email": 100, "Chargebee_Customer_ID": 50}
    assert "Amount" not in org["field_lengths"]["Deals"]  # only text-like fields have a character limit
    assert org["multi_currency"] is True and org["currencies"] == ("USD", "EUR")
    assert org["contact_external_field"] == "Chargebee_Customer_ID"
    assert org["pipelines"] == {"Standard (Standard)": ["Closed Won"]}


def test_describe_org_without_metadata_checks_nothing():
    org = describe_org(None)
    assert org["pipelines"] is None and org["multi_currency"] is False and org["field_lengths"] == {}


@pytest.mark.parametrize("email, expected", [
    ("admin@acme.example", ("u1", None)),
    (" ADMIN@acme.example ", ("u1", None)),
    ("gone@acme.example", (None, "deal owner gone@acme.example is not an active Zoho CRM user")),
    ("nobody@acme.example", (None, "deal owner nobody@acme.example is not a Zoho CRM user of this org")),
    (None, (None, None)),
])
def test_resolve_owner(email, expected):
    assert resolve_owner(METADATA, email) == expected
