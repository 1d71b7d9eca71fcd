"""The sandbox's own surface: the info file, the control routes, fault injection and call statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from cbzoho_pipeline_tests.conftest import REPO_ROOT
from cbzoho_pipeline_tests.sandbox.zoho_http import ZohoHttp


def test_cli_prints_and_writes_every_url_and_credential(tmp_path):
    info_file = tmp_path / "info.json"
    proc = subprocess.Popen([sys.executable, "-m", "cbzoho_pipeline.cli", "sandbox", "--port", "0", "--info-file",
                             str(info_file), "--generate", "40", "--seed", "3"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not info_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = json.loads(info_file.read_text())
        assert set(info["chargebee"]) == {"acme-test", "acme"}
        assert set(info["zoho"]) == {"sandbox", "production"}
        for site in info["chargebee"].values():
            assert site["base_url"].startswith(info["base_url"]) and site["api_key"]
        for org in info["zoho"].values():
            assert {"accounts_url", "api_domain", "client_id", "client_secret", "refresh_token"} <= set(org)
        # seeded: the test site has the generated customers, the live site none
        base, key = info["chargebee"]["acme-test"]["base_url"], info["chargebee"]["acme-test"]["api_key"]
        listed = requests.get(f"{base}/customers", params={"limit": 100, "include_deleted": "true"}, auth=(key, ""),
                              timeout=10).json()
        assert len(listed["list"]) == 40
        assert requests.get(info["control_url"] + "/info", timeout=10).json() == info
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    printed = json.loads(out[: out.index("\n}\n") + 2])
    assert printed == info
    assert not info_file.exists()  # removed on shutdown, so nobody points at a dead sandbox


def test_reset_empties_every_tenant(sandbox):
    sandbox.generate(30, seed=1)
    sandbox.reset()
    assert sandbox.dump("sandbox", "Contacts") == []
    assert sandbox.control("GET", "chargebee/acme-test/counts")["customers"] == 0


def test_load_refuses_unknown_tenants_and_bad_bodies(sandbox):
    response = requests.post(f"{sandbox.base_url}/_sandbox/load", json={"chargebee": {"nope": {}}}, timeout=10)
    assert response.status_code == 404 and "nope" in response.json()["error"]
    response = requests.post(f"{sandbox.base_url}/_sandbox/load", data="not json", timeout=10)
    assert response.status_code == 400


def _subscriptions(sandbox) -> list[dict]:
    base, key = sandbox.chargebee("acme-test")
    out, offset = [], None
    while True:
        params = {"limit": 100, **({"offset": offset} if offset else {})}
        page = requests.get(f"{base}/subscriptions", params=params, auth=(key, ""), timeout=30).json()
        out += [entry["subscription"] for entry in page["list"]]
        offset = page.get("next_offset")
        if not offset:
            return out


def test_generate_at_a_given_instant_dates_every_record_from_it(sandbox):
    at = int(time.time()) - 3 * 86400
    sandbox.reset()
    first = sandbox.generate(80, seed=5, now=at)
    subscriptions = _subscriptions(sandbox)
    sandbox.reset()
    time.sleep(1.1)  # the sandbox clock moves on; the dataset does not
    second = sandbox.generate(80, seed=5, now=at)
    assert first["summary"]["now"] == second["summary"]["now"] == at
    assert _subscriptions(sandbox) == subscriptions
    assert max(s["created_at"] for s in subscriptions) <= at
    sandbox.reset()
    response = requests.post(f"{sandbox.base_url}/_sandbox/generate", json={"customers": 5, "now": "yesterday"},
                             timeout=10)
    assert response.status_code == 400 and "now must be unix seconds" in response.json()["error"]


def test_generate_is_deterministic_per_seed(sandbox):
    first = sandbox.generate(60, seed=5)
    dump_one = sandbox.dump("sandbox", "Contacts")
    sandbox.reset()
    second = sandbox.generate(60, seed=5)
    assert first["summary"]["counts"] == second["summary"]["counts"]
    assert sorted(c["Email"] for c in sandbox.dump("sandbox", "Contacts")) == sorted(c["Email"] for c in dump_one)


@pytest.mark.parametrize("api, path, code_key, code", [
    ("chargebee", "/chargebee/acme-test/api/v2/customers", "api_error_code", "api_request_limit_exceeded"),
    ("zoho", "/zoho/sandbox/crm/v8/Contacts?fields=Last_Name", "code", "TOO_MANY_REQUESTS"),
])
def test_injected_429_uses_each_apis_own_body_and_is_counted(sandbox, api, path, code_key, code):
    sandbox.faults(api, p429=1.0)
    response = requests.get(sandbox.base_url + path, timeout=10)
    assert response.status_code == 429
    assert response.json()[code_key] == code
    tenant = "acme-test" if api == "chargebee" else "sandbox"
    stats = sandbox.stats()[api][tenant]
    assert stats["served_429"] == 1 and stats["faults_injected"] == {"429": 1}
    sandbox.clear_faults()
    assert requests.get(sandbox.base_url + path, timeout=10).status_code != 429


def test_faults_can_target_one_tenant(sandbox):
    sandbox.faults("chargebee", tenant="acme", p500=1.0)
    base, key = sandbox.chargebee("acme")
    assert requests.get(f"{base}/customers", auth=(key, ""), timeout=10).status_code == 500
    base, key = sandbox.chargebee("acme-test")
    assert requests.get(f"{base}/customers", auth=(key, ""), timeout=10).status_code == 200


def test_dropped_connection_is_a_transport_error(sandbox):
    sandbox.faults("chargebee", pdrop=1.0)
    base, key = sandbox.chargebee("acme-test")
    # the reply dies mid-way: requests reports a broken connection, never a response
    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        requests.get(f"{base}/customers", auth=(key, ""), timeout=10)


def test_latency_and_slow_responses(sandbox):
    sandbox.faults("chargebee", latency_ms=200)
    base, key = sandbox.chargebee("acme-test")
    started = time.monotonic()
    requests.get(f"{base}/customers", auth=(key, ""), timeout=10)
    assert time.monotonic() - started >= 0.2
    sandbox.faults("chargebee", pslow=1.0, slow_seconds=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{base}/customers", auth=(key, ""), timeout=0.2)


def test_stats_count_calls_per_endpoint_template(sandbox):
    base, key = sandbox.chargebee("acme-test")
    sandbox.load(chargebee={"acme-test": {"customers": [{"id": "c1", "object": "customer"}]}})
    requests.get(f"{base}/customers/c1", auth=(key, ""), timeout=10)
    requests.get(f"{base}/customers", auth=(key, ""), timeout=10)
    requests.get(f"{base}/customers", auth=(key, ""), timeout=10)
    calls = sandbox.stats()["chargebee"]["acme-test"]["calls"]
    assert calls["GET /api/v2/customers"] == 2
    assert sum(v for k, v in calls.items() if k.startswith("GET /api/v2/customers/")) == 1
    sandbox.reset_stats()
    assert sandbox.stats()["chargebee"]["acme-test"]["calls_total"] == 0


def test_zoho_concurrency_limit_answers_429(sandbox):
    sandbox.settings_zoho("sandbox", concurrency_limit=1)
    sandbox.faults("zoho", latency_ms=300)
    import concurrent.futures

    url = f"{sandbox.base_url}/zoho/sandbox/crm/v8/Contacts?fields=Last_Name"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: requests.get(url, timeout=10).status_code, range(4)))
    assert 429 in statuses and statuses.count(429) >= 2
    assert sandbox.stats()["zoho"]["sandbox"]["faults_injected"]["concurrency"] >= 2


def test_expire_tokens_after_a_number_of_calls(sandbox):
    zoho = ZohoHttp(sandbox)
    zoho.login()
    sandbox.control("POST", "zoho/sandbox/expire_tokens", {"after_calls": 2})
    assert [zoho.get("users").status_code for _ in range(2)] == [200, 200]
    third = zoho.get("users")
    assert third.status_code == 401 and third.json()["code"] == "INVALID_TOKEN"


def test_clock_moves_chargebee_timestamps(sandbox):
    base, key = sandbox.chargebee("acme-test")
    before = requests.post(f"{base}/customers", data={"id": "t1"}, auth=(key, ""), timeout=10).json()
    sandbox.control("POST", "clock", {"advance_seconds": 3600})
    after = requests.post(f"{base}/customers/t1", data={"first_name": "Later"}, auth=(key, ""), timeout=10).json()
    assert after["customer"]["updated_at"] - before["customer"]["created_at"] >= 3600


def test_writes_without_an_empty_trigger_list_are_counted_as_firing_automations(sandbox):
    zoho = ZohoHttp(sandbox)
    assert zoho.post("Contacts", json={"data": [{"Last_Name": "Quiet"}], "trigger": []}).status_code == 201
    assert sandbox.stats()["zoho"]["sandbox"]["writes_with_automations"] == 0
    assert zoho.post("Contacts", json={"data": [{"Last_Name": "Loud"}]}).status_code == 201
    assert sandbox.stats()["zoho"]["sandbox"]["writes_with_automations"] == 1


def _insert_contact(zoho: ZohoHttp, last_name: str, timeout: float = 10) -> requests.Response:
    return zoho.call("POST", "/Contacts", json={"data": [{"Last_Name": last_name}]}, timeout=timeout)


def test_apply_then_drop_carries_the_write_out_and_loses_the_answer(sandbox):
    zoho = ZohoHttp(sandbox)
    zoho.login()
    sandbox.faults("zoho", papply_drop=1.0, writes_only=True)
    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        _insert_contact(zoho, "Applied")
    # the write happened although no answer arrived; reads were left alone by writes_only
    assert [c["Last_Name"] for c in sandbox.dump("sandbox", "Contacts")] == ["Applied"]
    assert zoho.call("GET", "/Contacts", params={"fields": "Last_Name"}).status_code == 200
    assert sandbox.stats()["zoho"]["sandbox"]["faults_injected"] == {"apply_drop": 1}


def test_apply_then_late_answers_after_the_clients_timeout(sandbox):
    zoho = ZohoHttp(sandbox)
    zoho.login()
    sandbox.faults("zoho", papply_late=1.0, late_seconds=1.0, writes_only=True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _insert_contact(zoho, "Late", timeout=0.3)
    assert [c["Last_Name"] for c in sandbox.dump("sandbox", "Contacts")] == ["Late"]
    # a patient client gets the real answer, late
    started = time.monotonic()
    response = _insert_contact(zoho, "Later")
    assert response.status_code == 201 and time.monotonic() - started >= 1.0
    assert sorted(c["Last_Name"] for c in sandbox.dump("sandbox", "Contacts")) == ["Late", "Later"]


def test_writes_only_spares_reads_coql_and_tokens(sandbox):
    zoho = ZohoHttp(sandbox)
    sandbox.faults("zoho", p500=1.0, writes_only=True)
    zoho.login()  # the token call is not a write
    assert zoho.call("GET", "/Contacts", params={"fields": "Last_Name"}).status_code in (200, 204)
    coql = zoho.call("POST", "/coql", json={"select_query": "select Last_Name from Contacts where id is not null"})
    assert coql.status_code in (200, 204)
    assert _insert_contact(zoho, "Refused").status_code == 500
    assert sandbox.dump("sandbox", "Contacts") == []
    sandbox.faults("chargebee", p500=1.0, writes_only=True)
    base, key = sandbox.chargebee("acme-test")
    assert requests.get(f"{base}/customers", auth=(key, ""), timeout=10).status_code == 200
    assert requests.post(f"{base}/customers", auth=(key, ""), data={"first_name": "X"}, timeout=10).status_code == 500


@pytest.mark.parametrize("spec", [{"papply_drop": 1.5}, {"pdrop": -0.1}, {"writes_only": "yes"}, {"p_typo": 0.1}])
def test_a_bad_fault_spec_is_refused(sandbox, spec):
    response = requests.post(f"{sandbox.base_url}/_sandbox/faults", json={"api": "zoho", **spec}, timeout=10)
    assert response.status_code == 400 and "bad fault spec" in response.text


def test_the_server_keeps_its_info_file_current_when_a_refresh_token_is_issued(sandbox):
    original = json.loads(sandbox.info_file.read_text())["zoho"]["sandbox"]["refresh_token"]
    new = sandbox.control("POST", "zoho/sandbox/refresh_token")["refresh_token"]
    assert json.loads(sandbox.info_file.read_text())["zoho"]["sandbox"]["refresh_token"] == new
    assert sandbox.info_file.stat().st_mode & 0o077 == 0  # credentials: owner-only
    sandbox.reset()
    assert json.loads(sandbox.info_file.read_text())["zoho"]["sandbox"]["refresh_token"] == original


def _cbzoho(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbzoho_pipeline.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_cli_sandbox_token_issues_a_token_and_rewrites_the_info_file(sandbox, tmp_path):
    copy = tmp_path / "info.json"
    copy.write_text(sandbox.info_file.read_text())
    before = json.loads(copy.read_text())
    done = _cbzoho("sandbox-token", "--info-file", str(copy), "--org", "production")
    assert done.returncode == 0, done.stderr
    after = json.loads(copy.read_text())
    new = after["zoho"]["production"]["refresh_token"]
    assert new != before["zoho"]["production"]["refresh_token"]
    assert after["zoho"]["sandbox"] == before["zoho"]["sandbox"]
    assert after == sandbox.control("GET", "info")
    assert new not in done.stdout and new[-4:] in done.stdout and str(copy) in done.stdout
    assert "access_token" in ZohoHttp(sandbox, "production").refresh(refresh_token=new).json()
    assert list(tmp_path.iterdir()) == [copy]  # no temporary file left behind


def test_cli_sandbox_token_says_in_one_line_what_is_wrong(sandbox, tmp_path):
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps({**sandbox.info, "control_url": "http://127.0.0.1:9/_sandbox"}))
    cases = {
        "does not exist": ("--info-file", str(tmp_path / "missing.json")),
        "did not answer": ("--info-file", str(dead)),
        "unknown org 'nope'": ("--info-file", str(sandbox.info_file), "--org", "nope"),
    }
    for expected, args in cases.items():
        done = _cbzoho("sandbox-token", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr
    env = {k: v for k, v in os.environ.items() if k != "CBZOHO_SANDBOX_INFO"}
    assert "--info-file" in _cbzoho("sandbox-token", env=env).stderr
