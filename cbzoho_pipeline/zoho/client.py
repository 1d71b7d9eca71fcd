"""Zoho CRM API v8 client used by the sync to read CRM state and push Chargebee data.

Why it exists: Zoho's API has several traps that every caller would otherwise re-learn — token
endpoint errors that arrive with HTTP 200, access tokens that die mid-run (401 INVALID_TOKEN), a
2,000-record ceiling on page numbers, a per-org limit on concurrent calls that answers 429, and
write calls whose outcome is per record inside one HTTP response. This module absorbs them once and
hands callers plain Python: generators of pages and one ``RecordResult`` per written record, in
request order.

What it must never do:
- hold business rules (what to write, how to match, what a failure means for the sync) — that is
  the sync core's job; this is transport only;
- import Dagster, DuckDB or the sandbox;
- put a secret (client secret, refresh token, access token) into an exception, a log line or a repr;
- batch for the caller: more than 100 records per write is a ``ValueError`` before any HTTP call.

Retrying writes: a 429, a 401 INVALID_TOKEN and a connection that was never opened mean Zoho did
nothing, so every call is retried on them. A 5xx, a timeout or a connection dropped after the request
left is ambiguous: Zoho may already have applied the write. Updates and deletes by id converge to the
same end state when sent again, so they are retried like reads. Inserts and upserts are not: a record
with no value in any duplicate-check field would be created twice. For those the client raises
``ZohoOutcomeUnknown`` at once and leaves the decision to the caller, who knows which records carry a
key and can look in Zoho before sending anything again (see ``sync/push.py``).
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import email.utils
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from cbzoho_pipeline import reach

__all__ = [
    "MAX_FIELDS_PER_GET",
    "MAX_RECORDS_PER_WRITE",
    "RecordResult",
    "ZohoAuthError",
    "ZohoClient",
    "ZohoError",
    "CreditGate",
    "ZohoOutcomeUnknown",
    "coql_literal",
    "credits_of",
    "write_credits",
    "format_zoho_datetime",
    "parse_zoho_datetime",
]

API_PREFIX = "/crm/v8"
TOKEN_PATH = "/oauth/v2/token"
REVOKE_PATH = "/oauth/v2/token/revoke"

MAX_RECORDS_PER_WRITE = 100
MAX_FIELDS_PER_GET = 50
MAX_PER_PAGE = 200
MAX_COQL_LIMIT = 2000
# Get Records refuses page * per_page beyond this unless the request carries a page_token.
DISCRETE_PAGE_LIMIT = 2000

# API error codes that mean "this access token is no longer good"; a fresh token may fix them.
_TOKEN_REJECTED_CODES = frozenset({"INVALID_TOKEN", "INVALID_OAUTHTOKEN"})

_MODULE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FIELD_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*){0,2}$")
_DIGITS_RE = re.compile(r"^[0-9]+$")


# --------------------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------------------


class ZohoError(Exception):
    """A Zoho call failed as a whole (not one record of a batch).

    ``status`` is the HTTP status (None when no response arrived), ``code`` Zoho's error code (or one
    of ours: CONNECTION_ERROR, INVALID_RESPONSE, PAGE_TOKEN_MISSING), ``details`` Zoho's details
    object. The message is built from Zoho's response and our own text, never from credentials.
    """

    def __init__(self, status: int | None, code: str, message: str, details: dict | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        super().__init__(status, code, message)

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no response"
        text = f"Zoho {where} {self.code}: {self.message}"
        if self.details:
            text += f" {json.dumps(self.details, sort_keys=True, default=str)}"
        return text


class ZohoAuthError(ZohoError):
    """The accounts server refused the refresh token or the client (invalid_code, invalid_client, ...)."""


class ZohoOutcomeUnknown(ZohoError):
    """An insert or upsert may or may not have been applied: its answer was lost (timeout, dropped
    connection) or Zoho answered 5xx. It was not sent again; find out what Zoho holds before re-sending."""


@dataclass
class RecordResult:
    """Zoho's verdict on one record of a write call; ``index`` is its position in the request."""

    index: int
    ok: bool
    code: str
    message: str
    details: dict = field(default_factory=dict)
    id: str | None = None
    action: str | None = None  # upsert only: "insert" or "update"
    duplicate_field: str | None = None  # upsert only: the field that matched an existing record


# --------------------------------------------------------------------------------------------------
# Date-times and COQL literals
# --------------------------------------------------------------------------------------------------


