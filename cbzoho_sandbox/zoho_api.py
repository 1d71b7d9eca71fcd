"""The Zoho half of the sandbox: the Zoho Accounts token server and the CRM v8 REST API of each org.

Why this exists: no machine running cbzoho reaches real Zoho, so every client test, end-to-end sync
and demo talks to this emulation over real HTTP. It reproduces the documented contract of
accounts.zoho.com (refresh-token grant, HTTP-200 token errors, 10 tokens per 10 minutes and 15 active
tokens per refresh token, 20 refresh tokens per client, revocation) and of {api_domain}/crm/v8
(Zoho-oauthtoken auth with 401 INVALID_TOKEN, daily API credits with X-API-CREDITS-REMAINING and 429,
records, COQL, the org, users and settings metadata), with one org per tenant under {base}/zoho/{org}.
Record semantics live in zoho_records.py, COQL in zoho_coql.py, field facts in zoho_schema.py.

What it must never do: contact the real Zoho, log or echo secrets (client secret, refresh or access
tokens) in responses or errors, use the wall clock instead of the sandbox clock, or enforce the
per-org concurrency limit itself (the lead's middleware does, answering with `fault_response("429")`).
"""

from __future__ import annotations

import collections
import json
import math
import secrets
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cbzoho_sandbox.zoho_coql import run_query
from cbzoho_sandbox.zoho_records import ApiError, ZohoData, format_time
from cbzoho_sandbox.zoho_schema import (
    CURRENCY_FACTS,
    MODULE_INFO,
    MODULES,
    MetaIds,
    check_settings,
    deep_copy,
    default_settings,
    edition,
    field_meta,
    layout_meta,
    parse_offset,
    pipeline_meta,
    zone_name,
)

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
DAY = 86400
USER_TYPES = ("AllUsers", "ActiveUsers", "DeactiveUsers", "ConfirmedUsers", "NotConfirmedUsers",
              "DeletedUsers", "ActiveConfirmedUsers", "AdminUsers", "ActiveConfirmedAdmins", "CurrentUser")
MAX_REFRESH_TOKENS = 20  # per user and client; issuing the 21st invalidates the oldest
TOO_MANY_TOKENS = {"error_description": "You have made too many requests continuously. "
                                        "Please try again after some time.",
                   "error": "Access Denied", "status": "failure"}


def fault_response(kind: str, message: str | None = None) -> Response:
    """Zoho's error for an injected or enforced fault: "429" (rate/concurrency/credits) or "500"."""
    if kind == "429":
        return JSONResponse({"code": "TOO_MANY_REQUESTS", "details": {},
                             "message": message or "too many requests; the allowed limit has been exceeded",
                             "status": "error"}, status_code=429)
    if kind == "500":
        return JSONResponse({"code": "INTERNAL_ERROR", "details": {},
                             "message": message or "Internal Server Error", "status": "error"}, status_code=500)
    raise ValueError(f"unknown fault kind {kind!r}")


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "details": details or {}, "message": message, "status": "error"},
                        status_code=status)


def invalid_token() -> JSONResponse:
    return _error(401, "INVALID_TOKEN", "invalid oauth token")


