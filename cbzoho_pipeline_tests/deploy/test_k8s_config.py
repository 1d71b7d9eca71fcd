"""deploy/k8s: the Dagster instance of cbzoho on Kubernetes, loaded the way Dagster loads it.

No cluster and no Postgres are needed, and nothing is skipped. The instance file goes through Dagster's
own instance loader (its top-level schema), then every class it names is imported and its section checked
against that class's own config schema, with the environment variables of the file set here. The run
launcher is built for real (from a throwaway kubeconfig, as no cluster is there to give it one) and asked
for the Kubernetes Job of a site's run, which turns every volume and mount into the Kubernetes client's
models: a key either schema does not know fails the load, and so does one misspelled inside a volume.
"""

from __future__ import annotations

import importlib
import re
import shutil
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterRun
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_k8s import K8sRunLauncher, construct_dagster_k8s_job
from dagster_postgres.utils import pg_url_from_config

from cbzoho_pipeline import settings
from cbzoho_pipeline.settings import DEFAULT_SETTINGS_FILE, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy" / "k8s"
SITES = sorted(load_settings(DEFAULT_SETTINGS_FILE).sites)  # acme, acme-test

ENV = {
    "DAGSTER_PG_USERNAME": "dagster_user",
    "DAGSTER_PG_PASSWORD": "not a real:p@ssword",
    "DAGSTER_PG_HOST": "postgres.cbzoho.svc",
    "DAGSTER_PG_DB": "dagster",
    "CBZOHO_IMAGE": "cbzoho:test",
    "CBZOHO_K8S_NAMESPACE": "cbzoho",
}
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@pytest.fixture(autouse=True)
def k8s(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The deploy module, importable by the name the instance file gives it, and the file's variables set."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(DEPLOY))
    return importlib.import_module("cbzoho_k8s")


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


@pytest.fixture
def launcher(kubeconfig: Path) -> Any:
    return load(DEPLOY, kubeconfig)["launcher"]


def _checked(data: ConfigurableClassData) -> tuple[type, dict[str, Any]]:
    """The class a section names and its config, checked against that class's own schema."""
    cls = getattr(importlib.import_module(data.module_name), data.class_name)
    raw = yaml.safe_load(data.config_yaml) or {}
    result = process_config(cls.config_type(), raw)
    if not result.success:
        raise DagsterInvalidConfigError(f"{data.module_name}.{data.class_name} refuses its config", result.errors,
                                        raw)
    return cls, dict(result.value or {})


def load(config_dir: Path, kubeconfig: Path) -> dict[str, Any]:
    ref = InstanceRef.from_dir(str(config_dir))  # Dagster's loader: the instance schema, no storage opened
    sections = {
        "run_launcher": ref.run_launcher_data,
        "run_coordinator": ref.run_coordinator_data,
        "compute_logs": ref.compute_logs_data,
        "storage": ref.storage_data,
        "run_storage": ref.run_storage_data,
        "event_log_storage": ref.event_storage_data,
        "schedule_storage": ref.schedule_storage_data,
    }
    loaded: dict[str, Any] = {"ref": ref}
    for name, data in sections.items():
        assert data is not None, name
        loaded[name] = _checked(data)
    launcher_cls, launcher_config = loaded["run_launcher"]
    # Outside a cluster there is no in-cluster config to load: the only values changed from the file.
    loaded["launcher"] = launcher_cls.from_config_value(
        ref.run_launcher_data, {**launcher_config, "load_incluster_config": False,
                                "kubeconfig_file": str(kubeconfig)})
    loaded["coordinator"] = ref.run_coordinator_data.rehydrate()
    loaded["compute_log_manager"] = ref.compute_logs_data.rehydrate()
    # Postgres is not there: its storages are checked above and not opened.
    return loaded


def run_of(site: str | None = None, *, run_config: dict[str, Any] | None = None, job: str = "cbzoho_sync",
           run_id: str = "0123abcd-0000-0000-0000-000000000000") -> DagsterRun:
    tags = {"dagster/partition": site} if site else {}
    return DagsterRun(job_name=job, run_id=run_id, tags=tags, run_config=run_config or {})


def job_for(launcher: K8sRunLauncher, run: DagsterRun) -> Any:
    """The Job the launcher would create for `run`, built as its launch_run builds it, minus the API call."""
    context = launcher.get_container_context_for_run(run)
    return construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=None, run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"],
        job_name=f"dagster-run-{run.run_id}",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
        labels={"dagster/job": run.job_name, "dagster/run-id": run.run_id},
    )


