"""The sandbox server: one Starlette app that hosts every Chargebee site and Zoho org side by side.

Why it exists: no machine of ours reaches Chargebee or Zoho, so the demo, every test and every benchmark
talk to this server over real HTTP. The API modules (`chargebee_api`, `zoho_api`) emulate each API; this
module owns what is common to both: tenants, the clock, fault injection, latency, Zoho's per-org
concurrency limit, call statistics and the control surface under `/_sandbox`.

What it must never do: be imported by product code (only the CLI's `sandbox`, `sandbox-token` and `demo`
commands, the tests and the benchmarks use this package), or let one tenant's data, faults or statistics leak
into another's.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cbzoho_sandbox import chargebee_api, zoho_api
from cbzoho_sandbox.chargebee_api import ChargebeeSite
from cbzoho_sandbox.zoho_api import ZohoOrg

CONTROL_PREFIX = "/_sandbox"

# Default tenants: a Chargebee test site and live site, each paired with its own Zoho org.
DEFAULT_SITES = {"acme-test": False, "acme": True}  # name -> live
DEFAULT_ORGS = ("sandbox", "production")


@dataclass
class Faults:
    """What to inflict on requests to one API (optionally one tenant). Probabilities are per request.

    `p429`, `p500` and `pdrop` fail a request *before* the API sees it. The two "act, then fail" modes let
    the API carry the request out first, as a real server whose answer is lost does: `papply_drop` applies
    it and then drops the connection mid-response; `papply_late` applies it and holds the answer back for
    `late_seconds` (longer than the client's timeout, so the client gives up on a write that happened).
    With `writes_only` every fault (latency included) touches only writes: Chargebee POSTs and Zoho
    POST/PUT/PATCH/DELETE calls other than COQL queries; reads and token calls pass untouched.
    """

    p429: float = 0.0
    p500: float = 0.0
    pdrop: float = 0.0
    pslow: float = 0.0
    slow_seconds: float = 2.0
    latency_ms: float = 0.0
    papply_drop: float = 0.0
    papply_late: float = 0.0
    late_seconds: float = 5.0
    writes_only: bool = False

    def __post_init__(self) -> None:
        for name in ("p429", "p500", "pdrop", "pslow", "papply_drop", "papply_late"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
        if not isinstance(self.writes_only, bool):
            raise ValueError(f"writes_only must be true or false, got {self.writes_only!r}")


@dataclass
class TenantStats:
    calls: Counter = field(default_factory=Counter)
    served_429: int = 0
    faults_injected: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": dict(sorted(self.calls.items())),
            "calls_total": sum(self.calls.values()),
            "served_429": self.served_429,
            "faults_injected": dict(self.faults_injected),
        }


class Sandbox:
    """All tenants and the shared machinery. State lives in this process only."""

    def __init__(self, *, credentials_seed: str = "cbzoho-sandbox") -> None:
        self.base_url = "http://127.0.0.1:0"
        self.rng = random.Random(0)
        self.lock = threading.RLock()
        self._clock_offset = 0.0
        self._credentials_seed = credentials_seed
        self.sites: dict[str, ChargebeeSite] = {}
        self.orgs: dict[str, ZohoOrg] = {}
        self.faults: dict[tuple[str, str | None], Faults] = {}
        # org -> API calls still to serve before every access token of the org expires (a mid-run expiry).
        self.expire_after: dict[str, int] = {}
        self.stats: dict[tuple[str, str], TenantStats] = defaultdict(TenantStats)
        # Called with the new info when a credential in it changes (a refresh token issued, a reset);
        # `serve()` uses it to keep its --info-file current.
        self.on_info_change: Callable[[dict[str, Any]], None] | None = None
        for name, live in DEFAULT_SITES.items():
            self.sites[name] = ChargebeeSite(self, name, self._credential("cb", name), live)
        for name in DEFAULT_ORGS:
            self.orgs[name] = ZohoOrg(
                self,
                name,
                name,
                client_id=f"1000.{self._credential('zid', name)[:20].upper()}",
                client_secret=self._credential("zsecret", name),
                refresh_token=f"1000.{self._credential('zrefresh', name)}",
            )
            self.orgs[name].in_flight = 0  # maintained by the middleware, read against concurrency_limit

    def _credential(self, kind: str, tenant: str) -> str:
        # Stable per credentials seed so a demo's printed credentials survive a restart; not secret.
        digest = hashlib.sha256(f"{self._credentials_seed}:{kind}:{tenant}".encode()).hexdigest()
        prefix = {"cb": "test_" if tenant.endswith("-test") else "live_"}.get(kind, "")
        return prefix + digest[:32]

    def now(self) -> float:
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        self._clock_offset += seconds

    # ----------------------------------------------------------------------------------------- control
    def info(self) -> dict[str, Any]:
        base = self.base_url
        return {
            "base_url": base,
            "control_url": base + CONTROL_PREFIX,
            "chargebee": {
                name: {"base_url": f"{base}/chargebee/{name}/api/v2", "api_key": site.api_key, "live": site.live}
                for name, site in self.sites.items()
            },
            "zoho": {
                name: {
                    "accounts_url": f"{base}/zoho/accounts",
                    "api_domain": f"{base}/zoho/{name}",
                    "environment": org.environment,
                    "client_id": org.client_id,
                    "client_secret": org.client_secret,
                    "refresh_token": org.refresh_token,
                }
                for name, org in self.orgs.items()
            },
        }

    def info_changed(self) -> None:
        if self.on_info_change is not None:
            self.on_info_change(self.info())

    def issue_refresh_token(self, org: str) -> str:
        """A new refresh token for the org's client, shown from now on by the info (see ZohoOrg)."""
        with self.lock:
            token = self.orgs[org].issue_refresh_token()
        self.info_changed()
        return token

    def reset(self) -> None:
        credentials_changed = any(o.refresh_token != o.initial_refresh_token for o in self.orgs.values())
        with self.lock:
            for site in self.sites.values():
                site.reset()
            for org in self.orgs.values():
                org.reset()
            self.faults.clear()
            self.expire_after.clear()
            self.stats.clear()
            self.rng.seed(0)  # fault dice replay the same way after every reset
            self._clock_offset = 0.0
        if credentials_changed:  # every org is back to the refresh token it started with
            self.info_changed()

    def seed(self, *, customers: int, seed: int, site: str, org: str, now: int | None = None) -> dict[str, Any]:
        """Load a generated messy dataset into one Chargebee site and its Zoho org, dated from `now` (unix
        seconds; default the sandbox clock). The same seed and `now` give the same records to the second."""
        from cbzoho_sandbox.generator import generate_dataset

        zorg = self.orgs[org]
        users = [u["id"] for u in zorg.settings().get("users", []) if "id" in u]
        dataset = generate_dataset(customers, seed, now=int(self.now()) if now is None else now,
                                   zoho_user_ids=users or None)
        zoho_data = dict(dataset["zoho"])
        duplicates = zoho_data.pop("Contacts_duplicates", [])
        # Several Zoho contacts sharing one email can only exist where the org allows duplicate emails.
        if duplicates and not zorg.settings().get("unique_email", False):
            zoho_data["Contacts"] = list(zoho_data.get("Contacts", [])) + list(duplicates)
        loaded = {"chargebee": self.sites[site].load(dataset["chargebee"]), "zoho": zorg.load(zoho_data)}
        return {"loaded": loaded, "summary": dataset.get("summary", {})}

    def faults_for(self, api: str, tenant: str) -> Faults | None:
        return self.faults.get((api, tenant)) or self.faults.get((api, None))

    def stats_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"chargebee": {}, "zoho": {}, "zoho_accounts": {}}
        for name in self.sites:
            out["chargebee"][name] = self.stats[("chargebee", name)].as_dict()
        for name, org in self.orgs.items():
            out["zoho"][name] = {**self.stats[("zoho", name)].as_dict(), **org.stats()}
        out["zoho_accounts"] = self.stats[("zoho_accounts", "-")].as_dict()
        return out