def invalid_url() -> JSONResponse:
    return _error(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")


class ZohoOrg:
    """One Zoho CRM org (a sandbox tenant): settings, users, OAuth state, credits and records."""

    def __init__(self, sandbox: Any, name: str, environment: str, client_id: str, client_secret: str,
                 refresh_token: str):
        self.sandbox = sandbox
        self.name = name
        self.environment = environment
        self.client_id = client_id
        self.client_secret = client_secret
        self.initial_refresh_token = refresh_token  # what a reset returns to
        self.id_prefix = 4_000_000 + zlib.crc32(name.encode()) % 5_000_000
        self.meta_ids = MetaIds(self.id_prefix)
        self.zgid = str(600_000_000 + zlib.crc32(f"zgid:{name}".encode()) % 300_000_000)
        self.created = int(sandbox.now())
        self.reset()

    # -- lifecycle and control surface ----------------------------------------------------------
    def reset(self) -> None:
        self.settings_ref: dict[str, Any] = default_settings(self.environment)
        self.settings_ref["users"] = self._normalize_users(self.settings_ref["users"])
        self._users_by_id: dict[str, dict[str, Any]] | None = None
        # Refresh tokens of the org's client, oldest first: token -> {"issued", "revoked"}. The newest one is
        # `refresh_token`, the one the info file shows; older ones work until revoked or pushed out.
        self.refresh_tokens: dict[str, dict[str, Any]] = {
            self.initial_refresh_token: {"issued": self.now(), "revoked": False}}
        self.refresh_token = self.initial_refresh_token
        # access token -> {"issued", "expires", "refresh": the refresh token that minted it}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.token_mints: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.reset_stats()
        self.data = ZohoData(self)

    def reset_stats(self) -> None:
        self.credit_log: collections.deque[tuple[float, int]] = collections.deque()
        self.credits_window = 0
        self.credits_total = 0
        self.counters = collections.Counter()

    def now(self) -> float:
        return float(self.sandbox.now())

    def settings(self) -> dict[str, Any]:
        return deep_copy(self.settings_ref)

    def update_settings(self, update: dict[str, Any]) -> None:
        check_settings(update)
        candidate = deep_copy(self.settings_ref)
        for key, value in deep_copy(update).items():
            candidate[key] = value
        if "users" in update:
            candidate["users"] = self._normalize_users(candidate["users"])
        if not candidate["pipelines"] or not all(isinstance(v, list) and v for v in candidate["pipelines"].values()):
            raise ValueError("pipelines must map each pipeline name to a non-empty list of stages")
        if candidate["home_currency"] not in candidate["currencies"]:
            raise ValueError("home_currency must be one of currencies")
        previous = self.settings_ref
        self.settings_ref = candidate
        self._users_by_id = None
        try:
            self.data.refresh_schema()
        except ValueError:
            self.settings_ref = previous
            self._users_by_id = None
            self.data.refresh_schema()
            raise

    @property
    def concurrency_limit(self) -> int:
        return int(self.settings_ref["concurrency_limit"])

    @concurrency_limit.setter
    def concurrency_limit(self, value: int) -> None:
        self.settings_ref["concurrency_limit"] = int(value)

    @property
    def sub_concurrency_limit(self) -> int:
        return int(self.settings_ref["sub_concurrency_limit"])

    def load(self, data: dict[str, Any]) -> dict[str, int]:
        unknown = set(data) - {"settings", "users", *MODULES}
        if unknown:
            raise ValueError(f"unknown keys in Zoho load data: {sorted(unknown)}")
        counts: dict[str, int] = {}
        if data.get("settings"):
            self.update_settings(data["settings"])
        if data.get("users") is not None:
            self.update_settings({"users": data["users"]})
            counts["users"] = len(self.settings_ref["users"])
        for module in MODULES:  # Accounts before Contacts before Deals, so lookups resolve
            if data.get(module):
                counts[module] = self.data.load(module, data[module])
        return counts

    def dump(self, module: str) -> list[dict[str, Any]]:
        if module not in MODULES:
            raise ValueError(f"unknown Zoho module {module!r}; known: {', '.join(MODULES)}")
        return self.data.dump(module)

    def counts(self) -> dict[str, int]:
        return {m: len(s.records) for m, s in self.data.stores.items()}

    def expire_tokens(self) -> None:
        now = self.now()
        for token in self.access_tokens.values():
            token["expires"] = min(token["expires"], now)

    def stats(self) -> dict[str, Any]:
        self._roll_credits()
        return {
            "credits_used": self.credits_total,
            "credits_used_24h": self.credits_window,
            "credits_remaining": max(0, self.settings_ref["daily_credits"] - self.credits_window),
            "tokens_issued": self.counters["tokens_issued"],
            "refresh_tokens_issued": self.counters["refresh_tokens_issued"],
            "token_requests_denied": self.counters["token_requests_denied"],
            "token_errors": self.counters["token_errors"],
            "active_tokens": sum(1 for t in self.access_tokens.values() if t["expires"] > self.now()),
            "unauthorized": self.counters["unauthorized"],
            "credit_limited": self.counters["credit_limited"],
            # the most API calls in flight at once since the statistics were reset (429s included)
            "max_in_flight": self.counters["max_in_flight"],
            "writes_with_automations": self.counters["writes_with_automations"],
            "records": self.counts(),
        }

    def details(self) -> dict[str, Any]:
        """The org as GET /crm/v8/org describes it, from its settings; what the sandbox has no notion of
        (address, logo, HIPAA, translation, Google Apps) is null or false, as in a new org."""
        settings = self.settings_ref
        iso = settings["home_currency"]
        name, symbol, locale, country = CURRENCY_FACTS.get(iso, (None, iso, None, None))
        offset = parse_offset(settings["utc_offset"])
        admin = self.current_user()
        paid_type = edition(self.concurrency_limit)
        return {
            "id": self.meta_ids.make("org"),
            "type": self.environment,
            "company_name": settings["company_name"],
            "alias": None,
            "primary_email": admin["email"],
            "primary_zuid": admin["zuid"],
            "zgid": self.zgid,
            "domain_name": f"org{self.zgid}",
            "created_time": format_time(self.created, offset),
            "time_zone": zone_name(offset),
            "country_code": country,
            "country": None, "city": None, "street": None, "state": None, "zip": None,
            "phone": None, "mobile": None, "fax": None, "website": None, "description": None,
            "employee_count": None, "photo_id": None, "zia_portal_id": None,
            "currency": f"{name} - {iso}" if name else iso,
            "iso_code": iso,
            "currency_symbol": symbol,
            "currency_locale": locale,
            "mc_status": bool(settings["multi_currency"]),
            "license_details": {
                "paid": paid_type != "free",
                "paid_type": paid_type,
                "paid_expiry": None,
                "trial_type": None,
                "trial_expiry": None,
                "users_license_purchased": sum(1 for u in settings["users"] if u["status"] == "active"),
                "portal_users_license_purchased": 0,
            },
            "hierarchy_preferences": {"type": "Role_Hierarchy", "strictly_reporting": False},
            "max_per_page": 200,
            "gapps_enabled": False,
            "translation_enabled": False,
            "privacy_settings": False,
            "hipaa_compliance_enabled": False,
            "lite_users_enabled": False,
            "deletable_org_account": False,
        }

    # -- users ------------------------------------------------------------------------------------
    def _normalize_users(self, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        offset = parse_offset(self.settings_ref["utc_offset"])
        for i, given in enumerate(users):
            if not isinstance(given, dict) or not given.get("email"):
                raise ValueError("each Zoho user needs at least an email")
            full = given.get("full_name") or " ".join(
                p for p in (given.get("first_name"), given.get("last_name")) if p) or given["email"].split("@")[0]
            first, _, last = full.partition(" ") if " " in full else ("", "", full)
            role = dict(given.get("role") or {"name": "Standard"})
            profile = dict(given.get("profile") or {"name": "Standard"})
            role.setdefault("id", self.meta_ids.make("role", role.get("name", "")))
            profile.setdefault("id", self.meta_ids.make("profile", profile.get("name", "")))
            user = {
                "id": str(given.get("id") or self.id_prefix * 10 ** 12 + 2_250_013 + i),
                "full_name": full,
                "first_name": given.get("first_name", first or None),
                "last_name": given.get("last_name", last),
                "email": given["email"],
                "status": given.get("status", "active"),
                "confirm": given.get("confirm", True),
                "role": role,
                "profile": profile,
                "zuid": str(given.get("zuid") or 70_000_000 + zlib.crc32(given["email"].encode()) % 10_000_000),
                "time_zone": given.get("time_zone", {330: "Asia/Kolkata", 0: "UTC"}.get(offset, "UTC")),
                "locale": given.get("locale", "en_US"),
            }
            out.append(user)
        if not out:
            raise ValueError("a Zoho org needs at least one user")
        if len({u["id"] for u in out}) != len(out):
            raise ValueError("Zoho user ids must be unique")
        return out

    def users_by_id(self) -> dict[str, dict[str, Any]]:
        if self._users_by_id is None:
            self._users_by_id = {u["id"]: u for u in self.settings_ref["users"]}
        return self._users_by_id

    def current_user(self) -> dict[str, Any]:
        """The user who authorised the refresh token: the first active administrator."""
        users = self.settings_ref["users"]
        for user in users:
            if user["status"] == "active" and user["profile"].get("name") == "Administrator":
                return user
        for user in users:
            if user["status"] == "active":
                return user
        return users[0]

    # -- OAuth ----------------------------------------------------------------------------------
    def live_refresh_token(self, given: str) -> str | None:
        """The org's refresh token equal to `given` if it is still valid (compared in constant time)."""
        found = None
        for token, state in self.refresh_tokens.items():
            if secrets.compare_digest(given, token) and not state["revoked"]:
                found = token
        return found

    def mint_access_token(self, refresh: str) -> str | None:
        """A new access token from a valid refresh token, or None when that refresh token's limit of
        `token_rate_limit` tokens per `token_rate_window` is reached."""
        now = self.now()
        settings = self.settings_ref
        window = float(settings["token_rate_window"])
        mints = self.token_mints[refresh]
        while mints and mints[0] <= now - window:
            mints.popleft()
        if len(mints) >= settings["token_rate_limit"]:
            self.counters["token_requests_denied"] += 1
            return None
        mints.append(now)
        for key in [k for k, t in self.access_tokens.items() if t["expires"] <= now]:
            del self.access_tokens[key]
        siblings = [k for k, t in self.access_tokens.items() if t["refresh"] == refresh]
        while len(siblings) >= settings["max_active_tokens"]:  # the 16th invalidates the oldest
            oldest = min(siblings, key=lambda k: self.access_tokens[k]["issued"])
            siblings.remove(oldest)
            del self.access_tokens[oldest]
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.access_tokens[token] = {"issued": now, "expires": now + settings["token_expires_in"], "refresh": refresh}
        self.counters["tokens_issued"] += 1
        return token

    def issue_refresh_token(self) -> str:
        """A new refresh token for the org's client, as a new grant-code exchange gives; it becomes the one
        the info file shows. Earlier ones keep working until revoked; the oldest live one beyond
        MAX_REFRESH_TOKENS is invalidated. A revoked token is never revived."""
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.refresh_tokens[token] = {"issued": self.now(), "revoked": False}
        self.refresh_token = token
        self.counters["refresh_tokens_issued"] += 1
        live = [k for k, state in self.refresh_tokens.items() if not state["revoked"]]
        for old in live[:-MAX_REFRESH_TOKENS]:
            self.revoke(old)
        return token

    def revoke(self, refresh: str) -> None:
        """Revoke one refresh token and every access token minted from it."""
        self.refresh_tokens[refresh]["revoked"] = True
        for key in [k for k, t in self.access_tokens.items() if t["refresh"] == refresh]:
            del self.access_tokens[key]

    def authorized(self, header: str | None) -> bool:
        prefix = "Zoho-oauthtoken "
        if not header or not header.startswith(prefix):
            return False
        token = self.access_tokens.get(header[len(prefix):].strip())
        return token is not None and token["expires"] > self.now()

    # -- credits ----------------------------------------------------------------------------------
    def _roll_credits(self) -> None:
        cutoff = self.now() - DAY
        while self.credit_log and self.credit_log[0][0] <= cutoff:
            self.credits_window -= self.credit_log.popleft()[1]

    def credits_exhausted(self) -> bool:
        self._roll_credits()
        return self.credits_window >= self.settings_ref["daily_credits"]

    def charge(self, credits: int) -> None:
        self.credit_log.append((self.now(), credits))
        self.credits_window += credits
        self.credits_total += credits

    def credits_header(self) -> str | None:
        """X-API-CREDITS-REMAINING value once half of the day's credits are used, else None."""
        daily = self.settings_ref["daily_credits"]
        if self.credits_window * 2 >= daily:
            return str(max(0, daily - self.credits_window))
        return None


def canonical_module(name: str) -> str:
    for module in MODULES:
        if module.lower() == name.lower():
            return module
    raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                   {"resource_path_index": 0})


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALID_DATA", "the request body is not valid JSON", {}) from None


async def _oauth_params(request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    raw = await request.body()
    if raw:
        try:
            params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            pass
    return params


def _note_automations(org: ZohoOrg, body: Any) -> None:
    """Zoho runs workflows, approvals and blueprints on written records unless `trigger` is an empty list.

    The sandbox runs no automation, but counts the calls that would have fired some, so a test can prove
    that a client keeps them off."""
    if isinstance(body, dict) and body.get("trigger", None) != []:
        org.counters["writes_with_automations"] += 1


def _write_cost(body: Any) -> int:
    data = body.get("data") if isinstance(body, dict) else None
    return max(1, math.ceil(len(data) / 10)) if isinstance(data, list) and len(data) <= 100 else 1


Handler = Callable[[ZohoOrg, Request], Awaitable[tuple[int, Any, int]]]


def zoho_routes(sandbox: Any) -> list[Route]:
    """Routes for the accounts server and every org's CRM API, mounted at the sandbox root."""

    def org_of(request: Request) -> ZohoOrg | None:
        return sandbox.orgs.get(request.path_params.get("org", ""))

    def base_url(request: Request) -> str:
        return (getattr(sandbox, "base_url", None) or str(request.base_url)).rstrip("/")

    # -- accounts server -------------------------------------------------------------------------
    async def token(request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one")
        params = await _oauth_params(request)
        org = next((o for o in sandbox.orgs.values() if o.client_id == params.get("client_id")), None)
        if params.get("grant_type") != "refresh_token":
            if org:
                org.counters["token_errors"] += 1
            return JSONResponse({"error": "unsupported_grant_type"})
        if org is None or not secrets.compare_digest(params.get("client_secret", ""), org.client_secret):
            if org:
                org.counters["token_errors"] += 1
            return JSONResponse({"error": "invalid_client"})
        refresh = org.live_refresh_token(params.get("refresh_token", ""))
        if refresh is None:
            org.counters["token_errors"] += 1
            return JSONResponse({"error": "invalid_code"})
        access = org.mint_access_token(refresh)
        if access is None:
            return JSONResponse(TOO_MANY_TOKENS, status_code=400)
        return JSONResponse({"access_token": access, "api_domain": f"{base_url(request)}/zoho/{org.name}",
                             "token_type": "Bearer", "expires_in": org.settings_ref["token_expires_in"]})

    async def revoke(request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one")
        params = await _oauth_params(request)
        value = params.get("token", "")
        for org in sandbox.orgs.values():
            refresh = org.live_refresh_token(value) if value else None
            if refresh is not None:
                org.revoke(refresh)
                return JSONResponse({"status": "success"})
        return JSONResponse({"error": "invalid_code"})

    # -- CRM API wrapper ---------------------------------------------------------------------------
    def api(handlers: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            org = org_of(request)
            if org is None:
                return invalid_url()
            if not org.authorized(request.headers.get("authorization")):
                org.counters["unauthorized"] += 1
                return invalid_token()
            if org.credits_exhausted():
                org.counters["credit_limited"] += 1
                return fault_response("429", "the API credit limit of the last 24 hours is exhausted")
            handler = handlers.get(request.method)
            if handler is None:
                return _error(405, "INVALID_REQUEST_METHOD", "The http request method type is not a valid one")
            try:
                status, body, cost = await handler(org, request)
            except ApiError as exc:
                status, body, cost = exc.status, exc.body, 1
            org.charge(cost)
            if body is None:
                response: Response = Response(status_code=status)
            else:
                response = JSONResponse(body, status_code=status)
            remaining = org.credits_header()
            if remaining is not None:
                response.headers["X-API-CREDITS-REMAINING"] = remaining
            return response
        return endpoint

    # -- record handlers ---------------------------------------------------------------------------
    async def list_records(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = canonical_module(request.path_params["module"])
        status, body = org.data.list_records(module, dict(request.query_params),
                                             request.headers.get("if-modified-since"))
        return status, body, 1

    async def insert(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = canonical_module(request.path_params["module"])
        body = await _json_body(request)
        status, out = org.data.insert(module, body)
        _note_automations(org, body)
        return status, out, _write_cost(body)

    async def update(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = canonical_module(request.path_params["module"])
        body = await _json_body(request)
        status, out = org.data.update(module, body, request.path_params.get("record_id"))
        _note_automations(org, body)
        return status, out, _write_cost(body)

    async def upsert(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = canonical_module(request.path_params["module"])
        body = await _json_body(request)
        status, out = org.data.upsert(module, body)
        _note_automations(org, body)
        return status, out, _write_cost(body)

    async def delete(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = canonical_module(request.path_params["module"])
        ids = request.path_params.get("record_id") or request.query_params.get("ids")
        status, out = org.data.delete(module, ids)
        return status, out, 1

    async def get_one(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = canonical_module(request.path_params["module"])
        status, out = org.data.get_one(module, request.path_params["record_id"])
        return status, out, 1

    async def count(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        return 200, org.data.count(canonical_module(request.path_params["module"])), 1

    async def deleted(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = canonical_module(request.path_params["module"])
        status, out = org.data.list_deleted(module, dict(request.query_params),
                                            request.headers.get("if-modified-since"))
        return status, out, 1

    async def coql(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        status, out, cost = run_query(org.data, await _json_body(request))
        return status, out, cost

    # -- metadata handlers ---------------------------------------------------------------------------
    async def organization(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        return 200, {"org": [org.details()]}, 1

    async def users(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        params = request.query_params
        kind = params.get("type") or "AllUsers"
        if kind not in USER_TYPES:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "type",
                                                                  "supported_values": list(USER_TYPES)})
        me = org.current_user()
        admin = lambda u: u["profile"].get("name") == "Administrator"  # noqa: E731
        tests = {
            "AllUsers": lambda u: u["status"] != "deleted",
            "ActiveUsers": lambda u: u["status"] == "active",
            "DeactiveUsers": lambda u: u["status"] == "inactive",
            "ConfirmedUsers": lambda u: u["confirm"] and u["status"] != "deleted",
            "NotConfirmedUsers": lambda u: not u["confirm"] and u["status"] != "deleted",
            "DeletedUsers": lambda u: u["status"] == "deleted",
            "ActiveConfirmedUsers": lambda u: u["status"] == "active" and u["confirm"],
            "AdminUsers": lambda u: admin(u) and u["status"] != "deleted",
            "ActiveConfirmedAdmins": lambda u: admin(u) and u["status"] == "active" and u["confirm"],
            "CurrentUser": lambda u: u["id"] == me["id"],
        }
        found = [u for u in org.settings_ref["users"] if tests[kind](u)]
        if params.get("ids"):
            wanted = {x.strip() for x in params["ids"].split(",")}
            found = [u for u in found if u["id"] in wanted]
        per_page = org.data.int_param(dict(params), "per_page", 200)
        page = org.data.int_param(dict(params), "page", 1)
        if per_page > 200:
            raise ApiError(400, "LIMIT_EXCEEDED", "per_page cannot exceed 200",
                           {"limit": 200, "param_name": "per_page"})
        chunk = found[(page - 1) * per_page: page * per_page]
        if not chunk:
            return 204, None, 1
        return 200, {"users": deep_copy(chunk), "info": {"per_page": per_page, "count": len(chunk),
                                                         "page": page,
                                                         "more_records": page * per_page < len(found)}}, 1

    async def user_one(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        user = org.users_by_id().get(request.path_params["user_id"])
        if user is None:
            raise ApiError(400, "INVALID_DATA", "the id given seems to be invalid", {"api_name": "id"})
        return 200, {"users": [deep_copy(user)]}, 1

    def module_param(request: Request) -> str:
        name = request.query_params.get("module")
        if not name:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "module"})
        try:
            return canonical_module(name)
        except ApiError:
            raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                           {"param_name": "module"}) from None

    async def fields(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = module_param(request)
        kind = request.query_params.get("type") or "used"
        if kind not in ("used", "unused", "all"):
            raise ApiError(400, "INVALID_DATA", "invalid data", {"param_name": "type"})
        if kind == "unused":
            return 204, None, 1
        return 200, {"fields": [field_meta(module, f, org.meta_ids) for f in org.data.fields(module)]}, 1

    def layout_for(org: ZohoOrg, module: str) -> dict[str, Any]:
        return layout_meta(module, org.data.fields(module), org.settings_ref, org.meta_ids,
                           org.current_user()["profile"])

    async def layouts(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        module = module_param(request)
        wanted = request.path_params.get("layout_id")
        layout = layout_for(org, module)
        if wanted is not None and wanted != layout["id"]:
            raise ApiError(400, "INVALID_DATA", "the layout id given seems to be invalid",
                           {"param_name": "layout_id"})
        return 200, {"layouts": [layout]}, 1

    async def pipeline(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        layout_id = request.query_params.get("layout_id")
        if not layout_id:
            raise ApiError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                           {"param_name": "layout_id"})
        if layout_id != org.meta_ids.make("layout", "Deals", "Standard"):
            raise ApiError(400, "INVALID_DATA", "the layout id given seems to be invalid",
                           {"param_name": "layout_id"})
        return 200, {"pipeline": pipeline_meta(org.settings_ref, org.meta_ids)}, 1

    async def modules(org: ZohoOrg, request: Request) -> tuple[int, Any, int]:
        out = [{"api_name": m, "module_name": m, "id": org.meta_ids.make("module", m),
                "singular_label": MODULE_INFO[m]["singular"], "plural_label": m, "api_supported": True,
                "creatable": True, "editable": True, "deletable": True, "viewable": True,
                "generated_type": "default"} for m in MODULES]
        return 200, {"modules": out}, 1

    async def not_found(request: Request) -> Response:
        return invalid_url()

    v8 = "/zoho/{org}/crm/v8"
    return [
        Route("/zoho/accounts/oauth/v2/token", token, methods=ALL_METHODS),
        Route("/zoho/accounts/oauth/v2/token/revoke", revoke, methods=ALL_METHODS),
        Route(f"{v8}/coql", api({"POST": coql}), methods=ALL_METHODS),
        Route(f"{v8}/org", api({"GET": organization}), methods=ALL_METHODS),
        Route(f"{v8}/users", api({"GET": users}), methods=ALL_METHODS),
        Route(f"{v8}/users/{{user_id}}", api({"GET": user_one}), methods=ALL_METHODS),
        Route(f"{v8}/settings/fields", api({"GET": fields}), methods=ALL_METHODS),
        Route(f"{v8}/settings/layouts", api({"GET": layouts}), methods=ALL_METHODS),
        Route(f"{v8}/settings/layouts/{{layout_id}}", api({"GET": layouts}), methods=ALL_METHODS),
        Route(f"{v8}/settings/pipeline", api({"GET": pipeline}), methods=ALL_METHODS),
        Route(f"{v8}/settings/modules", api({"GET": modules}), methods=ALL_METHODS),
        Route(f"{v8}/{{module}}/actions/count", api({"GET": count}), methods=ALL_METHODS),
        Route(f"{v8}/{{module}}/deleted", api({"GET": deleted}), methods=ALL_METHODS),
        Route(f"{v8}/{{module}}/upsert", api({"POST": upsert}), methods=ALL_METHODS),
        Route(f"{v8}/{{module}}", api({"GET": list_records, "POST": insert, "PUT": update, "DELETE": delete}),
              methods=ALL_METHODS),
        Route(f"{v8}/{{module}}/{{record_id}}", api({"GET": get_one, "PUT": update, "DELETE": delete}),
              methods=ALL_METHODS),
        Route("/zoho/{org}/{rest:path}", not_found, methods=ALL_METHODS),
    ]

