"""Serve the sandbox on one loopback port and tell clients where everything is.

`serve()` binds the socket first (port 0 picks a free one), so the info file it writes always names the
port actually in use; tests and scripts wait for that file instead of guessing. It keeps the file current
when a credential changes (a refresh token issued through the control surface, a reset) and removes it on
shutdown. It never listens on anything but the address it is given (loopback by default).

`issue_refresh_token()` is the client side of `cbzoho sandbox-token`: it asks a running sandbox for a new
refresh token and rewrites an info file with the answer.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests
import uvicorn

from cbzoho_sandbox.app import Sandbox, build_app


def write_info(path: Path, info: dict[str, Any]) -> None:
    """Write atomically (a temporary file of its own, then a rename), so a reader polling for the file never
    sees half of it and two writers never mix. The file holds credentials: owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(info, indent=2))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SandboxUnreachable(Exception):
    """The info file or the sandbox it names cannot be used; the message says why in one line."""


def issue_refresh_token(info_file: Path, org: str, *, timeout: float = 30) -> tuple[str, dict[str, Any]]:
    """Ask the sandbox named by `info_file` for a new refresh token of `org`'s client, rewrite `info_file`
    with the sandbox's info (which now shows it) and return (token, info)."""
    try:
        info = json.loads(info_file.read_text())
        control = info["control_url"]
    except FileNotFoundError:
        raise SandboxUnreachable(f"{info_file} does not exist (is `cbzoho sandbox --info-file` running?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SandboxUnreachable(f"{info_file} is not a sandbox info file ({exc})") from None
    try:
        response = requests.post(f"{control}/zoho/{org}/refresh_token", timeout=timeout)
    except requests.RequestException as exc:
        raise SandboxUnreachable(f"the sandbox at {control} did not answer ({type(exc).__name__}); "
                                 "is it still running?") from None
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200 or "info" not in body:
        raise SandboxUnreachable(f"the sandbox refused: HTTP {response.status_code} "
                                 f"{body.get('error') or response.text[:200]}")
    write_info(info_file, body["info"])
    return body["refresh_token"], body["info"]


class _QuietInjectedDrops(logging.Filter):
    """The drop fault aborts replies on purpose; keep those out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionAbortedError) and "injected" in str(exc))


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    info_file: Path | None = None,
    generate: int = 0,
    seed: int = 42,
    site: str = "acme-test",
    org: str = "sandbox",
    quiet: bool = False,
) -> None:
    sandbox = Sandbox()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    sandbox.base_url = f"http://{host}:{sock.getsockname()[1]}"

    summary = None
    if generate:
        summary = sandbox.seed(customers=generate, seed=seed, site=site, org=org)["summary"]

    info = sandbox.info()
    if info_file is not None:
        write_info(info_file, info)
        sandbox.on_info_change = lambda changed: write_info(info_file, changed)
    if not quiet:
        print(json.dumps(info, indent=2), flush=True)
        if summary is not None:
            print(f"seeded {generate} customers into Chargebee site {site!r} and Zoho org {org!r}: "
                  f"{json.dumps(summary)}", flush=True)
        print(f"sandbox listening on {sandbox.base_url} (control: {sandbox.base_url}/_sandbox)", flush=True)

    config = uvicorn.Config(
        build_app(sandbox), log_level="warning", access_log=False, timeout_keep_alive=30,
        lifespan="off", date_header=False,  # the API's Date header is the sandbox clock (see app.py)
    )
    # uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown; make that an exit that runs `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(_QuietInjectedDrops())
    try:
        server.run(sockets=[sock])
    finally:
        if info_file is not None:
            try:
                info_file.unlink()
            except FileNotFoundError:
                pass


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m`
    serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
