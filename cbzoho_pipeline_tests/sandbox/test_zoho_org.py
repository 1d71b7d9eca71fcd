"""Contract tests of the sandbox's Zoho Organization API (`GET /crm/v8/org`), over real HTTP.

Why these tests exist: Zoho's official SDKs read the org at start-up (user lookup needs it), and a client
that checks which environment and home currency it is talking to reads it too. The answer must have
Zoho's shape (`{"org": [one object]}`), need a valid access token like every CRM call, cost a credit, and
follow the org's settings: environment type, home currency, multi-currency, time zone, super admin and
the edition the sandbox enforces (its concurrency limit). Ids stay the same for the life of an org.
"""

from __future__ import annotations

import pytest
import requests

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp

REQUIRED = {
    "id", "type", "company_name", "primary_email", "primary_zuid", "zgid", "domain_name", "created_time",
    "time_zone", "country_code", "currency", "iso_code", "currency_symbol", "currency_locale", "mc_status",
    "license_details", "hierarchy_preferences", "hipaa_compliance_enabled", "lite_users_enabled",
    "gapps_enabled", "translation_enabled", "privacy_settings", "deletable_org_account", "alias", "country",
    "city", "street", "state", "zip", "phone", "mobile", "fax", "website", "description", "employee_count",
    "photo_id", "zia_portal_id",
}


def org_of(zoho: ZohoHttp) -> dict:
    response = zoho.get("org")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"org"} and len(body["org"]) == 1, body
    return body["org"][0]


def test_org_has_zohos_shape_and_describes_a_fresh_sandbox_org(sandbox):
    zoho = ZohoHttp(sandbox)
    org = org_of(zoho)
    assert REQUIRED <= set(org), REQUIRED - set(org)
    me = zoho.get("users", params={"type": "CurrentUser"}).json()["users"][0]
    assert (org["primary_email"], org["primary_zuid"]) == (me["email"], me["zuid"])  # the super admin
    assert org["type"] == "sandbox"
    assert (org["iso_code"], org["currency"], org["currency_symbol"], org["currency_locale"]) == (
        "USD", "US Dollar - USD", "$", "en_US")
    assert org["country_code"] == "US" and org["mc_status"] is False
    assert org["time_zone"] == "Asia/Kolkata" and org["created_time"].endswith("+05:30")  # utc_offset +05:30
    assert org["domain_name"] == f"org{org['zgid']}" and org["zgid"].isdigit() and org["id"].isdigit()
    assert org["company_name"] == "Acme Corp"
    # concurrency limit 10 is the Standard edition's; licences for the two active users
    assert org["license_details"] == {
        "paid": True, "paid_type": "standard", "paid_expiry": None, "trial_type": None, "trial_expiry": None,
        "users_license_purchased": 2, "portal_users_license_purchased": 0}


def test_org_type_and_ids_are_the_orgs_own_and_stable(sandbox):
    sandbox_org, production = org_of(ZohoHttp(sandbox)), org_of(ZohoHttp(sandbox, "production"))
    assert (sandbox_org["type"], production["type"]) == ("sandbox", "production")
    for key in ("id", "zgid", "domain_name"):
        assert sandbox_org[key] != production[key], key
    sandbox.reset()
    again = org_of(ZohoHttp(sandbox))
    assert {k: again[k] for k in ("id", "zgid", "domain_name", "created_time")} == {
        k: sandbox_org[k] for k in ("id", "zgid", "domain_name", "created_time")}


def test_org_follows_the_org_settings(sandbox):
    sandbox.settings_zoho("sandbox", home_currency="EUR", multi_currency=True, utc_offset="+02:00",
                          company_name="Acme GmbH", concurrency_limit=20, users=[
                              {"email": "chef@acme.example", "full_name": "Cleo Chef",
                               "profile": {"name": "Administrator"}},
                              {"email": "left@acme.example", "full_name": "Lee Left", "status": "inactive"}])
    org = org_of(ZohoHttp(sandbox))
    assert (org["iso_code"], org["currency"], org["currency_symbol"]) == ("EUR", "Euro - EUR", "€")
    assert org["mc_status"] is True
    assert org["time_zone"] == "Etc/GMT-2" and org["created_time"].endswith("+02:00")
    assert (org["company_name"], org["primary_email"]) == ("Acme GmbH", "chef@acme.example")
    assert org["license_details"]["paid_type"] == "enterprise"
    assert org["license_details"]["users_license_purchased"] == 1
    # the production org keeps its own settings
    assert org_of(ZohoHttp(sandbox, "production"))["iso_code"] == "USD"


@pytest.mark.parametrize("limit, edition", [(5, "free"), (12, "standard"), (15, "professional"), (25, "ultimate")])
def test_org_edition_is_the_one_whose_concurrency_limit_the_org_enforces(sandbox, limit, edition):
    sandbox.settings_zoho("sandbox", concurrency_limit=limit)
    details = org_of(ZohoHttp(sandbox))["license_details"]
    assert (details["paid_type"], details["paid"]) == (edition, edition != "free")


def test_org_needs_a_valid_token_of_the_org_and_costs_one_credit(sandbox):
    zoho, production = ZohoHttp(sandbox), ZohoHttp(sandbox, "production")
    assert requests.get(f"{zoho.api}/org", timeout=30).status_code == 401
    foreign = zoho.get("org", token=production.login())
    assert foreign.status_code == 401 and foreign.json()["code"] == "INVALID_TOKEN"
    token = zoho.login()
    sandbox.control("POST", "zoho/sandbox/expire_tokens")
    assert zoho.get("org", token=token).json()["code"] == "INVALID_TOKEN"
    assert sandbox.stats()["zoho"]["sandbox"]["credits_used"] == 0  # refusals are free

    fresh = ZohoHttp(sandbox)
    org_of(fresh)
    stats = sandbox.stats()["zoho"]["sandbox"]
    assert stats["credits_used"] == 1 and stats["calls"]["GET /crm/v8/org"] == 4
    refused = fresh.post("org", json={})
    assert refused.status_code == 405 and refused.json()["code"] == "INVALID_REQUEST_METHOD"
