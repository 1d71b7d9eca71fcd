"""cbzoho left running: readers during a sync, processes killed mid-run, fresh instances raced, surprises.

Each test reproduces a failure met in production (a `cbzoho status` that broke the sync it looked at, a
killed run that kept its site queued for ever, two first syncs that corrupted Dagster's storage, a crash
that exited 1 as if it were sync errors) and asserts what an operator would see: exit codes, run
statuses in the Dagster instance, answers on the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb

from cbzoho_pipeline.runs import NO_HEARTBEAT_GRACE, heartbeat, reap_dead_runs
from cbzoho_pipeline.warehouse.resources import warehouse_path

CLI = [sys.executable, "-m", "cbzoho_pipeline.cli"]


def start_sync(env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "sync", "--site", "acme-test", *extra], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_status_during_a_sync_answers_at_once_and_never_breaks_it(e2e):
    e2e.sandbox.generate(300, seed=3)
    assert e2e.sync().success  # a first sync published a status
    e2e.sandbox.generate(60, seed=4)  # more to do, slowly
    e2e.sandbox.faults("zoho", latency_ms=60)
    e2e.sandbox.faults("chargebee", latency_ms=60)
    sync = start_sync({})
    latencies = []
    while sync.poll() is None and len(latencies) < 20:
        started = time.monotonic()
        answer = run_cli("status", "--site", "acme-test", "--json", timeout=30)
        latencies.append(time.monotonic() - started)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["last_run"] is not None
    output = sync.communicate(timeout=600)[0]
    assert sync.returncode in (0, 1), output
    assert len(latencies) >= 5, "the sync ended before the readers could look at it"
    assert max(latencies) < 5, latencies  # a Python start-up, not a wait for the sync


def test_a_sync_waits_for_someone_holding_the_warehouse_open(e2e):
    e2e.add_customer(id="c1", last_name="One", email="one@example.com")
    assert e2e.sync().success
    e2e.add_customer(id="c2", last_name="Two", email="two@example.com")
    # A person's DuckDB shell holds the file for a few seconds while the sync starts.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print('open', flush=True); time.sleep(4); con.close()"), str(warehouse_path("acme-test"))],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "open"
    outcome = e2e.sync()
    holder.wait(timeout=30)
    assert outcome.success
    assert {c["Last_Name"] for c in e2e.zoho("Contacts")} == {"One", "Two"}


def test_a_killed_headless_run_does_not_block_the_site(e2e, tmp_path):
    e2e.sandbox.generate(200, seed=5)
    e2e.sandbox.faults("zoho", latency_ms=40)
    home = tmp_path / "dagster_home"
    env = {"DAGSTER_HOME": str(home)}
    victim = start_sync(env)
    deadline = time.monotonic() + 120
    while not list((e2e.home / "sites" / "acme-test" / "runs").glob("*.json")):  # its resources are up
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    e2e.sandbox.clear_faults()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (killed,) = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED  # Dagster never heard of its death

    started = time.monotonic()
    rerun = run_cli("sync", "--site", "acme-test", env=env)
    assert rerun.returncode in (0, 1), rerun.stderr
    assert "had died" in rerun.stderr and time.monotonic() - started < 120
    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = sorted(r.status.value for r in instance.get_runs())
    assert statuses == ["FAILURE", "SUCCESS"]
    emails = [c["Email"].lower() for c in e2e.zoho("Contacts") if c.get("Email")]
    assert len(emails) == len(set(emails))


def test_reaper_sensor_fails_dead_runs_and_spares_live_ones(e2e):
    with dg.instance_for_test() as instance:
        def started_run(run_id: str) -> dg.DagsterRun:
            run = dg.DagsterRun(job_name="cbzoho_sync", run_id=run_id, tags={"dagster/partition": "acme-test"},
                                status=dg.DagsterRunStatus.STARTED)
            instance.add_run(run)
            instance.handle_run_event(run_id, dg.DagsterEvent(
                event_type_value="PIPELINE_START", job_name="cbzoho_sync", message="started"))
            return run

        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        runs = e2e.home / "sites" / "acme-test" / "runs"
        started_run("dead-run")
        started_run("live-run")
        started_run("young-run")  # no heartbeat yet, but it only just started: maybe still setting up
        with heartbeat("acme-test", "live-run"):  # this very process carries it
            beat = json.loads((runs / "live-run.json").read_text())
            (runs / "dead-run.json").write_text(json.dumps({**beat, "run_id": "dead-run", "pid": dead.pid}))

            from cbzoho_pipeline.assets.sensors import cbzoho_run_reaper

            result = cbzoho_run_reaper(dg.build_sensor_context(instance=instance))
        assert "dead-run" in result.skip_message and "live-run" not in result.skip_message
        status = {r.run_id: r.status for r in instance.get_runs()}
        assert status == {"dead-run": dg.DagsterRunStatus.FAILURE, "live-run": dg.DagsterRunStatus.STARTED,
                          "young-run": dg.DagsterRunStatus.STARTED}
        failure = [e for e in instance.all_logs("dead-run") if e.dagster_event and
                   e.dagster_event.event_type_value == "PIPELINE_FAILURE"]
        assert "is gone" in failure[0].dagster_event.message
        # Without any heartbeat, a run is given up only after the grace period.
        later = time.time() + NO_HEARTBEAT_GRACE + 1
        from cbzoho_pipeline import runs as runs_module

        assert runs_module.why_dead("acme-test", "young-run", time.time(), now=later) is not None
        assert reap_dead_runs(instance, ["acme"]) == []  # another site's runs are not looked at


def test_two_first_syncs_on_a_fresh_dagster_home_leave_it_healthy(e2e, tmp_path):
    e2e.sandbox.generate(60, seed=6)
    home = tmp_path / "fresh_dagster_home"  # does not exist yet: both processes create it
    env = {"DAGSTER_HOME": str(home)}
    pair = [start_sync(env) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in pair]
    assert [p.returncode in (0, 1) for p in pair] == [True, True], outputs
    third = run_cli("sync", "--site", "acme-test", env=env)
    assert third.returncode in (0, 1), third.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert sorted(r.status.value for r in instance.get_runs()) == ["SUCCESS"] * 3


def test_an_unexpected_error_exits_2_with_one_line(e2e, tmp_path):
    not_a_dir = tmp_path / "home-is-a-file"
    not_a_dir.write_text("")
    answer = run_cli("status", "--site", "acme-test", env={"CBZOHO_HOME": str(not_a_dir)})
    assert answer.returncode == 2
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cbzoho status: unexpected"), answer.stderr
    assert "Traceback" not in answer.stderr
    debug = run_cli("--debug", "status", "--site", "acme-test", env={"CBZOHO_HOME": str(not_a_dir)})
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_status_piped_into_head_ends_quietly(e2e):
    e2e.sandbox.generate(40, seed=8)
    assert e2e.sync().success
    pipe = subprocess.run(" ".join([*CLI, "status", "--site", "acme-test", "|", "head", "-1"]), shell=True,
                          env=os.environ, capture_output=True, text=True, timeout=60)
    assert pipe.stdout.startswith("site acme-test") and "Traceback" not in pipe.stderr, pipe.stderr


def test_status_never_opens_the_warehouse(e2e, monkeypatch):
    e2e.add_customer(id="c1", last_name="One", email="one@example.com")
    assert e2e.sync().success
    opened = []
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: opened.append(a) or (_ for _ in ()).throw(
        AssertionError("status opened DuckDB")))
    from cbzoho_pipeline.cli import main

    assert main(["status", "--site", "acme-test"]) == 0
    assert opened == []
    assert Path(e2e.home / "sites" / "acme-test" / "status.json").exists()
