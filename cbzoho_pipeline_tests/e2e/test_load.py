"""The code location loads with no deprecated, beta or preview Dagster API in it.

Dagster warns once per process, when a definition is built, so the definitions are imported in a fresh
interpreter where those warnings are errors: a module already imported by another test cannot hide one.
Nothing here may silence a warning; if this fails, change the call the traceback names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg

from cbzoho_pipeline.chargebee import schemas

REPO_ROOT = Path(__file__).resolve().parents[2]

# -W can only name built-in categories (the interpreter reads it before site-packages is on the path), so
# Dagster's own BetaWarning, PreviewWarning and SupersessionWarning become errors first thing in the script,
# before our package is imported. The probes at the end fail if anything we import turned a warning back off.
LOAD = textwrap.dedent("""
    import json
    import warnings

    import dagster as dg

    DAGSTER_WARNINGS = (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning)
    for category in DAGSTER_WARNINGS:
        warnings.filterwarnings("error", category=category)

    import cbzoho_pipeline.definitions as module

    dg.Definitions.validate_loadable(module.defs)
    job = module.defs.resolve_job_def("cbzoho_sync")

    still_errors = []
    for category in (DeprecationWarning, PendingDeprecationWarning, *DAGSTER_WARNINGS):
        try:
            warnings.warn("probe", category)
        except category:
            still_errors.append(category.__name__)

    print(json.dumps({
        "module": module.__file__,
        "job": job.name,
        "partitions": sorted(job.partitions_def.get_partition_keys()),
        "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
        "still_errors": still_errors,
    }))
""")


def test_definitions_load_with_dagster_and_python_deprecations_as_errors(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBZOHO_") and k != "PYTHONWARNINGS"}
    env["CBZOHO_SETTINGS"] = str(REPO_ROOT / "cbzoho_pipeline" / "default_settings.yaml")
    env["CBZOHO_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-W", "error::PendingDeprecationWarning", "-c", LOAD],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(loaded["module"]).is_relative_to(REPO_ROOT)  # this working tree's code, not another install
    assert loaded["job"] == "cbzoho_sync"
    assert loaded["partitions"] == ["acme", "acme-test"]  # the sites of the bundled settings, from the assets
    assert {"chargebee_customers", "chargebee_subscriptions", "sync_plan", "synced_contacts"} <= set(loaded["assets"])
    assert loaded["still_errors"] == ["DeprecationWarning", "PendingDeprecationWarning", "BetaWarning",
                                      "PreviewWarning", "SupersessionWarning"]
    # Whatever Python or Dagster had to say while loading went to stderr; there must be nothing.
    assert "Warning" not in done.stderr, done.stderr


def test_extract_assets_show_their_contract_in_the_columns_panel():
    from cbzoho_pipeline.definitions import defs

    for name, contract in (("chargebee_customers", schemas.CUSTOMER_CONTRACT),
                           ("chargebee_subscriptions", schemas.SUBSCRIPTION_CONTRACT)):
        spec = defs.resolve_assets_def(name).specs_by_key[dg.AssetKey(name)]
        shown = spec.metadata["dagster/column_schema"]
        assert isinstance(shown, dg.TableSchema)
        columns = {c.name: c for c in shown.columns}
        assert list(columns) == list(contract.columns), name
        assert columns["id"].type == "str"
        assert columns["id"].constraints == dg.TableColumnConstraints(nullable=False, unique=True,
                                                                      other=["str_length(1, 50)"])
        assert columns["created_at"].type == "Int64" and columns["created_at"].constraints.nullable
        assert columns["deleted"].type == "boolean"

    spec = defs.resolve_assets_def("chargebee_subscriptions").specs_by_key[dg.AssetKey("chargebee_subscriptions")]
    status = {c.name: c for c in spec.metadata["dagster/column_schema"].columns}["status"]
    assert not status.constraints.nullable
    assert status.constraints.other == [
        "isin(['future', 'in_trial', 'active', 'non_renewing', 'paused', 'cancelled', 'transferred'])"]
