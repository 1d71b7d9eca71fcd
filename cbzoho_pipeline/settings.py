"""Sites and sync rules: read once from the settings file, validated, never holding a secret.

A *site* pairs one Chargebee site with one Zoho org. The settings file names the sites, their rules (in
Chargebee's own vocabulary) and the names of the environment variables that hold their credentials; the
credentials themselves are read from the environment only when a run needs them, so nothing in this
module, its errors or its repr ever contains a secret.

Where things are found:
- `CBZOHO_SETTINGS`: the settings file (default `cbzoho.yaml` in the working directory, else the bundled
  `cbzoho_pipeline/default_settings.yaml`, which describes the two sandbox sites).
- `CBZOHO_HOME`: the state directory (default `.cbzoho` in the working directory); each site keeps its
  DuckDB file and its disconnect marker in `$CBZOHO_HOME/sites/<site>/`.
- `CBZOHO_SANDBOX_INFO`: the `--info-file` of a running `cbzoho sandbox`; sites marked `sandbox: true` then
  take their URLs and credentials from it instead of the environment.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SETTINGS_FILE = Path(__file__).with_name("default_settings.yaml")

NO_MATCH_RULES = ("create", "skip")
MATCH_RULES = ("overwrite", "fill_blanks", "link_only")
ACCOUNT_RULES = ("create", "leave_empty")
SUBSCRIPTION_STATUSES = ("future", "in_trial", "active", "non_renewing", "paused", "cancelled", "transferred")

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


@dataclass(frozen=True)
class Rules:
    no_matching_contact: str = "create"
    matching_contact: str = "overwrite"
    company_without_account: str = "create"
    deal_pipeline: str = "Standard (Standard)"
    # Subscription status -> deal stage. Statuses not listed are not synced (off by default).
    deal_stages: dict[str, str] = field(
        default_factory=lambda: {"active": "Closed Won", "non_renewing": "Negotiation/Review"}
    )
    deal_owner_email: str | None = None
    sync_deals: bool = True
    # Extra contact fields: Chargebee path (dots into nested objects, e.g. billing_address.city) -> Zoho field.
    extra_contact_fields: dict[str, str] = field(default_factory=dict)
    home_currency: str = "USD"


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

    def chargebee(self) -> ChargebeeTarget:
        info = _sandbox_info() if self.sandbox else None
        if info is not None:
            entry = _sandbox_entry(info, "chargebee", self.chargebee_site)
            return ChargebeeTarget(entry["base_url"], entry["api_key"])
        base = self.chargebee_base_url or f"https://{self.chargebee_site}.chargebee.com/api/v2"
        return ChargebeeTarget(base, _require_env(self.env["chargebee_api_key"], self.name))

    def zoho(self) -> ZohoTarget:
        info = _sandbox_info() if self.sandbox else None
        if info is not None:
            entry = _sandbox_entry(info, "zoho", self.sandbox_org or self.zoho_environment)
            return ZohoTarget(entry["accounts_url"], entry["api_domain"], entry["client_id"],
                              entry["client_secret"], entry["refresh_token"])
        accounts, domain = ZOHO_DATA_CENTRES[self.zoho_data_centre]
        api_domain = self.zoho_api_domain or f"https://{ZOHO_ENVIRONMENT_HOSTS[self.zoho_environment]}.{domain}"
        return ZohoTarget(
            self.zoho_accounts_url or accounts,
            api_domain,
            _require_env(self.env["zoho_client_id"], self.name),
            _require_env(self.env["zoho_client_secret"], self.name),
            _require_env(self.env["zoho_refresh_token"], self.name),
        )


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


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file {path} does not exist (set CBZOHO_SETTINGS)") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from exc
    return parse_settings(raw, source=str(path))


def parse_settings(raw: dict[str, Any], *, source: str = "<dict>") -> Settings:
    if not isinstance(raw, dict) or not isinstance(raw.get("sites"), dict) or not raw["sites"]:
        raise SettingsError(f"{source}: expected a mapping with a non-empty 'sites' section")
    sites = {name: _parse_site(name, body or {}, source) for name, body in raw["sites"].items()}
    schedule = raw.get("schedule") or {}
    cron = str(schedule.get("cron", "0 * * * *"))
    if len(cron.split()) != 5:
        raise SettingsError(f"{source}: schedule.cron {cron!r} is not a five-field cron expression")
    return Settings(sites=sites, schedule_cron=cron, schedule_timezone=str(schedule.get("timezone", "UTC")),
                    source=source)


_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")


def _parse_site(name: str, body: dict[str, Any], source: str) -> Site:
    where = f"{source}: sites.{name}"
    if not _SITE_NAME.match(name):
        raise SettingsError(f"{where}: a site name uses lower-case letters, digits, '-' and '_'")
    cb = body.get("chargebee") or {}
    zo = body.get("zoho") or {}
    rules = _parse_rules(body.get("rules") or {}, where)
    dc = str(zo.get("data_centre", "US")).upper()
    if dc not in ZOHO_DATA_CENTRES:
        raise SettingsError(f"{where}.zoho.data_centre: {dc!r} is not one of {', '.join(ZOHO_DATA_CENTRES)}")
    environment = str(zo.get("environment", "production"))
    if environment not in ZOHO_ENVIRONMENT_HOSTS:
        raise SettingsError(f"{where}.zoho.environment: {environment!r} is not production, sandbox or developer")
    prefix = "CBZOHO_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_"
    env = {
        "chargebee_api_key": cb.get("api_key_env", prefix + "CHARGEBEE_API_KEY"),
        "zoho_client_id": zo.get("client_id_env", prefix + "ZOHO_CLIENT_ID"),
        "zoho_client_secret": zo.get("client_secret_env", prefix + "ZOHO_CLIENT_SECRET"),
        "zoho_refresh_token": zo.get("refresh_token_env", prefix + "ZOHO_REFRESH_TOKEN"),
    }
    return Site(
        name=name,
        chargebee_site=str(cb.get("site", name)),
        zoho_data_centre=dc,
        zoho_environment=environment,
        rules=rules,
        autosync=bool(body.get("autosync", True)),
        sandbox=bool(body.get("sandbox", False)),
        sandbox_org=zo.get("sandbox_org"),
        chargebee_base_url=cb.get("base_url"),
        zoho_accounts_url=zo.get("accounts_url"),
        zoho_api_domain=zo.get("api_domain"),
        env=env,
    )


def _parse_rules(raw: dict[str, Any], where: str) -> Rules:
    def choice(key: str, allowed: tuple[str, ...], default: str) -> str:
        value = str(raw.get(key, default))
        if value not in allowed:
            raise SettingsError(f"{where}.rules.{key}: {value!r} is not one of {', '.join(allowed)}")
        return value

    stages = raw.get("deal_stages", Rules().deal_stages)
    if not isinstance(stages, dict):
        raise SettingsError(f"{where}.rules.deal_stages: expected a mapping of subscription status to stage")
    stages = {str(k): str(v) for k, v in stages.items() if v not in (None, "", False)}
    unknown = sorted(set(stages) - set(SUBSCRIPTION_STATUSES))
    if unknown:
        raise SettingsError(f"{where}.rules.deal_stages: unknown subscription status(es) {', '.join(unknown)}; "
                            f"known: {', '.join(SUBSCRIPTION_STATUSES)}")
    extra = raw.get("extra_contact_fields") or {}
    if not isinstance(extra, dict):
        raise SettingsError(f"{where}.rules.extra_contact_fields: expected a mapping of Chargebee path to Zoho field")
    return Rules(
        no_matching_contact=choice("no_matching_contact", NO_MATCH_RULES, "create"),
        matching_contact=choice("matching_contact", MATCH_RULES, "overwrite"),
        company_without_account=choice("company_without_account", ACCOUNT_RULES, "create"),
        deal_pipeline=str(raw.get("deal_pipeline", Rules.deal_pipeline)),
        deal_stages=stages,
        deal_owner_email=raw.get("deal_owner_email"),
        sync_deals=bool(raw.get("sync_deals", True)),
        extra_contact_fields={str(k): str(v) for k, v in extra.items()},
        home_currency=str(raw.get("home_currency", "USD")).upper(),
    )


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
