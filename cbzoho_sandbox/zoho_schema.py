"""Field catalogue and org settings of the sandbox Zoho CRM.

Why this exists: the sandbox Zoho org must accept, reject and describe record fields the way a real
org does (types, lengths, mandatory and unique fields, external-ID fields, pipelines, multi-currency),
and the same facts must feed three places that cannot drift apart: write validation, the
`settings/fields` / `settings/layouts` / `settings/pipeline` metadata, and COQL column resolution.
The facts come from the Zoho CRM v8 API reference (fields and layouts metadata, field rules, external IDs).

What it must never do: hold records or per-request state, read the clock, or perform I/O. It is a
pure description derived from an org's settings dict.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from typing import Any

MODULES = ("Accounts", "Contacts", "Deals")  # order matters: lookups point backwards when loading

# Module facts: singular label, system duplicate-check field (upsert), field naming a record.
MODULE_INFO: dict[str, dict[str, str]] = {
    "Contacts": {"singular": "Contact", "dup_field": "Email", "display_field": "Full_Name"},
    "Accounts": {"singular": "Account", "dup_field": "Account_Name", "display_field": "Account_Name"},
    "Deals": {"singular": "Deal", "dup_field": "Deal_Name", "display_field": "Deal_Name"},
}

JSON_TYPES = {
    "text": "string", "email": "string", "phone": "string", "textarea": "string", "website": "string",
    "picklist": "string", "date": "string", "datetime": "string", "bigint": "string",
    "currency": "double", "double": "double", "integer": "integer", "boolean": "boolean",
    "lookup": "jsonobject", "ownerlookup": "jsonobject",
}
CUSTOM_TYPES = set(JSON_TYPES) - {"ownerlookup"}
DEFAULT_LENGTHS = {"text": 255, "email": 100, "phone": 30, "website": 255, "textarea": 32000,
                   "picklist": 120, "currency": 16, "double": 16, "integer": 9, "bigint": 18}

DEFAULT_STAGES = ["Qualification", "Needs Analysis", "Value Proposition", "Identify Decision Makers",
                  "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost",
                  "Closed-Lost to Competition"]


def default_settings(environment: str) -> dict[str, Any]:
    """Settings of a freshly reset org; keys are the ones `ZohoOrg.update_settings` accepts."""
    return {
        "unique_email": environment == "sandbox",
        "external_id_fields": {},
        "custom_fields": {},
        "field_lengths": {},
        "multi_currency": False,
        "home_currency": "USD",
        "currencies": ["USD", "EUR", "GBP", "JPY"],
        "token_expires_in": 3600,
        "token_rate_limit": 10,
        "token_rate_window": 600,
        "max_active_tokens": 15,
        "concurrency_limit": 10,
        "sub_concurrency_limit": 10,
        "daily_credits": 50000,
        "utc_offset": "+05:30",
        "company_name": "Acme Corp",
        "pipelines": {"Standard (Standard)": list(DEFAULT_STAGES)},
        "users": [
            {"email": "admin@acme.example", "full_name": "Ada Admin", "status": "active",
             "role": {"name": "CEO"}, "profile": {"name": "Administrator"}},
            {"email": "sales@acme.example", "full_name": "Sam Sales", "status": "active",
             "role": {"name": "Manager"}, "profile": {"name": "Standard"}},
        ],
    }


SETTING_TYPES: dict[str, type | tuple[type, ...]] = {
    "unique_email": bool, "external_id_fields": dict, "custom_fields": dict, "field_lengths": dict,
    "multi_currency": bool, "home_currency": str, "currencies": list, "token_expires_in": int,
    "token_rate_limit": int, "token_rate_window": (int, float), "max_active_tokens": int,
    "concurrency_limit": int, "sub_concurrency_limit": int, "daily_credits": int, "utc_offset": str,
    "company_name": str, "pipelines": dict, "users": list,
}


def check_settings(update: dict[str, Any]) -> None:
    """Reject unknown keys and values of the wrong type (a typo must not silently do nothing)."""
    for key, value in update.items():
        if key not in SETTING_TYPES:
            raise ValueError(f"unknown Zoho org setting {key!r}")
        expected = SETTING_TYPES[key]
        # bool is an int in Python; only a setting that wants a bool may get one
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise ValueError(f"setting {key!r} must be of type {expected}")
    offset = update.get("utc_offset")
    if offset is not None:
        parse_offset(offset)


def parse_offset(text: str) -> int:
    """'+05:30' -> 330 (minutes)."""
    if len(text) != 6 or text[0] not in "+-" or text[3] != ":" or not (text[1:3] + text[4:]).isdigit():
        raise ValueError(f"utc_offset must look like +05:30, got {text!r}")
    minutes = int(text[1:3]) * 60 + int(text[4:])
    return -minutes if text[0] == "-" else minutes


@dataclass(frozen=True)
class Field:
    api_name: str
    label: str
    data_type: str
    length: int | None = None
    mandatory: bool = False
    read_only: bool = False
    custom: bool = False
    unique: bool = False
    external: bool = False
    lookup_module: str | None = None  # "Accounts", "Contacts", ... or "users" for owner lookups
    pick_list: tuple[str, ...] = field(default_factory=tuple)

    @property
    def json_type(self) -> str:
        return JSON_TYPES[self.data_type]


def _f(api_name: str, label: str, data_type: str, length: int | None = None, **kw: Any) -> Field:
    return Field(api_name, label, data_type, length, **kw)


_OWNER = {"Contacts": "Contact Owner", "Accounts": "Account Owner", "Deals": "Deal Owner"}

STANDARD_FIELDS: dict[str, list[Field]] = {
    "Contacts": [
        _f("First_Name", "First Name", "text", 40),
        _f("Last_Name", "Last Name", "text", 80, mandatory=True),
        _f("Full_Name", "Full Name", "text", 120, read_only=True),
        _f("Email", "Email", "email", 100),
        _f("Phone", "Phone", "phone", 30),
        _f("Mobile", "Mobile", "phone", 30),
        _f("Title", "Title", "text", 100),
        _f("Account_Name", "Account Name", "lookup", lookup_module="Accounts"),
        _f("Mailing_Street", "Mailing Street", "text", 250),
        _f("Mailing_City", "Mailing City", "text", 100),
        _f("Mailing_State", "Mailing State", "text", 100),
        _f("Mailing_Zip", "Mailing Zip", "text", 30),
        _f("Mailing_Country", "Mailing Country", "text", 100),
        _f("Description", "Description", "textarea", 32000),
    ],
    "Accounts": [
        _f("Account_Name", "Account Name", "text", 100, mandatory=True),
        _f("Phone", "Phone", "phone", 30),
        _f("Website", "Website", "website", 255),
        _f("Billing_Street", "Billing Street", "text", 250),
        _f("Billing_City", "Billing City", "text", 100),
        _f("Billing_State", "Billing State", "text", 100),
        _f("Billing_Code", "Billing Code", "text", 30),
        _f("Billing_Country", "Billing Country", "text", 100),
        _f("Description", "Description", "textarea", 32000),
    ],
    "Deals": [
        _f("Deal_Name", "Deal Name", "text", 120, mandatory=True),
        _f("Amount", "Amount", "currency", 16),
        _f("Closing_Date", "Closing Date", "date"),
        _f("Stage", "Stage", "picklist", 120, mandatory=True),
        _f("Pipeline", "Pipeline", "picklist", 120, mandatory=True),
        _f("Account_Name", "Account Name", "lookup", lookup_module="Accounts"),
        _f("Contact_Name", "Contact Name", "lookup", lookup_module="Contacts"),
        _f("Description", "Description", "textarea", 32000),
    ],
}
SYSTEM_FIELDS = [
    _f("Created_Time", "Created Time", "datetime", read_only=True),
    _f("Modified_Time", "Modified Time", "datetime", read_only=True),
    _f("Created_By", "Created By", "ownerlookup", read_only=True, lookup_module="users"),
    _f("Modified_By", "Modified By", "ownerlookup", read_only=True, lookup_module="users"),
]
TIME_FIELDS = ("Created_Time", "Modified_Time")
USER_FIELDS = ("Owner", "Created_By", "Modified_By")


def stable_number(*parts: str, digits: int = 6) -> int:
    """Deterministic pseudo-id fragment for metadata objects (fields, layouts, stages)."""
    return zlib.crc32("/".join(parts).encode()) % (10 ** digits)


def build_fields(module: str, settings: dict[str, Any]) -> list[Field]:
    """All fields of `module` in layout order, reflecting the org's settings."""
    lengths = settings.get("field_lengths", {}).get(module, {})
    out: list[Field] = [_f("Owner", _OWNER[module], "ownerlookup", lookup_module="users")]
    for fld in STANDARD_FIELDS[module]:
        updates: dict[str, Any] = {}
        if fld.api_name in lengths:
            updates["length"] = int(lengths[fld.api_name])
        if module == "Contacts" and fld.api_name == "Email" and settings.get("unique_email"):
            updates["unique"] = True
        if module == "Deals" and fld.api_name == "Pipeline":
            updates["pick_list"] = tuple(settings["pipelines"])
        if module == "Deals" and fld.api_name == "Stage":
            stages: list[str] = []
            for names in settings["pipelines"].values():
                stages.extend(s for s in names if s not in stages)
            updates["pick_list"] = tuple(stages)
        out.append(Field(**{**fld.__dict__, **updates}) if updates else fld)
    if module == "Deals" and settings.get("multi_currency"):
        out.append(_f("Currency", "Currency", "picklist", 3, pick_list=tuple(settings["currencies"])))
    known = {f.api_name for f in out} | {f.api_name for f in SYSTEM_FIELDS}
    external = settings.get("external_id_fields", {}).get(module)
    customs = list(settings.get("custom_fields", {}).get(module, []))
    if external and not any(c.get("api_name") == external for c in customs):
        customs.append({"api_name": external, "data_type": "text"})
    for spec in customs:
        name = spec.get("api_name")
        dtype = spec.get("data_type", "text")
        if not name or name in known:
            raise ValueError(f"custom field {name!r} of {module} is missing or clashes with a standard field")
        if dtype not in CUSTOM_TYPES:
            raise ValueError(f"custom field {name!r}: unsupported data_type {dtype!r}")
        if dtype == "lookup" and spec.get("lookup_module") not in MODULES:
            raise ValueError(f"custom lookup {name!r} needs lookup_module in {MODULES}")
        is_external = name == external or bool(spec.get("external"))
        out.append(Field(
            api_name=name, label=spec.get("field_label", name.replace("_", " ")), data_type=dtype,
            length=int(lengths.get(name, spec.get("length", DEFAULT_LENGTHS.get(dtype) or 0))) or None,
            mandatory=bool(spec.get("mandatory", False)), custom=True,
            unique=bool(spec.get("unique", False)) or is_external, external=is_external,
            lookup_module=spec.get("lookup_module"), pick_list=tuple(spec.get("pick_list_values", ())),
        ))
        known.add(name)
    out.extend(SYSTEM_FIELDS)
    return out


