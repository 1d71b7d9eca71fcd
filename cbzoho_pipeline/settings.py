"""Sites and sync rules: read once from the settings file, validated, never holding a secret.

A *site* pairs one Chargebee site with one Zoho org. The settings file names the sites, their rules (in
Chargebee's own vocabulary) and the names of the environment variables that hold their credentials; the
credentials themselves are read from the environment only when a run needs them, so nothing in this
module, its errors or its repr ever contains a secret.

The file is read into typed pydantic models that forbid unknown keys, accept only YAML `true`/`false` for
switches and only the listed words for rules: a typo must fail loudly, naming the file, the key path and the
nearest valid key, rather than run a site with a default nobody chose. Every problem of a file is reported
at once, one per line.

Where things are found:
- `CBZOHO_SETTINGS`: the settings file (default `cbzoho.yaml` in the working directory, else the bundled
  `cbzoho_pipeline/default_settings.yaml`, which describes the two sandbox sites).
- `CBZOHO_HOME`: the state directory (default `.cbzoho` in the working directory); each site keeps its
  DuckDB file and its disconnect marker in `$CBZOHO_HOME/sites/<site>/`.
- `CBZOHO_SANDBOX_INFO`: the `--info-file` of a running `cbzoho sandbox`; sites marked `sandbox: true` then
  take their URLs and credentials from it instead of the environment.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

DEFAULT_SETTINGS_FILE = Path(__file__).with_name("default_settings.yaml")

NoMatchRule = Literal["create", "skip"]
MatchRule = Literal["overwrite", "fill_blanks", "link_only"]
AccountRule = Literal["create", "leave_empty"]
SubscriptionStatus = Literal["future", "in_trial", "active", "non_renewing", "paused", "cancelled", "transferred"]
DataCentre = Literal["US", "EU", "IN", "AU", "JP", "CN", "CA", "SA"]
ZohoEnvironment = Literal["production", "sandbox", "developer"]

NO_MATCH_RULES: tuple[str, ...] = get_args(NoMatchRule)
MATCH_RULES: tuple[str, ...] = get_args(MatchRule)
ACCOUNT_RULES: tuple[str, ...] = get_args(AccountRule)
SUBSCRIPTION_STATUSES: tuple[str, ...] = get_args(SubscriptionStatus)

# Zoho data centres: accounts server and the production / sandbox / developer API domains.
ZOHO_DATA_CENTRES: dict[str, tuple[str, str]] = {
    "US": ("https://accounts.zoho.com", "zohoapis.com"),
    "EU": ("https://accounts.zoho.eu", "zohoapis.eu"),
    "IN": ("https://accounts.zoho.in", "zohoapis.in"),
    "AU": ("https://accounts.zoho.com.au", "zohoapis.com.au"),
    "JP": ("https://accounts.zoho.jp", "zohoapis.jp"),
    "CN": ("https://accounts.zoho.com.cn", "zohoapis.com.cn"),
    "CA": ("https://accounts.zohocloud.ca", "zohoapis.ca"),
    "SA": ("https://accounts.zoho.sa", "zohoapis.sa"),
}
ZOHO_ENVIRONMENT_HOSTS = {"production": "www", "sandbox": "sandbox", "developer": "developer"}


class SettingsError(ValueError):
    """The settings file or the environment is wrong; the message says where and how to fix it."""


# ------------------------------------------------------------------------------------------ value types
_SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _site_name(value: str) -> str:
    if not _SITE_NAME.fullmatch(value):
        raise PydanticCustomError("site_name", "site name '{name}': use lower-case letters, digits, '-' and '_' "
                                  "(up to 50, starting with a letter or digit)", {"name": value})
    return value


def _env_name(value: str) -> str:
    # The value is never echoed: whoever gets this wrong may have pasted the credential itself.
    if not _ENV_NAME.fullmatch(value):
        raise PydanticCustomError("env_name", "expected the NAME of an environment variable (letters, digits "
                                  "and _), never the credential itself")
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "expected an https:// URL with a host name")
    if parts.username or parts.password:
        raise PydanticCustomError("url", "a URL here must not carry credentials; name environment variables instead")
    return value


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


SiteName = Annotated[str, AfterValidator(_site_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Url = Annotated[str, AfterValidator(_url)]


class _Section(BaseModel):
    """A mapping of the settings file: unknown keys refused, no coercion ("no" is not false), immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data  # `rules:` with nothing under it means all defaults


