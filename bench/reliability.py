"""Reliability trials: does a site survive what production does to it?

The end-to-end tests show each failure mode once, inside one Python process. Operators meet them as
separate `cbzoho sync` processes started by cron, by people and by the Dagster UI, and what they need to
know is this: whatever happens to one run - killed mid-push, a storm of 429s and dropped connections, a
write whose answer never came back, a second launch of the same site, someone reading the status during a
sync - the next ordinary sync leaves Zoho exactly as a clean run would (nothing twice, nothing missing,
nothing extra, the same open sync errors), no site is left stuck, and no credential lands on disk or in
the output. This command measures that many times, through the real CLI against a fresh sandbox, and
prints one table with one row per scenario:

    .venv/bin/python bench/reliability.py [--profile short|full] [--json PATH]
        [--kills N --storms N --lost N --overlaps N --polls N --customers N --seed S]

Exit status: 0 when every count in the table is zero, 1 otherwise (including when the harness itself could
not run, e.g. a clean reference sync failed).

How a trial is judged. Every trial starts from a reset sandbox loaded with a generated dataset, and from
fresh CBZOHO_HOME and DAGSTER_HOME directories. Its final Zoho state (records canonicalised as the e2e
suite does: no ids or times, lookups by name) and its open sync errors (`cbzoho status --json`, as
(module, Chargebee id, code)) are compared with a clean reference sync of the same dataset, made once per
dataset (size and seed) and kept in memory. The sandbox dates a generated dataset from the instant it is
given, so the harness generates every dataset at one instant: the same seed then yields the same records in
every trial, and one reference serves them all. A reset also replays the sandbox's fault dice from the
start, so before each trial the harness moves them on (fault trials each to a stretch of their own):
trials meet different faults at different calls. The product itself is copied from the working tree when the command
starts and every process loads it from that copy (`--live` loads the tree itself), so edits made by others
during a long run cannot mix two versions of the product into one table.

Scenarios (sizes per profile in PROFILES):
  storm      429s, 500s and dropped connections on both APIs and Zoho tokens expiring every 50 calls;
             syncs until one finishes (at most 3), then a clean sync.
  lost       Zoho applies writes but the answer is lost (dropped, or late past the client's timeout
             through `cbzoho sync --run-config`); then a clean sync.
  kill       SIGKILL at a random moment of a sync's run (stratified over a measured clean run, counted from
             RUN_START, so kills land in run setup, extract, snapshot, plan and push), then an immediate
             sync that must start and finish within a bound;
             the Dagster instance must hold no run of the site still STARTED/STARTING/QUEUED.
  overlap    two headless syncs of the site at the same moment on a fresh DAGSTER_HOME (both finish, their
             steps never interleave, a third sync works), and two UI launches of the site's partition
             through `dagster dev` and GraphQL (the second stays QUEUED while the first runs).
  status     `cbzoho status --json` polled while syncs run: each poll answers quickly, no sync fails.
  secrets    every file under every CBZOHO_HOME and DAGSTER_HOME used and every captured output searched
             (as bytes, and DuckDB tables row by row) for the sandbox's API keys, client secrets and
             refresh tokens; files holding a Zoho access token must be owner-only (0600).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
SITE = "acme-test"
ORG = "sandbox"
MODULES = ("Accounts", "Contacts", "Deals")
FINISHED = (0, 1)  # `cbzoho sync` exit codes of a run that finished (1: with sync errors)


# ----------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Plan:
    kills: int
    storms: int
    lost: int
    overlaps: int  # pairs: headless and UI alternate, headless first
    polls: int
    customers: int
    fault_customers: int  # storms and lost answers: enough write batches for the dice to land
    seed: int = 42
    stuck_bound: float = 180.0  # seconds a sync after a kill may take to start and finish
    poll_bound: float = 1.5  # seconds a status poll may take, process start included ("about a second")
    kill_latency_ms: float = 30.0  # per API call during killed syncs, so the steps spread out in time
    poll_latency_ms: float = 150.0  # per API call during polled syncs, so they last several seconds
    seeds: int = 3  # distinct datasets (seed, seed+1, ...) the trials cycle through


PROFILES = {
    "short": Plan(kills=4, storms=1, lost=2, overlaps=2, polls=6, customers=150, fault_customers=300, seeds=1),
    "full": Plan(kills=30, storms=5, lost=5, overlaps=10, polls=20, customers=250, fault_customers=600, seeds=5),
}

COUNT_FIELDS = ("duplicates", "missing", "extra", "wrong_errors", "bad_exits", "reader_failures",
                "failed_polls", "overlapped", "stuck", "secrets")
COLUMNS = (("trials", "trials"), ("duplicates", "dup"), ("missing", "missing"), ("extra", "extra"),
           ("wrong_errors", "wrong err"), ("bad_exits", "bad exits"), ("reader_failures", "reader-failed"),
           ("failed_polls", "failed polls"), ("overlapped", "overlapped"), ("stuck", "stuck sites"),
           ("secrets", "secrets found"), ("seconds", "wall s"))


CODE_ERROR = re.compile(r"\b(TypeError|AttributeError|ImportError|ModuleNotFoundError|NameError|SyntaxError)\b")


DICE_PER_REQUEST = 6  # throws per request under a spec with all six probabilities set
DICE_BLOCK = 100  # requests: 600 throws, more than one storm trial uses


class HarnessError(RuntimeError):
    """The harness could not do its job (not a finding about the product)."""


# Process groups this command started and has not reaped yet: killed if the command is interrupted.
LIVE_GROUPS: set[int] = set()


def kill_live_groups() -> None:
    for pgid in list(LIVE_GROUPS):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        LIVE_GROUPS.discard(pgid)


def exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# -------------------------------------------------------------------------------------------- sandbox
class Sandbox:
    """A sandbox server this command started, and the few control calls the trials need."""

    def __init__(self, proc: subprocess.Popen, info_file: Path) -> None:
        self.proc = proc
        self.info_file = info_file
        self.info = json.loads(info_file.read_text())
        self.control_url = self.info["control_url"]
        self.http = requests.Session()

    @classmethod
    def start(cls, workdir: Path, product: Path) -> Sandbox:
        info_file = workdir / "sandbox-info.json"
        with (workdir / "sandbox.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "cbzoho_pipeline.cli", "sandbox", "--port", "0",
                                     "--info-file", str(info_file), "--quiet"], cwd=product,
                                    env=product_env(dict(os.environ), product), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not info_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise HarnessError(f"the sandbox did not start (see {workdir / 'sandbox.log'})")
            time.sleep(0.05)
        LIVE_GROUPS.add(proc.pid)
        return cls(proc, info_file)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        LIVE_GROUPS.discard(self.proc.pid)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.control_url}/{path}", json=body, timeout=120)
        if response.status_code >= 400:
            raise HarnessError(f"sandbox {method} {path} -> {response.status_code}: {response.text[:300]}")
        return response.json()

    def reset(self) -> None:
        self.control("POST", "reset")

    def generate_at(self, customers: int, seed: int, instant: int) -> dict:
        """Generate a dataset dated as if the clock read `instant`: the same seed and instant, the same records."""
        return self.control("POST", "generate", {"customers": customers, "seed": seed, "site": SITE, "org": ORG,
                                                 "now": instant})

    def move_dice(self, requests_count: int) -> None:
        """Move the fault dice on by DICE_PER_REQUEST throws per request.

        A reset replays the same dice, so every trial would meet the same faults at the same calls. Each
        request to a tenant with a fault spec throws once per non-zero probability; requests to the other
        Chargebee site, under probabilities that never fire, move the dice without touching the trial.
        """
        site = self.info["chargebee"]["acme"]
        never = 1e-12
        self.faults("chargebee", tenant="acme", pslow=never, p429=never, p500=never, pdrop=never,
                    papply_drop=never, papply_late=never)
        for _ in range(requests_count):
            self.http.get(f"{site['base_url']}/customers", params={"limit": 1}, auth=(site["api_key"], ""),
                          timeout=30)
        self.control("DELETE", "faults")

    def faults(self, api: str, **spec: Any) -> None:
        self.control("POST", "faults", {"api": api, **spec})

    def clear_faults(self) -> None:
        self.control("DELETE", "faults")
        self.control("POST", f"zoho/{ORG}/expire_tokens", {"after_calls": 10**9})  # disarm a pending expiry

    def expire_tokens_after(self, calls: int) -> None:
        self.control("POST", f"zoho/{ORG}/expire_tokens", {"after_calls": calls})

    def zoho_stats(self) -> dict:
        return self.control("GET", "stats")["zoho"][ORG]

    def dump(self, module: str) -> list[dict]:
        return self.control("GET", f"zoho/{ORG}/records/{module}")["data"]

    def secrets(self) -> dict[str, str]:
        """The site credentials the sandbox hands out: what must never be written anywhere."""
        found = {f"chargebee {name} api_key": site["api_key"] for name, site in self.info["chargebee"].items()}
        for name, org in self.info["zoho"].items():
            found[f"zoho {name} client_secret"] = org["client_secret"]
            found[f"zoho {name} refresh_token"] = org["refresh_token"]
        return found


VOLATILE = {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By", "Owner"}


def canonical_record(record: dict) -> tuple:
    """A Zoho record as a comparable value: no ids or times, empty values dropped, lookups by name."""
    items = []
    for key in sorted(record):
        value = record[key]
        if key in VOLATILE or value in (None, "", [], {}):
            continue
        if isinstance(value, dict):
            value = value.get("name") or value.get("id")
        items.append((key, json.dumps(value, sort_keys=True, default=str)))
    return tuple(items)


def zoho_state(sandbox: Sandbox) -> dict[str, Counter]:
    return {module: Counter(canonical_record(r) for r in sandbox.dump(module)) for module in MODULES}


def state_diff(got: dict[str, Counter], want: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """Per module: records held more often than in the reference, records short of it, records not in it."""
    diff = {}
    for module, wanted in want.items():
        held = got.get(module, Counter())
        diff[module] = {
            "duplicates": sum(held[k] - n for k, n in wanted.items() if held[k] > n),
            "missing": sum(n - held[k] for k, n in wanted.items() if held[k] < n),
            "extra": sum(n for k, n in held.items() if k not in wanted),
        }
    return diff


# ------------------------------------------------------------------------------------------ processes
STEP_EVENT = re.compile(r" - (\w+) - (STEP_START|STEP_SUCCESS|STEP_FAILURE|STEP_SKIPPED) - ")
RUN_START = " - RUN_START - "
PHASES = (("chargebee_", "extract"), ("zoho_", "snapshot"), ("sync_plan", "plan"), ("synced_", "push"))


def phase_of(step: str | None, run_started: bool) -> str:
    """Where a sync was: process startup, its run set up but no step yet, or the phase of its last step."""
    if step is None:
        return "run setup" if run_started else "startup"
    return next((phase for prefix, phase in PHASES if step.startswith(prefix)), step)


@dataclass
class CliResult:
    label: str
    argv: list[str]
    code: int | None  # None: still running when given up on (then killed)
    seconds: float
    timed_out: bool
    killed: bool
    stdout: str
    stderr_tail: str
    steps: list[tuple[float, str, str]]  # (seconds since start, step, event)

    def finished(self) -> bool:
        return self.code in FINISHED

    def window(self) -> tuple[float, float] | None:
        """Seconds since its own start of the first step start and the last step end."""
        starts = [t for t, _, event in self.steps if event == "STEP_START"]
        ends = [t for t, _, event in self.steps if event != "STEP_START"]
        return (min(starts), max(ends)) if starts and ends else None

    def brief(self) -> dict:
        return {"label": self.label, "code": self.code, "seconds": round(self.seconds, 2),
                "timed_out": self.timed_out, "killed": self.killed}


class Running:
    """A CLI process started in its own session; stderr is read live so its steps carry timestamps."""

    def __init__(self, label: str, argv: list[str], env: dict, cwd: Path, log_dir: Path) -> None:
        self.label = label
        self.argv = argv
        self.log_dir = log_dir
        self.stdout_path = log_dir / f"{label}.out"
        self.stderr_path = log_dir / f"{label}.err"
        self.steps: list[tuple[float, str, str]] = []
        self.run_started_at: float | None = None  # seconds after start when Dagster logged RUN_START
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.killed = False
        with self.stdout_path.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.PIPE,
                                         start_new_session=True)
        LIVE_GROUPS.add(self.proc.pid)
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()

    def _read_stderr(self) -> None:
        with self.stderr_path.open("wb") as sink:
            for raw in iter(self.proc.stderr.readline, b""):
                sink.write(raw)
                line = raw.decode("utf-8", "replace")
                if self.run_started_at is None and RUN_START in line:
                    self.run_started_at = time.monotonic() - self.started
                match = STEP_EVENT.search(line)
                if match:
                    self.steps.append((time.monotonic() - self.started, match.group(1), match.group(2)))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step_now(self) -> tuple[str | None, bool]:
        """The last step started, and whether it has ended."""
        steps = list(self.steps)
        started = [s for _, s, event in steps if event == "STEP_START"]
        if not started:
            return None, False
        last = started[-1]
        return last, any(s == last and event != "STEP_START" for _, s, event in steps)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.killed = True

    def wait(self, timeout: float) -> CliResult:
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.0, timeout - self.elapsed()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
            self.proc.wait(30)
        seconds = self.elapsed()
        LIVE_GROUPS.discard(self.proc.pid)
        self.reader.join(30)
        self.proc.stderr.close()
        code = None if timed_out else self.proc.returncode
        stderr = self.stderr_path.read_bytes().decode("utf-8", "replace")
        return CliResult(self.label, self.argv, code, seconds, timed_out, self.killed,
                         self.stdout_path.read_text("utf-8", "replace"), stderr[-4000:], list(self.steps))


def cbzoho_argv(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("cbzoho")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "cbzoho_pipeline.cli"]
    return head + list(args)


SYNC = ("sync", "--site", SITE, "--log-level", "DEBUG")
STATUS = ("status", "--site", SITE, "--json")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def site_settings(site: str, org: str) -> dict:
    return {"sandbox": True, "chargebee": {"site": site},
            "zoho": {"environment": org, "sandbox_org": org},
            "rules": {"deal_owner_email": "admin@acme.example"}}


# ------------------------------------------------------------------------------------------- product
PRODUCT_PARTS = ("cbzoho_pipeline", "cbzoho_sandbox", "dagster.yaml", "workspace.yaml", "pyproject.toml")


def freeze_product(dest: Path) -> Path:
    """Copy the product as the working tree holds it now.

    Other people edit this tree while a long run goes on; every process of a run loads the product from
    this copy (first on PYTHONPATH), so a run never mixes two versions of it.
    """
    dest.mkdir()
    for name in PRODUCT_PARTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, dest / name)
    return dest


def product_env(env: dict[str, str], product: Path) -> dict[str, str]:
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(product), env.get("PYTHONPATH", "")) if p)
    return env


def provenance() -> dict[str, Any]:
    """Which commit the product came from, and which files differed from it (read-only git calls)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {"head": git("rev-parse", "HEAD"), "changed": git("status", "--porcelain").splitlines()}


