"""One site never hides another's errors: in the real Dagster UI, each site's check results stand on their own.

The checks are partitioned by site (README, Architecture), so every evaluation carries its site. This starts
`dagster dev` on the sandbox, syncs acme-test (errors on purpose) and then acme (clean) headless with
`cbzoho sync`, and reads the result twice: through the UI's GraphQL API, and in a headless Chromium, on the
synced_contacts Checks page -> sync_errors -> Partitions -> <site>, where it screenshots each site.
The screenshots are left in the test's temporary folder, printed at the end (`pytest -s` shows it).

Chromium is required, never skipped: CI installs it (.ci/run); elsewhere `apt-get install -y chromium`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from cbzoho_pipeline_tests.e2e.browser import INSTALL, Browser, chromium_binary
from cbzoho_pipeline_tests.e2e.conftest import site_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 60  # per site: enough mess for a table of errors, small enough for a quick test

SITE_CHECK = """
query SiteCheck($site: String!) {
  assetCheckExecutions(assetKey: {path: ["synced_contacts"]}, checkName: "sync_errors", partition: $site,
                       limit: 20) {
    runId status partition
    evaluation {
      success partition description
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on TableMetadataEntry { table { records schema { columns { name } } } }
        ... on JsonMetadataEntry { jsonString }
      }
    }
  }
}
"""

PARTITION_STATUSES = """
{
  assetNodeOrError(assetKey: {path: ["synced_contacts"]}) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks {
      name
      partitionStatuses { ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions } }
    } } } }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterUI:
    """`dagster dev` in its own process group, on a free loopback port, with a temporary DAGSTER_HOME."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "dagster-dev.log"
        with self.log.open("wb") as log:
            # start_new_session: the webserver, daemon and code server share a group we can stop as one
            # (dagster-notes §14); SIGTERM is then handled as Ctrl-C.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-m", "cbzoho_pipeline.definitions",
                 "-h", "127.0.0.1", "-p", str(self.port)],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the webserver answers and the code location is loaded (synced_contacts is known)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                answer = self.graphql('{ assetNodeOrError(assetKey: {path: ["synced_contacts"]}) { __typename } }')
                if answer["assetNodeOrError"]["__typename"] == "AssetNode":
                    return
            except (requests.RequestException, AssertionError, KeyError, TypeError):
                pass
            time.sleep(1)
        pytest.fail(f"dagster dev was not ready within {timeout:.0f} s:\n{self.tail()}")

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        try:  # anything left in the group (a code server that outlived its parent)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def site_check(ui: DagsterUI, site: str) -> list[dict[str, Any]]:
    """Every execution of synced_contacts' sync_errors for one site, newest first, as the UI's API gives them."""
    return ui.graphql(SITE_CHECK, site=site)["assetCheckExecutions"]


def entries(execution: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["label"]: e for e in execution["evaluation"]["metadataEntries"]}


def table_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(r) for r in entry["table"]["records"]]


def sync(site: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbzoho_pipeline.cli", "sync", "--site", site],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def customer(id_: str, last_name: str, email: str) -> dict[str, Any]:
    at = 1_700_000_000
    return {"id": id_, "first_name": "Ui", "last_name": last_name, "email": email, "created_at": at,
            "updated_at": at, "resource_version": at * 1000, "deleted": False, "object": "customer"}


def test_each_site_shows_its_own_check_results_in_the_ui(e2e, tmp_path):
    if chromium_binary() is None:
        pytest.fail(f"chromium is required for this test and is not installed; install it with `{INSTALL}` "
                    "(as root; .ci/run does it on CI)")

    # ---- data: acme-test messy plus three records that cannot sync, acme clean
    e2e.configure(sites={"acme-test": {**site_settings("acme-test"), "autosync": False},
                         "acme": {**site_settings("acme"), "autosync": False}})  # no schedule tick mid-test
    e2e.sandbox.generate(CUSTOMERS, seed=7, site="acme-test", org="sandbox")
    e2e.sandbox.load(chargebee={"acme-test": {"customers": [  # as stored; the API would refuse the first
        customer("ui_invalid", "Invalid", "not-an-email"),
        customer("ui_twin_a", "TwinA", "twin@example.com"), customer("ui_twin_b", "TwinB", "twin@example.com")]}})
    e2e.sandbox.load(chargebee={"acme": {"customers": [
        customer(f"clean_{i:03d}", f"Customer{i:03d}", f"clean{i:03d}@example.com") for i in range(CUSTOMERS)]}})

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}  # CBZOHO_* come from the e2e fixture
    shots = tmp_path / "screenshots"
    shots.mkdir()

    ui = DagsterUI(tmp_path, env)
    try:
        ui.wait_ready()  # first, so the instance's storage is created by one process only

        # ---- acme-test: fails with its errors
        first = sync("acme-test", env)
        assert first.returncode == 1, first.stdout + first.stderr  # 1: finished with sync errors
        rows = [e for e in e2e.errors("acme-test") if e["module"] == "Contacts"]
        expected = sorted(e["chargebee_id"] for e in rows)  # errors and warnings, one table
        failing = [e for e in rows if e["severity"] == "error"]
        assert {"ui_invalid", "ui_twin_a", "ui_twin_b"} <= {e["chargebee_id"] for e in failing}
        (failed,) = site_check(ui, "acme-test")
        assert failed["partition"] == failed["evaluation"]["partition"] == "acme-test"
        assert failed["status"] == "FAILED" and failed["evaluation"]["success"] is False
        shown = entries(failed)
        assert shown["error_count"]["intValue"] == len(failing)
        assert shown["warning_count"]["intValue"] == len(expected) - len(failing)
        assert [c["name"] for c in shown["errors"]["table"]["schema"]["columns"]] == [
            "chargebee_id", "severity", "code", "message", "last_seen"]
        assert sorted(r["chargebee_id"] for r in table_rows(shown["errors"])) == expected[:200]
        assert len(json.loads(shown["errors_json"]["jsonString"])) == len(expected)
        assert site_check(ui, "acme") == []

        # ---- acme: passes, and acme-test shows exactly what it showed before
        second = sync("acme", env)
        assert second.returncode == 0, second.stdout + second.stderr
        (passed,) = site_check(ui, "acme")
        assert passed["partition"] == "acme" and passed["status"] == "SUCCEEDED"
        assert entries(passed)["error_count"]["intValue"] == 0 and table_rows(entries(passed)["errors"]) == []
        assert site_check(ui, "acme-test") == [failed]
        checks = ui.graphql(PARTITION_STATUSES)["assetNodeOrError"]["assetChecksOrError"]["checks"]
        (statuses,) = [c["partitionStatuses"] for c in checks if c["name"] == "sync_errors"]
        assert statuses == {"succeededPartitions": ["acme"], "failedPartitions": ["acme-test"]}

        # ---- the same in a browser: Checks -> sync_errors -> Partitions -> the site
        description = failed["evaluation"]["description"]
        assert description.startswith(f"{len(failing)} Contacts record(s) failed to sync")
        page = f"{ui.url}/assets/synced_contacts?view=checks&checkDetail=sync_errors"
        with Browser(tmp_path / "chromium-profile") as browser:
            # The error table is wider than what 1400 px leave beside the main navigation; folding it away
            # (the UI remembers that) keeps the site's status in view.
            browser.goto(page)
            browser.click_text("Hide navigation")
            browser.wait_without_text("Hide navigation")
            for site, status, count in (("acme-test", "Failed", len(failing)), ("acme", "Passed", 0)):
                browser.goto(page)
                browser.wait_for_text("sync_errors", "Partitions")
                browser.click_text("Partitions", selector="button[role=tab]")  # the check's tab, not the asset's
                browser.wait_for_text("Select a partition to view details")
                browser.click_text(site, selector="span", last=True)  # the list row, below the range picker
                text = browser.wait_for_text("View all historical executions (1)", f"error_count\n{count}")
                detail = text[text.index("View all historical executions"):]
                assert f"{site}\n{status}\nLatest execution" in text  # the detail's heading and status tag
                assert (description in text) == (site == "acme-test")
                if site == "acme-test":
                    assert "ui_invalid" in detail and "EMAIL_SHARED_IN_CHARGEBEE" in detail
                else:
                    assert "ui_invalid" not in detail
                browser.screenshot(shots / f"synced_contacts-sync_errors-{site}.png")
    except BaseException:
        print(f"dagster dev log (tail):\n{ui.tail()}")
        raise
    finally:
        ui.stop()
    print(f"\nscreenshots of each site's sync_errors check: {shots}")
    assert sorted(p.name for p in shots.iterdir()) == [
        "synced_contacts-sync_errors-acme-test.png", "synced_contacts-sync_errors-acme.png"]