def stage_forecast(stage: str) -> tuple[str, str]:
    """(forecast_type, forecast_category name) Zoho assigns to a stage by its meaning."""
    low = stage.lower().replace("-", " ")
    if low.startswith("closed won"):
        return "Closed Won", "Closed"
    if low.startswith("closed lost"):
        return "Closed Lost", "Omitted"
    return "Open", "Pipeline"


class MetaIds:
    """Deterministic ids for metadata objects of one org (module, field, layout, pipeline, stage)."""

    def __init__(self, prefix: int):
        self.prefix = prefix

    def make(self, *parts: str) -> str:
        return str(self.prefix * 10 ** 12 + 100_000 + stable_number(*parts, digits=6))


def field_meta(module: str, fld: Field, ids: MetaIds) -> dict[str, Any]:
    """One entry of GET /settings/fields, shaped like Zoho's fields metadata."""
    meta: dict[str, Any] = {
        "api_name": fld.api_name,
        "id": ids.make("field", module, fld.api_name),
        "field_label": fld.label,
        "display_label": fld.label,
        "data_type": fld.data_type,
        "json_type": fld.json_type,
        "length": fld.length if fld.length is not None else (
            19 if fld.data_type in ("lookup", "ownerlookup") else None),
        "system_mandatory": fld.mandatory,
        "custom_field": fld.custom,
        "read_only": fld.read_only,
        "visible": True,
        "unique": {"case_sensitive": False} if fld.unique else {},
        "external": ({"show": True, "type": "org", "allow_multiple_config": False} if fld.external else None),
        "lookup": {},
        "pick_list_values": [],
        "operation_type": {"api_create": not fld.read_only, "api_update": not fld.read_only,
                           "web_create": not fld.read_only, "web_update": not fld.read_only,
                           "api_read": True, "web_read": True},
    }
    if fld.data_type == "lookup" and fld.lookup_module:
        meta["lookup"] = {"module": {"api_name": fld.lookup_module, "id": ids.make("module", fld.lookup_module)},
                          "display_label": fld.label, "api_name": fld.api_name}
    if fld.data_type == "picklist":
        meta["pick_list_values"] = [
            {"display_value": v, "actual_value": v, "id": ids.make("pick", module, fld.api_name, v),
             "sequence_number": i + 1, "type": "used"}
            for i, v in enumerate(fld.pick_list)]
    return meta


