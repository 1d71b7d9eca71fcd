"""A failed `cbzoho sync` ends with one line saying where and why, soon, and `cbzoho status` says it too.

The four failures people meet first: a wrong API key, a missing environment variable, a refresh token
revoked in Zoho, and the sandbox (or the network) down. Each must end, within 40 seconds, with a last line
naming the failing step and the cause in plain words (HTTP status, error code, the variable to set), and
no stack trace unless asked for with --debug.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
import yaml

from .conftest import site_settings

CLI = [sys.executable, "-m", "cbzoho_pipeline.cli"]


def sync(env: dict) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([*CLI, "sync", "--site", "acme-test"], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)
    return done, time.monotonic() - started


def status(env: dict) -> dict:
    done = subprocess.run([*CLI, "status", "--site", "acme-test", "--json"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def broken_info(sandbox, tmp_path, change) -> str:
    info = json.loads(sandbox.info_file.read_text())
    change(info)
    path = tmp_path / "info.json"
    path.write_text(json.dumps(info))
    return str(path)


def wrong_key(sandbox, tmp_path, e2e):
    def change(info):
        info["chargebee"]["acme-test"]["api_key"] = "test_wrong_key_0000000000000000"
    return {"CBZOHO_SANDBOX_INFO": broken_info(sandbox, tmp_path, change)}, "chargebee_customers", \
        ["HTTP 401", "API key"]


def missing_variable(sandbox, tmp_path, e2e):
    settings = site_settings("acme-test")
    settings["sandbox"] = False
    settings["chargebee"]["base_url"] = sandbox.info["chargebee"]["acme-test"]["base_url"]
    (tmp_path / "real.yaml").write_text(yaml.safe_dump({"sites": {"acme-test": settings}}))
    env = {"CBZOHO_SETTINGS": str(tmp_path / "real.yaml")}
    return env, None, ["CBZOHO_ACME_TEST_CHARGEBEE_API_KEY", "not set"]


def revoked_token(sandbox, tmp_path, e2e):
    z = sandbox.zoho("sandbox")
    requests.post(z["accounts_url"] + "/oauth/v2/token/revoke", params={"token": z["refresh_token"]}, timeout=10)
    return {}, "zoho_metadata", ["invalid_code", "refresh token", "reconnect"]


def sandbox_down(sandbox, tmp_path, e2e):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"

    def change(info):
        text = json.dumps(info).replace(info["base_url"], dead)
        info.clear()
        info.update(json.loads(text))
    return {"CBZOHO_SANDBOX_INFO": broken_info(sandbox, tmp_path, change)}, "chargebee_customers", \
        ["unreachable", "refused", "cbzoho sandbox"]


@pytest.mark.parametrize("case", [wrong_key, missing_variable, revoked_token, sandbox_down])
def test_a_failed_sync_ends_with_its_cause_in_one_line(e2e, tmp_path, case):
    e2e.add_customer(id="c1", last_name="One", email="one@example.com")
    env, step, words = case(e2e.sandbox, tmp_path, e2e)
    done, seconds = sync(env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert seconds < 40, f"took {seconds:.0f} s to fail"
    assert "Traceback" not in done.stderr and "Stack Trace" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cbzoho sync: "), last
    if step is not None:
        assert last.startswith(f"cbzoho sync: acme-test failed at {step}: "), last
        shown = status(env)["last_run"]
        assert (shown["status"], shown["failed_step"]) == ("failed", step)
        assert shown["cause"] in last
    for word in words:
        assert word in last, (word, last)


def test_debug_shows_the_stack_trace(e2e, tmp_path):
    env, _, _ = wrong_key(e2e.sandbox, tmp_path, e2e)
    done = subprocess.run([*CLI, "--debug", "sync", "--site", "acme-test"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Stack Trace" in done.stderr
