"""End-to-end harness: real syncs through the Dagster job against the sandbox over real HTTP.

Each test gets its own state directory and settings file; the settings point the two sites at the
session's sandbox through CBZOHO_SANDBOX_INFO, exactly as a user's script would.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import yaml

from cbzoho_pipeline.warehouse.db import open_warehouse
from cbzoho_pipeline.warehouse.resources import warehouse_path

WRITE_ENDPOINTS = ("POST /crm/v8/{module}", "PUT /crm/v8/{module}", "POST /crm/v8/{module}/upsert",
                   "PUT /crm/v8/{module}/{record_id}", "DELETE /crm/v8/{module}")


def site_settings(site: str = "acme-test", **rules: Any) -> dict[str, Any]:
    org = "sandbox" if site == "acme-test" else "production"
    base_rules = {"deal_owner_email": "admin@acme.example"}
    base_rules.update(rules)
    return {
        "sandbox": True,
        "chargebee": {"site": site},
        "zoho": {"environment": "sandbox" if org == "sandbox" else "production", "sandbox_org": org},
        "rules": base_rules,
    }


@dataclass
class SyncOutcome:
    result: Any
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)  # "asset:check" -> evaluation

    @property
    def success(self) -> bool:
        return self.result.success

    def check(self, asset: str, name: str):
        return self.checks[f"{asset}:{name}"]


class E2E:
    def __init__(self, sandbox, home: Path, settings_file: Path) -> None:
        self.sandbox = sandbox
        self.home = home
        self.settings_file = settings_file
        self.configure()

    # -------------------------------------------------------------------------------------- settings
    def configure(self, sites: dict[str, dict[str, Any]] | None = None, **acme_test_rules: Any) -> None:
        sites = sites or {"acme-test": site_settings("acme-test", **acme_test_rules),
                          "acme": site_settings("acme")}
        self.settings_file.write_text(yaml.safe_dump({"sites": sites}))

    # -------------------------------------------------------------------------------------- chargebee
    def cb(self, method: str, path: str, site: str = "acme-test", **params: Any) -> dict:
        base, key = self.sandbox.chargebee(site)
        response = requests.request(method, f"{base}/{path.lstrip('/')}", auth=(key, ""),
                                    data=params if method == "POST" else None,
                                    params=params if method == "GET" else None, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def add_customer(self, site: str = "acme-test", **fields: Any) -> dict:
        return self.cb("POST", "customers", site, **fields)["customer"]

    def add_subscription(self, customer_id: str, item_price_id: str = "basic-USD-monthly", site: str = "acme-test",
                         **fields: Any) -> dict:
        params = {"subscription_items[item_price_id][0]": item_price_id, **fields}
        return self.cb("POST", f"customers/{customer_id}/subscription_for_items", site, **params)["subscription"]

    def zoho_client(self, org: str = "sandbox"):
        """A Zoho client acting as a person editing the CRM (its calls count in the org's stats)."""
        from cbzoho_pipeline.zoho.client import ZohoClient

        z = self.sandbox.zoho(org)
        return ZohoClient(accounts_url=z["accounts_url"], client_id=z["client_id"], client_secret=z["client_secret"],
                          refresh_token=z["refresh_token"])

    # -------------------------------------------------------------------------------------- runs
    def sync(self, site: str = "acme-test", *, full_resync: bool = False, instance=None,
             zoho: dict[str, Any] | None = None) -> SyncOutcome:
        """One sync through the Dagster job; `zoho` sets the Zoho resource's config (e.g. timeout_seconds)."""
        from cbzoho_pipeline.definitions import defs

        run_config: dict[str, Any] = {}
        if full_resync:
            ops = {n: {"config": {"full_resync": True}} for n in (
                "chargebee_customers", "chargebee_subscriptions", "zoho_accounts", "zoho_contacts", "zoho_deals",
                "sync_plan")}
            run_config["ops"] = ops
        if zoho:
            run_config["resources"] = {"zoho": {"config": zoho}}
        job = defs.resolve_job_def("cbzoho_sync")
        result = job.execute_in_process(partition_key=site, instance=instance or dg.DagsterInstance.ephemeral(),
                                        raise_on_error=False, run_config=run_config or None)
        outcome = SyncOutcome(result)
        for evaluation in result.get_asset_check_evaluations():
            assert evaluation.partition == site, evaluation  # every check result belongs to the site of its run
            outcome.checks[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = evaluation
        for module in ("accounts", "contacts", "deals"):
            mats = result.asset_materializations_for_node(f"synced_{module}")
            if mats:
                outcome.counts[module.capitalize()] = {k: v.value for k, v in mats[0].metadata.items()
                                                      if isinstance(v.value, int)}
        return outcome

    # -------------------------------------------------------------------------------------- observations
    def zoho(self, module: str, org: str = "sandbox") -> list[dict]:
        return self.sandbox.dump(org, module)

    def state(self, org: str = "sandbox") -> dict[str, Counter]:
        """Zoho's records as comparable values: per module, a multiset of records without ids and times,
        lookups replaced by the name of what they point to. Equal states hold the same records, no more."""
        return zoho_state(self.sandbox, org)

    def writes(self, org: str = "sandbox") -> int:
        calls = self.sandbox.stats()["zoho"][org]["calls"]
        return sum(n for endpoint, n in calls.items() if endpoint in WRITE_ENDPOINTS)

    def write_calls(self, org: str = "sandbox") -> dict[str, int]:
        calls = self.sandbox.stats()["zoho"][org]["calls"]
        return {e: n for e, n in calls.items() if e in WRITE_ENDPOINTS}

    def chargebee_writes(self, site: str = "acme-test") -> int:
        calls = self.sandbox.stats()["chargebee"][site]["calls"]
        return sum(n for endpoint, n in calls.items() if not endpoint.startswith("GET "))

    def warehouse(self, site: str = "acme-test"):
        return open_warehouse(warehouse_path(site), read_only=True)

    def errors(self, site: str = "acme-test") -> list[dict]:
        with self.warehouse(site) as wh:
            return wh.errors().to_dict("records")

    def links(self, module: str, site: str = "acme-test") -> dict[str, str]:
        with self.warehouse(site) as wh:
            return wh.links(module)


@pytest.fixture
def e2e(sandbox, tmp_path, monkeypatch) -> E2E:
    home = tmp_path / "home"
    settings = tmp_path / "cbzoho.yaml"
    monkeypatch.setenv("CBZOHO_SANDBOX_INFO", str(sandbox.info_file))
    monkeypatch.setenv("CBZOHO_HOME", str(home))
    monkeypatch.setenv("CBZOHO_SETTINGS", str(settings))
    # The sandbox's accounts server rate-limits token minting as Zoho does; every test starts from a reset.
    return E2E(sandbox, home, settings)


VOLATILE_FIELDS = {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By", "Owner"}


def zoho_state(sandbox, org: str) -> dict[str, Counter]:
    state: dict[str, Counter] = {}
    for module in ("Accounts", "Contacts", "Deals"):
        rows = Counter()
        for record in sandbox.dump(org, module):
            items = []
            for key, value in sorted(record.items()):
                if key in VOLATILE_FIELDS or value in (None, "", [], {}):
                    continue
                if isinstance(value, dict):
                    value = value.get("name") or value.get("id")
                items.append((key, json.dumps(value, sort_keys=True, default=str)))
            rows[tuple(items)] += 1
        state[module] = rows
    return state


def reference(e2e, count: int, seed: int, at: int) -> tuple[dict, set]:
    """Zoho's state and the open errors after an unbudgeted, fault-free sync of the site generated at `at`;
    then a clean slate (sandbox and warehouses) for the run under test, which generates at the same instant
    (dates derive from it, and a few seconds can move a renewal past midnight)."""
    e2e.sandbox.reset()
    e2e.sandbox.generate(count, seed=seed, now=at)
    assert e2e.sync().success
    state, errors = e2e.state(), error_keys(e2e)
    e2e.sandbox.reset()
    for path in e2e.home.glob("sites/*/cbzoho.duckdb*"):
        path.unlink()
    return state, errors


def error_keys(e2e) -> set:
    return {(e["module"], e["source_key"], e["code"]) for e in e2e.errors()}


def state_diff(got: dict[str, Counter], want: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Per module: duplicates (a wanted record held more than once), missing and extra records."""
    diff = {}
    for module in want:
        g, w = got.get(module, Counter()), want[module]
        duplicates = sum(g[k] - w[k] for k in w if g[k] > w[k])
        missing = sum(w[k] - g[k] for k in w if g[k] < w[k])
        extra = sum(n for k, n in g.items() if k not in w)
        diff[module] = {"duplicates": duplicates, "missing": missing, "extra": extra}
    return diff


def by(records: list[dict], key: str) -> dict[str, dict]:
    return {str(r.get(key)).lower() if key == "Email" else str(r.get(key)): r for r in records}


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
