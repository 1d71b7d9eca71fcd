"""Dagster resource that hands assets a Zoho CRM client for a site.

Clients are kept per process and per credentials, and their access token is shared through the site's
token file (zoho/tokens.py) with every other run and process of the site, so a token is minted about once
an hour whatever the number of syncs: Zoho allows only ten new access tokens per refresh token in ten
minutes.
"""

from __future__ import annotations

import hashlib
import threading

import dagster as dg

from cbzoho_pipeline.settings import Site, site_dir
from cbzoho_pipeline.zoho.client import ZohoClient
from cbzoho_pipeline.zoho.tokens import FileTokenCache, credentials_fingerprint

_CLIENTS: dict[str, ZohoClient] = {}
_LOCK = threading.Lock()


class ZohoResource(dg.ConfigurableResource):
    """Talks to Zoho CRM. Client id, secret and refresh token come from the environment variables the
    site's settings name (or the sandbox info file); none of them reaches config, logs or metadata. How many
    calls may be in flight at once is the site's `zoho.max_concurrency` (orgs differ by edition)."""

    timeout_seconds: float = 60.0
    max_retries: int = 6

    def client(self, site: Site, log=None) -> ZohoClient:
        """The site's client; `log` (the asset's logger) receives its retries and token events."""
        client = self._client(site)
        client.log_to(log)
        return client

    def _client(self, site: Site) -> ZohoClient:
        target = site.zoho()
        fingerprint = hashlib.sha256(
            "\0".join([target.accounts_url, target.api_domain or "", target.client_id, target.client_secret,
                       target.refresh_token, str(self.timeout_seconds), str(self.max_retries),
                       str(site.zoho_max_concurrency), str(token_file(site.name))]).encode()
        ).hexdigest()
        with _LOCK:
            client = _CLIENTS.get(fingerprint)
            if client is None:
                client = ZohoClient(
                    accounts_url=target.accounts_url, api_domain=target.api_domain, client_id=target.client_id,
                    client_secret=target.client_secret, refresh_token=target.refresh_token,
                    timeout=self.timeout_seconds, max_retries=self.max_retries,
                    max_concurrency=site.zoho_max_concurrency,
                    token_cache=site_token_cache(site),
                )
                _CLIENTS[fingerprint] = client
            return client


def token_file(site_name: str):
    return site_dir(site_name) / "zoho_token.json"


def site_token_cache(site: Site) -> FileTokenCache:
    """The site's shared access-token file, keyed by its current credentials."""
    target = site.zoho()
    return FileTokenCache(token_file(site.name),
                          credentials_fingerprint(target.accounts_url, target.client_id, target.refresh_token))
