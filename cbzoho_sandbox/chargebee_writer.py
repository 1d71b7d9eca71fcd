"""Writes to a Chargebee site, for tests, demos and benchmarks: the product's client plus the calls a sync never makes.

Why it lives here and not in the product: cbzoho only reads Chargebee. Keeping create/update/delete out of
`cbzoho_pipeline.chargebee.client` means no product code path can write to a customer's billing system.
Tests that need Chargebee data written over the real API (retries, idempotency keys, the bracketed form
encoding of nested params) use this subclass, so they exercise the product's own transport unchanged.

What it must never do: change how requests are sent, retried or scrubbed (that is the product client's
`_request`, inherited as is), or send a write without an idempotency key (a retried POST must be replayed
by Chargebee, never applied twice).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cbzoho_pipeline.chargebee.client import ChargebeeClient


class ChargebeeWriter(ChargebeeClient):
    """A `ChargebeeClient` that can also create, update, cancel and delete (test and demo data only)."""

    def __repr__(self) -> str:
        return f"ChargebeeWriter(base_url={self.base_url!r})"

    def _write(
        self, template: str, ids: tuple[str, ...], params: Mapping[str, Any] | None, key: str | None
    ) -> dict[str, Any]:
        """A POST with an idempotency key (a fresh one unless given), so retrying it can never apply it twice."""
        return self._request("POST", template, ids=ids, params=params, idempotency_key=key or uuid.uuid4().hex)

    def create_customer(self, params: Mapping[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._write("/customers", (), params, idempotency_key)["customer"]

    def update_customer(
        self, customer_id: str, params: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._write("/customers/{id}", (customer_id,), params, idempotency_key)["customer"]

    def update_billing_info(
        self, customer_id: str, params: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._write("/customers/{id}/update_billing_info", (customer_id,), params, idempotency_key)["customer"]

    def delete_customer(self, customer_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._write("/customers/{id}/delete", (customer_id,), None, idempotency_key)["customer"]

    def create_subscription_for_items(
        self, customer_id: str, params: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        template = "/customers/{id}/subscription_for_items"
        return self._write(template, (customer_id,), params, idempotency_key)["subscription"]

    def cancel_subscription_for_items(
        self, subscription_id: str, params: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        template = "/subscriptions/{id}/cancel_for_items"
        return self._write(template, (subscription_id,), params, idempotency_key)["subscription"]
