"""The Chargebee half of the sandbox: an in-memory Chargebee site that answers API v2 over HTTP.

Why it exists: nothing in this project may reach a real Chargebee site, yet the extractor, the demo and
every test need an API that behaves like one on the wire. This module emulates the parts of Chargebee API v2
(Product Catalog 2.0) that cbzoho touches: HTTP Basic auth with the site key, list/retrieve of customers,
subscriptions and item prices with Chargebee's filters, sorting and opaque `next_offset` pagination, the
write endpoints the demos use, idempotency keys, the per-site request-per-minute limit with HTTP 429 and
`Retry-After`, and Chargebee's error bodies (including the legacy `error_code`/`error_msg` keys). Facts come
from Chargebee's API v2 reference and the recorded payloads in `cbzoho_pipeline_tests/fixtures/chargebee/`.

What it must never do:
- change an object handed to `load`: loaded objects are stored and listed back exactly as given (no keys
  added, none reordered), because tests compare recorded Chargebee payloads against what comes back;
- read the wall clock for record timestamps: every `created_at`/`updated_at` comes from `sandbox.now()` so
  the control surface can move time (only the rate-limit window uses the monotonic clock, on purpose);
- scan and sort a whole table per request: lists walk per-site sorted indexes, so 100,000 customers page
  through in seconds;
- import anything from the product packages (the product talks to this module over HTTP only).

Deliberate simplifications are listed in `NOT_EMULATED` at the end of the module.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime as dt
import json
import math
import random
import re
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

JSON = dict[str, Any]

# --------------------------------------------------------------------------------------------------------
# Catalog and money
# --------------------------------------------------------------------------------------------------------

ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "XAF", "XOF"})
"""Chargebee's zero-decimal currencies: amounts are whole major units (reference §8)."""

_CATALOG_TIMESTAMP = 1704067200  # 2024-01-01T00:00:00Z: fixed so the default catalog is deterministic.
_MONTHLY_PRICES = {
    "basic": {"USD": 2900, "EUR": 2900, "GBP": 2900, "JPY": 3900},
    "pro": {"USD": 9900, "EUR": 9900, "GBP": 9900, "JPY": 12900},
    "enterprise": {"USD": 49900, "EUR": 49900, "GBP": 49900, "JPY": 64900},
}


def _default_item_prices() -> list[JSON]:
    prices: list[JSON] = []
    for plan, by_currency in _MONTHLY_PRICES.items():
        for currency, monthly in by_currency.items():
            for period, unit, factor in (("monthly", "month", 1), ("yearly", "year", 10)):
                prices.append(
                    {
                        "id": f"{plan}-{currency}-{period}",
                        "name": f"{plan.capitalize()} {currency} {period.capitalize()}",
                        "item_id": plan,
                        "item_type": "plan",
                        "currency_code": currency,
                        "price": monthly * factor,
                        "period": 1,
                        "period_unit": unit,
                        "pricing_model": "flat_fee",
                        "status": "active",
                        "object": "item_price",
                        "created_at": _CATALOG_TIMESTAMP,
                        "updated_at": _CATALOG_TIMESTAMP,
                        "resource_version": _CATALOG_TIMESTAMP * 1000 + len(prices),
                    }
                )
    return prices


DEFAULT_ITEM_PRICES: list[JSON] = _default_item_prices()
"""The catalog every site starts with (ids `{plan}-{CUR}-{period}`); the generator relies on these ids."""


def monthly_recurring_revenue(items: Iterable[tuple[int, int, str]]) -> int:
    """MRR in the currency's minor units from (amount, period, period_unit) of each recurring item.

    Each amount is normalised to one month exactly (yearly / 12, weekly * 52 / 12, daily * 365 / 12) and the
    sum is rounded half-up once, so a yearly price of 29000 gives 2417.
    """
    per_month = {"month": Fraction(1), "year": Fraction(1, 12), "week": Fraction(52, 12), "day": Fraction(365, 12)}
    total = Fraction(0)
    for amount, period, unit in items:
        total += Fraction(amount) * per_month[unit] / max(int(period), 1)
    return int(math.floor(total + Fraction(1, 2)))


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A Chargebee error answer; `body()` renders the documented keys plus the legacy ones."""

    def __init__(
        self,
        status: int,
        api_error_code: str,
        message: str,
        *,
        type: str | None = "invalid_request",
        param: str | None = None,
        error_code: str | None = None,
        error_msg: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.api_error_code = api_error_code
        self.message = message
        self.type = type
        self.param = param
        self.error_code = error_code or api_error_code
        self.error_msg = error_msg or message
        self.headers = dict(headers or {})

    def body(self) -> JSON:
        body: JSON = {"message": self.message}
        if self.type:
            body["type"] = self.type
        body["api_error_code"] = self.api_error_code
        if self.param:
            body["param"] = self.param
        body["error_code"] = self.error_code
        body["error_msg"] = self.error_msg
        body["http_status_code"] = self.status
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _wrong_value(param: str, message: str) -> ApiError:
    return ApiError(400, "param_wrong_value", f"{param} : {message}", param=param)


def _not_found(what: str, param: str | None = None) -> ApiError:
    return ApiError(404, "resource_not_found", f"Sorry, we couldn't find that resource. {what} not found.", param=param)


# Bodies as recorded from real Chargebee sites (fixtures 401.json, 429.json, 500.json) or reported by
# Chargebee users (invalid key). They carry no `type`, exactly as recorded.
_AUTH_WRONG_FORMAT = "Sorry,authentication failed.The basic authentication header has invalid format."
_AUTH_INVALID_KEY = "Sorry, authentication failed. Invalid api key"
_RATE_LIMITED = (
    "Sorry, access has been blocked temporarily due to request count exceeding acceptable limits. "
    "Please try after some time."
)
_INTERNAL = "Sorry,Something went wrong when trying to process the request."


def _auth_wrong_format() -> ApiError:
    return ApiError(
        401, "api_authentication_failed", _AUTH_WRONG_FORMAT, type=None, error_code="api_authentication_wrong_format"
    )


def _auth_invalid_key() -> ApiError:
    return ApiError(
        401, "api_authentication_failed", _AUTH_INVALID_KEY, type=None, error_code="api_authentication_invalid_key"
    )


def _rate_limited(retry_after: int) -> ApiError:
    headers = {"Retry-After": str(retry_after)}
    return ApiError(429, "api_request_limit_exceeded", _RATE_LIMITED, type=None, headers=headers)


def fault_response(kind: str, retry_after: int = 1) -> Response:
    """An injected failure in Chargebee's real shape: "429" (with Retry-After), "500" or "503"."""
    if kind == "429":
        return _rate_limited(retry_after).response()
    if kind == "500":
        return ApiError(500, "internal_error", _INTERNAL, type=None).response()
    if kind == "503":
        return ApiError(
            503,
            "internal_temporary_error",
            "Sorry, the request could not be processed now. Please retry after some time.",
            type="operation_failed",
        ).response()
    raise ValueError(f"unknown Chargebee fault kind {kind!r}")


# --------------------------------------------------------------------------------------------------------
# Query-string parsing
# --------------------------------------------------------------------------------------------------------

_MISSING_MS = -(2**62)
"""Sort-key value of a record that lacks the sort attribute: before every real timestamp."""


def parse_list_value(raw: str) -> list[str]:
    """Parse `[in]`/`[not_in]`/`[between]` values written `["a","b"]`, `[a,b]` or `['a', 'b']`.

    Raises ValueError when the value is not a bracketed list.
    """
    text = raw.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError("not a bracketed list")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in parsed]
    items: list[str] = []
    for part in _split_outside_quotes(text[1:-1]):
        part = part.strip()
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
            part = part[1:-1]
        if part:
            items.append(part)
    return items