# ------------------------------------------------------------------------------------------ workspace
@dataclass
class Workspace:
    """One trial's own state: CBZOHO_HOME, DAGSTER_HOME (with the repo's dagster.yaml) and captured output."""

    root: Path
    info_file: Path
    settings_file: Path
    product: Path

    @property
    def cbzoho_home(self) -> Path:
        return self.root / "cbzoho_home"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def create(self) -> Workspace:
        for path in (self.cbzoho_home, self.dagster_home, self.logs):
            path.mkdir(parents=True)
        shutil.copy(self.product / "dagster.yaml", self.dagster_home / "dagster.yaml")
        return self

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CBZOHO_", "DAGSTER_"))}
        env.update(CBZOHO_SANDBOX_INFO=str(self.info_file), CBZOHO_HOME=str(self.cbzoho_home),
                   CBZOHO_SETTINGS=str(self.settings_file), DAGSTER_HOME=str(self.dagster_home))
        return product_env(env, self.product)

    def start(self, label: str, *args: str, cwd: Path | None = None) -> Running:
        return Running(label, cbzoho_argv(*args), self.env(), cwd or self.root, self.logs)

    def run(self, label: str, *args: str, timeout: float = 600.0) -> CliResult:
        return self.start(label, *args).wait(timeout)


def active_runs(dagster_home: Path) -> list[dict]:
    """Runs of the site the instance still holds as STARTED, STARTING or QUEUED (and NOT_STARTED, noted)."""
    import dagster as dg

    if not (dagster_home / "storage").exists() and not (dagster_home / "history").exists():
        return []
    statuses = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(statuses=statuses, tags={"dagster/partition": SITE}))
        return [{"run_id": run.run_id, "status": run.status.value} for run in runs]