class FaultsAndStatsMiddleware:
    """Latency, injected faults, Zoho's concurrency limit and per-endpoint call counts, for every API call."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox, routes: list[Route]) -> None:
        self.app = app
        self.sandbox = sandbox
        self.routes = routes

    def _endpoint(self, scope: Scope) -> str:
        """"METHOD /template" with the tenant prefix stripped, e.g. "POST /crm/v8/{module}/upsert"."""
        template = scope["path"]
        for route in self.routes:
            match, _child = route.matches(scope)
            if match == Match.FULL:
                template = route.path
                break
        return f"{scope['method']} {_strip_tenant(template)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        classified = _classify(scope["path"]) if scope["type"] == "http" else None
        if classified is None:
            await self.app(scope, receive, send)
            return
        api, tenant = classified
        sandbox = self.sandbox
        stats = sandbox.stats[(api, tenant)]
        stats.calls[self._endpoint(scope)] += 1

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 429:
                    stats.served_429 += 1
                # Like the real APIs, every answer carries the server's time, here the sandbox clock (which
                # tests may move): a client can tell how far its own clock is from the server's.
                date = email.utils.formatdate(sandbox.now(), usegmt=True).encode()
                message = {**message, "headers": [*[(k, v) for k, v in message.get("headers", [])
                                                    if k.lower() != b"date"], (b"date", date)]}
            await send(message)

        faults = sandbox.faults_for("zoho" if api == "zoho_accounts" else api, tenant)
        if faults is not None and faults.writes_only and not _is_write(api, scope):
            faults = None
        org = sandbox.orgs.get(tenant) if api == "zoho" else None
        if org is not None:
            org.in_flight += 1
            org.counters["max_in_flight"] = max(org.counters["max_in_flight"], org.in_flight)
            if tenant in sandbox.expire_after:
                sandbox.expire_after[tenant] -= 1
                if sandbox.expire_after[tenant] < 0:
                    del sandbox.expire_after[tenant]
                    org.expire_tokens()
        try:
            if org is not None and org.in_flight > org.concurrency_limit:
                stats.faults_injected["concurrency"] += 1
                await zoho_api.fault_response("429")(scope, receive, counting_send)
                return
            kind = await self._roll(faults, stats) if faults is not None else None
            if kind == "drop":
                await _drop(send)
            if kind in ("apply_drop", "apply_late"):
                # Let the API act, keep its answer, then lose it (drop) or deliver it too late.
                answer: list[dict] = []

                async def keep(message: dict) -> None:
                    answer.append(message)

                await self.app(scope, receive, keep)
                if org is not None:  # the server is done with it: it no longer counts as in flight
                    org.in_flight -= 1
                    org = None
                if kind == "apply_drop":
                    await _drop(send)
                await asyncio.sleep(faults.late_seconds)  # type: ignore[union-attr]
                for message in answer:
                    await counting_send(message)
                return
            if kind is not None:
                module = chargebee_api if api == "chargebee" else zoho_api
                await module.fault_response(kind)(scope, receive, counting_send)
                return
            await self.app(scope, receive, counting_send)
        finally:
            if org is not None:
                org.in_flight -= 1

    async def _roll(self, faults: Faults, stats: TenantStats) -> str | None:
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        roll = self.sandbox.rng.random
        if faults.pslow and roll() < faults.pslow:
            stats.faults_injected["slow"] += 1
            await asyncio.sleep(faults.slow_seconds)
        for kind, probability in (("429", faults.p429), ("500", faults.p500), ("drop", faults.pdrop),
                                  ("apply_drop", faults.papply_drop), ("apply_late", faults.papply_late)):
            if probability and roll() < probability:
                stats.faults_injected[kind] += 1
                return kind
        return None


async def _drop(send: Send) -> None:
    """Start a reply and abort it: the client sees the connection die mid-response."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
    raise ConnectionAbortedError("sandbox: injected dropped connection")


