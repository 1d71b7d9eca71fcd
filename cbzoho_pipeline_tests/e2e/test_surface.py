"""The product's surface, end to end: Dagster definitions and schedule, the dry run, the push's
idempotence, the incremental Zoho snapshot, the org's external-ID field and the `cbzoho` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import dagster as dg
import yaml

from cbzoho_pipeline.warehouse.resources import warehouse_path

from .conftest import by, site_settings

UPSTREAM = ("chargebee_customers", "chargebee_subscriptions", "zoho_metadata", "zoho_accounts", "zoho_contacts",
            "zoho_deals")
PUSH = ("synced_accounts", "synced_contacts", "synced_deals")
PLAN_COLUMNS = ["module", "source_key", "action", "zoho_id", "changed_fields", "reason", "code"]


def defs():
    from cbzoho_pipeline.definitions import defs as definitions

    return definitions


def run_assets(names, site: str = "acme-test") -> dg.ExecuteInProcessResult:
    """Materialize only some assets of the sync job (as a user does from the UI's asset graph)."""
    job = defs().resolve_job_def("cbzoho_sync")
    return job.execute_in_process(partition_key=site, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                  asset_selection=[dg.AssetKey(n) for n in names])


def plan_rows(e2e) -> list[dict]:
    with e2e.warehouse() as wh:
        frame = wh.df(f"SELECT {', '.join(PLAN_COLUMNS)} FROM plan ORDER BY module, source_key")
    rows = frame.to_dict("records")
    for row in rows:
        row["changed_fields"] = json.loads(row["changed_fields"]) if row["changed_fields"] else None
        row["code"] = row["code"] if isinstance(row["code"], str) else None
        row["zoho_id"] = row["zoho_id"] if isinstance(row["zoho_id"], str) else None
    return rows


# ================================================================================================ definitions
def test_definitions_load_with_groups_kinds_owners_and_checks():
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "chargebee_customers": "chargebee", "chargebee_subscriptions": "chargebee",
        "zoho_metadata": "zoho_snapshot", "zoho_accounts": "zoho_snapshot", "zoho_contacts": "zoho_snapshot",
        "zoho_deals": "zoho_snapshot", "sync_plan": "plan",
        "synced_accounts": "push", "synced_contacts": "push", "synced_deals": "push", "zoho_read_back": "push",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.kinds, key
        assert node.owners, key
        assert set(node.partitions_def.get_partition_keys()) == {"acme", "acme-test"}, key

    checks = {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    assert set(checks) == {
        ("chargebee_customers", "contract"), ("chargebee_customers", "rows_set_aside"),
        ("chargebee_subscriptions", "contract"), ("chargebee_subscriptions", "rows_set_aside"),
        ("synced_accounts", "sync_errors"), ("synced_contacts", "sync_errors"), ("synced_deals", "sync_errors"),
        ("zoho_contacts", "duplicate_emails_in_zoho"),
    }
    assert checks[("chargebee_customers", "contract")].blocking
    assert checks[("chargebee_subscriptions", "contract")].blocking
    for key, spec in checks.items():  # each site's results are its own: partitioned like the assets
        assert set(spec.partitions_def.get_partition_keys()) == {"acme", "acme-test"}, key

    job = definitions.resolve_job_def("cbzoho_sync")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= set(groups)
    assert definitions.resolve_job_def("cbzoho_disconnect") is not None
    schedule = definitions.resolve_schedule_def("cbzoho_autosync")
    assert schedule.job_name == "cbzoho_sync"


# ================================================================================================ schedule
def write_settings(e2e, *, acme_test_autosync: bool = True, acme_autosync: bool = True,
                   cron: str = "0 * * * *", timezone_name: str = "UTC") -> None:
    sites = {"acme-test": {**site_settings("acme-test"), "autosync": acme_test_autosync},
             "acme": {**site_settings("acme"), "autosync": acme_autosync}}
    e2e.settings_file.write_text(yaml.safe_dump({"schedule": {"cron": cron, "timezone": timezone_name},
                                                 "sites": sites}))


def tick(at: datetime):
    definitions = defs()
    context = dg.build_schedule_context(repository_def=definitions.get_repository_def(),
                                        scheduled_execution_time=at)
    return definitions.resolve_schedule_def("cbzoho_autosync").evaluate_tick(context)


def test_autosync_schedule_requests_one_run_per_enabled_connected_site(e2e):
    from cbzoho_pipeline.disconnect import disconnect

    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    write_settings(e2e)
    both = tick(at)
    assert both.skip_message is None
    assert sorted(r.partition_key for r in both.run_requests) == ["acme", "acme-test"]
    assert len({r.run_key for r in both.run_requests}) == 2
    later = tick(at + timedelta(hours=1))
    assert not {r.run_key for r in both.run_requests} & {r.run_key for r in later.run_requests}

    write_settings(e2e, acme_autosync=False)
    (only,) = tick(at).run_requests
    assert only.partition_key == "acme-test"
    assert only.job_name in (None, "cbzoho_sync")

    assert disconnect("acme-test")["status"] == "disconnected"
    none = tick(at)
    assert none.run_requests == []
    assert "acme (autosync off)" in none.skip_message
    assert "acme-test (disconnected)" in none.skip_message

    write_settings(e2e, acme_autosync=True)
    (still,) = tick(at).run_requests  # the disconnected site stays out, the other comes back
    assert still.partition_key == "acme"


def test_autosync_cron_comes_from_the_settings_file(e2e):
    from cbzoho_pipeline.assets.jobs import build_autosync_schedule

    write_settings(e2e, cron="*/15 6-18 * * 1-5", timezone_name="Europe/Berlin")
    schedule = build_autosync_schedule()
    assert schedule.cron_schedule == "*/15 6-18 * * 1-5"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


# ================================================================================================ dry run
def seed_mixed(e2e) -> None:
    """A create, an update of a matched contact, a noop, a skip and an error, across the three modules."""
    e2e.sandbox.load(zoho={"sandbox": {
        "Contacts": [{"Last_Name": "Match", "First_Name": "Mia", "Email": "match@example.com", "Phone": "+1 111"}],
        "Accounts": [{"Account_Name": "Existing Co"}]}})
    e2e.add_customer(id="c_match", first_name="Mia", last_name="Match", email="match@example.com", phone="+1 999",
                     company="Existing Co")
    e2e.add_customer(id="c_new", first_name="Nia", last_name="New", email="new@example.com", company="Brand New Ltd")
    e2e.add_subscription("c_new", id="s_new")
    e2e.add_subscription("c_match", "basic-EUR-monthly", id="s_eur")  # no multi-currency: a sync error
    trial_end = int(datetime.now(UTC).timestamp()) + 14 * 86400
    e2e.add_subscription("c_match", "pro-USD-monthly", id="s_trial", trial_end=trial_end)  # in_trial: skipped


def test_dry_run_plans_without_writing_and_the_sync_pushes_exactly_that_plan(e2e):
    seed_mixed(e2e)
    dry = run_assets([*UPSTREAM, "sync_plan"])
    assert dry.success
    assert e2e.writes() == 0
    assert e2e.zoho("Deals") == [] and len(e2e.zoho("Contacts")) == 1

    planned = plan_rows(e2e)
    actions = {(r["module"], r["source_key"]): r["action"] for r in planned}
    assert actions == {
        ("Accounts", "brand new ltd"): "create", ("Accounts", "existing co"): "noop",
        ("Contacts", "c_match"): "update", ("Contacts", "c_new"): "create",
        ("Deals", "s_eur"): "error", ("Deals", "s_new"): "create", ("Deals", "s_trial"): "skip",
    }
    rows = {(r["module"], r["source_key"]): r for r in planned}
    assert rows[("Contacts", "c_new")]["changed_fields"] == ["Email", "First_Name", "Last_Name", "Account_Name"]
    assert rows[("Contacts", "c_new")]["reason"] == "new contact"
    assert rows[("Contacts", "c_match")]["changed_fields"] == ["Account_Name", "Phone"]
    assert "matched by email" in rows[("Contacts", "c_match")]["reason"]
    assert set(rows[("Deals", "s_new")]["changed_fields"]) >= {"Deal_Name", "Amount", "Stage", "Contact_Name"}
    assert rows[("Deals", "s_eur")]["code"] == "CURRENCY_NEEDS_MULTI_CURRENCY"
    assert "in_trial" in rows[("Deals", "s_trial")]["reason"]

    # the plan asset's metadata shows the same changes, with the reasons, to whoever looks in the UI
    (materialization,) = dry.asset_materializations_for_node("sync_plan")
    changes = materialization.metadata["changes"].value
    assert "c_new" in changes and "new contact" in changes and "s_eur" in changes
    assert materialization.metadata["contacts_create"].value == 1
    assert materialization.metadata["deals_error"].value == 1
    assert not [m for m in dry.get_asset_materialization_events() if m.asset_key.to_user_string() in PUSH]

    # the full sync plans the same rows and writes exactly its creates and updates
    outcome = e2e.sync()
    assert outcome.success
    assert plan_rows(e2e) == planned
    with e2e.warehouse() as wh:
        log = wh.df("SELECT module, source_key, operation, outcome FROM sync_log ORDER BY module, source_key")
    written = {(r["module"], r["source_key"]): r["operation"] for r in log.to_dict("records")}
    assert written == {k: a for k, a in actions.items() if a in ("create", "update")}
    assert set(log["outcome"]) == {"success"}
    # one call per module: Accounts create, Contacts create + update (its email unchanged, the update rides in
    # the upsert of the create), Deals create
    assert e2e.write_calls() == {"POST /crm/v8/{module}/upsert": 3}
    assert set(by(e2e.zoho("Contacts"), "Email")) == {"match@example.com", "new@example.com"}
    assert set(by(e2e.zoho("Deals"), "Deal_Name")) == {"s_new"}


def test_a_push_carries_out_only_a_plan_made_in_the_same_run(e2e):
    seed_mixed(e2e)
    assert run_assets([*UPSTREAM, "sync_plan"]).success  # a dry run...
    e2e.add_customer(id="c_later", last_name="Later", email="later@example.com")  # ...then the world moves on

    stale = run_assets(PUSH)  # pushing that dry run's plan later is refused, with what to do instead
    assert not stale.success
    failure = [e for e in stale.all_events if e.is_step_failure][0]
    message = failure.event_specific_data.error.message
    assert "nothing pushed" in message and "materialize sync_plan together with the synced_* assets" in message
    assert e2e.writes() == 0

    planned_and_pushed = run_assets([*UPSTREAM, "sync_plan", *PUSH])
    assert planned_and_pushed.success
    writes = e2e.write_calls()
    assert sum(writes.values()) == 3  # one per module (see above)
    assert "later@example.com" in by(e2e.zoho("Contacts"), "Email")

    again = run_assets(PUSH)  # the plan that was carried out is not carried out a second time either
    assert not again.success
    assert e2e.write_calls() == writes  # not one call more
    # the open sync error is still known to the warehouse, not forgotten
    assert {e["source_key"] for e in e2e.errors()} == {"s_eur"}


# ================================================================================================ snapshot
ZOHO_EPOCH = datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def zoho_time(minutes: int) -> str:
    return (ZOHO_EPOCH + timedelta(minutes=minutes)).isoformat()


def test_zoho_snapshot_is_complete_past_2000_and_then_read_incrementally(e2e):
    e2e.sandbox.load(zoho={"sandbox": {
        "Contacts": [{"Last_Name": f"Zed{i:04d}", "Email": f"z{i:04d}@example.com",
                      "Created_Time": zoho_time(i), "Modified_Time": zoho_time(i)} for i in range(2500)],
    }})  # Accounts and Deals stay empty: they too must be read as changes next time, not in full again
    e2e.add_customer(id="c_early", last_name="Early", email="Z0001@example.com")  # within the first 2,000
    e2e.add_customer(id="c_late", last_name="Late", email="z2400@example.com")  # past them
    e2e.add_customer(id="c_new", last_name="New", email="new@example.com")

    first = e2e.sync()
    assert first.success
    (snap,) = first.result.asset_materializations_for_node("zoho_contacts")
    assert snap.metadata["dagster/row_count"].value == 2500
    assert snap.metadata["full_load"].value is True
    zoho = by(e2e.zoho("Contacts"), "Email")
    assert len(zoho) == 2501  # nobody duplicated; one created
    assert e2e.links("Contacts") == {"c_early": zoho["z0001@example.com"]["id"],
                                     "c_late": zoho["z2400@example.com"]["id"],
                                     "c_new": zoho["new@example.com"]["id"]}
    assert first.counts["Contacts"]["created"] == 1
    with e2e.warehouse() as wh:
        assert len(wh.zoho_records("Contacts")) == 2501  # the created contact is written through

    # someone edits one contact and deletes another in Zoho
    with e2e.zoho_client() as person:
        assert person.update("Contacts", [{"id": zoho["z0005@example.com"]["id"], "First_Name": "Edited"}])[0].ok
        assert person.delete("Contacts", [zoho["z0006@example.com"]["id"]])[0].ok
    e2e.sandbox.reset_stats()

    second = e2e.sync()
    assert second.success
    (snap,) = second.result.asset_materializations_for_node("zoho_contacts")
    assert snap.metadata["full_load"].value is False
    assert snap.metadata["dagster/row_count"].value == 2500  # 2,500 + 1 created - 1 deleted
    assert snap.metadata["deleted"].value == 1
    assert snap.metadata["fetched"].value <= 10  # what changed since the last read, not all 2,500
    with e2e.warehouse() as wh:
        records = by(wh.zoho_records("Contacts"), "Email")
    assert records["z0005@example.com"]["First_Name"] == "Edited"
    assert "z0006@example.com" not in records
    assert len(records) == 2500

    calls = e2e.sandbox.stats()["zoho"]["sandbox"]["calls"]
    assert "POST /crm/v8/coql" not in calls, calls  # no module is read in full again
    assert calls.get("GET /crm/v8/{module}", 0) <= 3, calls  # one changes call per module
    assert sum(calls.values()) <= 6, calls  # plus one deleted-records call per module; metadata is cached
    assert e2e.writes() == 0


def test_a_zoho_edit_made_while_the_snapshot_is_being_read_is_not_lost(e2e, monkeypatch):
    from cbzoho_pipeline.zoho.client import ZohoClient

    e2e.sandbox.load(zoho={"sandbox": {"Contacts": [
        {"Last_Name": f"Zed{i:04d}", "Email": f"z{i:04d}@example.com"} for i in range(2500)]}})
    ids = {c["Email"]: c["id"] for c in e2e.zoho("Contacts")}
    real = ZohoClient.iter_coql

    def read_while_people_work(self, module, fields, **kw):
        for number, page in enumerate(real(self, module, fields, **kw)):
            yield page
            if module == "Contacts" and number == 0:  # page 1 (ids up to the 2,000th) is already read
                with e2e.zoho_client() as person:
                    assert person.update("Contacts", [{"id": ids["z0005@example.com"], "First_Name": "Early"}])[0].ok
                    e2e.sandbox.control("POST", "clock", {"advance_seconds": 10})  # a long read goes on
                    assert person.update("Contacts", [{"id": ids["z2400@example.com"], "First_Name": "Late"}])[0].ok

    monkeypatch.setattr(ZohoClient, "iter_coql", read_while_people_work)
    assert e2e.sync().success
    monkeypatch.setattr(ZohoClient, "iter_coql", real)
    assert e2e.sync().success
    assert e2e.sync().success
    with e2e.warehouse() as wh:
        records = by(wh.zoho_records("Contacts"), "Email")
    assert records["z2400@example.com"]["First_Name"] == "Late"
    assert records["z0005@example.com"]["First_Name"] == "Early"


# ================================================================================================ external id
def test_org_external_id_field_carries_the_chargebee_id(e2e):
    e2e.sandbox.settings_zoho("sandbox", external_id_fields={"Contacts": "Chargebee_Customer_ID"})
    e2e.sandbox.load(zoho={"sandbox": {"Contacts": [
        {"Last_Name": "Known", "Email": "old.address@example.com", "Chargebee_Customer_ID": "c_known"}]}})
    e2e.add_customer(id="c_one", last_name="One", email="one@example.com")
    e2e.add_customer(id="c_two", last_name="Two")  # no email: the external id is its only key
    e2e.add_customer(id="c_known", last_name="Known", email="new.address@example.com")

    outcome = e2e.sync()
    assert outcome.success
    contacts = by(e2e.zoho("Contacts"), "Chargebee_Customer_ID")
    assert set(contacts) == {"c_one", "c_two", "c_known"}
    assert (contacts["c_one"]["Email"], contacts["c_two"]["Last_Name"]) == ("one@example.com", "Two")
    # the existing contact was found by the external id (not by email), and updated rather than duplicated
    assert contacts["c_known"]["Email"] == "new.address@example.com"
    assert e2e.links("Contacts") == {k: c["id"] for k, c in contacts.items()}
    assert outcome.counts["Contacts"]["created"] == 2

    e2e.sandbox.reset_stats()
    e2e.sync()
    assert e2e.writes() == 0


# ================================================================================================ CLI
class Cli:
    def __init__(self, e2e) -> None:
        self.e2e = e2e
        self.secrets = secrets_of(e2e.sandbox.info)
        self.outputs: list[str] = []

    def __call__(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "cbzoho_pipeline.cli", *args], env={**os.environ, **(env or {})},
                              capture_output=True, text=True, timeout=300)
        for stream in (done.stdout, done.stderr):
            leaked = [s for s in self.secrets if s in stream]
            assert not leaked, f"`cbzoho {' '.join(args)}` printed a secret"
        self.outputs += [done.stdout, done.stderr]
        return done


def secrets_of(info: dict) -> list[str]:
    found = [site["api_key"] for site in info["chargebee"].values()]
    for org in info["zoho"].values():
        found += [org["client_secret"], org["refresh_token"]]
    found += [s.split(".", 1)[1] for s in found if s.startswith("1000.")]  # the token without its prefix
    assert all(len(s) >= 16 for s in found)
    return found


def assert_no_secret_in_warehouse(e2e, secrets: list[str], site: str = "acme-test") -> None:
    path = warehouse_path(site)
    for file in [path, *path.parent.glob(path.name + ".wal")]:
        data = file.read_bytes()
        assert not [s for s in secrets if s.encode() in data], f"a secret is stored in {file}"
    # DuckDB may compress strings on disk; read every table back as text as well
    with e2e.warehouse(site) as wh:
        tables = [r[0] for r in wh.con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        for table in tables:
            text = wh.df(f'SELECT * FROM "{table}"').to_json(default_handler=str)
            assert not [s for s in secrets if s in text], f"a secret is stored in table {table}"


def test_cli_sync_and_status(e2e, tmp_path):
    cli = Cli(e2e)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {"DAGSTER_HOME": str(dagster_home)}
    e2e.add_customer(id="c1", last_name="One", email="one@example.com")
    e2e.add_subscription("c1", id="s1")

    clean = cli("sync", "--site", "acme-test", env=env)
    assert clean.returncode == 0, clean.stderr
    lines = clean.stdout.splitlines()
    header = next(line for line in lines if line.startswith("module"))
    assert header.split() == ["module", "created", "updated", "unchanged", "skipped", "errors"]
    table = {line.split()[0]: [int(n) for n in line.split()[1:]] for line in lines
             if line.split() and line.split()[0] in ("Accounts", "Contacts", "Deals")}
    assert table == {"Accounts": [0, 0, 0, 0, 0], "Contacts": [1, 0, 0, 0, 0], "Deals": [1, 0, 0, 0, 0]}
    assert "sync error" not in clean.stdout

    e2e.add_customer(id="c2", last_name="Two", email="two@example.com")
    e2e.add_subscription("c2", "basic-EUR-monthly", id="s_eur")
    failing = cli("sync", "--site", "acme-test", env=env)
    assert failing.returncode == 1, failing.stderr
    assert "1 open sync error(s)" in failing.stdout
    (error_line,) = [line for line in failing.stdout.splitlines() if "s_eur" in line]
    assert error_line.split()[:3] == ["Deals", "s_eur", "CURRENCY_NEEDS_MULTI_CURRENCY"]

    status = cli("status", "--site", "acme-test", "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["connected"] is True
    counts = report["last_run"]["counts"]
    # c1 and s1 did not change since the first run: not planned again, so not counted as unchanged either
    assert (counts["Contacts"]["created"], counts["Contacts"]["unchanged"]) == (1, 0)
    assert (counts["Deals"]["created"], counts["Deals"]["unchanged"], counts["Deals"]["errors"]) == (0, 0, 1)
    (error,) = report["errors"]
    assert {k: error[k] for k in ("chargebee_id", "module", "code")} == {
        "chargebee_id": "s_eur", "module": "Deals", "code": "CURRENCY_NEEDS_MULTI_CURRENCY"}
    assert "EUR" in error["message"]

    assert_no_secret_in_warehouse(e2e, cli.secrets)
    for file in dagster_home.rglob("*"):  # the Dagster instance keeps the runs' event logs and metadata
        if file.is_file():
            data = file.read_bytes()
            assert not [s for s in cli.secrets if s.encode() in data], f"a secret is stored in {file}"


def test_cli_exit_2_for_an_unknown_site_and_a_failed_run(e2e):
    cli = Cli(e2e)
    unknown = cli("sync", "--site", "no-such-site")
    assert unknown.returncode == 2
    assert "unknown site 'no-such-site'" in unknown.stderr and "acme-test" in unknown.stderr
    assert unknown.stdout == ""
    assert cli("status", "--site", "no-such-site").returncode == 2

    e2e.add_customer(id="c_fine", last_name="Fine", email="fine@example.com")
    e2e.sandbox.load(chargebee={"acme-test": {"customers": [
        {"id": "c_broken", "last_name": "Broken", "created_at": "yesterday", "object": "customer"}]}})
    broken = cli("sync", "--site", "acme-test")
    assert broken.returncode == 2
    assert "the run for site 'acme-test' failed" in broken.stderr
    assert "chargebee_customers: contract" in broken.stderr  # names the blocking check that stopped it
    assert e2e.writes() == 0
    assert_no_secret_in_warehouse(e2e, cli.secrets)


def test_cli_disconnect_stops_later_syncs(e2e):
    cli = Cli(e2e)
    e2e.add_customer(id="c1", last_name="One", email="one@example.com")
    assert e2e.sync().success
    gone = cli("disconnect", "--site", "acme-test")
    assert gone.returncode == 0, gone.stderr
    assert "disconnected" in gone.stdout
    e2e.sandbox.reset_stats()

    stopped = cli("sync", "--site", "acme-test")
    assert stopped.returncode == 2
    assert "disconnected" in stopped.stderr
    assert e2e.sandbox.stats()["zoho"]["sandbox"]["calls_total"] == 0

    status = json.loads(cli("status", "--site", "acme-test", "--json").stdout)
    assert status["connected"] is False and status["disconnected_at"]
    last = status["last_run"]  # the refused run is the last one shown, with why
    assert last["status"] == "failed" and "disconnected" in last["cause"]
    assert e2e.links("Contacts").keys() == {"c1"}  # history kept
    assert_no_secret_in_warehouse(e2e, cli.secrets)



# ================================================================================================ regressions
def test_a_site_added_to_the_settings_does_not_stop_autosync_of_the_others(e2e):
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    sites = {"acme-test": site_settings("acme-test"), "acme": {**site_settings("acme"), "autosync": False},
             "acme-eu": site_settings("acme")}  # added after the code location loaded
    e2e.settings_file.write_text(yaml.safe_dump({"sites": sites}))
    result = tick(at)
    assert "acme-test" in [r.partition_key for r in result.run_requests]


def test_cli_failure_summary_names_only_the_failed_steps(e2e):
    from cbzoho_pipeline.disconnect import disconnect

    disconnect("acme-test")
    stopped = Cli(e2e)("sync", "--site", "acme-test", "--log-level", "ERROR")
    assert stopped.returncode == 2
    summary = stopped.stderr.split("cbzoho sync: the run for site 'acme-test' failed", 1)[1].splitlines()[1:]
    steps = [line.strip().split(":", 1)[0] for line in summary if line.startswith("  ")]
    assert steps and "None" not in steps, summary
