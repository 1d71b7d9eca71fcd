"""Contract tests of the sandbox's Zoho Accounts server and API authentication, over real HTTP.

Why these tests exist: the Zoho client's token handling (refresh, retry once on INVALID_TOKEN, never
hammer the token endpoint) is only proven if the sandbox refuses exactly what Zoho refuses: token
errors arrive with HTTP 200 and an `error` key, at most 10 refreshes per 10 minutes, at most 15 live
access tokens, expiry after `expires_in`, revocation, and org-bound tokens. Each test asserts what the
wire returned.
"""

from __future__ import annotations

import requests

from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp


def test_refresh_returns_token_bound_to_the_org_api_domain(sandbox):
    zoho = ZohoHttp(sandbox)
    response = zoho.refresh()
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "api_domain", "token_type", "expires_in"}
    assert body["api_domain"] == f"{sandbox.base_url}/zoho/sandbox"
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    users = zoho.get("users", params={"type": "CurrentUser"}, token=body["access_token"])
    assert users.status_code == 200 and users.json()["users"][0]["email"] == "admin@acme.example"


def test_refresh_accepts_a_form_body(sandbox):
    creds = sandbox.zoho("sandbox")
    response = requests.post(f"{creds['accounts_url']}/oauth/v2/token", timeout=30, data={
        "grant_type": "refresh_token", "client_id": creds["client_id"],
        "client_secret": creds["client_secret"], "refresh_token": creds["refresh_token"]})
    assert response.status_code == 200 and response.json()["access_token"].startswith("1000.")


def test_token_errors_come_with_http_200(sandbox):
    zoho = ZohoHttp(sandbox)
    other = sandbox.zoho("production")
    cases = {
        "unknown client": ({"client_id": "1000.NOPE"}, "invalid_client"),
        "wrong secret": ({"client_secret": "wrong"}, "invalid_client"),
        "other org's secret": ({"client_secret": other["client_secret"]}, "invalid_client"),
        "bad refresh token": ({"refresh_token": "1000.bogus"}, "invalid_code"),
        "other org's refresh token": ({"refresh_token": other["refresh_token"]}, "invalid_code"),
    }
    for label, (override, error) in cases.items():
        response = zoho.refresh(**override)
        assert response.status_code == 200, label
        assert response.json() == {"error": error}, label


def test_ten_refreshes_per_window_then_access_denied(sandbox):
    zoho = ZohoHttp(sandbox)
    tokens = [zoho.refresh().json() for _ in range(10)]
    assert all("access_token" in t for t in tokens)
    denied = zoho.refresh()
    assert denied.json() == {
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "error": "Access Denied", "status": "failure"}
    # a denied request does not mint anything and the earlier tokens keep working
    assert zoho.get("Contacts/actions/count", token=tokens[-1]["access_token"]).status_code == 200
    sandbox.control("POST", "clock", {"advance_seconds": 601})
    assert "access_token" in zoho.refresh().json()
    stats = sandbox.stats()["zoho"]["sandbox"]
    assert stats["tokens_issued"] == 11 and stats["token_requests_denied"] == 1


def test_refresh_limit_is_a_setting(sandbox):
    sandbox.settings_zoho("sandbox", token_rate_limit=2)
    zoho = ZohoHttp(sandbox)
    assert ["access_token" in zoho.refresh().json() for _ in range(3)] == [True, True, False]


def test_sixteenth_token_invalidates_the_oldest(sandbox):
    sandbox.settings_zoho("sandbox", token_rate_limit=100)
    zoho = ZohoHttp(sandbox)
    tokens = [zoho.refresh().json()["access_token"] for _ in range(16)]
    first = zoho.get("Contacts/actions/count", token=tokens[0])
    assert first.status_code == 401
    assert first.json() == {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token",
                            "status": "error"}
    assert all(zoho.get("Contacts/actions/count", token=t).status_code == 200 for t in tokens[1:])


def test_access_token_expires_with_the_sandbox_clock(sandbox):
    sandbox.settings_zoho("sandbox", token_expires_in=120)
    zoho = ZohoHttp(sandbox)
    body = zoho.refresh().json()
    assert body["expires_in"] == 120
    assert zoho.get("Contacts/actions/count", token=body["access_token"]).status_code == 200
    sandbox.control("POST", "clock", {"advance_seconds": 121})
    assert zoho.get("Contacts/actions/count", token=body["access_token"]).status_code == 401


def test_expire_tokens_control_expires_every_token_of_the_org(sandbox):
    zoho, prod = ZohoHttp(sandbox), ZohoHttp(sandbox, "production")
    zoho.login(), prod.login()
    sandbox.control("POST", "zoho/sandbox/expire_tokens")
    assert zoho.get("Contacts/actions/count").json()["code"] == "INVALID_TOKEN"
    assert prod.get("Contacts/actions/count").status_code == 200
    zoho.login()
    assert zoho.get("Contacts/actions/count").status_code == 200


def test_missing_malformed_and_foreign_tokens_are_rejected(sandbox):
    zoho, prod = ZohoHttp(sandbox), ZohoHttp(sandbox, "production")
    url = f"{zoho.api}/Contacts/actions/count"
    assert requests.get(url, timeout=30).status_code == 401
    bearer = requests.get(url, headers={"Authorization": f"Bearer {zoho.login()}"}, timeout=30)
    assert bearer.status_code == 401
    foreign = zoho.get("Contacts/actions/count", token=prod.login())
    assert foreign.status_code == 401 and foreign.json()["code"] == "INVALID_TOKEN"
    # refusals are not charged
    assert sandbox.stats()["zoho"]["sandbox"]["credits_used"] == 0