def _is_write(api: str, scope: Scope) -> bool:
    """Whether a request changes a tenant's data: token calls and COQL queries are reads here."""
    if api == "zoho_accounts" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return False
    return not (api == "zoho" and scope["path"].rstrip("/").endswith("/coql"))


def _classify(path: str) -> tuple[str, str] | None:
    """Map a request path to (api, tenant), or None for control and unknown paths."""
    parts = path.split("/", 3)  # ['', 'chargebee', '<site>', 'api/v2/...']
    if len(parts) < 3:
        return None
    if parts[1] == "chargebee":
        return "chargebee", parts[2]
    if parts[1] == "zoho":
        return ("zoho_accounts", "-") if parts[2] == "accounts" else ("zoho", parts[2])
    return None


def _strip_tenant(template: str) -> str:
    for prefix in ("/chargebee/{site}", "/zoho/accounts", "/zoho/{org}"):
        if template.startswith(prefix):
            return template[len(prefix):] or "/"
    return template


# --------------------------------------------------------------------------------------------- control
def _control_routes(sandbox: Sandbox) -> list[Route]:
    def ok(payload: Any = None, status: int = 200) -> JSONResponse:
        return JSONResponse({"ok": True} if payload is None else payload, status_code=status)

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"ok": False, "error": message}, status_code=status)

    async def body(request: Request) -> dict:
        raw = await request.body()
        if not raw:
            return {}
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ValueError("body must be a JSON object")
        return parsed

    def site_or_none(name: str) -> ChargebeeSite | None:
        return sandbox.sites.get(name)

    async def info(request: Request) -> Response:
        return ok(sandbox.info())

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return ok()

    async def load(request: Request) -> Response:
        try:
            data = await body(request)
            unknown = [s for s in data.get("chargebee", {}) if s not in sandbox.sites]
            unknown += [o for o in data.get("zoho", {}) if o not in sandbox.orgs]
            if unknown:
                return error(f"unknown tenant(s): {', '.join(unknown)}", 404)
            counts: dict[str, Any] = {"chargebee": {}, "zoho": {}}
            with sandbox.lock:
                for name, payload in data.get("chargebee", {}).items():
                    counts["chargebee"][name] = sandbox.sites[name].load(payload)
                for name, payload in data.get("zoho", {}).items():
                    counts["zoho"][name] = sandbox.orgs[name].load(payload)
        except (ValueError, KeyError, TypeError) as exc:
            return error(f"load failed: {exc}")
        return ok({"ok": True, "loaded": counts})

    async def generate(request: Request) -> Response:
        try:
            data = await body(request)
            site_name = data.get("site", "acme-test")
            org_name = data.get("org", "sandbox")
            if site_name not in sandbox.sites or org_name not in sandbox.orgs:
                return error(f"unknown site or org: {site_name!r}, {org_name!r}", 404)
            now = data.get("now")
            if now is not None and (isinstance(now, bool) or not isinstance(now, int)):
                return error(f"generate: now must be unix seconds (an integer), got {now!r}")
            with sandbox.lock:
                result = sandbox.seed(customers=int(data.get("customers", 100)), seed=int(data.get("seed", 42)),
                                      site=site_name, org=org_name, now=now)
        except (ValueError, KeyError, TypeError) as exc:
            return error(f"generate failed: {exc}")
        return ok({"ok": True, **result})

    async def dump(request: Request) -> Response:
        org = sandbox.orgs.get(request.path_params["org"])
        if org is None:
            return error("unknown org", 404)
        try:
            return ok({"data": org.dump(request.path_params["module"])})
        except (KeyError, ValueError) as exc:
            return error(str(exc), 404)

    async def zoho_settings(request: Request) -> Response:
        org = sandbox.orgs.get(request.path_params["org"])
        if org is None:
            return error("unknown org", 404)
        if request.method == "GET":
            return ok(org.settings())
        try:
            org.update_settings(await body(request))
        except (ValueError, KeyError, TypeError) as exc:
            return error(str(exc))
        return ok(org.settings())

    async def chargebee_settings(request: Request) -> Response:
        site = site_or_none(request.path_params["site"])
        if site is None:
            return error("unknown site", 404)
        try:
            site.update_settings(await body(request))
        except (ValueError, KeyError, TypeError) as exc:
            return error(str(exc))
        return ok()

    async def chargebee_counts(request: Request) -> Response:
        site = site_or_none(request.path_params["site"])
        if site is None:
            return error("unknown site", 404)
        return ok(site.counts())

    async def expire_tokens(request: Request) -> Response:
        org = sandbox.orgs.get(request.path_params["org"])
        if org is None:
            return error("unknown org", 404)
        data = await body(request)
        if data.get("after_calls") is not None:
            sandbox.expire_after[org.name] = int(data["after_calls"])
            return ok({"ok": True, "expires_after_calls": int(data["after_calls"])})
        org.expire_tokens()
        return ok()

    async def refresh_token(request: Request) -> Response:
        name = request.path_params["org"]
        if name not in sandbox.orgs:
            return error(f"unknown org {name!r}; orgs: {', '.join(sandbox.orgs)}", 404)
        token = sandbox.issue_refresh_token(name)
        return ok({"ok": True, "org": name, "refresh_token": token, "info": sandbox.info()})

    async def stats(request: Request) -> Response:
        return ok(sandbox.stats_dict())

    async def stats_reset(request: Request) -> Response:
        sandbox.stats.clear()
        for org in sandbox.orgs.values():
            reset_stats = getattr(org, "reset_stats", None)
            if reset_stats is not None:
                reset_stats()
        return ok()

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.faults.clear()
            return ok()
        try:
            data = await body(request)
            api = data.pop("api")
            if api not in ("chargebee", "zoho"):
                return error("api must be 'chargebee' or 'zoho'")
            tenant = data.pop("tenant", None)
            spec = Faults(**data)
        except (KeyError, TypeError, ValueError) as exc:
            return error(f"bad fault spec: {exc}")
        sandbox.faults[(api, tenant)] = spec
        return ok({"ok": True, "faults": {f"{a}:{t or '*'}": asdict(f) for (a, t), f in sandbox.faults.items()}})

    async def clock(request: Request) -> Response:
        try:
            data = await body(request)
            sandbox.advance_clock(float(data.get("advance_seconds", 0)))
        except (TypeError, ValueError) as exc:
            return error(str(exc))
        return ok({"ok": True, "now": sandbox.now()})

    p = CONTROL_PREFIX
    return [
        Route(p + "/info", info, methods=["GET"]),
        Route(p + "/reset", reset, methods=["POST"]),
        Route(p + "/load", load, methods=["POST"]),
        Route(p + "/generate", generate, methods=["POST"]),
        Route(p + "/zoho/{org}/records/{module}", dump, methods=["GET"]),
        Route(p + "/zoho/{org}/settings", zoho_settings, methods=["GET", "POST"]),
        Route(p + "/zoho/{org}/expire_tokens", expire_tokens, methods=["POST"]),
        Route(p + "/zoho/{org}/refresh_token", refresh_token, methods=["POST"]),
        Route(p + "/chargebee/{site}/settings", chargebee_settings, methods=["POST"]),
        Route(p + "/chargebee/{site}/counts", chargebee_counts, methods=["GET"]),
        Route(p + "/stats", stats, methods=["GET"]),
        Route(p + "/stats/reset", stats_reset, methods=["POST"]),
        Route(p + "/faults", faults, methods=["POST", "DELETE"]),
        Route(p + "/clock", clock, methods=["POST"]),
    ]


def build_app(sandbox: Sandbox) -> Starlette:
    api_routes = chargebee_api.chargebee_routes(sandbox) + zoho_api.zoho_routes(sandbox)
    app = Starlette(routes=_control_routes(sandbox) + api_routes)
    app.add_middleware(FaultsAndStatsMiddleware, sandbox=sandbox, routes=api_routes)
    return app
