"""Failures in plain words: what went wrong, where, and the one thing to change.

Why it exists: an API client raises what the API said (HTTP status, error code); a person needs to know
which setting or environment variable to fix. This module turns the clients' and the settings' errors into
a `dagster.Failure` whose description is one line naming the site, the cause and the fix; the UI shows it
on the failed step and `cbzoho sync` prints it as its last line.

What it must never do: put a secret in a message (only variable names and URLs), or hide an unexpected
error (anything it does not recognise passes through unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from cbzoho_pipeline.chargebee.client import ChargebeeError
from cbzoho_pipeline.settings import SettingsError, Site
from cbzoho_pipeline.zoho.client import ZohoAuthError, ZohoError


def _where_credentials(site: Site, credential: str) -> str:
    if site.sandbox:
        return "the sandbox's info file (CBZOHO_SANDBOX_INFO) or, without it, " + site.env[credential]
    return site.env[credential]


def explain(exc: BaseException, site: Site) -> str | None:
    """One line for a failure we recognise, else None."""
    if isinstance(exc, SettingsError):
        return str(exc)
    if isinstance(exc, ChargebeeError):
        return _explain_chargebee(exc, site)
    if isinstance(exc, ZohoAuthError):
        return _explain_zoho_auth(exc, site)
    if isinstance(exc, ZohoError):
        return _explain_zoho(exc, site)
    return None


def _explain_chargebee(exc: ChargebeeError, site: Site) -> str:
    if exc.status is None:
        return (f"Chargebee is unreachable for site {site.name!r} ({exc.message}); check chargebee.base_url "
                f"({site.chargebee_url() if not site.sandbox else 'from the sandbox info file'}) and the network"
                + (", and that `cbzoho sandbox` is running" if site.sandbox else ""))
    code = f"HTTP {exc.status}" + (f" {exc.api_error_code}" if exc.api_error_code else "")
    if exc.status == 401:
        return (f"Chargebee refused the API key of site {site.name!r} ({code}); put a valid key for Chargebee site "
                f"{site.chargebee_site!r} in {_where_credentials(site, 'chargebee_api_key')}")
    if exc.status == 404 and exc.api_error_code in (None, "site_not_found"):
        return f"Chargebee answered {code} for site {site.name!r}; check chargebee.site ({site.chargebee_site!r})"
    return f"Chargebee answered {code} for site {site.name!r}: {exc.message}"


def _explain_zoho_auth(exc: ZohoAuthError, site: Site) -> str:
    code = exc.code.lower()
    if code in ("invalid_code", "invalid_token"):
        return (f"Zoho refused the refresh token of site {site.name!r} ({exc.code}: wrong, revoked, or from "
                f"another data centre); put a new one in {_where_credentials(site, 'zoho_refresh_token')}"
                f" (then `cbzoho reconnect --site {site.name}` if the site was disconnected)")
    if code.startswith("invalid_client"):
        return (f"Zoho refused the OAuth client of site {site.name!r} ({exc.code}); check "
                f"{_where_credentials(site, 'zoho_client_id')} and {site.env['zoho_client_secret']}, and "
                f"zoho.data_centre ({site.zoho_data_centre})")
    return f"Zoho's accounts server refused site {site.name!r} ({exc.code}): {exc.message}"


def _explain_zoho(exc: ZohoError, site: Site) -> str:
    if exc.status is None:
        return (f"Zoho CRM is unreachable for site {site.name!r} ({exc.message}); check zoho.data_centre / "
                "zoho.api_domain and the network" + (", and that `cbzoho sandbox` is running" if site.sandbox else ""))
    if exc.code == "OAUTH_SCOPE_MISMATCH":
        return (f"Zoho says the refresh token of site {site.name!r} lacks a scope (HTTP 401 OAUTH_SCOPE_MISMATCH); "
                "generate it again with the scopes listed in the README")
    return f"Zoho answered HTTP {exc.status} {exc.code} for site {site.name!r}: {exc.message}"


@contextmanager
def plain_failures(site: Site) -> Iterator[None]:
    """Re-raise a recognised failure as a one-line `dagster.Failure` (not retried: a person must act)."""
    try:
        yield
    except (SettingsError, ChargebeeError, ZohoError) as exc:
        text = explain(exc, site)
        if text is None:
            raise
        raise dg.Failure(description=text, allow_retries=False) from None


def root_cause(error: object) -> str:
    """The innermost cause of a step's SerializableErrorInfo, in one line, without Dagster's wrapping."""
    while getattr(error, "cause", None) is not None:
        error = error.cause  # type: ignore[attr-defined]
    text = " ".join(str(getattr(error, "message", error) or "").split())
    cls = getattr(error, "cls_name", None) or ""
    if cls and text.split(":", 1)[0].endswith(cls):
        head, _, rest = text.partition(": ")
        # Our own plain failures speak for themselves; other exceptions keep their short class name.
        text = rest if cls == "Failure" else f"{cls}: {rest}"
    return text or "(no message)"
