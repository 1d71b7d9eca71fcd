"""Disconnect a site: revoke its Zoho refresh token, stop its syncs, keep its history.

Used by `cbzoho disconnect` and the `cbzoho_disconnect` job. The marker file makes every later sync of the
site fail at once with a clear message; the warehouse (links, log, errors) stays for reading.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cbzoho_pipeline.settings import load_settings
from cbzoho_pipeline.warehouse.resources import disconnected_marker, disconnection
from cbzoho_pipeline.zoho.client import ZohoClient, ZohoError
from cbzoho_pipeline.zoho.resources import token_file
from cbzoho_pipeline.zoho.tokens import FileTokenCache


def disconnect(site_name: str) -> dict[str, Any]:
    site = load_settings().site(site_name)
    already = disconnection(site.name)
    if already is not None:
        return {"site": site.name, "status": "already disconnected", "at": already.get("at")}
    target = site.zoho()
    revoked, problem = True, None
    client = ZohoClient(accounts_url=target.accounts_url, api_domain=target.api_domain, client_id=target.client_id,
                        client_secret=target.client_secret, refresh_token=target.refresh_token)
    try:
        client.revoke_refresh_token()
    except ZohoError as exc:
        revoked, problem = False, str(exc)
    finally:
        client.close()
    FileTokenCache(token_file(site.name), "").clear()  # the stored access token goes, revoked or not
    record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "token_revoked": revoked}
    if problem:
        record["revoke_problem"] = problem
    disconnected_marker(site.name).write_text(json.dumps(record))
    return {"site": site.name, "status": "disconnected", **record}


def reconnect(site_name: str) -> dict[str, Any]:
    site = load_settings().site(site_name)
    marker = disconnected_marker(site.name)
    if not marker.exists():
        return {"site": site.name, "status": "connected"}
    marker.unlink()
    return {"site": site.name, "status": "reconnected"}
