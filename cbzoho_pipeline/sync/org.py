"""What the plan needs to know about a Zoho org, read from its metadata. Pure functions.

Field lengths (to catch over-long values before a call), whether multi-currency is on and which currencies,
the Contacts external-ID field if the org has one, the Deals pipelines with their stages, and the deal
owner's user id.
"""

from __future__ import annotations

from typing import Any


def describe_org(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """What the plan needs to know about the org, derived from its metadata."""
    metadata = metadata or {}
    fields = metadata.get("fields", {})
    lengths = {
        module: {f["api_name"]: int(f["length"]) for f in items if f.get("length") and
                 f.get("data_type") in ("text", "email", "phone", "textarea", "website")}
        for module, items in fields.items()
    }
    currency_field = next((f for f in fields.get("Deals", []) if f.get("api_name") == "Currency"), None)
    currencies = tuple(
        str(v.get("actual_value") or v.get("display_value"))
        for v in (currency_field or {}).get("pick_list_values", []) or []
    )
    external = next((f["api_name"] for f in fields.get("Contacts", []) if f.get("external")), None)
    return {
        "field_lengths": lengths,
        "multi_currency": currency_field is not None,
        "currencies": currencies,
        "contact_external_field": external,
        "pipelines": metadata.get("pipelines") if "pipelines" in metadata else None,
    }


def resolve_owner(metadata: dict[str, Any] | None, email: str | None) -> tuple[str | None, str | None]:
    """Deal owner: the configured user's id, or an error message saying why not."""
    if not email:
        return None, None
    for user in (metadata or {}).get("users", []):
        if str(user.get("email", "")).strip().lower() == email.strip().lower():
            if user.get("status", "active") != "active":
                return None, f"deal owner {email} is not an active Zoho CRM user"
            return str(user["id"]), None
    return None, f"deal owner {email} is not a Zoho CRM user of this org"
