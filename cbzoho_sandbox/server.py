"""Serve the sandbox on one loopback port and tell clients where everything is.

`serve()` binds the socket first (port 0 picks a free one), so the info file it writes always names the
port actually in use; tests and scripts wait for that file instead of guessing. It never listens on
anything but the address it is given (loopback by default).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from cbzoho_sandbox.app import Sandbox, build_app


def write_info(path: Path, info: dict[str, Any]) -> None:
    """Write atomically, so a reader polling for the file never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, path)


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
    if not quiet:
        print(json.dumps(info, indent=2), flush=True)
        if summary is not None:
            print(f"seeded {generate} customers into Chargebee site {site!r} and Zoho org {org!r}: "
                  f"{json.dumps(summary)}", flush=True)
        print(f"sandbox listening on {sandbox.base_url} (control: {sandbox.base_url}/_sandbox)", flush=True)

    config = uvicorn.Config(
        build_app(sandbox), log_level="warning", access_log=False, timeout_keep_alive=30,
        lifespan="off",
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
