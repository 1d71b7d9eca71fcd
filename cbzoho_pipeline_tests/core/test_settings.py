"""The settings file as tables of cases: what a person may write, and how each mistake is reported.

A typo in the settings must never run a site with a default nobody chose, so every row below is a mistake
people make (a misspelt key, "no" for false, a rule value from memory, plain http to a real server) and the
assertion is the line they will read: the file, the key path, and what to write instead. `check-settings`
is tested for the one thing it must never do: print a credential.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest
from pydantic import ValidationError

from cbzoho_pipeline import cli
from cbzoho_pipeline.settings import (
    DEFAULT_SETTINGS_FILE,
    ZOHO_DATA_CENTRES,
    ZOHO_ENVIRONMENT_HOSTS,
    DataCentre,
    Rules,
    SettingsError,
    ZohoEnvironment,
    load_settings,
)

GOOD = """\
sites:
  acme:
    autosync: true
    chargebee:
      site: acme
    zoho:
      data_centre: EU
    rules:
      matching_contact: fill_blanks
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cbzoho.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def site_yaml(body: str, top: str = "") -> str:
    """A file with one site `acme` whose body is `body` (YAML, indented as under the site)."""
    return top + "sites:\n  acme:\n" + textwrap.indent(textwrap.dedent(body), "    ")


def problems(path: Path) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    return str(caught.value).splitlines()


# (what is wrong, the file, the key path reported, words the line must contain)
REFUSED = [
    ("misspelt rule", site_yaml("rules:\n  matching_contat: fill_blanks\n"),
     "sites.acme.rules.matching_contat", ["unknown key", "did you mean matching_contact?"]),
    ("misspelt site switch", site_yaml("autosnyc: false\n"),
     "sites.acme.autosnyc", ["unknown key", "did you mean autosync?"]),
    ("quoted no for a boolean", site_yaml('rules:\n  sync_deals: "no"\n'),
     "sites.acme.rules.sync_deals", ["expected true or false", "'no'"]),
    ("bare no for a boolean (YAML 1.1 would read false)", site_yaml("rules:\n  sync_deals: no\n"),
     "sites.acme.rules.sync_deals", ["expected true or false", "'no'"]),
    ("quoted false for a boolean", site_yaml('autosync: "false"\n'),
     "sites.acme.autosync", ["expected true or false", "'false'"]),
    ("yes for a boolean", site_yaml("sandbox: yes\n"),
     "sites.acme.sandbox", ["expected true or false", "'yes'"]),
    ("number for a boolean", site_yaml("autosync: 0\n"),
     "sites.acme.autosync", ["expected true or false", "the number 0"]),
    ("unknown top-level key", "schedul:\n  cron: '0 * * * *'\n" + site_yaml("{}\n"),
     "schedul", ["unknown key", "did you mean schedule?"]),
    ("rule key at site level", site_yaml("sync_deals: false\n"),
     "sites.acme.sync_deals", ["did you mean rules.sync_deals?"]),
    ("unknown matching_contact value", site_yaml("rules:\n  matching_contact: fill_blank\n"),
     "sites.acme.rules.matching_contact",
     ["'fill_blank'", "did you mean fill_blanks?", "overwrite, fill_blanks, link_only"]),
    ("unknown no_matching_contact value", site_yaml("rules:\n  no_matching_contact: ignore\n"),
     "sites.acme.rules.no_matching_contact", ["'ignore'", "create, skip"]),
    ("unknown company_without_account value", site_yaml("rules:\n  company_without_account: skip\n"),
     "sites.acme.rules.company_without_account", ["'skip'", "create, leave_empty"]),
    ("deal stage for a status Chargebee does not have", site_yaml("rules:\n  deal_stages:\n    activ: Closed Won\n"),
     "sites.acme.rules.deal_stages.activ", ["not a Chargebee subscription status", "did you mean active?"]),
    ("unknown data centre", site_yaml("zoho:\n  data_centre: UK\n"),
     "sites.acme.zoho.data_centre", ["'UK'", "US, EU, IN, AU, JP, CN, CA, SA"]),
    ("unknown Zoho environment", site_yaml("zoho:\n  environment: prod\n"),
     "sites.acme.zoho.environment", ["did you mean production?", "production, sandbox, developer"]),
    ("site name with capitals", "sites:\n  Acme: {}\n",
     "sites.Acme", ["lower-case letters, digits"]),
    ("no site", "sites: {}\n", "sites", ["no site is defined"]),
    ("deal stages not a mapping", site_yaml("rules:\n  deal_stages: [active]\n"),
     "sites.acme.rules.deal_stages", ["expected a mapping"]),
    ("currency that is not a code", site_yaml("rules:\n  home_currency: dollars\n"),
     "sites.acme.rules.home_currency", ["three-letter currency code"]),
    ("cron with too few fields", "schedule:\n  cron: '0 *'\n" + site_yaml("{}\n"),
     "schedule.cron", ["five-field cron expression"]),
    ("http:// Chargebee on a real site", site_yaml("chargebee:\n  base_url: http://acme.chargebee.com/api/v2\n"),
     "sites.acme.chargebee.base_url", ["use https://", "sandbox: true", "loopback"]),
    ("http:// Zoho accounts on a real site", site_yaml("zoho:\n  accounts_url: http://accounts.zoho.eu\n"),
     "sites.acme.zoho.accounts_url", ["use https://"]),
    ("http:// Zoho API on a real site", site_yaml("zoho:\n  api_domain: http://10.0.0.5:8080\n"),
     "sites.acme.zoho.api_domain", ["use https://"]),
    ("not a URL", site_yaml("chargebee:\n  base_url: acme.chargebee.com\n"),
     "sites.acme.chargebee.base_url", ["https:// URL"]),
    ("no call at a time", site_yaml("zoho:\n  max_concurrency: 0\n"),
     "sites.acme.zoho.max_concurrency", ["greater than or equal to 1"]),
    ("more calls than any edition allows", site_yaml("zoho:\n  max_concurrency: 30\n"),
     "sites.acme.zoho.max_concurrency", ["less than or equal to 25"]),
    ("a budget as text", site_yaml("zoho:\n  daily_credit_budget: '10k'\n"),
     "sites.acme.zoho.daily_credit_budget", ["valid integer"]),
    ("a budget of nothing", site_yaml("zoho:\n  daily_credit_budget: 0\n"),
     "sites.acme.zoho.daily_credit_budget", ["greater than or equal to 1"]),
]


