"""cbzoho's run launcher on Kubernetes, and the volume claims it expects (one per site).

Each site keeps its state (the DuckDB warehouse, `status.json`, the sync lock, heartbeats, the shared Zoho
access token, the disconnect marker) in `$CBZOHO_HOME/sites/<site>/`. On Kubernetes that folder is a
PersistentVolumeClaim of its own, and only a run of that site may mount it: the claim is ReadWriteOnce,
DuckDB wants one writer on a local-like filesystem, and the per-site `flock` only means something when every
holder shares one kernel (README, "Running on Kubernetes").

Why a subclass of dagster-k8s's `K8sRunLauncher`: that launcher gives every run the same volumes, and the
only per-run addition it reads is the run's `dagster-k8s/config` tag. A tag computed by the code location
does not reach every run: the schedule's run requests could carry it, but runs the UI launches as Dagster's
implicit asset job (asset backfills, and Materialize when it picks that job) get the partition's tags from
the partitions definition alone, computed by the webserver. The launcher is the one place every run passes,
and the site is always on the run: as its `dagster/partition` tag for a sync (whichever way it was
launched), in its config for `cbzoho_disconnect`. So the launcher adds, per run, the site's claim mounted
at `<cbzoho_home>/sites/<site>`, `CBZOHO_HOME=<cbzoho_home>` and a `cbzoho/site` pod label. A run that
names no site gets no site volume.

This file is not part of the `cbzoho` package: the webserver, the daemon and the run pods import it by the
module name `cbzoho_k8s` from the instance configuration (deploy/k8s/dagster.yaml), so the image puts
deploy/k8s on PYTHONPATH. Run as a script, it prints the claims for the sites of the settings file:

    python deploy/k8s/cbzoho_k8s.py volumes --storage-class <block storage class> --size 20Gi
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from string import Template
from typing import Any

from dagster import Field, StringSource
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.utils import sanitize_k8s_label

SITE_TAG = "dagster/partition"
SITE_LABEL = "cbzoho/site"
VOLUME_NAME = "cbzoho-site-state"
DEFAULT_CLAIM_PREFIX = "cbzoho-site-"
# The disconnect job names its site in its run config, not as a partition.
DISCONNECT_OP = "disconnect_site"
# The same rule as site names in cbzoho_pipeline/settings.py (a test keeps the two equal). Checked again
# here because the name becomes a path and a claim name: a tag edited by hand must not reach either.
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")
# A PersistentVolumeClaim's name is a DNS subdomain: lower-case letters, digits, '-' and '.', starting and
# ending with a letter or digit.
_CLAIM_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
TEMPLATE = Path(__file__).with_name("site-volume.yaml")


class SiteVolumeError(ValueError):
    """A site name that cannot become a mount path or a claim name; the run is not launched."""


def claim_name(site: str, prefix: str = DEFAULT_CLAIM_PREFIX) -> str:
    """The PersistentVolumeClaim holding `site`'s state: prefix + site, '_' written as '-'."""
    if not SITE_NAME.fullmatch(site):
        raise SiteVolumeError(f"{site!r} is not a site name (lower-case letters, digits, '-' and '_')")
    name = prefix + site.replace("_", "-")
    if not _CLAIM_NAME.fullmatch(name):
        raise SiteVolumeError(f"site {site!r} gives the volume claim name {name!r}, which Kubernetes refuses "
                              "(it must start and end with a letter or digit); rename the site or the prefix")
    return name


def site_of_run(tags: Mapping[str, str], run_config: Mapping[str, Any] | None) -> str | None:
    """The site a run works on: its partition (every sync run), else the disconnect job's configured site."""
    site = tags.get(SITE_TAG)
    if site:
        return site
    ops = (run_config or {}).get("ops") or {}
    configured = ((ops.get(DISCONNECT_OP) or {}).get("config") or {}).get("site")
    return configured if isinstance(configured, str) and configured else None


