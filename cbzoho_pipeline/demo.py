"""`cbzoho demo`: a seeded sandbox plus the Dagster UI wired to it, for a first look within minutes.

Starts `cbzoho sandbox` (messy generated data in the test site and its Zoho org), points the sites marked
`sandbox: true` at it through CBZOHO_SANDBOX_INFO, keeps Dagster's history in $CBZOHO_HOME/dagster_home
(with this project's dagster.yaml, so the per-site run queue applies) and runs the Dagster UI until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cbzoho_pipeline.settings import home_dir

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_demo(*, port: int, sandbox_port: int, customers: int, seed: int) -> int:
    home = home_dir()
    home.mkdir(parents=True, exist_ok=True)
    info_file = home / "sandbox-info.json"
    info_file.unlink(missing_ok=True)
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "cbzoho_pipeline.cli", "sandbox", "--port", str(sandbox_port), "--info-file",
         str(info_file), "--generate", str(customers), "--seed", str(seed), "--quiet"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not info_file.exists():
        if sandbox.poll() is not None or time.monotonic() > deadline:
            print(f"cbzoho demo: the sandbox did not start (is port {sandbox_port} free? try --sandbox-port)",
                  file=sys.stderr)
            sandbox.kill()
            return 2
        time.sleep(0.1)

    # The demo org bills in several currencies, as the generated data does; the errors left to look at are
    # the data's own (duplicate and invalid emails, over-long values, ambiguous matches).
    import json

    import requests

    info = json.loads(info_file.read_text())
    requests.post(f"{info['control_url']}/zoho/sandbox/settings", json={"multi_currency": True}, timeout=30)

    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    if (REPO_ROOT / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {**os.environ, "CBZOHO_SANDBOX_INFO": str(info_file), "DAGSTER_HOME": str(dagster_home),
           "CBZOHO_HOME": str(home)}
    print(f"""
cbzoho demo
  sandbox     {info['base_url']}  ({customers} generated customers, seed {seed},
              in Chargebee site acme-test and Zoho org sandbox; info file {info_file})
  Dagster UI  http://127.0.0.1:{port}
  try         Assets -> cbzoho_sync graph -> pick partition acme-test -> Materialize all
              (or Jobs -> cbzoho_sync -> Launch run); then open synced_contacts -> Checks for sync errors.
  headless    CBZOHO_SANDBOX_INFO={info_file} CBZOHO_HOME={home} cbzoho sync --site acme-test
Ctrl-C stops both.
""", flush=True)
    ui = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "cbzoho_pipeline.definitions", "-h", "127.0.0.1",
         "-p", str(port)],
        env=env, cwd=home, start_new_session=True,
    )
    try:
        return ui.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in (ui, sandbox):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (ui, sandbox):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