@pytest.mark.parametrize("text, key_path, words", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_mistake_is_refused_naming_file_key_and_fix(tmp_path, text, key_path, words):
    path = write(tmp_path, text)
    lines = problems(path)
    mine = [line for line in lines if f": {key_path}:" in line or f"'{key_path}'" in line]
    assert mine, f"no line names {key_path}: {lines}"
    assert mine[0].startswith(f"{path}: "), mine[0]
    for word in words:
        assert word in mine[0], f"{word!r} missing from: {mine[0]}"


def test_a_credential_pasted_where_a_variable_name_belongs_is_refused_and_not_repeated(tmp_path):
    secret = "sk_live_PASTED secret 0123456789"
    path = write(tmp_path, site_yaml(f'chargebee:\n  api_key_env: "{secret}"\n'))
    (line,) = problems(path)
    assert "sites.acme.chargebee.api_key_env" in line and "NAME of an environment variable" in line
    assert secret not in line


def test_a_credential_key_in_the_file_is_refused_pointing_at_the_variable_name(tmp_path):
    path = write(tmp_path, site_yaml("chargebee:\n  api_key: sk_live_PASTED\n"))
    (line,) = problems(path)
    assert "sites.acme.chargebee.api_key:" in line and "did you mean api_key_env?" in line
    assert "sk_live_PASTED" not in line


@pytest.mark.parametrize("text, where, words", [
    (site_yaml("rules:\n  matching_contact: overwrite\n  matching_contact: link_only\n"), "line 5, column 7",
     ["'matching_contact' appears twice"]),
    (site_yaml("rules:\n  matching_contact: [overwrite\n"), "line 5", ["not valid YAML"]),
], ids=["key written twice", "broken YAML"])
def test_a_file_that_is_not_clean_yaml_is_refused_with_its_line(tmp_path, text, where, words):
    path = write(tmp_path, text)
    (line,) = problems(path)[:1]
    assert line.startswith(f"{path}: {where}"), line
    assert all(word in line for word in words), line


def test_every_problem_of_a_file_is_listed_one_per_line(tmp_path):
    path = write(tmp_path, """\
        sites:
          acme:
            autosnyc: false
            chargebee:
              base_url: http://acme.example.com/api/v2
            rules:
              matching_contat: fill_blanks
              sync_deals: "no"
              deal_stages:
                activ: Closed Won
          acme-eu:
            zoho:
              data_centre: UK
        """)
    lines = problems(path)
    expected = ["sites.acme.autosnyc", "sites.acme.chargebee.base_url", "sites.acme.rules.matching_contat",
                "sites.acme.rules.sync_deals", "sites.acme.rules.deal_stages.activ", "sites.acme-eu.zoho.data_centre"]
    assert sorted(line.split(": ")[1] for line in lines) == sorted(expected)
    assert all(line.startswith(f"{path}: ") for line in lines)


@pytest.mark.parametrize("url, sandbox", [
    ("http://127.0.0.1:8765/chargebee/acme/api/v2", False),
    ("http://127.10.0.1/api", False),
    ("http://localhost:9000/api/v2", False),
    ("http://[::1]:9000/api/v2", False),
    ("https://acme.chargebee.com/api/v2", False),
    ("http://sandbox.internal.example/api/v2", True),
], ids=["127.0.0.1", "127/8", "localhost", "ipv6 loopback", "https", "sandbox site"])
def test_http_is_allowed_only_to_this_machine_or_on_a_sandbox_site(tmp_path, url, sandbox):
    path = write(tmp_path, site_yaml(f"sandbox: {str(sandbox).lower()}\nchargebee:\n  base_url: {url}\n"
                                     f"zoho:\n  accounts_url: {url}\n  api_domain: {url}\n"))
    site = load_settings(path).site("acme")
    assert site.chargebee_url() == url
    assert site.zoho_urls() == (url, url)


def test_the_bundled_default_settings_load():
    settings = load_settings(DEFAULT_SETTINGS_FILE)
    assert sorted(settings.sites) == ["acme", "acme-test"]
    assert (settings.schedule_cron, settings.schedule_timezone) == ("0 * * * *", "UTC")
    acme = settings.site("acme")
    assert (acme.autosync, acme.sandbox, acme.sandbox_org) == (False, True, "production")
    assert (acme.rules.matching_contact, acme.rules.company_without_account) == ("fill_blanks", "leave_empty")
    test_site = settings.site("acme-test")
    assert test_site.rules.extra_contact_fields == {"billing_address.city": "Mailing_City",
                                                   "billing_address.country": "Mailing_Country"}


def test_a_bare_site_gets_every_default(tmp_path):
    site = load_settings(write(tmp_path, "sites:\n  acme-eu:\n")).site("acme-eu")
    assert site.rules == Rules()
    assert (site.autosync, site.sandbox, site.chargebee_site) == (True, False, "acme-eu")
    assert site.chargebee_url() == "https://acme-eu.chargebee.com/api/v2"
    assert site.zoho_urls() == ("https://accounts.zoho.com", "https://www.zohoapis.com")
    assert (site.zoho_max_concurrency, site.zoho_daily_credit_budget) == (4, None)  # below Free's 5; half the allowance
    assert site.env == {"chargebee_api_key": "CBZOHO_ACME_EU_CHARGEBEE_API_KEY",
                        "zoho_client_id": "CBZOHO_ACME_EU_ZOHO_CLIENT_ID",
                        "zoho_client_secret": "CBZOHO_ACME_EU_ZOHO_CLIENT_SECRET",
                        "zoho_refresh_token": "CBZOHO_ACME_EU_ZOHO_REFRESH_TOKEN"}


@pytest.mark.parametrize("rules_yaml, expected", [
    ("deal_stages:\n  active: Won\n  paused: null\n", {"deal_stages": {"active": "Won"}}),
    ("data_centre_is_not_here: 1\n", None),
    ("home_currency: eur\n", {"home_currency": "EUR"}),
    ("sync_deals: false\n", {"sync_deals": False}),
    ("extra_contact_fields:\n", {"extra_contact_fields": {}}),
], ids=["switched-off stage dropped", "unknown rule refused", "currency upper-cased", "false is false",
        "empty mapping"])
def test_rule_values_as_read(tmp_path, rules_yaml, expected):
    path = write(tmp_path, site_yaml("rules:\n" + textwrap.indent(rules_yaml, "  ")))
    if expected is None:
        problems(path)
        return
    assert load_settings(path).site("acme").rules == Rules(**expected)


def test_rules_are_built_with_keywords_validated_and_frozen():
    rules = Rules(no_matching_contact="skip", deal_stages={"active": "Won Big"})
    assert rules == Rules(no_matching_contact="skip", deal_stages={"active": "Won Big"})
    assert rules.matching_contact == "overwrite" and rules.sync_deals is True
    with pytest.raises(ValidationError):
        rules.sync_deals = False
    with pytest.raises(ValidationError):
        Rules(matching_contact="fill_blank")
    with pytest.raises(ValidationError):
        Rules(sync_deals="no")


def test_the_literal_lists_match_the_url_tables():
    assert get_args(DataCentre) == tuple(ZOHO_DATA_CENTRES)
    assert get_args(ZohoEnvironment) == tuple(ZOHO_ENVIRONMENT_HOSTS)


# ------------------------------------------------------------------------------------------ check-settings
SECRET = "sk_live_PLANTED_SECRET_4f8a2c"


@pytest.fixture
def planted(monkeypatch):
    """Every credential variable of site acme set to a recognisable secret (and one left unset)."""
    monkeypatch.delenv("CBZOHO_SANDBOX_INFO", raising=False)
    monkeypatch.setenv("ACME_CB_KEY", SECRET)
    monkeypatch.setenv("CBZOHO_ACME_ZOHO_CLIENT_ID", SECRET + "_id")
    monkeypatch.setenv("CBZOHO_ACME_ZOHO_CLIENT_SECRET", SECRET + "_secret")
    monkeypatch.delenv("CBZOHO_ACME_ZOHO_REFRESH_TOKEN", raising=False)


def test_check_settings_prints_effective_rules_and_variable_names_never_values(tmp_path, capsys, planted):
    path = write(tmp_path, GOOD.replace("      site: acme\n", "      site: acme\n      api_key_env: ACME_CB_KEY\n"))
    assert cli.main(["check-settings", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    lines = out.splitlines()

    def line(key: str) -> str:
        return next(x for x in lines if x.strip().startswith(f"{key}:"))

    assert str(path) in lines[0] and "valid" in lines[0]
    assert line("api_key_env").endswith('"ACME_CB_KEY"  # set')
    assert line("client_id_env").endswith('"CBZOHO_ACME_ZOHO_CLIENT_ID"  # set')
    assert line("refresh_token_env").endswith('"CBZOHO_ACME_ZOHO_REFRESH_TOKEN"  # NOT SET')
    assert line("matching_contact") == '      matching_contact: "fill_blanks"'
    for key, value in [("no_matching_contact", '"create"'), ("company_without_account", '"create"'),
                       ("deal_pipeline", '"Standard (Standard)"'), ("sync_deals", "true"), ("autosync", "true"),
                       ("sandbox", "false"), ("home_currency", '"USD"'), ("deal_owner_email", "null"),
                       ("active", '"Closed Won"'), ("data_centre", '"EU"'), ("environment", '"production"'),
                       ("accounts_url", '"https://accounts.zoho.eu"'), ("api_domain", '"https://www.zohoapis.eu"'),
                       ("base_url", '"https://acme.chargebee.com/api/v2"'), ("extra_contact_fields", "{}")]:
        assert line(key).endswith(f"{key}: {value}"), line(key)


def test_check_settings_reads_the_file_load_settings_would(tmp_path, capsys, planted, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("CBZOHO_SETTINGS", str(path))
    assert cli.main(["check-settings"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0].startswith(f"# {path}: valid")


def test_check_settings_exits_2_with_every_problem_on_stderr(tmp_path, capsys, planted):
    path = write(tmp_path, site_yaml('chargebee:\n  api_key_env: ACME_CB_KEY\nautosnyc: false\n'
                                     'rules:\n  matching_contat: fill_blanks\n'))
    assert cli.main(["check-settings", "--file", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}: sites.acme.autosnyc: unknown key 'autosnyc'; did you mean autosync?" in err
    assert (f"{path}: sites.acme.rules.matching_contat: unknown key 'matching_contat'; "
            "did you mean matching_contact?") in err
    assert SECRET not in out + err


def test_check_settings_names_a_missing_file(tmp_path, capsys):
    assert cli.main(["check-settings", "--file", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ once per run
def test_a_run_keeps_the_rules_it_started_with(tmp_path, monkeypatch):
    from cbzoho_pipeline.assets import sync as sync_assets

    path = write(tmp_path, GOOD)
    monkeypatch.setenv("CBZOHO_SETTINGS", str(path))
    monkeypatch.setenv("CBZOHO_HOME", str(tmp_path / "home"))
    run = lambda run_id: SimpleNamespace(run=SimpleNamespace(run_id=run_id), partition_key="acme")  # noqa: E731
    assert sync_assets.site_for(run("run-1")).rules.matching_contact == "fill_blanks"
    path.write_text(GOOD.replace("fill_blanks", "link_only"))  # edited while run-1 is still going
    assert sync_assets.site_for(run("run-1")).rules.matching_contact == "fill_blanks"
    assert sync_assets.site_for(run("run-2")).rules.matching_contact == "link_only"
    for n in range(100):
        sync_assets.site_for(run(f"later-{n}"))
    assert len(sync_assets._RUN_SITES) <= sync_assets._RUN_SITES_KEPT
