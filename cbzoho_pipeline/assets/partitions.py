"""Sites are the partitions of the one sync graph: the UI shows one lineage and a Materialize per site."""

from __future__ import annotations

import dagster as dg

from cbzoho_pipeline.settings import load_settings

SITES = dg.StaticPartitionsDefinition(sorted(load_settings().sites))