def parse_zoho_datetime(value: str) -> dt.datetime:
    """Parse Zoho's ``yyyy-MM-ddTHH:mm:ss±HH:mm`` (or any ISO 8601 with an offset) to an aware datetime."""
    parsed = dt.datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        raise ValueError(f"Zoho date-time without a UTC offset: {value!r}")
    return parsed


def format_zoho_datetime(value: dt.datetime) -> str:
    """Format an aware datetime as Zoho wants it in If-Modified-Since and COQL: 2024-07-14T10:54:15+05:30."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("Zoho date-times need a UTC offset; pass an aware datetime")
    offset = value.utcoffset()
    if offset.seconds % 60 or offset.microseconds:  # sub-minute offsets cannot be written as ±HH:mm
        value = value.astimezone(dt.UTC)
    return value.replace(microsecond=0).isoformat()


def coql_literal(value: Any) -> str:
    """Render a Python value as a COQL literal: strings quoted with single quotes doubled, dates formatted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return "'" + format_zoho_datetime(value) + "'"
    if isinstance(value, dt.date):
        return "'" + value.isoformat() + "'"
    text = str(value)
    return "'" + text.replace("'", "''") + "'"


def _check_field_names(fields: Iterable[str]) -> list[str]:
    names = list(fields)
    for name in names:
        if not isinstance(name, str) or not _FIELD_RE.match(name):
            raise ValueError(f"not a Zoho field API name: {name!r}")
    return names


def _check_module(module: str) -> str:
    if not isinstance(module, str) or not _MODULE_RE.match(module):
        raise ValueError(f"not a Zoho module API name: {module!r}")
    return module


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_zoho_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Zoho")


_COQL_LIMIT_RE = re.compile(r"\blimit\s+(\d+)(?:\s*,\s*(\d+))?", re.IGNORECASE)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def credits_of(method: str, template: str, json_body: Any = None) -> int:
    """What Zoho charges for one call (reference §19.2): a write 1 credit per 10 records, a COQL query by
    its LIMIT (1 up to 200, 2 up to 1,000, 3 beyond), anything else 1 (a page of Get Records holds at most
    200 records, so it costs 1 as well)."""
    if template == "/crm/v8/coql":
        query = json_body.get("select_query") if isinstance(json_body, dict) else None
        found = _COQL_LIMIT_RE.findall(query) if isinstance(query, str) else []
        limit = 200  # COQL's default LIMIT
        if found:
            first, second = found[-1]
            limit = int(second or first)  # "limit offset, count" or "limit count"
        return 1 if limit <= 200 else 2 if limit <= 1000 else 3
    data = json_body.get("data") if isinstance(json_body, dict) else None
    if method in _WRITE_METHODS and isinstance(data, list):
        return write_credits(len(data))
    return 1


def write_credits(records: int) -> int:
    """What Zoho charges for one insert, update or upsert call of `records` records: 1 credit per 10."""
    return max(1, math.ceil(records / 10))


class CreditGate(Protocol):
    """Asked before every API call is sent, told when it is over; see ``ZohoClient.credit_gate``."""

    def before(self, credits: int) -> None:
        """Raise to refuse the call (nothing is sent); return to let it go."""

    def after(self, credits: int) -> None:
        """The call that ``before`` let go is over (answered, failed or given up)."""


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------