def stuck_runs(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["status"] != "NOT_STARTED"]


# ----------------------------------------------------------------------------------------------- trials
@dataclass
class Trial:
    scenario: str
    index: int
    seed: int
    customers: int
    seconds: float = 0.0
    duplicates: int = 0
    missing: int = 0
    extra: int = 0
    wrong_errors: int = 0
    bad_exits: int = 0
    reader_failures: int = 0
    failed_polls: int = 0
    overlapped: int = 0
    stuck: int = 0
    secrets: int = 0
    details: dict = field(default_factory=dict)

    def problems(self) -> int:
        return sum(getattr(self, name) for name in COUNT_FIELDS)


@dataclass
class Reference:
    state: dict[str, Counter]
    errors: set[tuple[str, str, str]]
    counts: dict[str, int]


class Harness:
    """The sandbox, the pinned dataset clock, the clean references and every workspace used."""

    def __init__(self, plan: Plan, root: Path, product: Path) -> None:
        self.plan = plan
        self.root = root
        self.product = product
        self.sandbox = Sandbox.start(root, product)
        self.instant = int(time.time()) - 60
        self.settings_file = root / "cbzoho.yaml"
        sites = {SITE: site_settings(SITE, ORG), "acme": site_settings("acme", "production")}
        self.settings_file.write_text(yaml.safe_dump({"sites": sites}))
        self.references: dict[tuple[int, int], Reference] = {}
        self.workspaces: list[Workspace] = []
        self.anomalies: list[dict] = []
        self._run_config_supported: bool | None = None
        self.kill_timing: Timing | None = None

    def close(self) -> None:
        self.sandbox.stop()

    def seed_for(self, index: int) -> int:
        return self.plan.seed + index % self.plan.seeds

    def workspace(self, label: str) -> Workspace:
        ws = Workspace(self.root / f"{len(self.workspaces):03d}-{label}", self.sandbox.info_file,
                       self.settings_file, self.product).create()
        self.workspaces.append(ws)
        return ws

    def prepare(self, trial: Trial) -> None:
        self.sandbox.reset()
        self.sandbox.generate_at(trial.customers, trial.seed, self.instant)
        dice = self.dice_for(trial)
        self.sandbox.move_dice(dice)
        trial.details["dice_moved"] = dice * DICE_PER_REQUEST

    def dice_for(self, trial: Trial) -> int:
        """Requests that move the dice before a trial. Fault trials get stretches of the dice of their own
        (a block apart, plus a random part of one); the others a random part of a block."""
        jitter = random.Random(f"{trial.scenario}:{trial.index}:{trial.seed}").randrange(DICE_BLOCK)
        block = {"storm": trial.index, "lost": self.plan.storms + trial.index}.get(trial.scenario, 0)
        return block * DICE_BLOCK + jitter

    def note(self, scenario: str, what: str, **evidence: Any) -> None:
        self.anomalies.append({"scenario": scenario, "what": what, **evidence})

    def open_errors(self, ws: Workspace, label: str) -> set[tuple[str, str, str]] | None:
        result = ws.run(label, *STATUS, timeout=120)
        try:
            errors = json.loads(result.stdout)["errors"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None
        return {(e["module"], str(e["chargebee_id"]), e["code"]) for e in errors}

    def reference(self, trial: Trial) -> Reference:
        key = (trial.customers, trial.seed)
        if key not in self.references:
            self.prepare(trial)
            ws = self.workspace(f"reference-{trial.customers}c-s{trial.seed}")
            result = ws.run("sync", *SYNC)
            errors = self.open_errors(ws, "status")
            if not result.finished() or errors is None:
                raise HarnessError(f"the clean reference sync of {key} (customers, seed) did not finish "
                                   f"(exit {result.code}): {result.stderr_tail[-1500:]}")
            state = zoho_state(self.sandbox)
            counts = {m: sum(c.values()) for m, c in state.items()}
            self.references[key] = Reference(state, errors, counts)
        return self.references[key]

    def judge(self, trial: Trial, ws: Workspace) -> None:
        """Compare Zoho's state and the open errors with the clean reference of the trial's seed."""
        ref = self.references[(trial.customers, trial.seed)]
        diff = state_diff(zoho_state(self.sandbox), ref.state)
        for key in ("duplicates", "missing", "extra"):
            setattr(trial, key, getattr(trial, key) + sum(d[key] for d in diff.values()))
        errors = self.open_errors(ws, "final-status")
        if errors is None:
            trial.bad_exits += 1
            self.note(trial.scenario, "cbzoho status gave no JSON after the trial", workspace=str(ws.root))
            errors = set()
        wrong = errors ^ ref.errors
        trial.wrong_errors += len(wrong)
        trial.details["diff"] = {m: d for m, d in diff.items() if any(d.values())}
        if wrong:
            trial.details["wrong_errors"] = sorted(
                [*(["unexpected", *e] for e in errors - ref.errors), *(["absent", *e] for e in ref.errors - errors)])

    def sync_must_finish(self, trial: Trial, result: CliResult) -> None:
        if not result.finished():
            trial.bad_exits += 1
            code_error = CODE_ERROR.search(result.stderr_tail)
            what = f"{result.label} exited {result.code}" + (
                f" on a {code_error.group(1)} in product code (a file mid-edit?)" if code_error else "")
            self.note(trial.scenario, what, trial=trial.index, workspace=str(self.workspaces[-1].root),
                      stderr_tail=result.stderr_tail[-1500:])

    def run_config_supported(self) -> bool:
        if self._run_config_supported is None:
            helptext = subprocess.run(cbzoho_argv("sync", "--help"), capture_output=True, text=True,
                                      env=product_env(dict(os.environ), self.product)).stdout
            self._run_config_supported = "--run-config" in helptext
            if not self._run_config_supported:
                self.note("lost", "`cbzoho sync` has no --run-config option yet; the late-answer variant cannot "
                          "lower the Zoho timeout and its faulted sync fails on the unknown option")
        return self._run_config_supported


def timed(scenario: str, *, faults: bool = False):
    """Run a trial function, filling in its wall time; the seed comes from the trial index, the dataset's
    size from the plan (fault trials use the larger one)."""

    def wrap(func):
        def run(h: Harness, index: int, *args: Any) -> Trial:
            customers = h.plan.fault_customers if faults else h.plan.customers
            trial = Trial(scenario, index, h.seed_for(index), customers)
            h.reference(trial)
            started = time.monotonic()
            func(h, trial, *args)
            trial.seconds = round(time.monotonic() - started, 2)
            return trial

        run.__name__ = func.__name__
        return run

    return wrap


# ------------------------------------------------------------------------------------------------ storm
STORM = {"p429": 0.2, "p500": 0.05, "pdrop": 0.02}
TOKEN_EXPIRY_CALLS = 50


class TokenExpirer:
    """Keeps Zoho's access tokens expiring every 50 API calls while a storm lasts.

    The sandbox counts down one armed expiry; a small thread re-arms it whenever the org's call counter
    shows the last one has fired. The first expiry comes after a random 2-20 calls, so that even a run
    making fewer than 50 calls meets one, at a different moment in every trial.
    """

    def __init__(self, sandbox: Sandbox, rng: random.Random) -> None:
        self.sandbox = sandbox
        self.first = rng.randint(2, 20)
        self.stop = threading.Event()
        self.fired = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TokenExpirer:
        self.base = self.sandbox.zoho_stats()["calls_total"]
        self.pending = self.first
        self.sandbox.expire_tokens_after(self.pending)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            try:
                calls = self.sandbox.zoho_stats()["calls_total"]
                if calls - self.base > self.pending:
                    self.fired += 1
                    self.base, self.pending = calls, TOKEN_EXPIRY_CALLS
                    self.sandbox.expire_tokens_after(self.pending)
            except (requests.RequestException, HarnessError):
                continue

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(5)


def fault_stats(sandbox: Sandbox) -> dict:
    """Calls, injected faults and token mints per API since the last reset."""
    stats = sandbox.control("GET", "stats")
    zoho = stats["zoho"][ORG]
    writes = sum(n for endpoint, n in zoho["calls"].items()
                 if endpoint.split()[0] in ("POST", "PUT", "PATCH", "DELETE") and not endpoint.endswith("/coql"))
    return {"chargebee": {k: stats["chargebee"][SITE][k] for k in ("calls_total", "faults_injected")},
            "zoho": {"writes": writes, **{k: zoho.get(k) for k in ("calls_total", "faults_injected", "tokens_issued",
                                                                   "token_requests_denied")}},
            "zoho_accounts": {k: stats["zoho_accounts"][k] for k in ("calls_total", "faults_injected")}}


@timed("storm", faults=True)
def storm_trial(h: Harness, trial: Trial) -> None:
    h.prepare(trial)
    ws = h.workspace(f"storm-{trial.index}")
    for api in ("chargebee", "zoho"):
        h.sandbox.faults(api, **STORM)
    runs = []
    with TokenExpirer(h.sandbox, random.Random(trial.seed * 1000 + trial.index)) as expirer:
        for attempt in range(3):
            runs.append(ws.run(f"storm-{attempt}", *SYNC))
            if runs[-1].finished():
                break
    stats = fault_stats(h.sandbox)
    h.sandbox.clear_faults()
    clean = ws.run("clean", *SYNC)
    trial.details.update(storm_runs=[r.brief() for r in runs], first_expiry_after=expirer.first,
                         token_expiries=expirer.fired, storm_stats=stats, clean=clean.brief())
    if not any(r.finished() for r in runs):
        trial.bad_exits += 1
        h.note("storm", "no storm sync finished in 3 attempts", trial=trial.index,
               stderr_tail=runs[-1].stderr_tail[-1500:])
    h.sync_must_finish(trial, clean)
    h.judge(trial, ws)


# ------------------------------------------------------------------------------------------------- lost
LOST_VARIANTS = (
    {"name": "dropped", "faults": {"papply_drop": 0.2}, "timeout": None},
    {"name": "late", "faults": {"papply_late": 0.2, "late_seconds": 4.0}, "timeout": 2},
)


@timed("lost", faults=True)
def lost_trial(h: Harness, trial: Trial) -> None:
    variant = LOST_VARIANTS[trial.index % len(LOST_VARIANTS)]
    h.prepare(trial)
    ws = h.workspace(f"lost-{variant['name']}-{trial.index}")
    args = list(SYNC)
    if variant["timeout"] is not None:
        h.run_config_supported()
        config = ws.root / "run-config.yaml"
        config.write_text(yaml.safe_dump({"resources": {"zoho": {"config": {"timeout_seconds": variant["timeout"]}}}}))
        args += ["--run-config", str(config)]
    h.sandbox.faults("zoho", writes_only=True, **variant["faults"])
    faulted = ws.run("faulted", *args)
    stats = fault_stats(h.sandbox)
    injected = stats["zoho"]["faults_injected"]
    h.sandbox.clear_faults()
    clean = ws.run("clean", *SYNC)
    trial.details.update(variant=variant["name"], faulted=faulted.brief(), faulted_stats=stats,
                         lost_answers=sum(injected.values()), clean=clean.brief())
    if not sum(injected.values()):
        h.note("lost", "no lost answer was injected in this trial", trial=trial.index)
    h.sync_must_finish(trial, faulted)
    h.sync_must_finish(trial, clean)
    h.judge(trial, ws)


# ------------------------------------------------------------------------------------------------- kill
@dataclass
class Timing:
    run_start: float  # seconds after the process started
    first_step: float
    last_step_end: float
    end: float


def calibrate_kills(h: Harness) -> Timing:
    """A clean sync under the kill latency: when its run and steps start and end, and when the process ends."""
    h.prepare(Trial("kill", 0, h.seed_for(0), h.plan.customers))
    ws = h.workspace("kill-calibration")
    slow_down(h.sandbox, h.plan.kill_latency_ms)
    running = ws.start("sync", *SYNC)
    result = running.wait(600)
    h.sandbox.clear_faults()
    window = result.window()
    if not result.finished() or window is None or running.run_started_at is None:
        raise HarnessError(f"the kill calibration sync did not finish (exit {result.code}): "
                           f"{result.stderr_tail[-1500:]}")
    return Timing(running.run_started_at, window[0], window[1], result.seconds)


def kill_delays(timing: Timing, count: int, rng: random.Random) -> list[float]:
    """Stratified uniform delays after RUN_START, over the measured run up to its last step's end.

    Counting from the run's start rather than the process's keeps the kills inside the run however long
    Python and Dagster take to load on a busy machine.
    """
    span = timing.last_step_end - timing.run_start
    slots = list(range(count))
    rng.shuffle(slots)
    return [round((slot + rng.random()) * span / count, 3) for slot in slots]


def slow_down(sandbox: Sandbox, latency_ms: float) -> None:
    for api in ("chargebee", "zoho"):
        sandbox.faults(api, latency_ms=latency_ms)


@dataclass
class Kill:
    delay: float
    landed: bool
    step: str | None
    phase: str
    result: CliResult


def kill_once(h: Harness, ws: Workspace, label: str, delay: float) -> Kill:
    """Start a slowed-down sync and SIGKILL it `delay` seconds after its run started."""
    slow_down(h.sandbox, h.plan.kill_latency_ms)
    victim = ws.start(label, *SYNC)
    while victim.alive() and victim.run_started_at is None and victim.elapsed() < h.plan.stuck_bound:
        time.sleep(0.01)
    deadline = (victim.run_started_at or victim.elapsed()) + delay
    while victim.alive() and victim.elapsed() < deadline:
        time.sleep(0.01)
    step, _ = victim.step_now()
    phase = phase_of(step, victim.run_started_at is not None)
    landed = victim.alive()
    victim.kill()
    result = victim.wait(30)
    h.sandbox.clear_faults()
    return Kill(delay, landed, step, phase if landed else "after exit", result)


@timed("kill")
def kill_trial(h: Harness, trial: Trial, delay: float) -> None:
    """Kill a sync mid-run (again, earlier, from a fresh start if it ended first), then sync at once."""
    misses = []
    for attempt in range(3):
        h.prepare(trial)
        ws = h.workspace(f"kill-{trial.index}" + (f"-retry{attempt}" if attempt else ""))
        kill = kill_once(h, ws, "killed", delay)
        if kill.landed:
            break
        misses.append(delay)
        delay = round(delay * 0.6, 3)
    follow = ws.run("after-kill", *SYNC, timeout=h.plan.stuck_bound)
    leftover = active_runs(ws.dagster_home)
    trial.details.update(delay_after_run_start=kill.delay, earlier_delays_missed=misses, landed=kill.landed,
                         step=kill.step, phase=kill.phase, killed=kill.result.brief(), follow_up=follow.brief(),
                         runs_left_active=leftover)
    if not kill.landed:
        h.note("kill", "every attempt's sync ended before its kill", trial=trial.index, delays=misses)
    if follow.timed_out:
        trial.stuck += 1
        h.note("kill", f"the sync after a kill did not finish within {h.plan.stuck_bound:.0f} s",
               trial=trial.index, phase=kill.phase, stderr_tail=follow.stderr_tail[-1500:])
    elif not follow.finished():
        h.sync_must_finish(trial, follow)
    if stuck_runs(leftover):
        trial.stuck += 1
        beats = ws.cbzoho_home / "sites" / SITE / "runs"
        h.note("kill", "the Dagster instance still holds a run of the site as in progress after the "
               "follow-up sync", trial=trial.index, phase=kill.phase, delay=kill.delay, runs=leftover,
               heartbeat_files=sorted(p.name for p in beats.glob("*.json")) if beats.is_dir() else [],
               killed_stderr_tail=kill.result.stderr_tail[-600:])
    h.judge(trial, ws)


# ---------------------------------------------------------------------------------------------- overlap
@timed("overlap")
def headless_pair(h: Harness, trial: Trial) -> None:
    h.prepare(trial)
    ws = h.workspace(f"pair-headless-{trial.index}")  # a fresh DAGSTER_HOME: the two race to create it
    pair = [ws.start("pair-a", *SYNC), ws.start("pair-b", *SYNC)]
    results = [p.wait(2 * h.plan.stuck_bound) for p in pair]
    third = ws.run("third", *SYNC, timeout=h.plan.stuck_bound)
    windows = []
    for running, result in zip(pair, results, strict=True):
        window = result.window()
        if window:
            windows.append((running.started_wall + window[0], running.started_wall + window[1]))
    windows.sort()
    overlapped = len(windows) == 2 and windows[1][0] < windows[0][1]
    waited = any("waiting for the running sync" in (ws.logs / f"{r.label}.err").read_text("utf-8", "replace")
                 for r in results)
    trial.details.update(kind="headless", pair=[r.brief() for r in results], third=third.brief(),
                         step_windows=[[round(a, 2), round(b, 2)] for a, b in windows], second_waited=waited,
                         runs_left_active=active_runs(ws.dagster_home))
    for result in (*results, third):
        h.sync_must_finish(trial, result)
    if overlapped:
        trial.overlapped += 1
        h.note("overlap", "the steps of two headless syncs of one site interleaved", trial=trial.index,
               windows=trial.details["step_windows"])
    if stuck_runs(trial.details["runs_left_active"]):
        trial.stuck += 1
    h.judge(trial, ws)


class DagsterDev:
    """`dagster dev -w workspace.yaml` in its own process group (so all of it can be signalled at once)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.port = free_port()
        self.log = ws.logs / "dagster-dev.log"
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                 "-p", str(self.port)], cwd=ws.product, env=ws.env(), stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True)
        LIVE_GROUPS.add(self.proc.pid)

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"dagster dev exited with {self.proc.returncode} (see {self.log})")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/server_info", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise HarnessError(f"dagster dev did not answer /server_info within {timeout:.0f} s (see {self.log})")

    def stop(self) -> dict:
        """Ctrl-C to dagster dev (it shuts its services down), then SIGTERM and SIGKILL to its process group
        if it lingers, then SIGKILL to any process of ours that left the group. Says how it ended."""
        started = time.monotonic()
        ended_by = None
        for sig, target, grace in ((signal.SIGINT, "leader", 30), (signal.SIGTERM, "group", 10),
                                   (signal.SIGKILL, "group", 10)):
            try:
                if target == "leader":
                    self.proc.send_signal(sig)
                else:
                    os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(grace)
                ended_by = sig.name
                break
            except subprocess.TimeoutExpired:
                continue
        LIVE_GROUPS.discard(self.proc.pid)
        strays = processes_with_env("DAGSTER_HOME", str(self.ws.dagster_home))
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return {"ended_by": ended_by, "seconds": round(time.monotonic() - started, 2), "strays_killed": len(strays)}


def processes_with_env(name: str, value: str) -> list[int]:
    """Our own descendants that left the process group: found by the unique DAGSTER_HOME they inherited."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
RUNNING = {"STARTING", "STARTED", "CANCELING"}


def submit_sync(client, deadline: float) -> str:
    """Launch the sync job for the site's partition, as Materialize in the UI does (partition tag)."""
    from dagster_graphql import DagsterGraphQLClientError

    while True:
        try:
            return client.submit_job_execution("cbzoho_sync", tags={"dagster/partition": SITE})
        except DagsterGraphQLClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)  # the code location may still be loading