def test_revoke_kills_refresh_token_and_its_access_tokens(sandbox):
    zoho = ZohoHttp(sandbox)
    token = zoho.login()
    creds = zoho.creds
    revoked = requests.post(f"{creds['accounts_url']}/oauth/v2/token/revoke",
                            params={"token": creds["refresh_token"]}, timeout=30)
    assert revoked.status_code == 200 and revoked.json() == {"status": "success"}
    assert zoho.get("Contacts/actions/count", token=token).status_code == 401
    assert zoho.refresh().json() == {"error": "invalid_code"}
    # the other org is untouched
    assert "access_token" in ZohoHttp(sandbox, "production").refresh().json()


# -------------------------------------------------------------------------- new refresh tokens (reconnect)
def _refresh(creds: dict, refresh_token: str) -> dict:
    return requests.post(f"{creds['accounts_url']}/oauth/v2/token", timeout=30, params={
        "grant_type": "refresh_token", "client_id": creds["client_id"], "client_secret": creds["client_secret"],
        "refresh_token": refresh_token}).json()


def _revoke(creds: dict, refresh_token: str) -> dict:
    return requests.post(f"{creds['accounts_url']}/oauth/v2/token/revoke", params={"token": refresh_token},
                         timeout=30).json()


def test_a_new_refresh_token_works_and_a_revoked_one_stays_revoked(sandbox):
    creds = sandbox.zoho("sandbox")
    first = creds["refresh_token"]
    assert _revoke(creds, first) == {"status": "success"}

    issued = sandbox.control("POST", "zoho/sandbox/refresh_token")
    second = issued["refresh_token"]
    assert second.startswith("1000.") and second != first
    assert issued["info"]["zoho"]["sandbox"]["refresh_token"] == second
    assert sandbox.control("GET", "info")["zoho"]["sandbox"]["refresh_token"] == second
    # same client, same org: only the refresh token is new
    assert {k: v for k, v in issued["info"]["zoho"]["sandbox"].items() if k != "refresh_token"} == {
        k: v for k, v in creds.items() if k != "refresh_token"}
    assert "access_token" in _refresh(creds, second)
    assert _refresh(creds, first) == {"error": "invalid_code"}  # issuing a new one revives nothing
    assert _revoke(creds, first) == {"error": "invalid_code"}

    third = sandbox.control("POST", "zoho/sandbox/refresh_token")["refresh_token"]
    assert "access_token" in _refresh(creds, second)  # an older one works until it is revoked
    assert "access_token" in _refresh(creds, third)
    assert "access_token" in ZohoHttp(sandbox, "production").refresh().json()  # the other org is untouched
    assert sandbox.stats()["zoho"]["sandbox"]["refresh_tokens_issued"] == 2


def test_revoking_one_refresh_token_kills_only_its_access_tokens(sandbox):
    creds = sandbox.zoho("sandbox")
    old_access = _refresh(creds, creds["refresh_token"])["access_token"]
    new = sandbox.control("POST", "zoho/sandbox/refresh_token")["refresh_token"]
    new_access = _refresh(creds, new)["access_token"]
    assert _revoke(creds, creds["refresh_token"]) == {"status": "success"}
    zoho = ZohoHttp(sandbox)
    assert zoho.get("org", token=old_access).status_code == 401
    assert zoho.get("org", token=new_access).status_code == 200


def test_each_refresh_token_has_its_own_mint_limit(sandbox):
    sandbox.settings_zoho("sandbox", token_rate_limit=2)
    creds = sandbox.zoho("sandbox")
    assert ["access_token" in _refresh(creds, creds["refresh_token"]) for _ in range(3)] == [True, True, False]
    new = sandbox.control("POST", "zoho/sandbox/refresh_token")["refresh_token"]
    assert "access_token" in _refresh(creds, new)


def test_the_twenty_first_refresh_token_invalidates_the_oldest(sandbox):
    creds = sandbox.zoho("sandbox")
    issued = [sandbox.control("POST", "zoho/sandbox/refresh_token")["refresh_token"] for _ in range(20)]
    assert _refresh(creds, creds["refresh_token"]) == {"error": "invalid_code"}  # 21 live: the first went
    assert all("access_token" in _refresh(creds, token) for token in (issued[0], issued[-1]))


def test_reset_returns_every_org_to_the_refresh_token_it_started_with(sandbox):
    creds = sandbox.zoho("sandbox")
    new = sandbox.control("POST", "zoho/sandbox/refresh_token")["refresh_token"]
    _revoke(creds, creds["refresh_token"])
    sandbox.reset()
    assert sandbox.control("GET", "info")["zoho"]["sandbox"]["refresh_token"] == creds["refresh_token"]
    assert "access_token" in _refresh(creds, creds["refresh_token"])
    assert _refresh(creds, new) == {"error": "invalid_code"}
    assert requests.post(f"{sandbox.base_url}/_sandbox/zoho/nope/refresh_token", timeout=30).status_code == 404