def _split_outside_quotes(text: str) -> list[str]:
    parts, current, quote = [], [], None
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_bool(param: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise _wrong_value(param, "must be true or false")


def _parse_int(param: str, raw: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise _wrong_value(param, "must be an integer") from None
    if minimum is not None and value < minimum:
        raise _wrong_value(param, f"cannot be less than {minimum}")
    if maximum is not None and value > maximum:
        raise _wrong_value(param, f"cannot be more than {maximum}")
    return value


def _ms(value: Any) -> int:
    """Sort-key milliseconds for a stored timestamp; anything but a number counts as missing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return _MISSING_MS
    return int(round(value * 1000))


def _timestamp(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


# --------------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------------

_OPERATORS = {
    "string": {"is", "is_not", "starts_with", "in", "not_in", "is_present"},
    "enum": {"is", "is_not", "in", "not_in"},
    "boolean": {"is"},
    "number": {"is", "is_not", "lt", "lte", "gt", "gte", "between"},
    "timestamp": {"after", "before", "on", "between", "is_present"},
}

_SUBSCRIPTION_STATUSES = ("future", "in_trial", "active", "non_renewing", "paused", "cancelled", "transferred")
_ENUM_VALUES = {
    "status": _SUBSCRIPTION_STATUSES,
    "auto_collection": ("on", "off"),
    "taxability": ("taxable", "exempt", "zero_rated"),
    "channel": ("web", "app_store", "play_store"),
}

_CUSTOMER_FILTERS = {
    **dict.fromkeys(("id", "first_name", "last_name", "email", "company", "phone", "business_entity_id"), "string"),
    **dict.fromkeys(("auto_collection", "taxability", "offline_payment_method", "channel"), "enum"),
    "auto_close_invoices": "boolean",
    "created_at": "timestamp",
    "updated_at": "timestamp",
}
_SUBSCRIPTION_FILTERS = {
    **dict.fromkeys(
        ("id", "customer_id", "plan_id", "item_id", "item_price_id", "cancel_reason_code", "business_entity_id"),
        "string",
    ),
    **dict.fromkeys(("status", "cancel_reason", "offline_payment_method", "channel"), "enum"),
    "remaining_billing_cycles": "number",
    **dict.fromkeys(
        ("created_at", "activated_at", "next_billing_at", "cancelled_at", "updated_at"), "timestamp"
    ),
    **dict.fromkeys(("has_scheduled_changes", "auto_close_invoices", "override_relationship"), "boolean"),
}
_ITEM_PRICE_FILTERS = {
    **dict.fromkeys(("id", "name", "item_id", "currency_code", "business_entity_id"), "string"),
    **dict.fromkeys(("item_type", "status", "period_unit", "pricing_model"), "enum"),
    "created_at": "timestamp",
    "updated_at": "timestamp",
}

Predicate = Callable[[JSON], bool]


def _values_of(obj: JSON, attribute: str, catalog: Mapping[str, JSON]) -> list[Any]:
    """The values a filter compares; subscription item filters look inside `subscription_items`."""
    if obj.get("object") == "subscription" or "subscription_items" in obj:
        if attribute == "item_price_id" and "subscription_items" in obj:
            return [i.get("item_price_id") for i in obj.get("subscription_items") or [] if isinstance(i, dict)]
        if attribute == "item_id" and "subscription_items" in obj:
            ids = [i.get("item_price_id") for i in obj.get("subscription_items") or [] if isinstance(i, dict)]
            return [catalog[i].get("item_id") for i in ids if i in catalog]
    value = obj.get(attribute)
    return [] if value is None else [value]


def _compile_filter(
    attribute: str, kind: str, operator: str, raw: str, catalog: Mapping[str, JSON]
) -> tuple[Predicate, tuple[int | None, int | None] | None]:
    """One `attribute[operator]=raw` filter as a predicate, plus for timestamps an inclusive ms range.

    A record that lacks the attribute matches nothing except `[is_present]=false`: that is how Chargebee
    treats `updated_at` on records last changed before 2016-09-28 (reference §13.1).
    """
    param = f"{attribute}[{operator}]"
    if operator not in _OPERATORS[kind]:
        raise _wrong_value(param, f"operator {operator} is not supported for {attribute}")

    def values(obj: JSON) -> list[Any]:
        return _values_of(obj, attribute, catalog)

    if operator == "is_present":
        wanted = _parse_bool(param, raw)
        return (lambda obj: bool(values(obj)) == wanted), None

    if kind == "timestamp":
        if operator == "between":
            try:
                bounds = [int(v) for v in parse_list_value(raw)]
            except ValueError:
                raise _wrong_value(param, "must be a list of two timestamps, e.g. [1700000000,1700086400]") from None
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise _wrong_value(param, "must be a list of two ascending timestamps")
            low, high = bounds
            lo_ms, hi_ms = low * 1000, high * 1000
        else:
            instant = _parse_int(param, raw)
            if operator == "after":
                low, high = instant, None
                lo_ms, hi_ms = instant * 1000 + 1, None
            elif operator == "before":
                low, high = None, instant
                lo_ms, hi_ms = None, instant * 1000 - 1
            else:  # "on": the UTC calendar day that contains the instant
                day = instant - instant % 86400
                low, high = day, day + 86399
                lo_ms, hi_ms = day * 1000, (day + 86400) * 1000 - 1
        strict_low = operator == "after"
        strict_high = operator == "before"

        def in_range(obj: JSON) -> bool:
            value = _timestamp(obj.get(attribute))
            if value is None:
                return False
            if low is not None and (value <= low if strict_low else value < low):
                return False
            if high is not None and (value >= high if strict_high else value > high):
                return False
            return True

        return in_range, (lo_ms, hi_ms)

    if kind == "boolean":
        wanted = _parse_bool(param, raw)
        return (lambda obj: any(v is wanted for v in values(obj))), None

    if kind == "number":
        if operator == "between":
            try:
                low_n, high_n = (int(v) for v in parse_list_value(raw))
            except ValueError:
                raise _wrong_value(param, "must be a list of two numbers") from None
            return (lambda obj: any(_num(v) is not None and low_n <= v <= high_n for v in values(obj))), None
        number = _parse_int(param, raw)
        compare: Callable[[Any], bool] = {
            "is": lambda v: v == number,
            "is_not": lambda v: v != number,
            "lt": lambda v: v < number,
            "lte": lambda v: v <= number,
            "gt": lambda v: v > number,
            "gte": lambda v: v >= number,
        }[operator]
        return (lambda obj: any(_num(v) is not None and compare(v) for v in values(obj))), None

    # string and enum
    if operator in ("in", "not_in"):
        try:
            wanted_set = set(parse_list_value(raw))
        except ValueError:
            raise _wrong_value(param, 'must be a bracketed list, e.g. ["a","b"]') from None
        checked: Iterable[str] = wanted_set
    else:
        wanted_value = raw
        checked = [raw]
    allowed = _ENUM_VALUES.get(attribute) if kind == "enum" else None
    if allowed is not None:
        for value in checked:
            if value not in allowed:
                raise _wrong_value(param, f"invalid value {value!r}; allowed: {', '.join(allowed)}")
    if operator == "is":
        return (lambda obj: wanted_value in values(obj)), None
    if operator == "is_not":
        return (lambda obj: bool(values(obj)) and wanted_value not in values(obj)), None
    if operator == "starts_with":
        return (lambda obj: any(isinstance(v, str) and v.startswith(wanted_value) for v in values(obj))), None
    if operator == "in":
        return (lambda obj: any(v in wanted_set for v in values(obj) if isinstance(v, str))), None
    return (lambda obj: bool(values(obj)) and not any(v in wanted_set for v in values(obj) if isinstance(v, str))), None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


_FILTER_NAME = re.compile(r"^([a-z0-9_]+)\[([a-z_]+)\]$")


@dataclass
class _ListQuery:
    limit: int = 10
    sort_field: str = "created_at"
    descending: bool = False
    cursor: tuple[int, str] | None = None
    include_deleted: bool = False
    predicates: list[Predicate] = field(default_factory=list)
    low_ms: int | None = None
    high_ms: int | None = None
    bounded: bool = False  # a filter on the sort attribute excludes records that lack it


def encode_offset(key: tuple[int, str]) -> str:
    """`next_offset` in the shape real sites use: a JSON array string of the sort value (ms) and an id."""
    return json.dumps([str(key[0]), key[1]], separators=(",", ":"))


def _decode_offset(raw: str) -> tuple[int, str]:
    try:
        parsed = json.loads(raw) if len(raw) <= 1000 else None
    except ValueError:
        parsed = None
    if (
        isinstance(parsed, list)
        and len(parsed) == 2
        and all(isinstance(p, str) for p in parsed)
        and re.fullmatch(r"-?\d{1,20}", parsed[0])
    ):
        return int(parsed[0]), parsed[1]
    raise _wrong_value("offset", "invalid value; pass back the next_offset of the previous page unchanged")


def parse_list_query(
    items: Iterable[tuple[str, str]], filters: Mapping[str, str], catalog: Mapping[str, JSON]
) -> _ListQuery:
    query = _ListQuery()
    ranges: list[tuple[str, tuple[int | None, int | None]]] = []
    for name, raw in items:
        if name == "limit":
            query.limit = _parse_int("limit", raw, minimum=1, maximum=100)
        elif name == "offset":
            query.cursor = _decode_offset(raw)
        elif name == "include_deleted":
            query.include_deleted = _parse_bool(name, raw)
        elif name in ("sort_by[asc]", "sort_by[desc]"):
            if raw not in ("created_at", "updated_at"):
                raise _wrong_value(name, "sortable attributes are created_at and updated_at")
            query.sort_field, query.descending = raw, name == "sort_by[desc]"
        else:
            match = _FILTER_NAME.match(name)
            if match is None:
                continue  # plain parameters the sandbox does not know are ignored
            attribute, operator = match.groups()
            kind = filters.get(attribute)
            if kind is None:
                raise _wrong_value(name, f"{attribute} is not a filterable attribute of this resource")
            predicate, ms_range = _compile_filter(attribute, kind, operator, raw, catalog)
            query.predicates.append(predicate)
            if ms_range is not None:
                ranges.append((attribute, ms_range))
    for attribute, (lo_ms, hi_ms) in ranges:
        if attribute != query.sort_field:
            continue
        query.bounded = True
        if lo_ms is not None:
            query.low_ms = lo_ms if query.low_ms is None else max(query.low_ms, lo_ms)
        if hi_ms is not None:
            query.high_ms = hi_ms if query.high_ms is None else min(query.high_ms, hi_ms)
    return query


# --------------------------------------------------------------------------------------------------------
# Storage with sorted indexes
# --------------------------------------------------------------------------------------------------------


class _Table:
    """Objects of one resource by id, with (ms, id) indexes sorted on created_at and updated_at."""

    SORT_FIELDS = ("created_at", "updated_at")

    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}
        self.extras: dict[str, JSON] = {}  # other keys of a loaded list entry, e.g. "card"
        self.index: dict[str, list[tuple[int, str]]] = {f: [] for f in self.SORT_FIELDS}

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, object_id: str) -> JSON | None:
        return self.objects.get(object_id)

    def put(self, obj: JSON) -> None:
        """Insert or replace one object, keeping the indexes sorted (O(log n) search, one list shift)."""
        object_id = obj["id"]
        old = self.objects.get(object_id)
        for name, keys in self.index.items():
            if old is not None:
                old_key = (_ms(old.get(name)), object_id)
                position = bisect_left(keys, old_key)
                if position < len(keys) and keys[position] == old_key:
                    del keys[position]
            insort(keys, (_ms(obj.get(name)), object_id))
        self.objects[object_id] = obj

    def put_many(self, objects: Iterable[JSON]) -> int:
        """Bulk insert for `load`: store everything, then rebuild the indexes with one sort each."""
        count = 0
        for obj in objects:
            self.objects[obj["id"]] = obj
            count += 1
        for name in self.SORT_FIELDS:
            self.index[name] = sorted((_ms(o.get(name)), i) for i, o in self.objects.items())
        return count

    def page(self, query: _ListQuery, visible: Predicate) -> tuple[list[JSON], str | None]:
        keys = self.index[query.sort_field]
        lo, hi = 0, len(keys)
        if query.bounded:
            low = _MISSING_MS + 1 if query.low_ms is None else query.low_ms
            lo = bisect_left(keys, (low,))
        if query.high_ms is not None:
            hi = bisect_left(keys, (query.high_ms + 1,))
        if query.cursor is not None:
            if query.descending:
                hi = min(hi, bisect_left(keys, query.cursor))
            else:
                lo = max(lo, bisect_right(keys, query.cursor))
        positions = range(hi - 1, lo - 1, -1) if query.descending else range(lo, hi)
        found: list[JSON] = []
        last_key: tuple[int, str] | None = None
        for position in positions:
            key = keys[position]
            obj = self.objects[key[1]]
            if not visible(obj) or not all(p(obj) for p in query.predicates):
                continue
            if len(found) == query.limit:
                return found, encode_offset(last_key)  # type: ignore[arg-type]
            found.append(obj)
            last_key = key
        return found, None


# --------------------------------------------------------------------------------------------------------
# Form bodies
# --------------------------------------------------------------------------------------------------------

_FORM_NAME = re.compile(r"^([A-Za-z0-9_]+)((?:\[[^\[\]]*\])*)$")


def parse_form(body: bytes) -> JSON:
    """Turn `a=1&b[c]=2&d[e][0]=3` into {"a": "1", "b": {"c": "2"}, "d": {"e": {"0": "3"}}}."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "The request body is not valid UTF-8.") from None
    result: JSON = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        match = _FORM_NAME.match(name)
        if match is None:
            raise _wrong_value(name, "malformed parameter name")
        path = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _wrong_value(name, "parameter given both as a value and as an object")
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise _wrong_value(name, "parameter given both as a value and as an object")
        node[path[-1]] = value
    return result


_ONE_PLAN = "a subscription takes exactly one plan item price"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_CUSTOMER_STRINGS = {
    "first_name": 150,
    "last_name": 150,
    "email": 70,
    "phone": 50,
    "company": 250,
    "locale": 50,
    "preferred_currency_code": 3,
    "invoice_notes": 2000,
    "business_entity_id": 50,
}
_BILLING_ADDRESS_STRINGS = {
    "first_name": 150,
    "last_name": 150,
    "email": 70,
    "company": 250,
    "phone": 50,
    "line1": 150,
    "line2": 150,
    "line3": 150,
    "city": 50,
    "state_code": 50,
    "state": 50,
    "country": 50,
    "zip": 20,
}
_CUSTOM_FIELD_MAX = 250
_CUSTOMER_ORDER = (
    "id", "first_name", "last_name", "email", "phone", "company", "vat_number", "auto_collection",
    "net_term_days", "allow_direct_debit", "created_at", "taxability", "updated_at", "locale", "pii_cleared",
    "channel", "resource_version", "deleted", "object", "billing_address", "card_status", "promotional_credits",
    "refundable_credits", "excess_payments", "unbilled_charges", "preferred_currency_code", "invoice_notes",
    "business_entity_id", "meta_data", "auto_close_invoices",
)  # fmt: skip


def _string(form: JSON, name: str, max_length: int, param: str | None = None) -> str | None:
    value = form.get(name)
    param = param or name
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong_value(param, "must be a single value")
    if len(value) > max_length:
        raise _wrong_value(param, f"cannot be longer than {max_length} characters")
    if name == "email" and value and not _EMAIL.match(value):
        raise _wrong_value(param, "invalid email address")
    return value


def _enum(form: JSON, name: str, allowed: tuple[str, ...]) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise _wrong_value(name, f"invalid value; allowed: {', '.join(allowed)}")
    return value


def _meta_data(form: JSON) -> JSON | None:
    raw = form.get("meta_data")
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > 65535:
        raise _wrong_value("meta_data", "must be a JSON object of at most 65535 characters")
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise _wrong_value("meta_data", "must be a valid JSON object") from None
    if not isinstance(parsed, dict):
        raise _wrong_value("meta_data", "must be a valid JSON object")
    return parsed


def _custom_fields(form: JSON) -> JSON:
    fields: JSON = {}
    for name, value in form.items():
        if name.startswith("cf_"):
            if not isinstance(value, str):
                raise _wrong_value(name, "must be a single value")
            if len(value) > _CUSTOM_FIELD_MAX:
                raise _wrong_value(name, f"cannot be longer than {_CUSTOM_FIELD_MAX} characters")
            fields[name] = value
    return fields


def _reject_unknown(form: JSON, allowed: set[str]) -> None:
    for name in form:
        if name not in allowed and not name.startswith("cf_"):
            raise _wrong_value(name, "unknown parameter for this operation")


def _billing_address(form: JSON) -> JSON | None:
    raw = form.get("billing_address")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _wrong_value("billing_address", "must be given as billing_address[field]")
    address: JSON = {}
    for name in raw:
        if name not in _BILLING_ADDRESS_STRINGS and name != "validation_status":
            raise _wrong_value(f"billing_address[{name}]", "unknown parameter for this operation")
    for name, max_length in _BILLING_ADDRESS_STRINGS.items():
        value = _string(raw, name, max_length, f"billing_address[{name}]")
        if value:
            address[name] = value
    status = raw.get("validation_status") or "not_validated"
    if status not in ("not_validated", "valid", "partially_valid", "invalid"):
        raise _wrong_value("billing_address[validation_status]", "invalid value")
    address["validation_status"] = status
    address["object"] = "billing_address"
    return address


def _ordered(obj: JSON, order: tuple[str, ...]) -> JSON:
    """The object with known keys in Chargebee's usual order, then custom fields and the rest."""
    result = {k: obj[k] for k in order if k in obj}
    result.update({k: v for k, v in obj.items() if k not in result})
    return result


def _add_period(timestamp: int, unit: str, count: int) -> int:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    if unit == "day":
        return timestamp + 86400 * count
    if unit == "week":
        return timestamp + 7 * 86400 * count
    months = count * (12 if unit == "year" else 1)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


# --------------------------------------------------------------------------------------------------------
# The site
# --------------------------------------------------------------------------------------------------------


def _replace_extras(extras: dict[str, JSON], loaded: Mapping[str, JSON], new: Mapping[str, JSON]) -> None:
    """A reloaded object keeps only the list-entry extras it was loaded with this time."""
    for object_id in loaded:
        extras.pop(object_id, None)
    extras.update(new)


@dataclass
class _StoredResponse:
    fingerprint: tuple[Any, ...]
    stored_at: float
    status: int
    body: bytes


class ChargebeeSite:
    """One Chargebee site (test or live) with its data, settings, rate-limit window and idempotency keys."""

    def __init__(self, sandbox: Any, name: str, api_key: str, live: bool) -> None:
        self.sandbox = sandbox
        self.name = name
        self.api_key = api_key
        self.live = live
        self.lock = threading.RLock()
        self.reset()

    # -- control surface -------------------------------------------------------------------------------

    def default_settings(self) -> JSON:
        return {
            "rate_limit_per_minute": 1000 if self.live else 150,
            "rate_limit_window_seconds": 60.0,
            "idempotency_window_seconds": 1800,
        }

    def reset(self) -> None:
        with self.lock:
            self.customers = _Table()
            self.subscriptions = _Table()
            self.item_prices = _Table()
            self.subscriptions_of: dict[str, set[str]] = {}
            self._settings = self.default_settings()
            self._hits: deque[float] = deque()
            self._idempotency: dict[str, _StoredResponse] = {}
            self._last_version = 0
            self._ids = random.Random(f"chargebee-ids:{self.name}")
            self.item_prices.put_many(json.loads(json.dumps(DEFAULT_ITEM_PRICES)))
            self._note_versions(DEFAULT_ITEM_PRICES)

    def settings(self) -> JSON:
        return dict(self._settings)

    def update_settings(self, changes: Mapping[str, Any]) -> JSON:
        with self.lock:
            for key, value in changes.items():
                if key not in self._settings:
                    raise ValueError(f"unknown Chargebee site setting {key!r}; known: {sorted(self._settings)}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"setting {key!r} must be a positive number")
                self._settings[key] = value
            return self.settings()

    def counts(self) -> JSON:
        with self.lock:
            return {
                "customers": len(self.customers),
                "subscriptions": len(self.subscriptions),
                "item_prices": len(self.item_prices),
            }

    def load(self, data: Mapping[str, Any]) -> JSON:
        """Store objects exactly as given (bare objects or list-entry wrappers); return what was loaded."""
        unknown = set(data) - {"customers", "subscriptions", "item_prices"}
        if unknown:
            raise ValueError(f"unknown Chargebee collections {sorted(unknown)}")
        customers: dict[str, JSON] = {}
        customer_extras: dict[str, JSON] = {}
        embedded_customers: dict[str, JSON] = {}
        subscriptions: dict[str, JSON] = {}
        subscription_extras: dict[str, JSON] = {}
        item_prices: dict[str, JSON] = {}
        for position, element in enumerate(data.get("customers") or []):
            obj, extras = self._unwrap(element, "customer", f"customers[{position}]")
            customers[obj["id"]] = obj
            if extras:
                customer_extras[obj["id"]] = extras
        for position, element in enumerate(data.get("subscriptions") or []):
            obj, extras = self._unwrap(element, "subscription", f"subscriptions[{position}]")
            embedded = extras.pop("customer", None)
            if isinstance(embedded, dict) and isinstance(embedded.get("id"), str):
                embedded_customers.setdefault(embedded["id"], embedded)
            subscriptions[obj["id"]] = obj
            if extras:
                subscription_extras[obj["id"]] = extras
        for position, element in enumerate(data.get("item_prices") or []):
            obj, _ = self._unwrap(element, "item_price", f"item_prices[{position}]")
            item_prices[obj["id"]] = obj
        with self.lock:
            for customer_id, embedded in embedded_customers.items():
                if customer_id not in customers and customer_id not in self.customers.objects:
                    customers[customer_id] = embedded
            self.customers.put_many(customers.values())
            _replace_extras(self.customers.extras, customers, customer_extras)
            for sub_id, sub in subscriptions.items():
                old = self.subscriptions.get(sub_id)
                if old is not None:
                    self.subscriptions_of.get(str(old.get("customer_id")), set()).discard(sub_id)
                self.subscriptions_of.setdefault(str(sub.get("customer_id")), set()).add(sub_id)
            self.subscriptions.put_many(subscriptions.values())
            _replace_extras(self.subscriptions.extras, subscriptions, subscription_extras)
            self.item_prices.put_many(item_prices.values())
            for objects in (customers.values(), subscriptions.values(), item_prices.values()):
                self._note_versions(objects)
        return {"customers": len(customers), "subscriptions": len(subscriptions), "item_prices": len(item_prices)}

    @staticmethod
    def _unwrap(element: Any, resource: str, where: str) -> tuple[JSON, JSON]:
        if not isinstance(element, dict):
            raise ValueError(f"{where}: expected an object")
        if "id" not in element and isinstance(element.get(resource), dict):
            extras = {k: v for k, v in element.items() if k != resource}
            element = element[resource]
        else:
            extras = {}
        if not isinstance(element.get("id"), str) or not element["id"]:
            raise ValueError(f"{where}: a {resource} needs a non-empty string id")
        return element, extras

    def _note_versions(self, objects: Iterable[JSON]) -> None:
        for obj in objects:
            version = obj.get("resource_version")
            if isinstance(version, int) and not isinstance(version, bool):
                self._last_version = max(self._last_version, version)

    # -- request gates ---------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> None:
        """HTTP Basic with the API key as user name and an empty password (any password is ignored)."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise _auth_wrong_format()
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _auth_wrong_format() from None
        user, colon, _ = decoded.partition(":")
        if not colon:
            raise _auth_wrong_format()
        if user != self.api_key:
            raise _auth_invalid_key()

    def admit(self) -> None:
        """Sliding-window request-per-minute limit on the monotonic clock.

        Over the limit every request is refused (a test site blocks everything until the rate drops) and
        refused requests do not count, so a client that waits `Retry-After` seconds gets through.
        """
        with self.lock:
            now = time.monotonic()
            window = float(self._settings["rate_limit_window_seconds"])
            limit = int(self._settings["rate_limit_per_minute"])
            hits = self._hits
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                wait = hits[len(hits) - limit] + window - now
                raise _rate_limited(max(1, math.ceil(wait)))
            hits.append(now)

    def replay(self, key: str, fingerprint: tuple[Any, ...]) -> _StoredResponse | None:
        """The stored answer for an idempotency key, None if unused; 422 if reused for another request."""
        if len(key) > 100:
            raise _wrong_value("chargebee-idempotency-key", "cannot be longer than 100 characters")
        stored = self._idempotency.get(key)
        if stored is None:
            return None
        if self.sandbox.now() - stored.stored_at > float(self._settings["idempotency_window_seconds"]):
            del self._idempotency[key]
            return None
        if stored.fingerprint != fingerprint:
            raise ApiError(
                422,
                "unable_to_process_request",
                "The idempotency key was already used for a different request.",
            )
        return stored

    def remember(self, key: str, fingerprint: tuple[Any, ...], status: int, body: bytes) -> None:
        now = self.sandbox.now()
        if len(self._idempotency) >= 10_000:  # keep a long demo's memory bounded: drop expired keys
            horizon = now - float(self._settings["idempotency_window_seconds"])
            self._idempotency = {k: v for k, v in self._idempotency.items() if v.stored_at >= horizon}
        self._idempotency[key] = _StoredResponse(fingerprint, now, status, body)

    # -- clock -----------------------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int]:
        """(unix seconds, resource_version ms) for a change now; versions strictly increase per site."""
        now = self.sandbox.now()
        version = max(int(now * 1000), self._last_version + 1)
        self._last_version = version
        return int(now), version

    def _touch(self, obj: JSON) -> JSON:
        seconds, version = self._stamp()
        obj["updated_at"] = seconds
        obj["resource_version"] = version
        return obj

    def _new_id(self) -> str:
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        while True:
            candidate = "Az" + "".join(self._ids.choice(alphabet) for _ in range(14))
            if candidate not in self.customers.objects and candidate not in self.subscriptions.objects:
                return candidate

    # -- reads -----------------------------------------------------------------------------------------

    def _visible(self, include_deleted: bool) -> Predicate:
        if include_deleted:
            return lambda obj: True
        return lambda obj: obj.get("deleted") is not True

    def list_customers(self, items: Iterable[tuple[str, str]]) -> JSON:
        query = parse_list_query(items, _CUSTOMER_FILTERS, self.item_prices.objects)
        found, next_offset = self.customers.page(query, self._visible(query.include_deleted))
        entries = [self._customer_entry(obj) for obj in found]
        return self._list_body(entries, next_offset)

    def list_subscriptions(self, items: Iterable[tuple[str, str]]) -> JSON:
        query = parse_list_query(items, _SUBSCRIPTION_FILTERS, self.item_prices.objects)
        found, next_offset = self.subscriptions.page(query, self._visible(query.include_deleted))
        entries = [self._subscription_entry(obj) for obj in found]
        return self._list_body(entries, next_offset)

    def list_item_prices(self, items: Iterable[tuple[str, str]]) -> JSON:
        query = parse_list_query(items, _ITEM_PRICE_FILTERS, self.item_prices.objects)
        found, next_offset = self.item_prices.page(query, self._visible(query.include_deleted))
        return self._list_body([{"item_price": obj} for obj in found], next_offset)

    @staticmethod
    def _list_body(entries: list[JSON], next_offset: str | None) -> JSON:
        body: JSON = {"list": entries}
        if next_offset is not None:
            body["next_offset"] = next_offset
        return body

    def _customer_entry(self, customer: JSON) -> JSON:
        return {"customer": customer, **self.customers.extras.get(customer["id"], {})}

    def _subscription_entry(self, subscription: JSON) -> JSON:
        entry: JSON = {"subscription": subscription}
        customer = self.customers.get(str(subscription.get("customer_id")))
        if customer is not None:  # only loaded data can hold a subscription whose customer is unknown
            entry["customer"] = customer
        entry.update(self.subscriptions.extras.get(subscription["id"], {}))
        return entry

    def _live_customer(self, customer_id: str) -> JSON:
        customer = self.customers.get(customer_id)
        if customer is None or customer.get("deleted") is True:
            raise _not_found("Customer")
        return customer

    def _live_subscription(self, subscription_id: str) -> JSON:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription.get("deleted") is True:
            raise _not_found("Subscription")
        return subscription

    def retrieve_customer(self, customer_id: str) -> JSON:
        return self._customer_entry(self._live_customer(customer_id))

    def retrieve_subscription(self, subscription_id: str) -> JSON:
        return self._subscription_entry(self._live_subscription(subscription_id))

    def retrieve_item_price(self, item_price_id: str) -> JSON:
        item_price = self.item_prices.get(item_price_id)
        if item_price is None:
            raise _not_found("Item price")
        return {"item_price": item_price}

    # -- customer writes -------------------------------------------------------------------------------

    _CUSTOMER_WRITE_PARAMS = {
        *_CUSTOMER_STRINGS, "auto_collection", "net_term_days", "allow_direct_debit", "taxability", "meta_data",
    }  # fmt: skip

    def _customer_fields(self, form: JSON) -> JSON:
        fields: JSON = {}
        for name, max_length in _CUSTOMER_STRINGS.items():
            value = _string(form, name, max_length)
            if value is not None:
                fields[name] = value
        currency = fields.get("preferred_currency_code")
        if currency and not re.fullmatch(r"[A-Z]{3}", currency):
            raise _wrong_value("preferred_currency_code", "must be an ISO 4217 currency code")
        for name, allowed in (("auto_collection", ("on", "off")), ("taxability", ("taxable", "exempt", "zero_rated"))):
            value = _enum(form, name, allowed)
            if value is not None:
                fields[name] = value
        if "net_term_days" in form:
            fields["net_term_days"] = _parse_int("net_term_days", str(form["net_term_days"]), minimum=0)
        if "allow_direct_debit" in form:
            fields["allow_direct_debit"] = _parse_bool("allow_direct_debit", str(form["allow_direct_debit"]))
        meta = _meta_data(form)
        if meta is not None:
            fields["meta_data"] = meta
        fields.update(_custom_fields(form))
        return fields

    def create_customer(self, form: JSON) -> JSON:
        _reject_unknown(form, self._CUSTOMER_WRITE_PARAMS | {"id", "vat_number", "billing_address"})
        customer_id = _string(form, "id", 50)
        if customer_id is not None and not customer_id:
            raise _wrong_value("id", "cannot be blank")
        if customer_id is not None and customer_id in self.customers.objects:
            raise ApiError(400, "duplicate_entry", f"id : The value {customer_id} is already present.", param="id")
        fields = self._customer_fields(form)
        vat_number = _string(form, "vat_number", 20)
        address = _billing_address(form)
        created_at, version = self._stamp()
        customer: JSON = {
            "id": customer_id or self._new_id(),
            **{k: v for k, v in fields.items() if v != ""},
            "auto_collection": fields.get("auto_collection", "on"),
            "net_term_days": fields.get("net_term_days", 0),
            "allow_direct_debit": fields.get("allow_direct_debit", False),
            "created_at": created_at,
            "taxability": fields.get("taxability", "taxable"),
            "updated_at": created_at,
            "pii_cleared": "active",
            "channel": "web",
            "resource_version": version,
            "deleted": False,
            "object": "customer",
            "card_status": "no_card",
            "promotional_credits": 0,
            "refundable_credits": 0,
            "excess_payments": 0,
            "unbilled_charges": 0,
            "auto_close_invoices": True,
        }
        if vat_number:
            customer["vat_number"] = vat_number
        if address is not None:
            customer["billing_address"] = address
        customer = _ordered(customer, _CUSTOMER_ORDER)
        self.customers.put(customer)
        return {"customer": customer}

    def update_customer(self, customer_id: str, form: JSON) -> JSON:
        current = self._live_customer(customer_id)
        _reject_unknown(form, set(self._CUSTOMER_WRITE_PARAMS))
        fields = self._customer_fields(form)
        customer = dict(current)
        for name, value in fields.items():
            if value == "":
                customer.pop(name, None)  # a blank value clears an optional attribute
            else:
                customer[name] = value
        self.customers.put(self._touch(customer))
        return self._customer_entry(customer)

    def update_billing_info(self, customer_id: str, form: JSON) -> JSON:
        """Assignment semantics: address fields and vat_number left out of the request are removed."""
        current = self._live_customer(customer_id)
        _reject_unknown(form, {"billing_address", "vat_number", "vat_number_prefix"})
        address = _billing_address(form)
        vat_number = _string(form, "vat_number", 20)
        customer = {k: v for k, v in current.items() if k not in ("billing_address", "vat_number")}
        if vat_number:
            customer["vat_number"] = vat_number
        if address is not None:
            customer["billing_address"] = address
        customer = _ordered(self._touch(customer), _CUSTOMER_ORDER)
        self.customers.put(customer)
        return self._customer_entry(customer)

    def delete_customer(self, customer_id: str, form: JSON) -> JSON:
        """Mark the customer and its subscriptions deleted at once (real sites finish within minutes)."""
        current = self._live_customer(customer_id)
        _reject_unknown(form, {"delete_payment_method"})
        for sub_id in sorted(self.subscriptions_of.get(customer_id, ())):
            sub = self.subscriptions.get(sub_id)
            if sub is not None and sub.get("deleted") is not True:
                self.subscriptions.put(self._touch({**sub, "deleted": True}))
        customer = self._touch({**current, "deleted": True})
        self.customers.put(customer)
        return self._customer_entry(customer)

    # -- subscription writes ---------------------------------------------------------------------------

    def _items(
        self, form: JSON, currency: str | None, *, require_plan: bool = True
    ) -> tuple[list[JSON], JSON | None, str]:
        """Parse `subscription_items[field][i]` into subscription_item objects: (items, plan price, currency).

        At most one plan item is accepted; `require_plan` demands exactly one (creation does, an update
        need not repeat the plan). Every item price must exist, be active and share one currency.
        """
        raw = form.get("subscription_items")
        if not isinstance(raw, dict) or not isinstance(raw.get("item_price_id"), dict) or not raw["item_price_id"]:
            raise _wrong_value("subscription_items[item_price_id][0]", "cannot be blank")
        columns = {"item_price_id", "quantity", "unit_price", "item_type", "billing_cycles"}
        for name, by_index in raw.items():
            if name not in columns or not isinstance(by_index, dict):
                raise _wrong_value(f"subscription_items[{name}]", "unknown parameter for this operation")
            for index in by_index:
                if not index.isdigit() or index not in raw["item_price_id"]:
                    raise _wrong_value(f"subscription_items[{name}][{index}]", "has no matching item_price_id")

        def column(name: str, index: str) -> str | None:
            return raw.get(name, {}).get(index)

        items: list[JSON] = []
        plan: JSON | None = None
        for index in sorted(raw["item_price_id"], key=int):
            param = f"subscription_items[item_price_id][{index}]"
            price_id = raw["item_price_id"][index]
            price = self.item_prices.get(price_id)
            if price is None or price.get("status", "active") != "active":
                raise ApiError(404, "resource_not_found", f"{param} : item price {price_id} not found", param=param)
            price_currency = price.get("currency_code")
            if currency is None:
                currency = price_currency
            elif price_currency != currency:
                raise _wrong_value(param, f"currency {price_currency} differs from the subscription's {currency}")
            item_type = price.get("item_type", "plan")
            given_type = column("item_type", index)
            if given_type is not None and given_type != item_type:
                raise _wrong_value(f"subscription_items[item_type][{index}]", f"item price is of type {item_type}")
            quantity = _parse_int(f"subscription_items[quantity][{index}]", column("quantity", index) or "1", minimum=1)
            unit_price = price.get("price", 0)
            if column("unit_price", index) is not None:
                unit_price = _parse_int(f"subscription_items[unit_price][{index}]", column("unit_price", index) or "",
                                        minimum=0)  # fmt: skip
            item: JSON = {
                "item_price_id": price_id,
                "item_type": item_type,
                "quantity": quantity,
                "unit_price": unit_price,
                "amount": unit_price * quantity,
                "free_quantity": 0,
            }
            if column("billing_cycles", index) is not None:
                item["billing_cycles"] = _parse_int(
                    f"subscription_items[billing_cycles][{index}]", column("billing_cycles", index) or "", minimum=1
                )
            item["object"] = "subscription_item"
            items.append(item)
            if item_type == "plan":
                if plan is not None:
                    raise _wrong_value(param, _ONE_PLAN)
                plan = price
        if plan is None and require_plan:
            raise _wrong_value("subscription_items[item_price_id][0]", _ONE_PLAN)
        if len({i["item_price_id"] for i in items}) != len(items):
            raise _wrong_value("subscription_items[item_price_id]", "an item price may appear only once")
        return items, plan, str(currency)

    def _mrr(self, items: list[JSON], status: str) -> int:
        if status not in ("active", "non_renewing"):
            return 0  # trials, future, paused and cancelled subscriptions bring no recurring revenue
        recurring = []
        for item in items:
            price = self.item_prices.get(item["item_price_id"]) or {}
            recurring_item = item.get("item_type") in ("plan", "addon")
            if recurring_item and price.get("period_unit") in ("day", "week", "month", "year"):
                recurring.append((int(item.get("amount", 0)), int(price.get("period", 1)), price["period_unit"]))
        return monthly_recurring_revenue(recurring)

    _SUBSCRIPTION_ORDER = (
        "id", "billing_period", "billing_period_unit", "trial_start", "trial_end", "remaining_billing_cycles",
        "po_number", "auto_collection", "customer_id", "status", "start_date", "current_term_start",
        "current_term_end", "next_billing_at", "created_at", "started_at", "activated_at", "cancelled_at",
        "updated_at", "has_scheduled_changes", "cancel_schedule_created_at", "channel", "resource_version",
        "deleted", "object", "currency_code", "subscription_items", "due_invoices_count", "mrr",
        "has_scheduled_advance_invoices", "auto_close_invoices", "invoice_notes", "meta_data",
    )  # fmt: skip

    def create_subscription_for_items(self, customer_id: str, form: JSON) -> JSON:
        customer = self._live_customer(customer_id)
        _reject_unknown(
            form,
            {"id", "subscription_items", "start_date", "trial_end", "billing_cycles", "auto_collection", "po_number",
             "invoice_notes", "meta_data", "business_entity_id"},
        )  # fmt: skip
        sub_id = _string(form, "id", 50)
        if sub_id is not None and not sub_id:
            raise _wrong_value("id", "cannot be blank")
        if sub_id is not None and sub_id in self.subscriptions.objects:
            raise ApiError(400, "duplicate_entry", f"id : The value {sub_id} is already present.", param="id")
        preferred = customer.get("preferred_currency_code")
        items, plan, currency = self._items(form, None)
        assert plan is not None
        if isinstance(preferred, str) and preferred and preferred != currency:
            raise _wrong_value(
                "subscription_items[item_price_id][0]",
                f"currency {currency} does not match the customer's preferred currency {preferred}",
            )
        now, version = self._stamp()
        start_date = _parse_int("start_date", form["start_date"], minimum=0) if form.get("start_date") else None
        trial_end = _parse_int("trial_end", form["trial_end"], minimum=0) if form.get("trial_end") else 0
        period, unit = int(plan.get("period", 1)), str(plan.get("period_unit", "month"))
        sub: JSON = {
            "id": sub_id or self._new_id(),
            "billing_period": period,
            "billing_period_unit": unit,
            "customer_id": customer_id,
        }
        if form.get("billing_cycles"):
            sub["remaining_billing_cycles"] = _parse_int("billing_cycles", form["billing_cycles"], minimum=0)
        if form.get("po_number"):
            sub["po_number"] = _string(form, "po_number", 100)
        sub["auto_collection"] = _enum(form, "auto_collection", ("on", "off")) or customer.get("auto_collection", "on")
        if start_date is not None and start_date > now:
            sub.update(status="future", start_date=start_date, next_billing_at=start_date)
        elif trial_end > now:
            sub.update(status="in_trial", trial_start=now, trial_end=trial_end, started_at=now,
                       current_term_start=now, current_term_end=trial_end, next_billing_at=trial_end)  # fmt: skip
        else:
            begin = start_date if start_date is not None else now
            term_end = _add_period(begin, unit, period)
            while term_end <= now:  # a backdated start: the current term is the one containing now
                begin, term_end = term_end, _add_period(term_end, unit, period)
            sub.update(status="active", current_term_start=begin, current_term_end=term_end,
                       next_billing_at=term_end, started_at=start_date if start_date is not None else now,
                       activated_at=start_date if start_date is not None else now)  # fmt: skip
        sub.update(
            created_at=now,
            updated_at=now,
            has_scheduled_changes=False,
            channel="web",
            resource_version=version,
            deleted=False,
            object="subscription",
            currency_code=currency,
            subscription_items=items,
            due_invoices_count=0,
            mrr=self._mrr(items, sub["status"]),
            has_scheduled_advance_invoices=False,
            auto_close_invoices=True,
        )
        if form.get("invoice_notes"):
            sub["invoice_notes"] = _string(form, "invoice_notes", 2000)
        meta = _meta_data(form)
        if meta is not None:
            sub["meta_data"] = meta
        sub.update(_custom_fields(form))
        sub = _ordered(sub, self._SUBSCRIPTION_ORDER)
        self.subscriptions.put(sub)
        self.subscriptions_of.setdefault(customer_id, set()).add(sub["id"])
        return self._subscription_entry(sub)

    def cancel_subscription_for_items(self, subscription_id: str, form: JSON) -> JSON:
        current = self._live_subscription(subscription_id)
        _reject_unknown(
            form,
            {"cancel_option", "end_of_term", "cancel_at", "credit_option_for_current_term_charges",
             "unbilled_charges_option", "account_receivables_handling", "refundable_credits_handling",
             "contract_term_cancel_option", "invoice_date", "cancel_reason_code", "decommissioned"},
        )  # fmt: skip
        if current.get("status") in ("cancelled", "transferred"):
            raise ApiError(
                409,
                "invalid_state_for_request",
                f"The subscription is already {current.get('status')}.",
            )
        option = _enum(form, "cancel_option", ("immediately", "end_of_term", "specific_date", "end_of_billing_term"))
        if option is None:
            end_of_term = _parse_bool("end_of_term", form["end_of_term"]) if "end_of_term" in form else False
            option = "end_of_term" if end_of_term else "immediately"
        now, _ = self._stamp()
        sub = dict(current)
        if option == "specific_date":
            if not form.get("cancel_at"):
                raise _wrong_value("cancel_at", "is required when cancel_option is specific_date")
            cancel_at = _parse_int("cancel_at", form["cancel_at"], minimum=0)
        elif option in ("end_of_term", "end_of_billing_term"):
            cancel_at = _timestamp(sub.get("current_term_end")) or _timestamp(sub.get("trial_end")) or now
            cancel_at = int(cancel_at)
        else:
            cancel_at = now
        if cancel_at <= now or sub.get("status") == "future":
            sub["status"] = "cancelled"
            sub["cancelled_at"] = now if cancel_at <= now else cancel_at
            sub.pop("next_billing_at", None)
        else:
            sub["status"] = "non_renewing"
            sub["cancelled_at"] = cancel_at
            sub["remaining_billing_cycles"] = 0
            sub["cancel_schedule_created_at"] = now
            sub.pop("next_billing_at", None)
        if form.get("cancel_reason_code"):
            sub["cancel_reason_code"] = _string(form, "cancel_reason_code", 100)
        sub["mrr"] = self._mrr(list(sub.get("subscription_items") or []), sub["status"])
        sub = _ordered(self._touch(sub), self._SUBSCRIPTION_ORDER)
        self.subscriptions.put(sub)
        return self._subscription_entry(sub)

    def update_subscription_for_items(self, subscription_id: str, form: JSON) -> JSON:
        """Change items: given item prices are added or replace the same id; `replace_items_list` replaces all."""
        current = self._live_subscription(subscription_id)
        _reject_unknown(form, {"subscription_items", "replace_items_list", "po_number", "auto_collection", "meta_data",
                               "invoice_notes"})  # fmt: skip
        if current.get("status") in ("cancelled", "transferred"):
            raise ApiError(409, "invalid_state_for_request", f"The subscription is {current.get('status')}.")
        sub = dict(current)
        if "subscription_items" in form:
            replace = "replace_items_list" in form and _parse_bool("replace_items_list", form["replace_items_list"])
            given, _, _ = self._items(form, str(sub.get("currency_code")), require_plan=False)
            merged = [] if replace else [dict(i) for i in sub.get("subscription_items") or []]
            for item in given:
                merged = [i for i in merged if i.get("item_price_id") != item["item_price_id"]] + [item]
            plans = [i for i in merged if i.get("item_type") == "plan"]
            if len(plans) != 1:
                raise _wrong_value("subscription_items[item_price_id][0]", _ONE_PLAN)
            plan = self.item_prices.get(plans[0]["item_price_id"]) or {}
            sub["subscription_items"] = merged
            sub["billing_period"] = int(plan.get("period", sub.get("billing_period", 1)))
            sub["billing_period_unit"] = plan.get("period_unit", sub.get("billing_period_unit", "month"))
            sub["mrr"] = self._mrr(merged, str(sub.get("status")))
        if form.get("po_number") is not None:
            sub["po_number"] = _string(form, "po_number", 100)
        if "auto_collection" in form:
            sub["auto_collection"] = _enum(form, "auto_collection", ("on", "off"))
        meta = _meta_data(form)
        if meta is not None:
            sub["meta_data"] = meta
        sub.update(_custom_fields(form))
        sub = _ordered(self._touch(sub), self._SUBSCRIPTION_ORDER)
        self.subscriptions.put(sub)
        return self._subscription_entry(sub)

    def delete_subscription(self, subscription_id: str, form: JSON) -> JSON:
        current = self._live_subscription(subscription_id)
        _reject_unknown(form, set())
        sub = self._touch({**current, "deleted": True})
        self.subscriptions.put(sub)
        return self._subscription_entry(sub)


# --------------------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------------------

_PREFIX = "/chargebee/{site}/api/v2"


def _site_not_found(name: str) -> ApiError:
    return ApiError(404, "site_not_found", f"Sorry, the site {name} could not be found.")


def chargebee_routes(sandbox: Any) -> list[Route]:
    """Routes for every site at /chargebee/{site}/api/v2/...; tenants are looked up per request."""

    def gate(request: Request) -> ChargebeeSite:
        site = sandbox.sites.get(request.path_params["site"])
        if site is None:
            raise _site_not_found(request.path_params["site"])
        site.authenticate(request.headers.get("authorization"))
        site.admit()
        return site

    def read(handler: Callable[[ChargebeeSite, Request], JSON]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                site = gate(request)
                with site.lock:
                    body = handler(site, request)
            except ApiError as error:
                return error.response()
            return JSONResponse(body)

        return endpoint

    def write(handler: Callable[[ChargebeeSite, Request, JSON], JSON]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                site = gate(request)
                raw = await request.body()
                content_type = request.headers.get("content-type", "application/x-www-form-urlencoded")
                if raw and not content_type.startswith("application/x-www-form-urlencoded"):
                    raise ApiError(400, "invalid_request", "POST bodies must be application/x-www-form-urlencoded.")
                form = parse_form(raw)
                key = request.headers.get("chargebee-idempotency-key")
                fingerprint = (request.url.path, tuple(sorted(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))))
                with site.lock:
                    if key:
                        stored = site.replay(key, fingerprint)
                        if stored is not None:
                            return Response(
                                stored.body,
                                status_code=stored.status,
                                media_type="application/json",
                                headers={"chargebee-idempotency-replayed": "true"},
                            )
                    response = JSONResponse(handler(site, request, form))
                    if key:
                        site.remember(key, fingerprint, response.status_code, bytes(response.body))
                return response
            except ApiError as error:
                return error.response()

        return endpoint

    def listing(method: Callable[[ChargebeeSite], Callable[..., JSON]]) -> Callable[[Request], Any]:
        return read(lambda site, request: method(site)(request.query_params.multi_items()))

    def by_id(method: Callable[[ChargebeeSite], Callable[..., JSON]]) -> Callable[[Request], Any]:
        return read(lambda site, request: method(site)(str(request.path_params["id"])))

    def change(method: Callable[[ChargebeeSite], Callable[..., JSON]]) -> Callable[[Request], Any]:
        return write(lambda site, request, form: method(site)(str(request.path_params["id"]), form))

    p = _PREFIX
    get, post = ["GET"], ["POST"]
    routes = [
        Route(f"{p}/customers", listing(lambda s: s.list_customers), methods=get),
        Route(f"{p}/customers", write(lambda site, _, form: site.create_customer(form)), methods=post),
        Route(f"{p}/customers/{{id}}", by_id(lambda s: s.retrieve_customer), methods=get),
        Route(f"{p}/customers/{{id}}", change(lambda s: s.update_customer), methods=post),
        Route(f"{p}/customers/{{id}}/update_billing_info", change(lambda s: s.update_billing_info), methods=post),
        Route(f"{p}/customers/{{id}}/delete", change(lambda s: s.delete_customer), methods=post),
        Route(f"{p}/customers/{{id}}/subscription_for_items", change(lambda s: s.create_subscription_for_items),
              methods=post),
        Route(f"{p}/subscriptions", listing(lambda s: s.list_subscriptions), methods=get),
        Route(f"{p}/subscriptions/{{id}}", by_id(lambda s: s.retrieve_subscription), methods=get),
        Route(f"{p}/subscriptions/{{id}}/cancel_for_items", change(lambda s: s.cancel_subscription_for_items),
              methods=post),
        Route(f"{p}/subscriptions/{{id}}/update_for_items", change(lambda s: s.update_subscription_for_items),
              methods=post),
        Route(f"{p}/subscriptions/{{id}}/delete", change(lambda s: s.delete_subscription), methods=post),
        Route(f"{p}/item_prices", listing(lambda s: s.list_item_prices), methods=get),
        Route(f"{p}/item_prices/{{id}}", by_id(lambda s: s.retrieve_item_price), methods=get),
    ]  # fmt: skip

    async def unknown(request: Request) -> Response:
        """Anything else under a site: 405 for a known path with another method, else 404."""
        try:
            gate(request)
        except ApiError as error:
            return error.response()
        if any(route.matches(request.scope)[0] == Match.PARTIAL for route in routes):
            message = f"Sorry, the {request.method} method is not supported for this URL."
            return ApiError(405, "http_method_not_supported", message).response()
        return ApiError(404, "resource_not_found", "Sorry, the requested URL was not found.").response()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return routes + [Route(f"{p}/{{rest:path}}", unknown, methods=methods)]


NOT_EMULATED = """\
- Product Catalog 1.0 (plans/addons, /subscriptions create) and `configuration_incompatible`.
- Invoices, payments, cards, coupons, discounts, events, webhooks, exports, business entities/transfers.
- Asynchronous effects: deletion and MRR recalculation happen at once, not minutes later.
- Concurrent-request limits and `lock_timeout`; the live site's flag-and-email behaviour (it simply 429s).
- Term renewals over time, trials ending, pauses; proration and invoices on writes.
- Exact wording of most validation messages (codes, params and statuses follow the docs).
- Undocumented details chosen here: `[after]`/`[before]` are strict and `[between]` inclusive, `[on]` means the
  UTC day, a record lacking an attribute matches no filter on it but `[is_present]=false`, string filters
  are case-sensitive, unknown write parameters and unknown filter attributes are refused with
  `param_wrong_value`, only 2xx answers are stored for idempotent replay, MRR is 0 for in_trial/future.
"""
