"""Dagster resource that hands assets a Chargebee client for a site (credentials resolved at run time)."""

from __future__ import annotations

import dagster as dg

from cbzoho_pipeline.chargebee.client import ChargebeeClient
from cbzoho_pipeline.settings import Site


class ChargebeeResource(dg.ConfigurableResource):
    """Reads Chargebee. The API key comes from the environment variable the site's settings name (or from
    the sandbox info file for sandbox sites); it never appears in config, logs or metadata."""

    timeout_seconds: float = 60.0
    max_retries: int = 6

    def client(self, site: Site, log=None) -> ChargebeeClient:
        target = site.chargebee()
        return ChargebeeClient(target.base_url, target.api_key, timeout=self.timeout_seconds,
                               max_retries=self.max_retries, log=log)