# ------------------------------------------------------------------------------------------ the models
class Rules(_Section):
    """How one site's records are matched and written; the pure core reads it, nothing else."""

    no_matching_contact: NoMatchRule = "create"
    matching_contact: MatchRule = "overwrite"
    company_without_account: AccountRule = "create"
    deal_pipeline: str = "Standard (Standard)"
    # Subscription status -> deal stage. Statuses not listed are not synced (off by default).
    deal_stages: dict[SubscriptionStatus, str] = Field(
        default_factory=lambda: {"active": "Closed Won", "non_renewing": "Negotiation/Review"})
    deal_owner_email: str | None = None
    sync_deals: bool = True
    # Extra contact fields: Chargebee path (dots into nested objects, e.g. billing_address.city) -> Zoho field.
    extra_contact_fields: dict[str, str] = Field(default_factory=dict)
    home_currency: str = "USD"

    @field_validator("deal_stages", mode="before")
    @classmethod
    def _drop_switched_off(cls, value: Any) -> Any:
        if isinstance(value, dict):  # `paused: null` (or "" / false) lists a status only to switch it off
            return {k: v for k, v in value.items() if not (v is None or v is False or v == "")}
        return value

    @field_validator("extra_contact_fields", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("home_currency", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("home_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.fullmatch(value):
            raise PydanticCustomError("currency", "'{value}' is not a three-letter currency code such as USD",
                                      {"value": value})
        return value


class ChargebeeSettings(_Section):
    site: str | None = None  # default: the site's name
    base_url: Url | None = None  # default: https://<site>.chargebee.com/api/v2
    api_key_env: EnvName | None = None  # default: CBZOHO_<SITE>_CHARGEBEE_API_KEY


# Zoho's concurrent calls per org by edition (reference §20): Free 5, Standard 10, Professional 15,
# Enterprise 20, Ultimate 25. The default stays below the lowest of them, so it suits every org.
DEFAULT_ZOHO_CONCURRENCY = 4
MAX_ZOHO_CONCURRENCY = 25


class ZohoSettings(_Section):
    data_centre: DataCentre = "US"
    environment: ZohoEnvironment = "production"
    accounts_url: Url | None = None
    api_domain: Url | None = None
    sandbox_org: str | None = None
    client_id_env: EnvName | None = None
    client_secret_env: EnvName | None = None
    refresh_token_env: EnvName | None = None
    # Calls in flight at once to the org (the push sends batches of one module in parallel up to this).
    max_concurrency: int = Field(DEFAULT_ZOHO_CONCURRENCY, ge=1, le=MAX_ZOHO_CONCURRENCY)
    # API credits the site may spend per rolling 24 hours; null: half of the org's allowance (sync/credits.py).
    daily_credit_budget: int | None = Field(None, ge=1)

    @field_validator("data_centre", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


_URL_KEYS = (("chargebee", "base_url"), ("zoho", "accounts_url"), ("zoho", "api_domain"))


class SiteSettings(_Section):
    """One site. Its URLs must be https:// unless `sandbox: true` or on this machine (see `_plain_http`)."""

    sandbox: bool = False
    autosync: bool = True
    chargebee: ChargebeeSettings = Field(default_factory=ChargebeeSettings)
    zoho: ZohoSettings = Field(default_factory=ZohoSettings)
    rules: Rules = Field(default_factory=Rules)


class ScheduleSettings(_Section):
    cron: str = "0 * * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise PydanticCustomError("cron", "'{value}' is not a five-field cron expression", {"value": value})
        return value


class SettingsFile(_Section):
    """The whole settings file."""

    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    sites: dict[SiteName, SiteSettings] = Field(min_length=1)


# ------------------------------------------------------------------------------------------ resolved sites
@dataclass(frozen=True)
class ChargebeeTarget:
    base_url: str
    api_key: str = field(repr=False)


@dataclass(frozen=True)
class ZohoTarget:
    accounts_url: str
    api_domain: str | None
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class Site:
    name: str
    chargebee_site: str
    zoho_data_centre: str
    zoho_environment: str
    rules: Rules
    autosync: bool = True
    sandbox: bool = False
    sandbox_org: str | None = None
    chargebee_base_url: str | None = None
    zoho_accounts_url: str | None = None
    zoho_api_domain: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # credential -> environment variable name
    zoho_max_concurrency: int = DEFAULT_ZOHO_CONCURRENCY
    zoho_daily_credit_budget: int | None = None

    def chargebee_url(self) -> str:
        return self.chargebee_base_url or f"https://{self.chargebee_site}.chargebee.com/api/v2"

    def zoho_urls(self) -> tuple[str, str]:
        """(accounts server, API domain) outside the sandbox: the settings', else the data centre's."""
        accounts, domain = ZOHO_DATA_CENTRES[self.zoho_data_centre]
        api_domain = self.zoho_api_domain or f"https://{ZOHO_ENVIRONMENT_HOSTS[self.zoho_environment]}.{domain}"
        return self.zoho_accounts_url or accounts, api_domain

    def chargebee(self) -> ChargebeeTarget:
        info = _sandbox_info() if self.sandbox else None
        if info is not None:
            entry = _sandbox_entry(info, "chargebee", self.chargebee_site)
            return ChargebeeTarget(entry["base_url"], entry["api_key"])
        return ChargebeeTarget(self.chargebee_url(), _require_env(self.env["chargebee_api_key"], self.name))

    def zoho(self) -> ZohoTarget:
        info = _sandbox_info() if self.sandbox else None
        if info is not None:
            entry = _sandbox_entry(info, "zoho", self.sandbox_org or self.zoho_environment)
            return ZohoTarget(entry["accounts_url"], entry["api_domain"], entry["client_id"],
                              entry["client_secret"], entry["refresh_token"])
        accounts, api_domain = self.zoho_urls()
        return ZohoTarget(
            accounts,
            api_domain,
            _require_env(self.env["zoho_client_id"], self.name),
            _require_env(self.env["zoho_client_secret"], self.name),
            _require_env(self.env["zoho_refresh_token"], self.name),
        )

    def effective(self) -> dict[str, Any]:
        """Every setting of the site with defaults filled in, in the file's shape; credentials by name only."""
        accounts, api_domain = self.zoho_urls()
        return {
            "sandbox": self.sandbox,
            "autosync": self.autosync,
            "chargebee": {"site": self.chargebee_site, "base_url": self.chargebee_url(),
                          "api_key_env": self.env["chargebee_api_key"]},
            "zoho": {
                "data_centre": self.zoho_data_centre,
                "environment": self.zoho_environment,
                "accounts_url": accounts,
                "api_domain": api_domain,
                "sandbox_org": (self.sandbox_org or self.zoho_environment) if self.sandbox else self.sandbox_org,
                "client_id_env": self.env["zoho_client_id"],
                "client_secret_env": self.env["zoho_client_secret"],
                "refresh_token_env": self.env["zoho_refresh_token"],
                "max_concurrency": self.zoho_max_concurrency,
                "daily_credit_budget": self.zoho_daily_credit_budget,
            },
            "rules": self.rules.model_dump(),
        }


@dataclass(frozen=True)
class Settings:
    sites: dict[str, Site]
    schedule_cron: str = "0 * * * *"
    schedule_timezone: str = "UTC"
    source: str = ""

    def site(self, name: str) -> Site:
        if name not in self.sites:
            known = ", ".join(sorted(self.sites)) or "none"
            raise SettingsError(f"unknown site {name!r} (settings {self.source} define: {known})")
        return self.sites[name]

    def effective(self) -> dict[str, Any]:
        return {"schedule": {"cron": self.schedule_cron, "timezone": self.schedule_timezone},
                "sites": {name: site.effective() for name, site in self.sites.items()}}


def settings_path() -> Path:
    explicit = os.environ.get("CBZOHO_SETTINGS")
    if explicit:
        return Path(explicit)
    local = Path("cbzoho.yaml")
    return local if local.exists() else DEFAULT_SETTINGS_FILE


def home_dir() -> Path:
    return Path(os.environ.get("CBZOHO_HOME") or ".cbzoho").resolve()


def site_dir(site: str) -> Path:
    path = home_dir() / "sites" / site
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------------ reading
class _SettingsLoader(yaml.SafeLoader):
    """YAML as people mean it: only true/false are booleans (yes/no/on/off stay text, so a strict boolean
    refuses them), and a key written twice is an error instead of the last one silently winning."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SettingsLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                      list("tTfF"))


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    try:
        raw = yaml.load(path.read_text(), Loader=_SettingsLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file {path} does not exist (set CBZOHO_SETTINGS)") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise SettingsError(f"{path}: {where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from exc
    return parse_settings(raw, source=str(path))


def parse_settings(raw: Any, *, source: str = "<dict>") -> Settings:
    """Validate the file's content; every problem becomes one line `<file>: <key path>: <what to change>`."""
    raw = {} if raw is None else raw
    problems = _plain_http(raw)
    try:
        model = SettingsFile.model_validate(raw)
    except ValidationError as exc:
        problems = _problems(exc) + problems
    if problems:
        raise SettingsError("\n".join(f"{source}: {line}" for line in problems))
    sites = {name: _resolve_site(name, body) for name, body in model.sites.items()}
    return Settings(sites=sites, schedule_cron=model.schedule.cron, schedule_timezone=model.schedule.timezone,
                    source=source)


def _resolve_site(name: str, body: SiteSettings) -> Site:
    cb, zo = body.chargebee, body.zoho
    prefix = "CBZOHO_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_"
    env = {
        "chargebee_api_key": cb.api_key_env or prefix + "CHARGEBEE_API_KEY",
        "zoho_client_id": zo.client_id_env or prefix + "ZOHO_CLIENT_ID",
        "zoho_client_secret": zo.client_secret_env or prefix + "ZOHO_CLIENT_SECRET",
        "zoho_refresh_token": zo.refresh_token_env or prefix + "ZOHO_REFRESH_TOKEN",
    }
    return Site(
        name=name,
        chargebee_site=cb.site or name,
        zoho_data_centre=zo.data_centre,
        zoho_environment=zo.environment,
        rules=body.rules,
        autosync=body.autosync,
        sandbox=body.sandbox,
        sandbox_org=zo.sandbox_org,
        chargebee_base_url=cb.base_url,
        zoho_accounts_url=zo.accounts_url,
        zoho_api_domain=zo.api_domain,
        env=env,
        zoho_max_concurrency=zo.max_concurrency,
        zoho_daily_credit_budget=zo.daily_credit_budget,
    )


_PLAIN_HTTP = ("http:// would send credentials unencrypted; use https:// (http:// is allowed only on sandbox: "
               "true sites and for loopback hosts: 127.0.0.1, localhost, [::1])")


def _plain_http(raw: Any) -> list[str]:
    """Credentials travel with every call: outside the sandbox only https://, or http:// to this machine.

    Checked on the raw file rather than in `SiteSettings`, so that it is reported along with a site's other
    problems instead of only once they are fixed."""
    sites = raw.get("sites") if isinstance(raw, dict) else None
    if not isinstance(sites, dict):
        return []
    problems = []
    for name, body in sites.items():
        if not isinstance(body, dict) or body.get("sandbox") is True:
            continue
        for section, key in _URL_KEYS:
            part = body.get(section)
            url = part.get(key) if isinstance(part, dict) else None
            if isinstance(url, str) and urlsplit(url).scheme == "http" and not _is_loopback(url):
                problems.append(f"sites.{name}.{section}.{key}: {_PLAIN_HTTP}")
    return problems


# ------------------------------------------------------------------------------------------ error messages
_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "client_id")


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc = loc[:-1]
        path = ".".join(str(part) for part in loc) or "(top level)"
        lines.append(f"{path}: {_explain(error, loc, is_key)}")
    return lines


def _explain(error: Any, loc: tuple[Any, ...], is_key: bool) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _annotation_at(loc[:-1])
        valid = list(parent.model_fields) if _is_model(parent) else []
        misplaced = [f"{name}.{key}" for name in valid
                     if _is_model(section := _unwrap(parent.model_fields[name].annotation))
                     and key in section.model_fields]
        text = f"unknown key {key!r}; " + (
            f"did you mean {misplaced[0]}?" if misplaced and not difflib.get_close_matches(key, valid, n=1)
            else _suggest(key, valid, "valid keys here"))
        if any(word in key.lower() for word in _CREDENTIAL_WORDS):
            text += " (credentials never go in this file: name the environment variable that holds them)"
        return text
    if kind == "missing":
        return "required key is missing"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_describe(value)}; write true or false without quotes"
    if kind == "literal_error":
        allowed = [str(a) for a in get_args(_annotation_at(loc, key=is_key))]
        if is_key and loc[-2:-1] == ("deal_stages",):
            return f"{value!r} is not a Chargebee subscription status; " + _suggest(str(value), allowed, "known")
        return f"{value!r} is not allowed; " + _suggest(str(value), allowed, "allowed values")
    if kind == "string_type":
        return f"expected text, got {_describe(value, echo=False)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (indented key: value lines), got {_describe(value, echo=False)}"
    if kind == "too_short" and loc == ("sites",):
        return "no site is defined; add at least one under sites:"
    return str(error["msg"])


def _suggest(word: str, choices: list[str], label: str) -> str:
    close = [c for c in choices if word and c.startswith(word)] or difflib.get_close_matches(word, choices, n=1)
    listing = f"{label}: {', '.join(choices)}"
    return f"did you mean {close[0]}? ({listing})" if close else listing


def _describe(value: Any, *, echo: bool = True) -> str:
    if isinstance(value, str):
        return f"the text {value!r}" if echo else "text"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}" if echo else "a number"
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def _annotation_at(loc: tuple[Any, ...], *, key: bool = False) -> Any:
    """The declared type at a key path of the file (for suggestions); `key`: the dict's key type instead."""
    current: Any = SettingsFile
    for depth, part in enumerate(loc):
        current = _unwrap(current)
        if _is_model(current):
            if part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        elif get_origin(current) is dict:
            key_type, value_type = get_args(current)
            current = key_type if key and depth == len(loc) - 1 else value_type
        else:
            return None
    return _unwrap(current)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or type(annotation).__name__ == "UnionType":
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


# ------------------------------------------------------------------------------------------ credentials
def _require_env(variable: str, site: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise SettingsError(f"site {site!r}: environment variable {variable} is not set")
    return value


def _sandbox_info() -> dict[str, Any] | None:
    path = os.environ.get("CBZOHO_SANDBOX_INFO")
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"CBZOHO_SANDBOX_INFO points at {path}, which does not exist "
                            "(is `cbzoho sandbox --info-file` running?)") from exc
    except json.JSONDecodeError as exc:
        raise SettingsError(f"CBZOHO_SANDBOX_INFO file {path} is not JSON: {exc}") from exc


def _sandbox_entry(info: dict[str, Any], api: str, tenant: str) -> dict[str, Any]:
    try:
        return info[api][tenant]
    except KeyError as exc:
        raise SettingsError(f"the running sandbox has no {api} tenant {tenant!r}") from exc
