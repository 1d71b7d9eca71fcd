"""`cbzoho demo`: a seeded sandbox plus the Dagster UI wired to it, for a first look within minutes.

Starts `cbzoho sandbox` (messy generated data in the test site and its Zoho org), points the sites marked
`sandbox: true` at it through CBZOHO_SANDBOX_INFO, keeps Dagster's history in $CBZOHO_HOME/dagster_home
(with this project's dagster.yaml, so the per-site run queue applies) and runs `dagster dev` until Ctrl-C or
SIGTERM. It prints commands that work when pasted into a new terminal: the venv's `cbzoho` by absolute path
and the exports the UI runs with, so headless runs land in the same history and show in the UI.

What it must never do: leave a process behind. Each child (the sandbox; `dagster dev` with its webserver,
daemon, code server and run workers) runs in a process group of its own, so a terminal's Ctrl-C reaches only
this process, and stopping sends each group, not just its leader, SIGINT (as Ctrl-C would; SIGTERM to the
sandbox), then SIGTERM, then SIGKILL, and waits until no process of the group is left, saying so on stderr
when it has to escalate. SIGINT, SIGTERM and SIGHUP are handled here explicitly, and children start with
SIGINT and SIGTERM at their defaults, even when this process was started with SIGINT ignored (as a background
job of a non-interactive shell is; an ignored signal is inherited, and Dagster maps SIGTERM onto SIGINT's
handler, so dagster dev would ignore both).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cbzoho_pipeline.settings import home_dir, settings_path

REPO_ROOT = Path(__file__).resolve().parent.parent
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLITE_SECONDS = 20  # dagster dev waits up to 10 s for its webserver and daemon; then SIGTERM, then SIGKILL
TERM_SECONDS = 5


class _Stop(BaseException):
    """A stop signal arrived (Ctrl-C, SIGTERM, SIGHUP); a BaseException, so no `except Exception` swallows it."""


def _child_signal_defaults() -> None:
    """Runs in the child between fork and exec. Our own handlers already reset to the default at exec; this
    keeps it so if a child is ever started while a signal is still ignored here."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked in the parent while it starts us


def _cbzoho_command() -> str:
    """This installation's `cbzoho`, by absolute path (the bin directory of the running interpreter)."""
    script = Path(sys.executable).parent / "cbzoho"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m cbzoho_pipeline.cli"


class _Child:
    def __init__(self, name: str, polite: int, args: list[str], **kwargs) -> None:
        self.name = name
        self.polite = polite  # the signal that asks it to shut down cleanly
        self.proc = subprocess.Popen(args, start_new_session=True, preexec_fn=_child_signal_defaults, **kwargs)
        self.pgid = self.proc.pid  # a new session: the child leads its own process group

    @classmethod
    def start(cls, children: list[_Child], name: str, polite: int, args: list[str], **kwargs) -> _Child:
        """Start a child and record it with no stop signal in between (one arriving meanwhile waits)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            child = cls(name, polite, args, **kwargs)
            children.append(child)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return child

    def members(self) -> list[int]:
        """Live (not zombie) processes of the group; the leader is reaped first, so it never counts dead."""
        self.proc.poll()
        return _group_members(self.pgid)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _group_members(pgid: int) -> list[int]:
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=,pgid=,stat="], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):  # no ps: the group is alive while a signal reaches it
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == str(pgid) and not parts[2].startswith("Z"):
            members.append(int(parts[0]))
    return members


def _stop_all(children: list[_Child], hurry: Callable[[], bool]) -> list[str]:
    """Stop every process of every child's group; the names of groups that outlived SIGKILL (none, normally)."""
    # Politely first: SIGINT to dagster dev's group, as Ctrl-C in its own terminal, lets it shut its services
    # down; the sandbox exits quietly on SIGTERM.
    for child in children:
        child.signal_group(child.polite)
    for sig, seconds in ((None, POLITE_SECONDS), (signal.SIGTERM, TERM_SECONDS), (signal.SIGKILL, 5)):
        alive = [c for c in children if c.members()]
        if sig is not None and alive:
            print(f"cbzoho demo: {', '.join(c.name for c in alive)} still running; sending {sig.name}",
                  file=sys.stderr, flush=True)
            for child in alive:
                child.signal_group(sig)
        deadline = time.monotonic() + seconds
        while alive and time.monotonic() < deadline and not (hurry() and sig != signal.SIGKILL):
            time.sleep(0.1)
            alive = [c for c in alive if c.members()]
        if not alive:
            break
    for child in children:
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return [c.name for c in children if c.members()]