def pipeline_meta(settings: dict[str, Any], ids: MetaIds) -> list[dict[str, Any]]:
    """Entries of GET /settings/pipeline: each pipeline with its stages in `maps`."""
    out = []
    for index, (name, stages) in enumerate(settings["pipelines"].items()):
        maps = []
        for seq, stage in enumerate(stages, start=1):
            forecast_type, category = stage_forecast(stage)
            maps.append({
                "id": ids.make("stage", name, stage), "display_value": stage, "actual_value": stage,
                "sequence_number": seq, "forecast_type": forecast_type,
                "forecast_category": {"name": category, "id": ids.make("forecast", category)},
            })
        out.append({"id": ids.make("pipeline", name), "display_value": name, "actual_value": name,
                    "default": index == 0, "child_available": False, "maps": maps})
    return out


def layout_meta(module: str, fields: list[Field], settings: dict[str, Any], ids: MetaIds,
                admin_profile: dict[str, Any]) -> dict[str, Any]:
    """The single Standard layout of a module; in Deals the Pipeline field carries stage maps."""
    entries = []
    for fld in fields:
        meta = field_meta(module, fld, ids)
        meta["required"] = fld.mandatory
        if module == "Deals" and fld.api_name == "Pipeline":
            pipes = pipeline_meta(settings, ids)
            meta["pick_list_values"] = [
                {"display_value": p["display_value"], "actual_value": p["actual_value"], "id": p["id"],
                 "sequence_number": i + 1, "type": "used",
                 "maps": [{"display_value": m["display_value"], "actual_value": m["actual_value"],
                           "id": m["id"], "sequence_number": m["sequence_number"],
                           "forecast_type": m["forecast_type"]} for m in p["maps"]]}
                for i, p in enumerate(pipes)]
        entries.append(meta)
    singular = MODULE_INFO[module]["singular"]
    return {
        "id": ids.make("layout", module, "Standard"),
        "name": "Standard", "display_label": "Standard", "api_name": "Standard",
        "status": "active", "visible": True, "source": "crm",
        "profiles": [{"name": admin_profile.get("name", "Administrator"), "id": admin_profile.get("id"),
                      "default": True}],
        "sections": [{"display_label": f"{singular} Information", "api_name": f"{singular} Information",
                      "sequence_number": 1, "column_count": 2, "fields": entries}],
    }


