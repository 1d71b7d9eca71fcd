"""The product's client for Chargebee API v2: reads customers and subscriptions page by page, safely.

Why it exists: the extractor needs every customer and subscription of a site, incrementally, from an API
that rate-limits hard (a test site blocks all calls above 150 per minute), answers 5xx now and then and
pages with opaque offsets. This module hides all of that behind generators of pages: one
`requests.Session`, a timeout on every request, retries with exponential backoff that honour `Retry-After`,
and Chargebee's bracketed form encoding of filters. It only reads: the sync never writes to Chargebee.
The writes that tests and demos make live in the sandbox package (`cbzoho_sandbox.chargebee_writer`), a
subclass that sends them through this transport with an idempotency key each.

What it must never do:
- put the API key in an exception, log line or repr (it travels only in the Basic auth header);
- retry a write that may have been applied, unless the write carries an idempotency key (then a retried POST
  is replayed by Chargebee rather than applied twice);
- parse or build `next_offset` values (they are opaque; they are passed back exactly as received);
- know about Dagster, DuckDB or the sync rules: callers get plain dicts as Chargebee sent them.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests

from cbzoho_pipeline import reach

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_TRANSPORT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_JSON_KEYS = frozenset({"meta_data", "exemption_details"})
_LIST_OPERATOR = re.compile(r"\[(in|not_in|between)\]$")


class ChargebeeError(Exception):
    """A failed Chargebee call: HTTP status (None when no answer came), Chargebee's code, param and message."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        api_error_code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.api_error_code = api_error_code
        self.param = param
        self.error_type = error_type