_TRANSPORT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class ZohoClient:
    """Thread-safe client for one Zoho CRM org (one refresh token, one API domain).

    Share one instance between threads: a bounded semaphore of ``max_concurrency`` slots wraps every
    API request (not the backoff sleeps), so however many threads call, no more than that many calls
    are in flight and Zoho's per-org concurrency limit never answers 429 on our account. The access
    token is fetched lazily, cached until ``token_refresh_margin`` (at most a tenth of its lifetime)
    before it expires, and refreshed once if Zoho rejects it with 401 INVALID_TOKEN anyway.

    Writes send ``trigger: []`` unless told otherwise, and deletes ``wf_trigger=false``, so no Zoho
    workflow, approval or blueprint fires because of the sync.

    ``sleep`` and ``clock`` (monotonic seconds, for token expiry) are injectable for tests.
    ``calls`` counts every HTTP request sent, retries and token calls included, keyed by
    ``(method, path template)`` such as ``("POST", "/crm/v8/{module}/upsert")``.
    ``credits_remaining`` is the last ``X-API-CREDITS-REMAINING`` seen (Zoho sends it only once half
    of the day's credits are used), else None; ``credits_remaining_at`` when it was seen (``clock``).
    ``credits_spent`` adds up what every call may have cost (``credits_of``): calls Zoho answered, other
    than 429 and a rejected token, and calls whose answer was lost after they were sent (a guess on the
    safe side: Zoho may have charged them).

    ``credit_gate`` (None by default) is asked before each API call, retries included, and may refuse it:
    the caller's budget, enforced where every call passes (see ``sync/credits.py``).
    """

    def __init__(
        self,
        *,
        accounts_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        api_domain: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff_factor: float = 0.5,
        max_backoff: float = 60.0,
        max_concurrency: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: bool = True,
        token_refresh_margin: float = 60.0,
        token_cache: Any = None,
    ):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._accounts_url = accounts_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._fixed_api_domain = api_domain.rstrip("/") if api_domain else None
        self.api_domain: str | None = self._fixed_api_domain
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor
        self.max_backoff = max_backoff
        self.max_concurrency = max_concurrency
        self._sleep = sleep
        self._log_sink = log
        self._clock = clock
        self._jitter = jitter
        self._rng = random.Random()
        self._token_refresh_margin = token_refresh_margin
        # Shared with other clients and processes of the same credentials (zoho/tokens.py), or None.
        self._token_cache = token_cache

        self._session = requests.Session()
        # Our own loop does the retrying; the pool must hold as many connections as may be in flight.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(10, max_concurrency), max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "cbzoho"

        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._token_lock = threading.Lock()
        self._access_token: str | None = None
        self._token_deadline = 0.0
        self._token_lifetime = 0.0
        self._stats_lock = threading.Lock()
        self.calls: collections.Counter = collections.Counter()
        self.credits_remaining: int | None = None
        self.credits_remaining_at: float | None = None
        self.credits_spent = 0
        self.server_offset = 0.0  # Zoho's clock minus ours, from the last Date header (`server_now`)
        self.credit_gate: CreditGate | None = None

    def __repr__(self) -> str:
        return f"ZohoClient(accounts_url={self._accounts_url!r}, api_domain={self.api_domain!r})"

    def __enter__(self) -> ZohoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def log_to(self, sink: Callable[[str], None] | None) -> None:
        """Send retry and token messages to `sink` from now on (secrets are masked before they leave)."""
        self._log_sink = sink

    # ---------------------------------------------------------------------------------- reads

    def iter_records(
        self,
        module: str,
        fields: list[str],
        *,
        modified_since: dt.datetime | None = None,
        per_page: int = MAX_PER_PAGE,
        sort_by: str = "id",
        sort_order: str = "asc",
    ) -> Iterator[list[dict]]:
        """Yield pages of Get Records; complete past 2,000 records by switching to page tokens.

        Pages 1.. go by number while ``page * per_page`` stays within 2,000; the page after that is
        fetched with ``info.next_page_token`` (never together with ``page``), so Zoho's
        DISCRETE_PAGINATION_LIMIT_EXCEEDED is never provoked. Page tokens reach 100,000 records;
        beyond that Zoho answers PAGINATION_LIMIT_EXCEEDED (raised) — use ``iter_coql`` for such sets.
        With ``modified_since`` only records modified after it come back; 304/204 yield nothing.
        """
        module = _check_module(module)
        names = _check_field_names(fields)
        if not names:
            raise ValueError("Get Records needs at least one field")
        if len(names) > MAX_FIELDS_PER_GET:
            raise ValueError(f"Get Records takes at most {MAX_FIELDS_PER_GET} fields, got {len(names)}")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be 1..{MAX_PER_PAGE}")
        headers = self._modified_since_header(modified_since)
        base = {"fields": ",".join(names), "per_page": per_page, "sort_by": sort_by, "sort_order": sort_order}
        page = 1
        page_token: str | None = None
        while True:
            params = dict(base)
            if page_token:
                params["page_token"] = page_token
            else:
                params["page"] = page
            status, body = self._request("GET", "/crm/v8/{module}", module=module, params=params, headers=headers)
            if body is None:
                return
            rows = body.get("data") or []
            if rows:
                yield rows
            info = body.get("info") or {}
            if not rows or not info.get("more_records"):
                return
            page += 1
            if page_token or page * per_page > DISCRETE_PAGE_LIMIT:
                page_token = info.get("next_page_token")
                if not page_token:
                    raise ZohoError(
                        status,
                        "PAGE_TOKEN_MISSING",
                        f"{module}: more records follow record {(page - 1) * per_page} but the response "
                        "carries no next_page_token",
                    )

    def iter_coql(
        self, module: str, fields: list[str], *, where: str | None = None, page_size: int = MAX_COQL_LIMIT
    ) -> Iterator[list[dict]]:
        """Yield pages of a COQL select over ``module``, paging by id so it is complete past 100,000.

        Each query is ``select <fields> from <module> where id > <last id> and (<where>) order by id
        asc limit <page_size>``; ``id`` is always selected. ``where`` is a COQL condition written by
        the caller; build literals in it with ``coql_literal`` so quotes are escaped. If it holds more
        than two conditions it must already be bracketed in pairs, as COQL requires.
        """
        module = _check_module(module)
        names = _check_field_names(fields)
        if "id" not in names:
            names = ["id", *names]
        if not 1 <= page_size <= MAX_COQL_LIMIT:
            raise ValueError(f"page_size must be 1..{MAX_COQL_LIMIT}")
        last_id: str | None = None
        while True:
            query = self._coql_page_query(module, names, where, last_id, page_size)
            status, body = self._request("POST", "/crm/v8/coql", json_body={"select_query": query})
            rows = (body or {}).get("data") or []
            if rows:
                yield rows
            more = ((body or {}).get("info") or {}).get("more_records")
            if more is None:  # not reported: a full page means there may be more
                more = len(rows) == page_size
            if not rows or not more:
                return
            new_last = str(rows[-1].get("id") or "")
            if not new_last or new_last == last_id:
                raise ZohoError(status, "INVALID_RESPONSE", "COQL page rows carry no increasing id; cannot page")
            last_id = new_last

    @staticmethod
    def _coql_page_query(module: str, names: list[str], where: str | None, last_id: str | None, limit: int) -> str:
        conditions: list[str] = []
        if last_id is not None:
            bound = last_id if _DIGITS_RE.match(last_id) else coql_literal(last_id)
            conditions.append(f"id > {bound}")
        if where and where.strip():
            conditions.append(f"({where.strip()})")
        if not conditions:
            conditions.append("id is not null")  # COQL wants a WHERE clause
        if len(conditions) == 2:
            clause = f"({conditions[0]} and {conditions[1]})"
        else:
            clause = conditions[0]
        return f"select {', '.join(names)} from {module} where {clause} order by id asc limit {limit}"

    def coql(self, query: str) -> list[dict]:
        """Run one COQL query and return its rows (at most one page; Zoho caps a call at 2,000)."""
        _, body = self._request("POST", "/crm/v8/coql", json_body={"select_query": query})
        return list((body or {}).get("data") or [])

    def iter_deleted(
        self, module: str, *, modified_since: dt.datetime | None = None, type: str = "all"
    ) -> Iterator[list[dict]]:
        """Yield pages of deleted-record entries ({id, display_name, type, deleted_by, deleted_time, ...})."""
        module = _check_module(module)
        headers = self._modified_since_header(modified_since)
        page = 1
        while True:
            params = {"type": type, "page": page, "per_page": MAX_PER_PAGE}
            _, body = self._request(
                "GET", "/crm/v8/{module}/deleted", module=module, params=params, headers=headers
            )
            if body is None:
                return
            rows = body.get("data") or []
            if rows:
                yield rows
            if not rows or not (body.get("info") or {}).get("more_records"):
                return
            page += 1

    def org(self) -> dict:
        """The org as ``GET /crm/v8/org`` describes it (its edition is ``license_details.paid_type``)."""
        _, body = self._request("GET", "/crm/v8/org")
        orgs = (body or {}).get("org") or []
        if not orgs or not isinstance(orgs[0], dict):
            raise ZohoError(200, "INVALID_RESPONSE", "GET /crm/v8/org: no org in the response")
        return dict(orgs[0])

    def users(self, type: str = "ActiveUsers") -> list[dict]:
        out: list[dict] = []
        page = 1
        while True:
            params = {"type": type, "page": page, "per_page": MAX_PER_PAGE}
            _, body = self._request("GET", "/crm/v8/users", params=params)
            rows = (body or {}).get("users") or []
            out.extend(rows)
            if not rows or not ((body or {}).get("info") or {}).get("more_records"):
                return out
            page += 1

    def fields(self, module: str) -> list[dict]:
        _, body = self._request("GET", "/crm/v8/settings/fields", params={"module": _check_module(module)})
        return list((body or {}).get("fields") or [])

    def layouts(self, module: str) -> list[dict]:
        _, body = self._request("GET", "/crm/v8/settings/layouts", params={"module": _check_module(module)})
        return list((body or {}).get("layouts") or [])

    def pipelines(self, layout_id: str) -> list[dict]:
        _, body = self._request("GET", "/crm/v8/settings/pipeline", params={"layout_id": str(layout_id)})
        return list((body or {}).get("pipeline") or [])

    # ---------------------------------------------------------------------------------- writes

    def insert(self, module: str, records: list[dict], *, trigger: Iterable[str] = ()) -> list[RecordResult]:
        """Insert up to 100 records. See the module docstring: a retried insert can duplicate."""
        return self._write("POST", "/crm/v8/{module}", module, records, trigger=trigger, replay_safe=False)

    def update(self, module: str, records: list[dict], *, trigger: Iterable[str] = ()) -> list[RecordResult]:
        """Update up to 100 records; each must carry its Zoho ``id``."""
        for i, record in enumerate(records):
            if not record.get("id"):
                raise ValueError(f"update: record {i} has no id")
        return self._write("PUT", "/crm/v8/{module}", module, records, trigger=trigger)

    def upsert(
        self,
        module: str,
        records: list[dict],
        *,
        duplicate_check_fields: list[str] | None = None,
        trigger: Iterable[str] = (),
    ) -> list[RecordResult]:
        """Insert or update up to 100 records, matched on ``duplicate_check_fields`` (Zoho's order)."""
        extra = {}
        if duplicate_check_fields is not None:
            extra["duplicate_check_fields"] = _check_field_names(duplicate_check_fields)
        return self._write("POST", "/crm/v8/{module}/upsert", module, records, trigger=trigger, extra=extra,
                           replay_safe=False)

    def delete(self, module: str, ids: list[str], *, wf_trigger: bool = False) -> list[RecordResult]:
        """Delete up to 100 records by id (to the recycle bin); workflows do not run unless asked."""
        module = _check_module(module)
        ids = [str(i) for i in ids]
        if len(ids) > MAX_RECORDS_PER_WRITE:
            raise ValueError(f"delete takes at most {MAX_RECORDS_PER_WRITE} ids per call, got {len(ids)}")
        if not ids:
            return []
        for i in ids:
            if not i or "," in i:
                raise ValueError(f"not a record id: {i!r}")
        params = {"ids": ",".join(ids), "wf_trigger": "true" if wf_trigger else "false"}
        status, body = self._request("DELETE", "/crm/v8/{module}", module=module, params=params, write=True)
        return self._record_results(status, body, len(ids))

    def _write(
        self,
        method: str,
        template: str,
        module: str,
        records: list[dict],
        *,
        trigger: Iterable[str],
        extra: dict | None = None,
        replay_safe: bool = True,
    ) -> list[RecordResult]:
        module = _check_module(module)
        records = list(records)
        if len(records) > MAX_RECORDS_PER_WRITE:
            raise ValueError(
                f"Zoho takes at most {MAX_RECORDS_PER_WRITE} records per call, got {len(records)}; batch them"
            )
        if not records:
            return []
        if isinstance(trigger, str):
            raise TypeError("trigger is a list of names such as ['workflow'], not a string")
        payload: dict[str, Any] = {"data": records, "trigger": list(trigger)}
        payload.update(extra or {})
        status, body = self._request(method, template, module=module, json_body=payload, write=True,
                                     replay_safe=replay_safe)
        return self._record_results(status, body, len(records))

    @staticmethod
    def _record_results(status: int, body: dict | None, expected: int) -> list[RecordResult]:
        items = (body or {}).get("data")
        if not isinstance(items, list) or len(items) != expected:
            got = len(items) if isinstance(items, list) else "no"
            raise ZohoError(status, "INVALID_RESPONSE", f"expected {expected} record results, got {got}")
        results = []
        for index, item in enumerate(items):
            item = item if isinstance(item, dict) else {}
            details = item.get("details") if isinstance(item.get("details"), dict) else {}
            ok = str(item.get("status", "")).lower() == "success"
            record_id = details.get("id")
            results.append(
                RecordResult(
                    index=index,
                    ok=ok,
                    code=str(item.get("code") or ("SUCCESS" if ok else "UNKNOWN")),
                    message=str(item.get("message") or ""),
                    details=details,
                    id=str(record_id) if record_id is not None else None,
                    action=item.get("action"),
                    duplicate_field=item.get("duplicate_field"),
                )
            )
        return results

    # ---------------------------------------------------------------------------------- auth

    def revoke_refresh_token(self) -> None:
        """Revoke the refresh token (and with it every access token minted from it). Irreversible."""
        url = self._accounts_url + REVOKE_PATH
        self._count("POST", REVOKE_PATH)
        try:
            response = self._session.post(url, params={"token": self._refresh_token}, timeout=self.timeout)
        except _TRANSPORT_ERRORS as exc:
            raise ZohoError(None, "CONNECTION_ERROR", f"accounts server unreachable ({type(exc).__name__})") from None
        body = self._json_or_none(response)
        error = (body or {}).get("error") if isinstance(body, dict) else None
        if error or response.status_code >= 400:
            code = str(error or f"HTTP_{response.status_code}")
            raise ZohoAuthError(response.status_code, code, "the accounts server refused to revoke the refresh token")
        with self._token_lock:
            self._access_token = None
            self._token_deadline = 0.0
            if self._token_cache is not None:
                self._token_cache.clear()
        self._log("zoho: refresh token revoked")

    def _current_token(self) -> str:
        with self._token_lock:
            if self._access_token is None or self._clock() >= self._token_deadline:
                if self._token_cache is None:
                    self._fetch_token()
                else:
                    with self._token_cache.locked():  # one process mints; the others adopt its token
                        if not self._adopt_cached_token():
                            self._fetch_token()
                            assert self._access_token is not None
                            self._token_cache.save(self._access_token, self.api_domain, self._token_lifetime)
            assert self._access_token is not None
            return self._access_token

    def _adopt_cached_token(self) -> bool:
        cached = self._token_cache.load()
        if cached is None:
            return False
        left = self._token_cache.seconds_left(cached)
        margin = min(self._token_refresh_margin, left / 10) if left > 0 else 0.0
        if left <= self._token_refresh_margin:  # about to expire: a new one is due
            return False
        if self._fixed_api_domain is None:
            if not cached.api_domain:
                return False
            self.api_domain = cached.api_domain
        self._access_token = cached.access_token
        self._token_deadline = self._clock() + left - margin
        self._log(f"zoho: reusing the site's access token (valid {int(left)}s more)")
        return True

    def _token_rejected(self, rejected: str) -> None:
        """Drop ``rejected`` unless another thread already replaced it; the next call fetches anew."""
        with self._token_lock:
            if self._access_token == rejected:
                self._access_token = None
            if self._token_cache is not None:
                with self._token_cache.locked():
                    self._token_cache.discard(rejected)

    def _fetch_token(self) -> None:
        """Refresh grant against the accounts server; caller holds ``_token_lock``."""
        url = self._accounts_url + TOKEN_PATH
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": self._refresh_token,
        }
        attempt = 0
        unreachable_since: float | None = None
        while True:
            self._fail_if_known_down(url)
            self._count("POST", TOKEN_PATH)
            try:
                response = self._session.post(url, data=form, timeout=self.timeout)
            except _TRANSPORT_ERRORS as exc:
                unreachable_since = self._give_up_if_unreachable(url, exc, unreachable_since, attempt,
                                                                 "token request")
                if attempt >= self.max_retries:
                    raise ZohoError(
                        None, "CONNECTION_ERROR", f"accounts server unreachable ({type(exc).__name__})"
                    ) from None
                self._backoff(attempt, None, f"token request failed ({type(exc).__name__})")
                attempt += 1
                continue
            status = response.status_code
            body = self._json_or_none(response)
            if status == 429 or status >= 500:
                if attempt >= self.max_retries:
                    # An outage, not a refusal: a plain ZohoError, so callers do not ask for new credentials.
                    raise _error_from(status, body, f"token request failed after {attempt + 1} attempts")
                self._backoff(attempt, response, f"token request answered HTTP {status}")
                attempt += 1
                continue
            if isinstance(body, dict) and body.get("access_token"):
                break
            body = body if isinstance(body, dict) else {}
            error = str(body.get("error") or f"HTTP_{status}")
            description = str(body.get("error_description") or "")
            if "too many requests" in description.lower() or error.lower() == "too_many_requests":
                # Zoho allows 10 new access tokens per refresh token per 10 minutes.
                if attempt >= self.max_retries:
                    raise ZohoAuthError(status, error, "too many access-token requests for this refresh token")
                self._backoff(attempt, response, "token requests throttled by the accounts server")
                attempt += 1
                continue
            raise ZohoAuthError(status, error, _auth_error_text(error))

        self._access_token = str(body["access_token"])
        raw_expiry = body.get("expires_in")
        expires_in = float(raw_expiry) if raw_expiry is not None else 3600.0
        self._token_lifetime = expires_in
        margin = min(self._token_refresh_margin, expires_in / 10)
        self._token_deadline = self._clock() + expires_in - margin
        if self._fixed_api_domain is None:
            domain = body.get("api_domain")
            if not domain:
                raise ZohoAuthError(status, "NO_API_DOMAIN", "token response names no api_domain; pass api_domain")
            self.api_domain = str(domain).rstrip("/")
        self._log(f"zoho: access token refreshed (valid {int(expires_in)}s)")

    # ---------------------------------------------------------------------------------- transport

    def _request(
        self,
        method: str,
        template: str,
        *,
        module: str | None = None,
        params: dict | None = None,
        json_body: dict | None = None,
        headers: dict | None = None,
        write: bool = False,
        replay_safe: bool = True,
    ) -> tuple[int, dict | None]:
        """Send one API call with token handling and retries; return (status, JSON body or None).

        Raises ZohoError for any failure of the call as a whole. With ``write`` a 4xx whose body is a
        ``data`` array is returned, because it carries per-record errors (every record failed). Without
        ``replay_safe`` a failure after which Zoho may have acted raises ZohoOutcomeUnknown unretried.
        """
        path = template.format(module=module) if module is not None else template
        data = None
        send_headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, default=_json_default).encode()
            send_headers["Content-Type"] = "application/json"
        refreshed = False
        attempt = 0
        unreachable_since: float | None = None
        cost = credits_of(method, template, json_body)
        while True:
            token = self._current_token()
            send_headers["Authorization"] = "Zoho-oauthtoken " + token
            self._fail_if_known_down(self.api_domain)  # type: ignore[arg-type]
            gate = self.credit_gate
            if gate is not None:
                gate.before(cost)  # may refuse the call: then nothing is sent
            self._count(method, template)
            try:
                with self._slots:
                    response = self._session.request(
                        method,
                        self.api_domain + path,  # type: ignore[operator]
                        params=params,
                        data=data,
                        headers=send_headers,
                        timeout=self.timeout,
                    )
            except _TRANSPORT_ERRORS as exc:
                self._settle(gate, cost, charged=not reach.never_sent(exc))
                if not replay_safe and not reach.never_sent(exc):
                    raise ZohoOutcomeUnknown(
                        None, "OUTCOME_UNKNOWN",
                        f"{method} {template}: {type(exc).__name__} after the request was sent; not re-sent",
                    ) from None
                unreachable_since = self._give_up_if_unreachable(
                    self.api_domain, exc, unreachable_since, attempt, f"{method} {template}")  # type: ignore[arg-type]
                if attempt >= self.max_retries:
                    raise ZohoError(
                        None,
                        "CONNECTION_ERROR",
                        f"{method} {template}: {type(exc).__name__} after {attempt + 1} attempts",
                    ) from None
                self._backoff(attempt, None, f"{method} {template}: {type(exc).__name__}")
                attempt += 1
                continue
            except BaseException:
                self._settle(gate, cost, charged=True)
                raise

            self._note_credits(response)
            self._note_server_clock(response)
            status = response.status_code
            body = self._json_or_none(response) if status not in (204, 304) else None
            code = str(body.get("code", "")) if isinstance(body, dict) else ""
            # Zoho charges what it served; a 429 (credits or concurrency) or a rejected token it did not.
            self._settle(gate, cost, charged=status != 429 and not (status == 401 and code in _TOKEN_REJECTED_CODES))
            if status in (204, 304):
                return status, None

            if status == 401 and code in _TOKEN_REJECTED_CODES:
                if refreshed:
                    context = f"{method} {template}: access token rejected again after a refresh"
                    raise _error_from(status, body, context)
                refreshed = True
                self._log(f"zoho: {method} {template} -> 401 {code}; refreshing the access token once")
                self._token_rejected(token)
                continue

            if status == 429 and self.credits_remaining == 0:
                # The day's credits are gone (Zoho said so in its last X-API-CREDITS-REMAINING); a
                # retry within seconds cannot succeed, so fail now instead of burning the backoff.
                raise _error_from(status, body, f"{method} {template}: the org's daily API credits are used up")
            if status >= 500 and not replay_safe:
                error = _error_from(status, body, f"{method} {template}: Zoho answered {status}; not re-sent")
                raise ZohoOutcomeUnknown(status, "OUTCOME_UNKNOWN", str(error)) from None
            if status == 429 or status >= 500:
                if attempt >= self.max_retries:
                    raise _error_from(status, body, f"{method} {template} failed after {attempt + 1} attempts")
                self._backoff(attempt, response, f"{method} {template} -> {status} {code}".rstrip())
                attempt += 1
                continue

            if status >= 400:
                if write and isinstance(body, dict) and isinstance(body.get("data"), list):
                    return status, body
                raise _error_from(status, body, f"{method} {template} failed")
            if body is None:
                if not response.content:
                    return status, None
                raise ZohoError(status, "INVALID_RESPONSE", f"{method} {template}: response is not JSON")
            if not isinstance(body, dict):
                raise ZohoError(status, "INVALID_RESPONSE", f"{method} {template}: response is not a JSON object")
            return status, body

    def _fail_if_known_down(self, url: str) -> None:
        why = reach.known_down(url)
        if why is not None:
            raise ZohoError(None, "CONNECTION_ERROR", why)

    def _give_up_if_unreachable(self, url: str, exc: BaseException, since: float | None, attempt: int,
                                what: str) -> float | None:
        """Track how long connections to `url` have been refused; past reach.GIVE_UP_SECONDS, give up."""
        since, why = reach.give_up_check(url, exc, since, attempt)
        if why is not None:
            raise ZohoError(None, "CONNECTION_ERROR", f"{what}: {why}")
        return since

    def _backoff(self, attempt: int, response: requests.Response | None, reason: str) -> None:
        """Exponential delay (capped by max_backoff, jittered to 50-100 %); a Retry-After wins as given."""
        delay = min(self.max_backoff, self.backoff_factor * (2**attempt))
        if self._jitter:
            delay *= 0.5 + self._rng.random() / 2
        retry_after = _retry_after_seconds(response) if response is not None else None
        if retry_after is not None:
            delay = retry_after  # the server's word beats our guess
        self._log(f"zoho: {reason}; retry {attempt + 1}/{self.max_retries} in {delay:.2f}s")
        self._sleep(delay)

    def _count(self, method: str, template: str) -> None:
        with self._stats_lock:
            self.calls[(method, template)] += 1

    def _settle(self, gate: CreditGate | None, cost: int, *, charged: bool) -> None:
        if charged:
            with self._stats_lock:
                self.credits_spent += cost
        if gate is not None:
            gate.after(cost)

    def _note_server_clock(self, response: requests.Response) -> None:
        """Zoho's clock against ours, from the response's Date header (whole seconds, stamped before we read
        the answer, so the estimate errs early: the safe side for a cursor)."""
        value = response.headers.get("Date")
        if not value:
            return
        try:
            server = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        self.server_offset = server - time.time()

    def server_now(self) -> dt.datetime:
        """Now, by Zoho's clock as last seen (our clock until a response said otherwise)."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.server_offset)

    def _note_credits(self, response: requests.Response) -> None:
        value = response.headers.get("X-API-CREDITS-REMAINING")
        if value is not None:
            try:
                remaining = int(value)
            except ValueError:
                return
            with self._stats_lock:
                self.credits_remaining = remaining
                self.credits_remaining_at = self._clock()

    @staticmethod
    def _json_or_none(response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    @staticmethod
    def _modified_since_header(modified_since: dt.datetime | None) -> dict:
        if modified_since is None:
            return {}
        return {"If-Modified-Since": format_zoho_datetime(modified_since)}

    def _log(self, message: str) -> None:
        if self._log_sink is None:
            return
        for secret in (self._client_secret, self._refresh_token, self._access_token):
            if secret:
                message = message.replace(secret, "***")
        self._log_sink(message)


def _error_from(status: int, body: Any, context: str) -> ZohoError:
    if isinstance(body, dict) and body.get("code"):
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        return ZohoError(status, str(body["code"]), f"{context}: {body.get('message') or ''}".rstrip(": "), details)
    return ZohoError(status, f"HTTP_{status}", context)


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _auth_error_text(error: str) -> str:
    known = {
        "invalid_code": "the accounts server refused the refresh token (wrong, revoked, or from another data centre)",
        "invalid_client": "the accounts server refused the client id/secret (wrong client or data centre)",
        "invalid_client_secret": "the accounts server refused the client secret",
        "access denied": "the accounts server denied the token request",
    }
    return known.get(error.lower(), f"the accounts server refused the token request ({error})")
