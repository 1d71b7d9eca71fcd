"""`cbzoho`: the command line for people and cron.

Sub-commands: `sandbox` (serve the local Chargebee + Zoho sandbox), plus the sync commands added by the
sync itself. Exit codes are part of the interface: 0 success, 1 finished with sync errors, 2 failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path


def _sandbox_server():
    """`cbzoho_sandbox.server`. The sandbox is its own package, installed by the `sandbox` extra; only the
    sandbox and demo commands reach it, so a sync runs without it."""
    try:
        from cbzoho_sandbox import server
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("cbzoho_sandbox", "starlette", "uvicorn"):
            raise
        raise CliError(f"the sandbox is not installed ({exc.name} is missing); install cbzoho[sandbox]") from None
    return server


def _cmd_sandbox(args: argparse.Namespace) -> int:
    serve = _sandbox_server().serve
    serve(
        host=args.host,
        port=args.port,
        info_file=Path(args.info_file) if args.info_file else None,
        generate=args.generate,
        seed=args.seed,
        site=args.site,
        org=args.org,
        quiet=args.quiet,
    )
    return 0


def _cmd_sandbox_token(args: argparse.Namespace) -> int:
    """Issue a new Zoho refresh token in a running sandbox and rewrite its info file: the reconnect step
    after `cbzoho disconnect` revoked the old one."""
    import os

    server = _sandbox_server()
    path = args.info_file or os.environ.get("CBZOHO_SANDBOX_INFO")
    if not path:
        raise CliError("which sandbox? give --info-file FILE (or set CBZOHO_SANDBOX_INFO)")
    try:
        token, _info = server.issue_refresh_token(Path(path), args.org)
    except server.SandboxUnreachable as exc:
        raise CliError(str(exc)) from None
    print(f"sandbox org {args.org!r}: new refresh token {token[:9]}…{token[-4:]} issued; {path} now holds it")
    print("sites with sandbox: true use it from their next run; after a disconnect, run "
          "`cbzoho reconnect --site SITE`")
    return 0


MODULES = ("Accounts", "Contacts", "Deals")
COUNT_KEYS = ("created", "updated", "unchanged", "skipped", "errors")


def _quiet_dagster() -> None:
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)


def _instance():
    """The Dagster instance at DAGSTER_HOME (ephemeral without it), its storage created by one process only.

    Two processes opening a fresh DAGSTER_HOME at once both create its SQLite storage and can corrupt it;
    the first one in creates it under a lock file while the other waits.
    """
    import fcntl
    import os

    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    fd = os.open(os.path.join(home, ".cbzoho-init.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        # Touch every storage while holding the lock, so each is created (and migrated) exactly once.
        instance.get_runs(limit=1)
        instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.RUN_SUCCESS), limit=1)
        instance.all_instigator_state()
        return instance
    finally:
        os.close(fd)


def _budget(counts: dict) -> dict:
    """Whether the push stopped at the site's daily credit budget, what it left for the next run, and the
    credits spent in the last 24 hours (as the last module pushed saw them)."""
    pushed = [counts[m] for m in MODULES if isinstance(counts.get(m), dict) and "credit_budget" in counts[m]]
    last = pushed[-1] if pushed else {}
    return {"stopped": any(bool(c.get("budget_stopped")) for c in pushed),
            "deferred": sum(int(c.get("deferred") or 0) for c in pushed),
            "credits_used_24h": last.get("credits_used_24h"), "credit_budget": last.get("credit_budget")}


def _print_counts(counts: dict, errors: list[dict]) -> None:
    header = f"{'module':<10}" + "".join(f"{k:>11}" for k in COUNT_KEYS)
    print(header)
    for module in MODULES:
        c = counts.get(module, {})
        print(f"{module:<10}" + "".join(f"{c.get(k, 0):>11}" for k in COUNT_KEYS))
    budget = _budget(counts)
    if budget["stopped"]:
        print(f"\ncredit budget reached: {budget['deferred']} record(s) left for the next run "
              f"({budget['credits_used_24h']} of {budget['credit_budget']} credits spent in the last 24 hours)")
    if errors:
        failing = sum(e.get("severity", "error") == "error" for e in errors)
        print(f"\n{failing} open sync error(s), {len(errors) - failing} warning(s):")
        _print_errors(errors)


def _print_errors(errors: list[dict]) -> None:
    for e in errors:
        mark = "warning " if e.get("severity") == "warning" else ""
        print(f"  {e['module']:<9} {e['chargebee_id']:<28} {e['code']:<32} {mark}{e['message']}")


def _site_status(site: str) -> dict | None:
    """The site's published status (see warehouse/status.py); never opens a warehouse a sync may hold."""
    from cbzoho_pipeline.warehouse.status import read_status

    return read_status(site)