def volumes_of(job: Any) -> dict[str, Any]:
    return {v.name: v for v in job.spec.template.spec.volumes}


def mounts_of(job: Any) -> dict[str, str]:
    return {m.name: m.mount_path for m in job.spec.template.spec.containers[0].volume_mounts}


# ------------------------------------------------------------------------------------------ the file loads
def test_instance_file_loads_with_dagsters_schemas(kubeconfig: Path) -> None:
    loaded = load(DEPLOY, kubeconfig)

    launcher = loaded["launcher"]
    assert isinstance(launcher, K8sRunLauncher) and type(launcher).__name__ == "SiteVolumeK8sRunLauncher"
    assert launcher.job_namespace == "cbzoho" and launcher.job_image == "cbzoho:test"  # from the environment
    assert launcher.env_secrets == ["cbzoho-postgres", "cbzoho-credentials"]
    assert launcher.cbzoho_home == "/var/lib/cbzoho"

    assert type(loaded["coordinator"]).__name__ == "QueuedRunCoordinator"
    assert type(loaded["compute_log_manager"]).__name__ == "NoOpComputeLogManager"
    names = {name: loaded[name][0].__name__ for name in
             ("storage", "run_storage", "event_log_storage", "schedule_storage")}
    assert names == {"storage": "DagsterPostgresStorage", "run_storage": "PostgresRunStorage",
                     "event_log_storage": "PostgresEventLogStorage", "schedule_storage": "PostgresScheduleStorage"}
    # Every storage reaches the database named by the environment, the password quoted into the URL.
    for name in names:
        assert pg_url_from_config(loaded[name][1]) == (
            "postgresql://dagster_user:not%20a%20real%3Ap%40ssword@postgres.cbzoho.svc:5432/dagster")

    assert loaded["ref"].settings["run_monitoring"] == {
        "enabled": True, "start_timeout_seconds": 300, "poll_interval_seconds": 30, "max_resume_run_attempts": 0}


def test_the_database_is_named_by_variables_only() -> None:
    postgres = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["storage"]["postgres"]
    assert set(postgres) == {"postgres_db"}  # no postgres_url, which would carry the password
    assert {key: value for key, value in postgres["postgres_db"].items() if key != "port"} == {
        "username": {"env": "DAGSTER_PG_USERNAME"}, "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"}, "db_name": {"env": "DAGSTER_PG_DB"}}


