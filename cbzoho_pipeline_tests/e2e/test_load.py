"""The code location loads with no deprecated or beta Dagster API in it, and one known preview API.

Dagster warns once per process, when a definition is built, so the definitions are imported in a fresh
interpreter where those warnings are errors: a module already imported by another test cannot hide one.
Nothing here may silence a warning; if this fails, change the call the traceback names.

The one exception, by its exact message: partitioned asset checks (`AssetCheckSpec(partitions_def=...)`)
are a Dagster preview, and they are what lets each site's check results stand on their own in the UI (README,
Architecture). A preview is not a deprecation: nothing says it will go away. The allowance matches that one
message only, and the test fails if the warning stops appearing, so the allowance is dropped with the need.
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
    # The one allowed preview (see the module docstring), recorded rather than raised; filterwarnings puts
    # it first, so it applies to this message only and every other preview warning is still an error.
    ALLOWED = "Specifying a partitions_def on an AssetCheckSpec is currently in preview"
    warnings.filterwarnings("always", message=ALLOWED, category=dg.PreviewWarning)

    with warnings.catch_warnings(record=True) as seen:
        import cbzoho_pipeline.definitions as module
    allowed = [str(w.message) for w in seen
               if w.category is dg.PreviewWarning and str(w.message).startswith(ALLOWED)]
    other = [f"{w.category.__name__}: {w.message}" for w in seen
             if not (w.category is dg.PreviewWarning and str(w.message).startswith(ALLOWED))]

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
        "allowed_previews": len(allowed),
        "other_warnings": other,
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
    assert loaded["other_warnings"] == []
    # the checks are partitioned by site; if none is any more, the allowance has to go
    assert loaded["allowed_previews"] >= 1, "no partitioned check left: remove ALLOWED from this test"
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
