"""Disconnect, then reconnect with a new refresh token, end to end through the `cbzoho` command line.

Why this exists: `cbzoho disconnect` revokes the site's Zoho refresh token for good, so the way back is a
new token and `cbzoho reconnect`. In the sandbox the new token comes from `cbzoho sandbox-token`, which
rewrites the info file that sites with `sandbox: true` read at every run. The site must then sync again
with its history intact: what it created before the disconnect is updated or left alone, never created
twice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import requests


class Cli:
    """`cbzoho …` as a person types it, in a child process with the test's environment."""

    def __init__(self, never_printed: list[str]) -> None:
        self.never_printed = never_printed

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "cbzoho_pipeline.cli", *args], env=dict(os.environ),
                              capture_output=True, text=True, timeout=300)
        leaked = [s for s in self.never_printed if s in done.stdout + done.stderr]
        assert not leaked, f"`cbzoho {' '.join(args)}` printed a secret"
        return done


def refresh(zoho: dict, refresh_token: str) -> dict:
    return requests.post(f"{zoho['accounts_url']}/oauth/v2/token", timeout=30, params={
        "grant_type": "refresh_token", "client_id": zoho["client_id"], "client_secret": zoho["client_secret"],
        "refresh_token": refresh_token}).json()


def test_disconnect_then_a_new_token_and_reconnect_syncs_again_without_duplicates(e2e, tmp_path, monkeypatch):
    info_file = tmp_path / "sandbox-info.json"  # this test's own copy, as a user's script would keep one
    shutil.copy(e2e.sandbox.info_file, info_file)
    monkeypatch.setenv("CBZOHO_SANDBOX_INFO", str(info_file))
    old = e2e.sandbox.zoho("sandbox")
    cli = Cli([old["client_secret"], old["refresh_token"]])

    ada = e2e.add_customer(id="c_ada", first_name="Ada", last_name="Lovelace", email="ada@example.com",
                           company="Analytical Engines")
    e2e.add_subscription(ada["id"], id="s_ada")
    first = cli("sync", "--site", "acme-test")
    assert first.returncode == 0, first.stderr
    synced = e2e.state()

    gone = cli("disconnect", "--site", "acme-test")
    assert gone.returncode == 0 and "disconnected" in gone.stdout, gone.stderr
    assert refresh(old, old["refresh_token"]) == {"error": "invalid_code"}  # really revoked in Zoho
    stopped = cli("sync", "--site", "acme-test")
    assert stopped.returncode == 2
    assert "disconnected" in stopped.stderr and "cbzoho reconnect" in stopped.stderr, stopped.stderr

    minted = cli("sandbox-token", "--info-file", str(info_file), "--org", "sandbox")
    assert minted.returncode == 0, minted.stderr
    new = json.loads(info_file.read_text())["zoho"]["sandbox"]
    assert new["refresh_token"] != old["refresh_token"] and new["refresh_token"] not in minted.stdout
    assert e2e.sandbox.control("GET", "info")["zoho"]["sandbox"]["refresh_token"] == new["refresh_token"]
    assert refresh(old, old["refresh_token"]) == {"error": "invalid_code"}  # the revoked one stays revoked

    still = cli("sync", "--site", "acme-test")  # a new token alone does not lift the disconnect
    assert still.returncode == 2 and "disconnected" in still.stderr
    back = cli("reconnect", "--site", "acme-test")
    assert back.returncode == 0 and "reconnected" in back.stdout, back.stderr

    e2e.cb("POST", "customers/c_ada", last_name="Byron")  # a change made while the site was disconnected
    e2e.add_customer(id="c_bob", last_name="Babbage", email="bob@example.com", company="Analytical Engines")
    e2e.sandbox.reset_stats()
    again = cli("sync", "--site", "acme-test", "--json")
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)["counts"]
    assert (counts["Contacts"]["created"], counts["Contacts"]["updated"]) == (1, 1), counts
    assert (counts["Accounts"]["created"], counts["Deals"]["created"]) == (0, 0), counts
    assert e2e.sandbox.stats()["zoho"]["sandbox"]["tokens_issued"] >= 1  # from the new refresh token

    contacts = e2e.zoho("Contacts")
    assert sorted(c["Email"] for c in contacts) == ["ada@example.com", "bob@example.com"]
    assert [c["Last_Name"] for c in contacts if c["Email"] == "ada@example.com"] == ["Byron"]
    assert len(e2e.zoho("Accounts")) == len(synced["Accounts"]) == 1
    assert len(e2e.zoho("Deals")) == len(synced["Deals"]) == 1
    status = json.loads(cli("status", "--site", "acme-test", "--json").stdout)
    assert status["connected"] is True and status["errors"] == []