def encode_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Flatten params the way Chargebee's SDKs do.

    `{"billing_address": {"city": "Paris"}}` -> `billing_address[city]=Paris`;
    `{"subscription_items": [{"item_price_id": "a", "quantity": 2}]}` ->
    `subscription_items[item_price_id][0]=a`, `subscription_items[quantity][0]=2`;
    booleans -> `true`/`false`, None -> empty string; `meta_data` -> one JSON string;
    a list under a filter operator (`status[in]`, `{"status": {"in": [...]}}`) -> `["a","b"]`.
    """
    pairs: list[tuple[str, str]] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    def add(name: str, value: Any) -> None:
        key = name.rsplit("[", 1)[-1].rstrip("]") if "[" in name else name
        if key in _JSON_KEYS and isinstance(value, (dict, list)):
            pairs.append((name, json.dumps(value, separators=(",", ":"))))
        elif isinstance(value, Mapping):
            for child, child_value in value.items():
                add(f"{name}[{child}]", child_value)
        elif isinstance(value, (list, tuple)):
            if _LIST_OPERATOR.search(name):
                pairs.append((name, json.dumps(list(value), separators=(",", ":"))))
            elif value and all(isinstance(v, Mapping) for v in value):
                for index, item in enumerate(value):
                    for child, child_value in item.items():
                        add(f"{name}[{child}][{index}]", child_value)
            else:
                for index, item in enumerate(value):
                    add(f"{name}[{index}]", item)
        else:
            pairs.append((name, scalar(value)))

    for name, value in (params or {}).items():
        add(name, value)
    return pairs


class ChargebeeClient:
    """A Chargebee API v2 client for one site (`base_url` = https://{site}.chargebee.com/api/v2)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff_factor: float = 0.5,
        max_backoff: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.log = log  # each retry is reported here (the asset's log), if set
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor
        self.max_backoff = max_backoff
        self._sleep = sleep
        self.calls: Counter[tuple[str, str]] = Counter()
        self.retries: Counter[str] = Counter()  # reason ("429", "500", "connection", ...) -> count
        self._session = requests.Session()
        self._session.auth = (api_key, "")
        self._session.headers.update({"Accept": "application/json", "User-Agent": "cbzoho-chargebee-client/0.1"})

    def __repr__(self) -> str:
        return f"ChargebeeClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ChargebeeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff_factor * (2**attempt))

    def _retry_after(self, response: requests.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            seconds = when.timestamp() - time.time()
        return min(self.max_backoff, max(0.0, seconds))

    def _note(self, message: str) -> None:
        if self.log is not None:
            self.log(self._scrub(message))

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _request(
        self,
        method: str,
        template: str,
        *,
        ids: tuple[str, ...] = (),
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """One logical call, retried as the method allows; returns the parsed JSON body."""
        path = template
        for value in ids:
            segment = quote(str(value), safe="")
            path = re.sub(r"\{[a-z_]+\}", lambda _match, segment=segment: segment, path, count=1)
        url = self.base_url + path
        encoded = encode_params(params)
        headers = {"chargebee-idempotency-key": idempotency_key} if idempotency_key else {}
        # A POST without an idempotency key may have been applied when no answer came back.
        may_retry_unanswered = method == "GET" or idempotency_key is not None
        attempt = 0
        unreachable_since: float | None = None
        while True:
            down = reach.known_down(url)
            if down is not None:
                raise ChargebeeError(self._scrub(f"Chargebee {method} {path}: {down}"))
            self.calls[(method, template)] += 1
            try:
                response = self._session.request(
                    method,
                    url,
                    params=encoded if method == "GET" else None,
                    data=encoded if method != "GET" else None,
                    headers=headers,
                    timeout=self.timeout,
                )
            except _TRANSPORT_ERRORS as error:
                unreachable_since, why = reach.give_up_check(url, error, unreachable_since, attempt)
                if why is not None:
                    raise ChargebeeError(self._scrub(f"Chargebee {method} {path}: {why}")) from None
                if may_retry_unanswered and attempt < self.max_retries:
                    self.retries["connection"] += 1
                    delay = self._backoff(attempt)
                    self._note(f"chargebee: {method} {path}: {type(error).__name__}; "
                               f"retry {attempt + 1}/{self.max_retries} in {delay:.1f}s")
                    self._sleep(delay)
                    attempt += 1
                    continue
                raise ChargebeeError(
                    self._scrub(f"Chargebee {method} {path}: no answer after {attempt + 1} attempt(s): "
                                f"{type(error).__name__}")
                ) from None
            status = response.status_code
            # A 429 means the request was refused before any work, so even a bare POST may be retried.
            retryable = status == 429 or (status in _RETRYABLE_STATUS and may_retry_unanswered)
            if retryable and attempt < self.max_retries:
                self.retries[str(status)] += 1
                delay = self._retry_after(response)
                delay = self._backoff(attempt) if delay is None else delay
                self._note(f"chargebee: {method} {path} -> HTTP {status}; "
                           f"retry {attempt + 1}/{self.max_retries} in {delay:.1f}s")
                self._sleep(delay)
                attempt += 1
                continue
            return self._parse(method, path, response)

    def _parse(self, method: str, path: str, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= response.status_code < 300 and isinstance(body, dict):
            return body
        if not isinstance(body, dict):
            raise ChargebeeError(
                self._scrub(f"Chargebee {method} {path}: HTTP {response.status_code} with a non-JSON body"),
                status=response.status_code,
            )
        code = body.get("api_error_code") or body.get("error_code")
        message = str(body.get("message") or body.get("error_msg") or "")
        raise ChargebeeError(
            self._scrub(f"Chargebee {method} {path}: HTTP {response.status_code} {code}: {message}"),
            status=response.status_code,
            api_error_code=code,
            param=body.get("param"),
            error_type=body.get("type"),
        )

    # -- reads -----------------------------------------------------------------------------------------

    def iter_pages(
        self, resource: str, params: Mapping[str, Any] | None = None, *, page_size: int = 100
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the raw `list` entries of each non-empty page of `GET /{resource}`, following next_offset."""
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be between 1 and 100 (Chargebee's limit)")
        query = dict(params or {})
        query["limit"] = page_size
        offset: str | None = None
        while True:
            if offset is not None:
                query["offset"] = offset
            body = self._request("GET", f"/{resource}", params=query)
            entries = body.get("list") or []
            if entries:
                yield entries
            next_offset = body.get("next_offset")
            if not next_offset:
                return
            if next_offset == offset:
                raise ChargebeeError(f"Chargebee GET /{resource}: pagination did not advance")
            offset = next_offset

    def _list(
        self,
        resource: str,
        key: str,
        updated_after: int | None,
        updated_before: int | None,
        include_deleted: bool,
        page_size: int,
    ) -> Iterator[list[dict[str, Any]]]:
        params: dict[str, Any] = {"include_deleted": include_deleted}
        if updated_after is not None:
            params["sort_by[asc]"] = "updated_at"
            params["updated_at[after]"] = int(updated_after)
            if updated_before is not None:
                params["updated_at[before]"] = int(updated_before)
        else:
            # No updated_at filter at all: Chargebee never matches records that lack updated_at.
            params["sort_by[asc]"] = "created_at"
        for entries in self.iter_pages(resource, params, page_size=page_size):
            page = [entry[key] for entry in entries]
            if updated_after is None and updated_before is not None:
                page = [r for r in page if not isinstance(r.get("updated_at"), int) or r["updated_at"] < updated_before]
            if page:
                yield page

    def list_customers(
        self,
        *,
        updated_after: int | None = None,
        updated_before: int | None = None,
        include_deleted: bool = True,
        page_size: int = 100,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of bare customer objects.

        With `updated_after`, only records with `updated_at` strictly after it (and, with `updated_before`,
        strictly before that) come back, oldest change first; Chargebee does not document whether `[after]` is
        strict, so callers should overlap windows. Without `updated_after` no `updated_at` filter is sent, so
        records that lack `updated_at` are not lost; `updated_before` is then applied here, keeping records
        without `updated_at`.
        """
        return self._list("customers", "customer", updated_after, updated_before, include_deleted, page_size)

    def list_subscriptions(
        self,
        *,
        updated_after: int | None = None,
        updated_before: int | None = None,
        include_deleted: bool = True,
        page_size: int = 100,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of bare subscription objects; window semantics as in `list_customers`."""
        return self._list("subscriptions", "subscription", updated_after, updated_before, include_deleted, page_size)

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        return self._request("GET", "/customers/{id}", ids=(customer_id,))["customer"]

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._request("GET", "/subscriptions/{id}", ids=(subscription_id,))["subscription"]