# Home currencies the org API can describe: ISO code -> (name, symbol, currency locale, country code).
CURRENCY_FACTS: dict[str, tuple[str, str, str, str]] = {
    "USD": ("US Dollar", "$", "en_US", "US"),
    "EUR": ("Euro", "€", "de_DE", "DE"),
    "GBP": ("Pound Sterling", "£", "en_GB", "GB"),
    "JPY": ("Japanese Yen", "¥", "ja_JP", "JP"),
    "INR": ("Indian Rupee", "₹", "en_IN", "IN"),
    "CAD": ("Canadian Dollar", "$", "en_CA", "CA"),
    "AUD": ("Australian Dollar", "$", "en_AU", "AU"),
}
# Zoho's editions by their concurrent-call limit per org (the sandbox enforces `concurrency_limit`).
EDITION_CONCURRENCY = (("free", 5), ("standard", 10), ("professional", 15), ("enterprise", 20), ("ultimate", 25))
# Named zones for offsets that are not whole hours (whole hours map to Etc/GMT∓h).
_PARTIAL_HOUR_ZONES = {-570: "Pacific/Marquesas", -210: "America/St_Johns", 210: "Asia/Tehran", 270: "Asia/Kabul",
                       330: "Asia/Kolkata", 345: "Asia/Kathmandu", 390: "Asia/Yangon", 525: "Australia/Eucla",
                       570: "Australia/Darwin", 765: "Pacific/Chatham"}


def edition(concurrency_limit: int) -> str:
    """The edition whose concurrency limit the org has (the highest one not above it)."""
    fitting = [name for name, limit in EDITION_CONCURRENCY if limit <= concurrency_limit]
    return fitting[-1] if fitting else "free"


def zone_name(offset_minutes: int) -> str:
    """A time-zone name with this UTC offset: 'UTC', 'Etc/GMT-2' (two hours east), 'Asia/Kolkata'..."""
    if offset_minutes == 0:
        return "UTC"
    if offset_minutes % 60 == 0:  # the Etc zones count westwards: Etc/GMT-2 is UTC+02:00
        return f"Etc/GMT{'-' if offset_minutes > 0 else '+'}{abs(offset_minutes) // 60}"
    return _PARTIAL_HOUR_ZONES.get(offset_minutes, "UTC")


def deep_copy(value: Any) -> Any:
    return copy.deepcopy(value)