def watch_runs(client, run_ids: list[str], timeout: float) -> list[tuple[float, list[str]]]:
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        statuses = [client.get_run_status(run_id).value for run_id in run_ids]
        samples.append((round(time.monotonic() - started, 2), statuses))
        if all(s in TERMINAL for s in statuses):
            break
        time.sleep(0.5)
    return samples


def run_partitions(dagster_home: Path, run_ids: list[str]) -> dict[str, dict]:
    """Per run: its partition tag, status, start/end time and the partitions its materializations name."""
    import dagster as dg

    out = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run_id in run_ids:
            record = instance.get_run_record_by_id(run_id)
            events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            partitions = sorted({e.dagster_event.partition for e in events if e.dagster_event})
            out[run_id] = {"tag": record.dagster_run.tags.get("dagster/partition"),
                           "status": record.dagster_run.status.value, "start": record.start_time,
                           "end": record.end_time, "materialized_partitions": partitions,
                           "materializations": len(events)}
    return out


@timed("overlap")
def ui_pair(h: Harness, trial: Trial) -> None:
    from dagster_graphql import DagsterGraphQLClient

    h.prepare(trial)
    ws = h.workspace(f"pair-ui-{trial.index}")
    dev = DagsterDev(ws)
    try:
        dev.wait_ready()
        client = DagsterGraphQLClient("127.0.0.1", port_number=dev.port, timeout=60)
        first = submit_sync(client, time.monotonic() + 180)
        second = submit_sync(client, time.monotonic() + 30)
        samples = watch_runs(client, [first, second], timeout=4 * h.plan.stuck_bound)
    except Exception as exc:  # the UI or its code location did not come up: a finding, not a harness bug
        trial.bad_exits += 1
        h.note("overlap", f"the UI pair could not be launched: {type(exc).__name__}: {exc}", trial=trial.index,
               log_tail=dev.log.read_text("utf-8", "replace")[-2000:])
        return
    finally:
        trial.details["dagster_dev_stop"] = dev.stop()
    runs = run_partitions(ws.dagster_home, [first, second])
    both_running = [t for t, s in samples if s[0] in RUNNING and s[1] in RUNNING]
    records = sorted(runs.values(), key=lambda r: r["start"] or 0)
    intervals_overlap = all(r["start"] and r["end"] for r in records) and records[1]["start"] < records[0]["end"]
    later_waited = any(s[0] in RUNNING and s[1] == "QUEUED" or s[1] in RUNNING and s[0] == "QUEUED"
                       for _, s in samples)
    trial.details.update(kind="ui", runs=runs, samples=samples[::4] + samples[-1:],
                         queued_while_other_ran=later_waited, runs_left_active=active_runs(ws.dagster_home))
    for run_id, run in runs.items():
        if run["status"] != "SUCCESS":
            trial.bad_exits += 1
            h.note("overlap", f"UI run {run_id} ended {run['status']}", trial=trial.index, log=str(dev.log))
        if run["tag"] != SITE or run["materialized_partitions"] != [SITE]:
            trial.bad_exits += 1
            h.note("overlap", "a UI launch did not materialize the site's partition", trial=trial.index, run=run)
    if both_running or intervals_overlap:
        trial.overlapped += 1
        h.note("overlap", "two UI runs of one site ran at the same time", trial=trial.index,
               both_running_at=both_running[:5], runs=runs)
    if stuck_runs(trial.details["runs_left_active"]):
        trial.stuck += 1
    h.judge(trial, ws)


