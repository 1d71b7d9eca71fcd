"""Shared fixtures: a real sandbox server on a free loopback port, started once per test session.

Every test talks to it over real HTTP. The `sandbox` fixture resets all tenants before each test, so
tests never see each other's data, faults or call counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
# Recorded Chargebee payloads, kept in the repo (their origin is in the README there).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chargebee"


class SandboxHandle:
    """What a test needs to drive the sandbox: its info file and thin wrappers over `/_sandbox`."""

    def __init__(self, info: dict[str, Any], info_file: Path) -> None:
        self.info = info
        self.info_file = info_file
        self.base_url: str = info["base_url"]
        self._http = requests.Session()

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, f"{self.base_url}/_sandbox/{path.lstrip('/')}", json=json, timeout=120)
        if response.status_code >= 400:
            raise AssertionError(f"sandbox control {method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def reset(self) -> None:
        self.control("POST", "reset")

    def load(self, chargebee: dict | None = None, zoho: dict | None = None) -> Any:
        return self.control("POST", "load", {"chargebee": chargebee or {}, "zoho": zoho or {}})

    def generate(self, customers: int, seed: int = 42, site: str = "acme-test", org: str = "sandbox",
                 now: int | None = None) -> Any:
        body = {"customers": customers, "seed": seed, "site": site, "org": org}
        return self.control("POST", "generate", body if now is None else {**body, "now": now})

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "stats")

    def reset_stats(self) -> None:
        self.control("POST", "stats/reset")

    def dump(self, org: str, module: str) -> list[dict]:
        return self.control("GET", f"zoho/{org}/records/{module}")["data"]

    def faults(self, api: str, tenant: str | None = None, **kw: float) -> Any:
        return self.control("POST", "faults", {"api": api, "tenant": tenant, **kw})

    def clear_faults(self) -> None:
        self.control("DELETE", "faults")

    def settings_zoho(self, org: str, **kw: Any) -> Any:
        return self.control("POST", f"zoho/{org}/settings", kw)

    def settings_chargebee(self, site: str, **kw: Any) -> Any:
        return self.control("POST", f"chargebee/{site}/settings", kw)

    def chargebee(self, site: str) -> tuple[str, str]:
        entry = self.info["chargebee"][site]
        return entry["base_url"], entry["api_key"]

    def zoho(self, org: str) -> dict[str, str]:
        return dict(self.info["zoho"][org])


def start_sandbox(tmp: Path) -> tuple[subprocess.Popen, Path]:
    info_file = tmp / "sandbox-info.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cbzoho_pipeline.cli", "sandbox", "--port", "0", "--info-file", str(info_file),
         "--quiet"],
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + 60
    while not info_file.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("sandbox did not start within 60 s")
        time.sleep(0.05)
    return proc, info_file


@pytest.fixture(scope="session")
def sandbox_server():
    with tempfile.TemporaryDirectory(prefix="cbzoho-sandbox-") as tmp:
        proc, info_file = start_sandbox(Path(tmp))
        handle = SandboxHandle(json.loads(info_file.read_text()), info_file)
        try:
            yield handle
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def sandbox(sandbox_server: SandboxHandle) -> SandboxHandle:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def fixtures_dir() -> Path:
    # A missing fixture fails the test that needs it: a skip here would hide tests on a fresh clone.
    if not FIXTURES.is_dir():
        pytest.fail(f"recorded Chargebee fixtures not found at {FIXTURES}")
    return FIXTURES