class _OneLineFailures:
    """While a run executes, Dagster's console shows a step failure as its first line and its cause only;
    the stack trace stays in the run's event log (and on the console with --debug). Steps skipped because
    an upstream step failed are not repeated one by one: the summary says what failed."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        if "Not executing" in message and "Dependencies for step" in message:
            return False
        if "\n" not in message:
            return True
        lines = [line for line in message.splitlines() if line.strip()]
        cause = next((line for line in lines[1:] if ": " in line and not line.startswith(" ")), "")
        if cause.split(": ", 1)[0].endswith(".Failure"):
            cause = cause.split(": ", 1)[1]
        record.msg, record.args = (lines[0] + (" " + cause if cause else "")), ()
        return True


@contextlib.contextmanager
def _one_line_failures(enabled: bool):
    """Dagster builds its console logger from logging's current logger class: give it our filter."""
    import logging

    if not enabled:
        yield
        return
    base = logging.getLoggerClass()

    class Filtered(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.addFilter(_OneLineFailures())

    logging.setLoggerClass(Filtered)
    try:
        yield
    finally:
        logging.setLoggerClass(base)


def _load_run_config(path: str | None) -> dict:
    import yaml

    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"--run-config {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise CliError(f"--run-config {path}: expected a mapping such as 'resources: {{zoho: {{config: ...}}}}'")
    return data


def _cmd_sync(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from cbzoho_pipeline.settings import SettingsError, load_settings

    try:
        site = load_settings().site(args.site)
        site.chargebee(), site.zoho()  # every credential is where the settings say, before anything runs
    except SettingsError as exc:
        print(f"cbzoho sync: {exc}", file=sys.stderr)
        return 2
    extra_config = _load_run_config(args.run_config)
    import uuid

    from cbzoho_pipeline.definitions import defs
    from cbzoho_pipeline.runs import heartbeat, reap_dead_runs

    job = defs.resolve_job_def("cbzoho_sync")
    # Progress (pages read, batches pushed) at INFO on stderr; Dagster's step-by-step DEBUG events stay out.
    run_config: dict = {"loggers": {"console": {"config": {"log_level": args.log_level}}}}
    if args.full_resync:
        ops = {name: {"config": {"full_resync": True}} for name in (
            "chargebee_customers", "chargebee_subscriptions", "zoho_accounts", "zoho_contacts", "zoho_deals",
            "sync_plan")}
        ops["zoho_metadata"] = {"config": {"max_age_minutes": 0}}
        run_config["ops"] = ops
    for key, value in extra_config.items():
        run_config[key] = {**run_config.get(key, {}), **value} if isinstance(value, dict) else value
    with _instance() as instance:
        # A run of this site whose process died would keep the site's UI runs queued: free it first.
        for _site, run_id, why in reap_dead_runs(instance, [args.site]):
            print(f"cbzoho sync: an earlier run {run_id[:8]} of site {args.site!r} had died ({why}); "
                  "marked it failed", file=sys.stderr)
        # The run's heartbeat is written before Dagster records the run as started, so a kill at any moment
        # leaves a run the reaper can tell is dead (see runs.py).
        run_id = str(uuid.uuid4())  # Dagster's own run ids are uuid4 strings too
        with heartbeat(args.site, run_id), _one_line_failures(enabled=not getattr(args, "debug", False)):
            result = job.execute_in_process(partition_key=args.site, instance=instance, raise_on_error=False,
                                            run_config=run_config, run_id=run_id)
    if not result.success:
        from cbzoho_pipeline.assets.errors import root_cause
        from cbzoho_pipeline.warehouse.status import record_failure

        failures = [(e.step_key, root_cause(e.event_specific_data.error)
                     if getattr(e.event_specific_data, "error", None) else e.message)
                    for e in result.all_events if e.is_step_failure]
        if not failures:
            failures = [("run", "the run failed before any step (see the log above)")]
        record_failure(args.site, result.run_id, *failures[0])
        print(f"cbzoho sync: the run for site {args.site!r} failed ({result.run_id}); failed steps:", file=sys.stderr)
        for step, cause in failures:
            print(f"  {step}: {cause}", file=sys.stderr)
        step, cause = failures[0]
        print(f"cbzoho sync: {args.site} failed at {step}: {cause}", file=sys.stderr)
        return 2
    status = _site_status(args.site) or {}
    counts = (status.get("last_run") or {}).get("counts", {})
    errors = status.get("errors", [])
    if args.json:
        import json

        print(json.dumps({"site": args.site, "run_id": result.run_id, "counts": counts, "budget": _budget(counts),
                          "errors": errors}, indent=2))
    else:
        print(f"site {args.site}: sync finished (run {result.run_id})")
        _print_counts(counts, errors)
    # Warnings (synced, but worth a look) are listed; only errors (not in Zoho as they should be) mean 1.
    return 1 if any(e.get("severity", "error") == "error" for e in errors) else 0


def _cmd_status(args: argparse.Namespace) -> int:
    import json

    from cbzoho_pipeline.settings import SettingsError, load_settings
    from cbzoho_pipeline.warehouse.status import disconnection

    try:
        load_settings().site(args.site)
    except SettingsError as exc:
        print(f"cbzoho status: {exc}", file=sys.stderr)
        return 2
    status = _site_status(args.site) or {}
    last = status.get("last_run")
    errors = status.get("errors", [])
    gone = disconnection(args.site)
    if args.json:
        print(json.dumps({
            "site": args.site,
            "connected": gone is None,
            "disconnected_at": (gone or {}).get("at"),
            "last_run": last,
            "errors": errors,
        }, indent=2))
        return 0
    if gone is not None:
        print(f"site {args.site}: DISCONNECTED at {gone.get('at')}")
    if last is None:
        print(f"site {args.site}: no sync has finished yet")
        return 0
    if last.get("status") == "failed":
        print(f"site {args.site}: last sync {last['run_id']} FAILED {last['finished_at']} at {last['failed_step']}: "
              f"{last['cause']}")
        if errors:
            print(f"\n{len(errors)} open sync error(s) from earlier runs:")
            _print_errors(errors)
        return 0
    print(f"site {args.site}: last sync {last['run_id']} finished {last['finished_at']}")
    _print_counts(last["counts"], errors)
    return 0


def _cmd_disconnect(args: argparse.Namespace) -> int:
    from cbzoho_pipeline.disconnect import disconnect
    from cbzoho_pipeline.settings import SettingsError

    try:
        result = disconnect(args.site)
    except SettingsError as exc:
        print(f"cbzoho disconnect: {exc}", file=sys.stderr)
        return 2
    print(f"site {result['site']}: {result['status']}"
          + ("" if result.get("token_revoked", True) else f" (token not revoked: {result.get('revoke_problem')})"))
    print("its syncs now stop with a clear message; its history (links, log, errors) is kept.")
    return 0


def _cmd_reconnect(args: argparse.Namespace) -> int:
    from cbzoho_pipeline.disconnect import reconnect

    result = reconnect(args.site)
    print(f"site {result['site']}: {result['status']}")
    return 0


def _cmd_check_settings(args: argparse.Namespace) -> int:
    """Validate the settings file and print every site's effective settings; credentials by variable name only."""
    import json
    import os

    from cbzoho_pipeline.settings import SettingsError, load_settings

    try:
        settings = load_settings(Path(args.file) if args.file else None)
    except SettingsError as exc:
        print(f"cbzoho check-settings: the settings are not valid:\n{exc}", file=sys.stderr)
        return 2
    sandbox_info = os.environ.get("CBZOHO_SANDBOX_INFO")

    def emit(values: dict, indent: int) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and value:
                print(f"{' ' * indent}{key}:")
                emit(value, indent + 2)
                continue
            note = ""
            if key.endswith("_env"):  # the variable's name and whether it is set; its value is never read out
                note = "  # set" if os.environ.get(value) else "  # NOT SET"
            elif key == "daily_credit_budget" and value is None:
                note = "  # half of the org's daily allowance (its edition, read from Zoho at the first push)"
            elif key == "sandbox" and value is True:
                note = (f"  # URLs and credentials come from CBZOHO_SANDBOX_INFO={sandbox_info}" if sandbox_info
                        else "  # CBZOHO_SANDBOX_INFO is not set: the URLs and variables below are used")
            print(f"{' ' * indent}{key}: {json.dumps(value)}{note}")

    print(f"# {settings.source}: valid; the effective settings, defaults filled in")
    emit(settings.effective(), 0)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _sandbox_server()  # the demo serves the sandbox: say what to install before anything starts
    from cbzoho_pipeline.demo import run_demo

    return run_demo(port=args.port, sandbox_port=args.sandbox_port, customers=args.customers, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbzoho", description="Chargebee -> Zoho CRM sync on Dagster.")
    parser.add_argument("--debug", action="store_true", help="print stack traces of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True)

    sb = sub.add_parser("sandbox", help="serve the local Chargebee + Zoho CRM sandbox over HTTP")
    sb.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sb.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default: 8765)")
    sb.add_argument("--info-file", help="write every base URL and credential here as JSON")
    sb.add_argument("--generate", type=int, default=0, metavar="N",
                    help="seed N generated customers with subscriptions (default: 0, empty)")
    sb.add_argument("--seed", type=int, default=42, help="random seed of the generated dataset (default: 42)")
    sb.add_argument("--site", default="acme-test", help="Chargebee site to seed (default: acme-test)")
    sb.add_argument("--org", default="sandbox", help="Zoho org to seed (default: sandbox)")
    sb.add_argument("--quiet", action="store_true", help="print nothing on start")
    sb.set_defaults(func=_cmd_sandbox)

    stk = sub.add_parser("sandbox-token", help="issue a new Zoho refresh token in a running sandbox and rewrite "
                         "its info file (to reconnect after a disconnect)")
    stk.add_argument("--info-file", help="the running sandbox's info file (default: $CBZOHO_SANDBOX_INFO)")
    stk.add_argument("--org", default="sandbox", help="Zoho org of the sandbox (default: sandbox)")
    stk.set_defaults(func=_cmd_sandbox_token)

    sy = sub.add_parser("sync", help="run one sync of a site headless; exit 0 clean, 1 sync errors, 2 failed")
    sy.add_argument("--site", required=True)
    sy.add_argument("--full-resync", action="store_true", help="ignore cursors and read both sides in full")
    sy.add_argument("--json", action="store_true", help="print the counts and open errors as JSON")
    sy.add_argument("--run-config", metavar="FILE",
                    help="YAML Dagster run config merged into the run, e.g. resources: {zoho: {config: "
                         "{timeout_seconds: 30}}}")
    sy.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                    help="progress written to stderr (default: INFO)")
    sy.set_defaults(func=_cmd_sync)

    st = sub.add_parser("status", help="the last run's counts and the open sync errors of a site")
    st.add_argument("--site", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_status)

    dc = sub.add_parser("disconnect", help="revoke the site's Zoho token and stop its syncs (keeps history)")
    dc.add_argument("--site", required=True)
    dc.set_defaults(func=_cmd_disconnect)

    rc = sub.add_parser("reconnect", help="allow a disconnected site to sync again (with new credentials)")
    rc.add_argument("--site", required=True)
    rc.set_defaults(func=_cmd_reconnect)

    cs = sub.add_parser("check-settings", help="validate the settings file and print each site's effective "
                        "rules; exit 0 valid, 2 not")
    cs.add_argument("--file", help="settings file (default: $CBZOHO_SETTINGS, else ./cbzoho.yaml, else the bundled "
                    "default_settings.yaml)")
    cs.set_defaults(func=_cmd_check_settings)

    dm = sub.add_parser("demo", help="start the seeded sandbox and the Dagster UI wired to it")
    dm.add_argument("--port", type=int, default=3000, help="Dagster UI port (default: 3000)")
    dm.add_argument("--sandbox-port", type=int, default=8765, help="sandbox port (default: 8765)")
    dm.add_argument("--customers", type=int, default=500, help="generated customers (default: 500)")
    dm.add_argument("--seed", type=int, default=42, help="dataset seed (default: 42)")
    dm.set_defaults(func=_cmd_demo)
    return parser


class CliError(Exception):
    """A problem the user can fix, said in one line (exit 2)."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"cbzoho {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cbzoho status | head`: the reader stopped listening; nothing is wrong.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CliError as exc:
        print(f"cbzoho {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the one place that turns any surprise into exit 2
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        text = " ".join(str(exc).split()) or "(no message)"
        print(f"cbzoho {args.command}: unexpected {type(exc).__name__}: {text} (run again with --debug for the "
              "stack trace)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