# ----------------------------------------------------------------------------------------------- status
READER_FAILURE = re.compile(r"lock|duckdb|IO Error|IOException", re.IGNORECASE)


@timed("status")
def status_trial(h: Harness, trial: Trial, wanted: int) -> None:
    """Poll the status through two slowed-down syncs: the site's first, then a full resync, during which
    the answer must still show the first sync as the last run."""
    h.prepare(trial)
    ws = h.workspace(f"status-{trial.index}")
    slow_down(h.sandbox, h.plan.poll_latency_ms)
    polls: list[dict] = []
    syncs = []
    for number, extra in enumerate(((), ("--full-resync",))):
        sync = ws.start(f"polled-sync-{number}", *SYNC, *extra)
        quota = (wanted + 1) // 2 if number == 0 else wanted  # about half of the polls during each sync
        while sync.alive() and len(polls) < quota:
            polls.append(poll_status(ws, len(polls), sync, must_show_last_run=number > 0))
        syncs.append(sync.wait(600))
    h.sandbox.clear_faults()
    failed = [p for p in polls if p["during_sync"] and (not p["answered"] or p["seconds"] > h.plan.poll_bound)]
    trial.failed_polls += len(failed)
    trial.details.update(syncs=[r.brief() for r in syncs], polls=polls,
                         max_poll_seconds=max((p["seconds"] for p in polls), default=None))
    if failed:
        h.note("status", f"{len(failed)} of {len(polls)} status polls failed or took over "
               f"{h.plan.poll_bound} s", trial=trial.index, failed=failed[:5])
    for result in syncs:
        if result.code == 2 and READER_FAILURE.search(result.stderr_tail):
            trial.reader_failures += 1
            h.note("status", "a sync failed with a lock/DuckDB message while status was polled",
                   trial=trial.index, stderr_tail=result.stderr_tail[-1500:])
        elif not result.finished():
            h.sync_must_finish(trial, result)
    if not syncs[-1].finished():
        ws.run("clean", *SYNC)  # judge the site as the next ordinary sync leaves it
    h.judge(trial, ws)