def test_a_missing_variable_fails_the_load(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_PG_HOST"):
        load(DEPLOY, kubeconfig)


def _rename(tree: Any, path: tuple[Any, ...], new_key: str) -> None:
    *parents, key = path
    for part in parents:
        tree = tree[part]
    tree[new_key] = tree.pop(key)


@pytest.mark.parametrize(("path", "typo"), [
    (("run_coordinator",), "run_cordinator"),
    (("run_launcher", "config", "job_namespace"), "job_namepsace"),
    (("run_launcher", "config", "cbzoho_home"), "cbzoho_hom"),
    (("run_launcher", "config", "volumes", 0, "config_map"), "config_mpa"),
    (("run_launcher", "config", "run_k8s_config", "pod_spec_config", "security_context", "fs_group"), "fsgroup"),
    (("storage", "postgres", "postgres_db", "hostname"), "hostnme"),
    (("run_coordinator", "config", "tag_concurrency_limits"), "tag_concurency_limits"),
    (("run_coordinator", "config", "tag_concurrency_limits", 0, "value", "applyLimitPerUniqueValue"),
     "applyLimitPerUniquevalue"),
    (("run_monitoring", "start_timeout_seconds"), "start_timout_seconds"),
])
def test_a_misspelled_key_is_refused(kubeconfig: Path, tmp_path: Path, path: tuple[Any, ...], typo: str) -> None:
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    _rename(raw, path, typo)
    config_dir = tmp_path / "instance"
    config_dir.mkdir()
    (config_dir / "dagster.yaml").write_text(yaml.safe_dump(raw))
    # Dagster's schemas name the unexpected entry; the Kubernetes models (volumes, pod settings) name the key.
    refused = "|".join([re.escape(f'unexpected config entry "{typo}"'),
                        r"in model class V1\w+: " + re.escape(f"{{'{typo}'}}")])
    with pytest.raises(Exception, match=refused):
        loaded = load(config_dir, kubeconfig)
        job_for(loaded["launcher"], run_of("acme"))


def test_an_unchanged_copy_loads(kubeconfig: Path, tmp_path: Path) -> None:
    # So that the refusals above come from the misspelled key and not from loading a copy.
    config_dir = tmp_path / "instance"
    config_dir.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", config_dir / "dagster.yaml")
    job_for(load(config_dir, kubeconfig)["launcher"], run_of("acme"))


# ------------------------------------------------------------------------------------------ a volume per site
def test_each_site_run_mounts_its_own_claim_where_the_code_looks(k8s: Any, launcher: K8sRunLauncher,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    claims = {}
    for site in SITES:
        job = job_for(launcher, run_of(site))
        volumes, mounts = volumes_of(job), mounts_of(job)
        claims[site] = volumes[k8s.VOLUME_NAME].persistent_volume_claim.claim_name
        assert claims[site] == f"cbzoho-site-{site}"
        container = job.spec.template.spec.containers[0]
        env = {e.name: e.value for e in container.env}
        # The code's own rule, given the pod's CBZOHO_HOME, names the folder the claim is mounted on.
        monkeypatch.setenv("CBZOHO_HOME", env["CBZOHO_HOME"])
        assert mounts[k8s.VOLUME_NAME] == str(settings.home_dir() / "sites" / site)
        # The settings file, and the credentials by Secret name only.
        assert volumes["cbzoho-settings"].config_map.name == "cbzoho-settings"
        assert mounts["cbzoho-settings"] == "/etc/cbzoho" and env["CBZOHO_SETTINGS"] == "/etc/cbzoho/cbzoho.yaml"
        assert [s.secret_ref.name for s in container.env_from] == ["cbzoho-postgres", "cbzoho-credentials"]
        assert set(env) == {"DAGSTER_HOME", "CBZOHO_SETTINGS", "CBZOHO_HOME"}
        assert job.spec.template.metadata.labels["cbzoho/site"] == site
        assert job.spec.template.spec.security_context.fs_group == 1000
        assert job.spec.backoff_limit == 0
        assert container.image == "cbzoho:test"
    assert len(set(claims.values())) == len(SITES) > 1


def test_underscores_become_hyphens_in_claim_names(k8s: Any, launcher: K8sRunLauncher) -> None:
    job = job_for(launcher, run_of("acme_eu"))
    assert volumes_of(job)[k8s.VOLUME_NAME].persistent_volume_claim.claim_name == "cbzoho-site-acme-eu"
    assert mounts_of(job)[k8s.VOLUME_NAME] == "/var/lib/cbzoho/sites/acme_eu"


def test_the_disconnect_job_mounts_the_site_in_its_config(k8s: Any, launcher: K8sRunLauncher) -> None:
    from cbzoho_pipeline.assets.jobs import disconnect_job, disconnect_site

    assert k8s.DISCONNECT_OP == disconnect_site.name
    run = run_of(job=disconnect_job.name, run_config={"ops": {disconnect_site.name: {"config": {"site": "acme"}}}})
    job = job_for(launcher, run)
    assert volumes_of(job)[k8s.VOLUME_NAME].persistent_volume_claim.claim_name == "cbzoho-site-acme"


def test_a_run_without_a_site_gets_no_site_volume(launcher: K8sRunLauncher) -> None:
    job = job_for(launcher, run_of(job="some_other_job"))
    assert set(volumes_of(job)) == {"cbzoho-settings"}
    assert "CBZOHO_HOME" not in {e.name for e in job.spec.template.spec.containers[0].env}


@pytest.mark.parametrize("site", ["../acme", "Acme", "acme/x", "a" * 51, "acme-"])
def test_a_site_that_cannot_be_a_path_or_a_claim_is_not_launched(k8s: Any, launcher: K8sRunLauncher,
                                                                  site: str) -> None:
    with pytest.raises(k8s.SiteVolumeError):
        launcher.get_container_context_for_run(run_of(site))


def test_the_site_rules_agree_with_the_code(k8s: Any) -> None:
    from cbzoho_pipeline.runs import PARTITION_TAG

    assert k8s.SITE_NAME.pattern == settings._SITE_NAME.pattern
    assert k8s.SITE_TAG == PARTITION_TAG


# ------------------------------------------------------------------------------------------ the run queue
def test_sites_run_in_parallel_one_run_per_site(kubeconfig: Path) -> None:
    queue = load(DEPLOY, kubeconfig)["coordinator"].get_run_queue_config()
    assert queue.max_concurrent_runs > 1
    # The rule of the local instance file, unchanged.
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert list(queue.tag_concurrency_limits) == local["concurrency"]["runs"]["tag_concurrency_limits"]

    running = [run_of("acme", run_id="00000000-0000-0000-0000-000000000001")]
    counter = TagConcurrencyLimitsCounter(list(queue.tag_concurrency_limits), running)
    assert counter.is_blocked(run_of("acme", run_id="00000000-0000-0000-0000-000000000002"))
    assert not counter.is_blocked(run_of("acme-test", run_id="00000000-0000-0000-0000-000000000003"))
    counter.update_counters_with_launched_item(run_of("acme-test", run_id="00000000-0000-0000-0000-000000000003"))
    assert counter.is_blocked(run_of("acme-test", run_id="00000000-0000-0000-0000-000000000004"))
    assert not counter.is_blocked(run_of("acme_eu", run_id="00000000-0000-0000-0000-000000000005"))


# ------------------------------------------------------------------------------------------ the claims
def test_one_read_write_once_claim_per_site(k8s: Any, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CBZOHO_SETTINGS", str(DEFAULT_SETTINGS_FILE))
    assert k8s.main(["volumes", "--storage-class", "block-ssd", "--size", "20Gi"]) == 0
    text = capsys.readouterr().out
    assert "${" not in text
    claims = [doc for doc in yaml.safe_load_all(text) if doc]
    assert [c["metadata"]["name"] for c in claims] == [k8s.claim_name(site) for site in SITES]
    for claim, site in zip(claims, SITES, strict=True):
        assert claim["kind"] == "PersistentVolumeClaim" and claim["apiVersion"] == "v1"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["volumeMode"] == "Filesystem"
        assert claim["spec"]["storageClassName"] == "block-ssd"
        assert claim["spec"]["resources"] == {"requests": {"storage": "20Gi"}}
        assert claim["metadata"]["labels"]["cbzoho/site"] == site


def test_two_sites_never_share_a_claim(k8s: Any) -> None:
    with pytest.raises(k8s.SiteVolumeError, match="share the claim"):
        k8s.volume_manifests(["acme_eu", "acme-eu"], storage_class="block-ssd", size="1Gi")


# ------------------------------------------------------------------------------------------ the pins
def test_integrations_are_pinned_at_dagsters_release() -> None:
    """dagster 1.X.Y ships with its integration libraries 0.(X+16).Y; pyproject pins them together."""
    major, minor, patch = version("dagster").split(".")
    integration = f"0.{int(minor) + 16}.{patch}"
    assert major == "1"
    assert version("dagster-k8s") == version("dagster-postgres") == integration
    extra = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["k8s"]
    assert sorted(extra) == sorted([f"dagster=={version('dagster')}", f"dagster-webserver=={version('dagster')}",
                                    f"dagster-k8s=={integration}", f"dagster-postgres=={integration}"])
    lock = set((REPO_ROOT / "requirements.lock").read_text().split())
    assert {f"dagster-k8s=={integration}", f"dagster-postgres=={integration}"} <= lock
    # The dev extra (what scripts/bootstrap.sh installs) brings them, so this test runs on a fresh clone.
    assert "cbzoho[sandbox,k8s]" in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]["dev"]
