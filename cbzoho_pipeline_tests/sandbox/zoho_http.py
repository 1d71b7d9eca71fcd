"""Plain-`requests` access to one sandbox Zoho org, for the Zoho contract tests.

Why this exists: the contract tests must exercise the sandbox exactly as a client would (real HTTP,
real token refresh, real headers) without depending on our own Zoho client, whose behaviour they are
meant to bound. It must never hide a response: every call returns the raw `requests.Response`.
"""

from __future__ import annotations

from typing import Any

import requests


class ZohoHttp:
    def __init__(self, sandbox: Any, org: str = "sandbox"):
        self.sandbox = sandbox
        self.org = org
        self.creds = sandbox.zoho(org)
        self.http = requests.Session()
        self.token: str | None = None

    @property
    def api(self) -> str:
        return f"{self.creds['api_domain']}/crm/v8"

    def refresh(self, **overrides: str) -> requests.Response:
        params = {"grant_type": "refresh_token", "client_id": self.creds["client_id"],
                  "client_secret": self.creds["client_secret"], "refresh_token": self.creds["refresh_token"]}
        params.update(overrides)
        return self.http.post(f"{self.creds['accounts_url']}/oauth/v2/token", params=params, timeout=30)

    def login(self) -> str:
        body = self.refresh().json()
        assert "access_token" in body, body
        self.token = body["access_token"]
        return self.token

    def call(self, method: str, path: str, *, token: str | None = None, headers: dict | None = None,
             **kw: Any) -> requests.Response:
        if token is None:
            token = self.token or self.login()
        all_headers = {"Authorization": f"Zoho-oauthtoken {token}", **(headers or {})}
        kw.setdefault("timeout", 120)
        return self.http.request(method, f"{self.api}/{path.lstrip('/')}", headers=all_headers, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.call("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.call("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.call("DELETE", path, **kw)

    def coql(self, query: str) -> requests.Response:
        return self.post("coql", json={"select_query": query})

    def insert(self, module: str, *records: dict) -> requests.Response:
        return self.post(module, json={"data": list(records)})

    def ok_id(self, module: str, record: dict) -> str:
        """Insert one record that must succeed; its id."""
        response = self.insert(module, record)
        assert response.status_code == 201, response.text
        return response.json()["data"][0]["details"]["id"]

    def credits(self) -> int:
        return self.sandbox.stats()["zoho"][self.org]["credits_used"]