def poll_status(ws: Workspace, number: int, sync: Running, *, must_show_last_run: bool) -> dict:
    poll = ws.run(f"poll-{number}", *STATUS, timeout=30)
    during = sync.alive()
    try:
        answer = json.loads(poll.stdout) if poll.code == 0 else None
    except json.JSONDecodeError:
        answer = None
    answered = isinstance(answer, dict) and "errors" in answer
    if answered and must_show_last_run and answer.get("last_run") is None:
        answered = False  # a sync has finished before this one began: "no sync yet" would be wrong
    return {"sync": sync.label, "code": poll.code, "seconds": round(poll.seconds, 3), "answered": answered,
            "during_sync": during, "message": "" if answered else (poll.stderr_tail or poll.stdout)[-300:]}


# ---------------------------------------------------------------------------------------------- secrets
ACCESS_TOKEN = re.compile(rb"1000\.[0-9a-f]{32}\.[0-9a-f]{32}")


def duckdb_text(path: Path) -> bytes:
    """Every value of every table of a DuckDB file, as text: strings there may be stored compressed."""
    import duckdb

    chunks = []
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            tables = con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
            for schema, table in tables:
                for row in con.execute(f'select * from "{schema}"."{table}"').fetchall():
                    chunks.append(repr(row))
    except duckdb.Error as exc:
        return f"<unreadable: {exc}>".encode()
    return "\n".join(chunks).encode()


