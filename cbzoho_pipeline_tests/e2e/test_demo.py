"""`cbzoho demo` as a person uses it: the printed commands work in a new terminal, and SIGTERM leaves nothing.

Why this exists: the demo starts a sandbox and `dagster dev` (itself a webserver, a daemon and a code
server). The headless commands it prints must work pasted into a terminal that has none of the demo's
environment, and record their runs where the UI shows them. Stopping the demo must stop every process it
started, and free its ports, or the next `scripts/demo.sh` finds them taken.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ignore_sigint() -> None:
    """As a background job of a non-interactive shell (CI) starts: SIGINT ignored, inherited by children."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def clean_env() -> dict[str, str]:
    """What a new terminal has before any export: no CBZOHO_*, no DAGSTER_HOME, no virtualenv."""
    return {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}


def processes() -> list[dict]:
    """Every live process: pid, pgid, ppid and command line (zombies are not running and left out)."""
    try:
        import psutil
    except ImportError:
        out = subprocess.run(["ps", "-A", "-ww", "-o", "pid=,pgid=,ppid=,stat=,args="], capture_output=True, text=True,
                             check=True).stdout
        rows = []
        for line in out.splitlines():
            pid, pgid, ppid, stat, *args = line.split(None, 4)
            if not stat.startswith("Z"):
                rows.append({"pid": int(pid), "pgid": int(pgid), "ppid": int(ppid), "args": " ".join(args)})
        return rows
    rows = []
    for proc in psutil.process_iter(["pid", "ppid", "status", "cmdline"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE:
                rows.append({"pid": proc.pid, "pgid": os.getpgid(proc.pid), "ppid": proc.info["ppid"],
                             "args": " ".join(proc.info["cmdline"] or [])})
        except (psutil.Error, ProcessLookupError):
            pass
    return rows


def family(root: int) -> list[dict]:
    """The process `root` and all its descendants, now."""
    rows = processes()
    children: dict[int, list[dict]] = {}
    for row in rows:
        children.setdefault(row["ppid"], []).append(row)
    found = [row for row in rows if row["pid"] == root]
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child["pid"])
    return found


def read_printed(path: Path, pattern: str, demo: subprocess.Popen, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        match = re.search(pattern, text, re.M)
        if match:
            return match.group(0)
        assert demo.poll() is None, f"cbzoho demo exited with {demo.returncode}:\n{text}"
        time.sleep(0.5)
    raise AssertionError(f"cbzoho demo did not print {pattern!r} within {seconds} s")


@pytest.mark.slow
def test_demo_commands_work_in_a_new_terminal_and_sigterm_stops_every_process(tmp_path, monkeypatch):
    ui_port, sandbox_port = free_port(), free_port()
    home = tmp_path / "demo home"  # a space: the printed commands must quote paths
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "cbzoho_pipeline.cli", "demo", "--port", str(ui_port), "--sandbox-port",
             str(sandbox_port), "--customers", "12", "--seed", "3"],
            cwd=tmp_path, env={**clean_env(), "CBZOHO_HOME": str(home)}, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=ignore_sigint)
    groups: set[int] = {demo.pid}
    try:
        read_printed(out, r"the Dagster UI is up", demo, 240)
        assert requests.get(f"http://127.0.0.1:{ui_port}/server_info", timeout=10).status_code == 200
        running = family(demo.pid)
        groups |= {p["pgid"] for p in running}
        commands = " | ".join(p["args"] for p in running)
        for part in ("cbzoho_pipeline.cli sandbox", "dagster dev", "dagster_webserver", "dagster._daemon",
                     "code-server"):
            assert part in commands, f"{part!r} not among the demo's processes: {commands}"
        assert len(groups) >= 3  # the demo, the sandbox's group, dagster dev's group

        export = read_printed(out, r"^  export .*$", demo, 5).strip()
        sync = read_printed(out, r"^  \S.* sync --site acme-test$", demo, 5).strip()
        status = read_printed(out, r"^  \S.* status --site acme-test$", demo, 5).strip()
        for line in ("disconnect --site acme-test", "sandbox-token --org sandbox", "reconnect --site acme-test"):
            read_printed(out, rf"^  \S.* {line}$", demo, 5)
        cbzoho = sync.split(" sync ")[0]
        assert Path(cbzoho.strip("'")).is_absolute() and Path(cbzoho.strip("'")).exists(), cbzoho
        for name in ("CBZOHO_SANDBOX_INFO", "CBZOHO_HOME", "CBZOHO_SETTINGS", "DAGSTER_HOME"):
            assert f" {name}=" in export, export

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        headless = subprocess.run(["bash", "-c", f"{export}\n{sync}"], cwd=elsewhere, env=clean_env(),
                                  capture_output=True, text=True, timeout=240)
        assert headless.returncode in (0, 1), headless.stderr[-3000:]  # 1: the demo data has sync errors
        run_id = re.search(r"\(run ([0-9a-f-]{36})\)", headless.stdout).group(1)
        runs = requests.post(f"http://127.0.0.1:{ui_port}/graphql", timeout=30, json={
            "query": "{ runsOrError(limit: 20) { ... on Runs { results { runId status jobName } } } }"}).json()
        shown = {r["runId"]: r for r in runs["data"]["runsOrError"]["results"]}
        assert shown.get(run_id, {}).get("status") == "SUCCESS", runs  # the demo's UI shows it
        exported = dict(item.split("=", 1) for item in shlex.split(export)[1:])
        monkeypatch.setenv("DAGSTER_HOME", exported["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as instance:
            recorded = instance.get_run_by_id(run_id)  # ...because it is in the demo's DAGSTER_HOME
        assert recorded is not None and recorded.tags.get("dagster/partition") == "acme-test"
        assert Path(exported["DAGSTER_HOME"]) == home / "dagster_home"
        after = subprocess.run(["bash", "-c", f"{export}\n{status}"], cwd=elsewhere, env=clean_env(),
                               capture_output=True, text=True, timeout=120)
        assert after.returncode == 0 and f"last sync {run_id}" in after.stdout, after.stdout + after.stderr
        groups |= {p["pgid"] for p in family(demo.pid)}
    finally:
        demo.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        left = [p for p in processes() if p["pgid"] in groups]
        while left and time.monotonic() < deadline:
            time.sleep(0.25)
            demo.poll()
            left = [p for p in processes() if p["pgid"] in groups]
        for pgid in groups:  # tidy up whatever a failure left, then report it
            if left:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    assert not left, "still running 30 s after SIGTERM:\n" + "\n".join(f"{p['pid']} {p['args']}" for p in left)
    assert demo.wait(timeout=5) == 0, err.read_text()[-3000:]
    assert "nothing left running" in err.read_text()
    # every group stopped on the polite signal, SIGINT ignored at start or not: no SIGTERM/SIGKILL was needed
    assert "still running; sending" not in err.read_text(), err.read_text()[-3000:]
    assert port_is_free(ui_port) and port_is_free(sandbox_port)
    assert not (home / "sandbox-info.json").exists()  # nobody is pointed at a sandbox that is gone
