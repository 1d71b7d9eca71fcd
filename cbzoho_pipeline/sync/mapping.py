"""Field mapping from Chargebee objects to Zoho records: names, money, dates, the Last_Name fallback.

Pure functions of their arguments: no I/O, no clock, no settings lookups. The plan builds on them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# Currencies Chargebee documents as zero-decimal: amounts are already in major units.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "XAF", "XOF"})

# Close to the pattern Zoho documents for Email fields: one @, a dot in the domain, no spaces.
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9._%+'!#$&*/=?^`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                           r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")

# The default contact mapping: Chargebee customer attribute -> Zoho Contacts field.
DEFAULT_CONTACT_FIELDS: dict[str, str] = {
    "first_name": "First_Name",
    "last_name": "Last_Name",
    "email": "Email",
    "phone": "Phone",
}


def is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, dict):
        return not value.get("id")
    return False


def clean(value: Any) -> Any:
    """Trim strings; blank becomes None."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def normalize_email(value: Any) -> str | None:
    value = clean(value)
    return value.lower() if isinstance(value, str) else None


def company_key(value: Any) -> str | None:
    """Accounts are matched by name, case-insensitively and ignoring repeated white space."""
    value = clean(value)
    if not isinstance(value, str):
        return None
    return " ".join(value.split()).casefold()


def valid_email(value: Any) -> bool:
    value = clean(value)
    return isinstance(value, str) and bool(EMAIL_PATTERN.match(value))


def get_path(obj: dict[str, Any], path: str) -> Any:
    """`billing_address.city` -> obj["billing_address"]["city"]; missing anywhere -> None."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def last_name_fallback(customer: dict[str, Any]) -> tuple[str, str]:
    """Zoho requires Last_Name while every Chargebee name field may be empty. Returns (value, source).

    The first non-empty of: last_name, billing_address.last_name, first_name, company, the part of the
    email before '@', and finally the Chargebee customer id, which always exists.
    """
    for source in ("last_name", "billing_address.last_name", "first_name", "company"):
        value = clean(get_path(customer, source))
        if value:
            return value, source
    email = clean(customer.get("email"))
    if email and "@" in email and email.split("@", 1)[0]:
        return email.split("@", 1)[0], "email"
    return str(customer["id"]), "id"


def to_major_units(amount_minor: Any, currency: str) -> float | None:
    """Chargebee money is an integer in minor units, except zero-decimal currencies (major units)."""
    if amount_minor is None:
        return None
    value = Decimal(int(amount_minor))
    if currency.upper() not in ZERO_DECIMAL_CURRENCIES:
        value = (value / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return float(value)


def zoho_date(unix_seconds: Any) -> str | None:
    """Zoho Date fields take yyyy-MM-dd; Chargebee timestamps are unix seconds (UTC)."""
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(int(unix_seconds), tz=UTC).strftime("%Y-%m-%d")


def contact_fields(customer: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    """Mapped Zoho Contact fields with Chargebee's non-empty values (empty values are simply absent)."""
    out: dict[str, Any] = {}
    for source, target in {**DEFAULT_CONTACT_FIELDS, **extra}.items():
        value = clean(get_path(customer, source))
        if value is not None and not isinstance(value, (dict, list)):
            out[target] = value
    return out


def same_value(field: str, ours: Any, theirs: Any) -> bool:
    """Equality as Zoho would see it: trimmed text, emails case-insensitive, numbers by value, lookups by id."""
    if is_blank(ours) and is_blank(theirs):
        return True
    if isinstance(ours, dict) or isinstance(theirs, dict):
        ours_id = ours.get("id") if isinstance(ours, dict) else ours
        theirs_id = theirs.get("id") if isinstance(theirs, dict) else theirs
        return str(ours_id) == str(theirs_id)
    if isinstance(ours, (int, float)) and not isinstance(ours, bool):
        try:
            return theirs is not None and abs(float(ours) - float(theirs)) < 0.005
        except (TypeError, ValueError):
            return False
    a, b = clean(str(ours)) if ours is not None else None, clean(str(theirs)) if theirs is not None else None
    if field == "Email" and a and b:
        return a.lower() == b.lower()
    return a == b