def scan_secrets(h: Harness) -> Trial:
    started = time.monotonic()
    trial = Trial("secrets", 0, h.plan.seed, 0)
    secrets = {label: value.encode() for label, value in h.sandbox.secrets().items()}
    hits, token_files, scanned = [], [], 0
    for ws in h.workspaces:
        for path in sorted(p for p in ws.root.rglob("*") if p.is_file()):
            scanned += 1
            data = path.read_bytes()
            if path.suffix == ".duckdb":
                data += b"\n" + duckdb_text(path)
            for label, secret in secrets.items():
                if secret in data:
                    hits.append({"file": str(path), "secret": label, "times": data.count(secret)})
            if ACCESS_TOKEN.search(data):
                mode = stat.S_IMODE(path.stat().st_mode)
                token_files.append({"file": str(path), "mode": oct(mode), "owner_only": not mode & 0o077})
    loose = [f for f in token_files if not f["owner_only"]]
    trial.secrets = len(hits) + len(loose)
    trial.details.update(files_scanned=scanned, secrets_planted=sorted(secrets), hits=hits,
                         access_token_files=token_files)
    if hits:
        h.note("secrets", f"{len(hits)} file(s) hold a site credential", hits=hits[:20])
    if loose:
        h.note("secrets", f"{len(loose)} file(s) holding a Zoho access token are readable by others",
               files=loose[:20])
    trial.seconds = round(time.monotonic() - started, 2)
    return trial


# ------------------------------------------------------------------------------------------------ report
def summarise(trials: list[Trial]) -> list[dict]:
    rows = []
    for scenario in ("storm", "lost", "kill", "overlap", "status", "secrets"):
        mine = [t for t in trials if t.scenario == scenario]
        row = {"scenario": scenario, "trials": len(mine) if scenario != "secrets" else
               sum(t.details.get("files_scanned", 0) for t in mine)}
        for name in COUNT_FIELDS:
            row[name] = sum(getattr(t, name) for t in mine)
        row["seconds"] = round(sum(t.seconds for t in mine), 1)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    header = "| scenario | " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|---|" + "|".join("---:" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append(f"| {row['scenario']} | " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def kill_phases(trials: list[Trial]) -> dict[str, int]:
    return dict(Counter(t.details.get("phase", "?") for t in trials if t.scenario == "kill"))