def site_volume(site: str, *, cbzoho_home: str, claim_prefix: str = DEFAULT_CLAIM_PREFIX) -> K8sContainerContext:
    """What one run of `site` adds to the launcher's pod: the site's claim at its state folder, and where
    CBZOHO_HOME is, so that the code finds the folder where the claim is mounted."""
    return K8sContainerContext(
        volumes=[{"name": VOLUME_NAME, "persistent_volume_claim": {"claim_name": claim_name(site, claim_prefix)}}],
        volume_mounts=[{"name": VOLUME_NAME, "mount_path": f"{cbzoho_home}/sites/{site}"}],
        env_vars=[f"CBZOHO_HOME={cbzoho_home}"],
        labels={SITE_LABEL: sanitize_k8s_label(site)},
    )


class SiteVolumeK8sRunLauncher(K8sRunLauncher):
    """`K8sRunLauncher` whose run pods also mount the volume claim of the run's site (see the module)."""

    def __init__(self, cbzoho_home: str, site_claim_prefix: str = DEFAULT_CLAIM_PREFIX, **kwargs: Any) -> None:
        if not cbzoho_home.startswith("/") or cbzoho_home.rstrip("/") == "":
            raise ValueError(f"cbzoho_home must be an absolute path below the root, got {cbzoho_home!r}")
        self.cbzoho_home = cbzoho_home.rstrip("/")
        self.site_claim_prefix = site_claim_prefix
        super().__init__(**kwargs)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **K8sRunLauncher.config_type(),
            "cbzoho_home": Field(
                StringSource,
                description="CBZOHO_HOME in the run pods; a site's claim is mounted at <cbzoho_home>/sites/<site>.",
            ),
            "site_claim_prefix": Field(
                StringSource,
                is_required=False,
                default_value=DEFAULT_CLAIM_PREFIX,
                description="A site's PersistentVolumeClaim is named <prefix><site> ('_' written as '-').",
            ),
        }

    def get_container_context_for_run(self, dagster_run: Any) -> K8sContainerContext:
        context = super().get_container_context_for_run(dagster_run)
        site = site_of_run(dagster_run.tags, dagster_run.run_config)
        if site is None:
            return context
        return context.merge(site_volume(site, cbzoho_home=self.cbzoho_home, claim_prefix=self.site_claim_prefix))


def volume_manifests(sites: Iterable[str], *, storage_class: str, size: str,
                     claim_prefix: str = DEFAULT_CLAIM_PREFIX) -> str:
    """One PersistentVolumeClaim per site from site-volume.yaml, as one multi-document YAML text."""
    # The template's comments explain the claim once, in the file; the output holds the claims alone.
    template = Template("".join(line for line in TEMPLATE.read_text().splitlines(keepends=True)
                                if not line.startswith("#")))
    owners: dict[str, str] = {}
    documents = []
    for site in sites:
        claim = claim_name(site, claim_prefix)
        if claim in owners:
            raise SiteVolumeError(f"sites {owners[claim]!r} and {site!r} would share the claim {claim!r}; "
                                  "rename one of them")
        owners[claim] = site
        documents.append(template.substitute(CLAIM=claim, SITE_LABEL=sanitize_k8s_label(site),
                                             STORAGE_CLASS=storage_class, SIZE=size))
    return "---\n".join(documents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cbzoho_k8s.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    volumes = commands.add_parser("volumes", help="print a PersistentVolumeClaim for every site of the settings "
                                                  "file (CBZOHO_SETTINGS), for `kubectl apply -f -`")
    volumes.add_argument("--storage-class", required=True,
                         help="a storage class of block volumes (a cloud disk, local storage), not NFS")
    volumes.add_argument("--size", default="10Gi", help="requested size of each claim (default 10Gi)")
    volumes.add_argument("--claim-prefix", default=DEFAULT_CLAIM_PREFIX,
                         help="the launcher's site_claim_prefix (default %(default)s)")
    args = parser.parse_args(argv)

    from cbzoho_pipeline.settings import SettingsError, load_settings

    try:
        sites = sorted(load_settings().sites)
        text = volume_manifests(sites, storage_class=args.storage_class, size=args.size,
                                claim_prefix=args.claim_prefix)
    except (SettingsError, SiteVolumeError) as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