def _wait_for(path: Path, child: _Child, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if child.proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _ui_ready(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/server_info", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _banner(*, info: dict, customers: int, seed: int, ui_url: str, exports: dict[str, str]) -> str:
    cbzoho = _cbzoho_command()
    export = "export " + " ".join(f"{key}={shlex.quote(value)}" for key, value in exports.items())
    return f"""
cbzoho demo
  sandbox     {info['base_url']}  ({customers} generated customers, seed {seed}, in Chargebee site acme-test
              and Zoho org sandbox; control surface {info['control_url']})
  Dagster UI  {ui_url}
  state       {exports['CBZOHO_HOME']}  (Dagster's run history in {exports['DAGSTER_HOME']})

In the UI: Assets -> cbzoho_sync graph -> pick partition acme-test -> Materialize all (or Jobs -> cbzoho_sync
-> Launch run); then synced_contacts -> Checks -> sync_errors -> Partitions -> acme-test for the sync errors.

Headless, from any terminal (these runs show in the UI too):
  {export}
  {cbzoho} sync --site acme-test
  {cbzoho} status --site acme-test

Disconnect, then reconnect with a new Zoho refresh token (after the export above):
  {cbzoho} disconnect --site acme-test
  {cbzoho} sandbox-token --org sandbox
  {cbzoho} reconnect --site acme-test

Ctrl-C (or SIGTERM) stops the sandbox and Dagster (webserver, daemon, code server) and waits for them.
"""


def run_demo(*, port: int, sandbox_port: int, customers: int, seed: int) -> int:
    home = home_dir()
    home.mkdir(parents=True, exist_ok=True)
    info_file = home / "sandbox-info.json"
    info_file.unlink(missing_ok=True)
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    if (REPO_ROOT / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    # What the UI runs with, and what the printed commands export: the same settings file, state and history
    # whichever directory they are run from.
    exports = {"CBZOHO_SANDBOX_INFO": str(info_file), "CBZOHO_HOME": str(home),
               "CBZOHO_SETTINGS": str(settings_path().resolve()), "DAGSTER_HOME": str(dagster_home)}
    env = {**os.environ, **exports}
    ui_url = f"http://127.0.0.1:{port}"

    stopping = {"requested": False, "hurry": False}

    def on_signal(signum: int, _frame) -> None:
        if stopping["requested"]:  # a second Ctrl-C while stopping: skip the polite wait
            stopping["hurry"] = True
            return
        stopping["requested"] = True
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    children: list[_Child] = []
    code = 0
    try:
        sandbox = _Child.start(children, "sandbox", signal.SIGTERM, [
            sys.executable, "-m", "cbzoho_pipeline.cli", "sandbox", "--port", str(sandbox_port), "--info-file",
            str(info_file), "--generate", str(customers), "--seed", str(seed), "--quiet"], env=env)
        if not _wait_for(info_file, sandbox, 120):
            print(f"cbzoho demo: the sandbox did not start (is port {sandbox_port} free? try --sandbox-port)",
                  file=sys.stderr)
            return 2
        info = json.loads(info_file.read_text())
        import requests

        # The demo org bills in several currencies, as the generated data does; the errors left to look at are
        # the data's own (duplicate and invalid emails, over-long values, ambiguous matches).
        requests.post(f"{info['control_url']}/zoho/sandbox/settings", json={"multi_currency": True}, timeout=30)

        _Child.start(children, "Dagster", signal.SIGINT, [
            sys.executable, "-m", "dagster", "dev", "-m", "cbzoho_pipeline.definitions", "-h", "127.0.0.1",
            "-p", str(port)], env=env, cwd=home)
        print(_banner(info=info, customers=customers, seed=seed, ui_url=ui_url, exports=exports), flush=True)
        ready = False
        while True:
            for child in children:
                if child.proc.poll() is not None:
                    print(f"cbzoho demo: {child.name} exited with code {child.proc.returncode}; stopping the rest",
                          file=sys.stderr)
                    code = 2
            if code:
                break
            if not ready and _ui_ready(ui_url):
                ready = True
                print(f"cbzoho demo: the Dagster UI is up at {ui_url}", flush=True)
            time.sleep(0.5)
    except (_Stop, KeyboardInterrupt):
        print("\ncbzoho demo: stopping the sandbox and Dagster…", file=sys.stderr, flush=True)
    finally:
        stopping["requested"] = True  # from here on a signal hurries the stop instead of interrupting it
        left = _stop_all(children, hurry=lambda: stopping["hurry"])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if left:
            print(f"cbzoho demo: could not stop {', '.join(left)}", file=sys.stderr)
            code = 2
    if not code:
        print("cbzoho demo: stopped; nothing left running", file=sys.stderr)
    return code