def footnotes(trials: list[Trial], h: Harness) -> list[str]:
    notes = [f"kills landed in: {json.dumps(kill_phases(trials), sort_keys=True)}"]
    polls = [p for t in trials if t.scenario == "status" for p in t.details.get("polls", [])]
    if polls:
        notes.append(f"status polls: {len(polls)} ({sum(p['during_sync'] for p in polls)} answered while the "
                     f"sync still ran), slowest {max(p['seconds'] for p in polls):.2f} s "
                     f"(bound {h.plan.poll_bound} s)")
    storms = [t.details for t in trials if t.scenario == "storm"]
    if storms:
        injected: Counter = Counter()
        for d in storms:
            for api in ("chargebee", "zoho", "zoho_accounts"):
                injected.update(d["storm_stats"][api]["faults_injected"])
        runs = Counter(r["code"] for d in storms for r in d["storm_runs"])
        notes.append(f"storms: faults injected {json.dumps(dict(injected), sort_keys=True)}, "
                     f"{sum(d['token_expiries'] for d in storms)} token expiries; storm syncs by exit code "
                     f"{json.dumps(dict(runs), sort_keys=True)}")
    lost = [t.details for t in trials if t.scenario == "lost"]
    if lost:
        by_variant: Counter = Counter()
        for d in lost:
            by_variant[d["variant"]] += d["lost_answers"]
        notes.append(f"lost answers injected: {json.dumps(dict(by_variant), sort_keys=True)} "
                     f"over {len(lost)} trials")
    pairs = [t.details for t in trials if t.scenario == "overlap"]
    headless = [d for d in pairs if d.get("kind") == "headless"]
    ui = [d for d in pairs if d.get("kind") == "ui"]
    waited = sum(bool(d.get("second_waited")) for d in headless)
    queued = sum(bool(d.get("queued_while_other_ran")) for d in ui)
    notes.append(f"overlap pairs: {len(headless)} headless on a fresh DAGSTER_HOME (the second waited for the "
                 f"site lock in {waited}), {len(ui)} through the UI (the second seen QUEUED while the first ran "
                 f"in {queued})")
    notes.append("secrets: trials = files scanned (captured output included); a hit is one credential in one "
                 "file, or one non-0600 file holding a Zoho access token")
    return notes


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--json", help="write the figures and per-trial details here")
    parser.add_argument("--keep", action="store_true", help="keep the trial directories (printed at the end)")
    parser.add_argument("--live", action="store_true",
                        help="load the product from the working tree itself rather than from a copy taken at "
                             "the start (edits made during the run then reach later trials)")
    for name in ("kills", "storms", "lost", "overlaps", "polls", "customers", "seed"):
        parser.add_argument(f"--{name}", type=int, help=f"override the profile's {name}")
    args = parser.parse_args(argv)
    plan = PROFILES[args.profile]
    overrides = {f.name: getattr(args, f.name) for f in fields(Plan)
                 if getattr(args, f.name, None) is not None}
    return replace(plan, **overrides), args


def run_all(h: Harness, log) -> list[Trial]:
    plan = h.plan
    trials: list[Trial] = []

    def record(trial: Trial) -> None:
        trials.append(trial)
        flag = "ok" if not trial.problems() else "PROBLEM " + ", ".join(
            f"{n}={getattr(trial, n)}" for n in COUNT_FIELDS if getattr(trial, n))
        extra = f" [{trial.details['phase']}]" if "phase" in trial.details else ""
        log(f"  {trial.scenario} #{trial.index} seed {trial.seed}{extra}: {trial.seconds:.1f} s, {flag}")

    for index in range(plan.storms):
        record(storm_trial(h, index))
    for index in range(plan.lost):
        record(lost_trial(h, index))
    if plan.kills:
        timing = h.kill_timing = calibrate_kills(h)
        log(f"  kill calibration: run start at {timing.run_start:.2f} s, first step at {timing.first_step:.2f} s, "
            f"exit at {timing.end:.2f} s")
        for index, delay in enumerate(kill_delays(timing, plan.kills, random.Random(plan.seed))):
            record(kill_trial(h, index, delay))
    for index in range(plan.overlaps):
        record((headless_pair if index % 2 == 0 else ui_pair)(h, index))
    done, index = 0, 0
    while done < plan.polls and index < max(plan.polls, 3):
        trial = status_trial(h, index, plan.polls - done)
        done += sum(p["during_sync"] for p in trial.details["polls"]) or 1
        record(trial)
        index += 1
    record(scan_secrets(h))
    return trials


def main(argv: list[str] | None = None) -> int:
    plan, args = parse_args(argv)
    command = " ".join(["bench/reliability.py", *(argv if argv is not None else sys.argv[1:])])
    root = Path(tempfile.mkdtemp(prefix="cbzoho-reliability-"))
    started = time.monotonic()
    report: dict[str, Any] = {"command": command, "profile": args.profile, "plan": asdict(plan),
                              "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version()}}

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # Stoppable with Ctrl-C or SIGTERM even when started in the background (which ignores SIGINT), and
    # then nothing it started is left running.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, exit_on_signal)

    log(f"reliability ({args.profile}): {json.dumps(asdict(plan))}; trial directories under {root}")
    product = REPO if args.live else freeze_product(root / "product")
    report["product"] = {"loaded_from": "working tree" if args.live else "copy of the working tree at start",
                         **provenance()}
    h = None
    try:
        h = Harness(plan, root, product)
        trials = run_all(h, log)
    except (HarnessError, KeyboardInterrupt, SystemExit) as exc:
        failed = isinstance(exc, HarnessError)
        reason = f"the harness could not run: {exc}" if failed else "interrupted"
        print(f"reliability: {reason}" + (f" (trial directories kept in {root})" if failed or args.keep else ""),
              file=sys.stderr)
        report.update(error=reason, anomalies=h.anomalies if h else [])
        _write_json(args.json, report)
        if not (failed or args.keep):
            shutil.rmtree(root, ignore_errors=True)
        return 1
    finally:
        if h is not None:
            h.close()
        kill_live_groups()
    rows = summarise(trials)
    report.update(rows=rows, wall_seconds=round(time.monotonic() - started, 1), footnotes=footnotes(trials, h),
                  kill_calibration=asdict(h.kill_timing) if h.kill_timing else None,
                  references=[{"customers": c, "seed": s, "records": ref.counts, "open_errors": len(ref.errors)}
                              for (c, s), ref in h.references.items()],
                  trials=[asdict(t) for t in trials], anomalies=h.anomalies)
    failed = any(row[name] for row in rows for name in COUNT_FIELDS)
    report["exit_code"] = 1 if failed else 0
    print(format_table(rows))
    for note in report["footnotes"]:
        print(f"- {note}")
    print(f"- total wall time {report['wall_seconds']:.0f} s on {os.cpu_count()} cores")
    for anomaly in h.anomalies:
        print(f"! {anomaly['scenario']}: {anomaly['what']}")
    _write_json(args.json, report)
    if args.keep:
        print(f"trial directories kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return report["exit_code"]


def _write_json(path: str | None, report: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
