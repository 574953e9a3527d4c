"""The Kubernetes deployment, rendered offline: a training run's job asks for a GPU.

dagster-k8s builds the Kubernetes Job object in Python before it calls the API, so nothing
here needs a cluster. Two paths are covered:

* run level (deploy/k8s/dagster.yaml): the polydag run coordinator adds the GPU request to a
  run of the real ``lora_checkpoints`` asset, and the real ``K8sRunLauncher`` renders its Job.
  Its Kubernetes API client is a recorder (the cluster boundary), so the Job it would create
  is inspected as sent;
* step level (k8s_job_executor): the op tags of the GPU asset merged with ``K8S_GPU_TAGS``
  render a step Job with ``get_user_defined_k8s_config`` + ``construct_dagster_k8s_job``.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from dagster._config import process_config, resolve_to_config_type
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.launcher import LaunchRunContext
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

dagster_k8s = pytest.importorskip("dagster_k8s", reason="pip install -e '.[k8s]'")
from dagster_k8s import K8sRunLauncher  # noqa: E402
from dagster_k8s.job import (  # noqa: E402
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from polydag.instance.k8s import K8S_CONFIG_TAG, K8S_GPU_TAGS, k8s_gpu_tags  # noqa: E402
from polydag.instance.constants import GPU_TAG  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy" / "k8s"
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: offline, user: {token: never-sent}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""


class RecordingBatchApi:
    """Stands where the Kubernetes BatchV1Api would: keeps the Jobs it is asked to create."""

    def __init__(self):
        self.jobs = []

    def create_namespaced_job(self, body, namespace, **kwargs):
        self.jobs.append((namespace, body))


def _deploy_instance_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def _polydag_run(instance: DagsterInstance, asset: str):
    """A NOT_STARTED run materializing one asset of the real polydag code location."""
    repo = ReconstructableRepository.for_module("polydag.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    job = repo.get_reconstructable_job("__ASSET_JOB").get_subset(
        asset_selection={AssetKey(asset)})
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="polydag.definitions",
                             working_directory=str(REPO_ROOT), attribute="defs"),
        location_name="polydag",
    )
    return instance.create_run_for_job(
        job_def=job.get_definition(),
        execution_plan=create_execution_plan(job),
        job_code_origin=job.get_python_origin(),
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"),
                                          "__ASSET_JOB"),
        asset_selection=frozenset({AssetKey(asset)}),
    )


@pytest.fixture
def k8s_instance(tmp_path):
    """A local instance whose run coordinator is deploy/k8s/dagster.yaml's, and the
    K8sRunLauncher of the same file (pointed at a kubeconfig it never connects with)."""
    deploy = _deploy_instance_config()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump({
        "telemetry": {"enabled": False}, "run_coordinator": deploy["run_coordinator"]}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    launcher_config = {**deploy["run_launcher"]["config"], "load_incluster_config": False,
                       "kubeconfig_file": str(kubeconfig)}
    batch = RecordingBatchApi()
    with DagsterInstance.from_config(str(home)) as instance:
        launcher = K8sRunLauncher(**launcher_config, k8s_client_batch_api=batch)
        launcher.register_instance(instance)
        yield instance, launcher, batch


def _launch(instance, launcher, batch, asset: str):
    run = _polydag_run(instance, asset)
    instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
    run = instance.get_run_by_id(run.run_id)
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    namespace, job = batch.jobs[-1]
    return run, namespace, job


def test_training_run_job_requests_a_gpu_on_a_gpu_node(k8s_instance):
    instance, launcher, batch = k8s_instance
    run, namespace, job = _launch(instance, launcher, batch, "lora_checkpoints")
    assert run.tags[GPU_TAG] == "1"
    assert run.tags[K8S_CONFIG_TAG] == K8S_GPU_TAGS[K8S_CONFIG_TAG]
    assert namespace == "polydag"
    pod = job.spec.template.spec
    container = pod.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    # deep-merged with the launcher's run_k8s_config: memory limit, CPU request, data node
    assert container.resources.limits["memory"] == "32Gi"
    assert container.resources.requests["cpu"] == "2"
    assert pod.node_selector == {"nvidia.com/gpu.present": "true", "polydag/data-node": "true"}
    assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]
    assert pod.tolerations[0].effect == "NoSchedule" and pod.tolerations[0].operator == "Exists"
    assert container.image == "registry.example.com/polydag:0.1.0"
    assert "execute_run" in container.args and run.run_id in " ".join(container.args)
    env = {e.name: e.value for e in container.env}
    assert env["POLYDAG_DATA_DIR"] == "/data"
    assert [m.mount_path for m in container.volume_mounts] == ["/data"]


def test_cpu_run_job_gets_no_gpu(k8s_instance):
    instance, launcher, batch = k8s_instance
    run, _, job = _launch(instance, launcher, batch, "reply_pairs")
    assert GPU_TAG not in run.tags and K8S_CONFIG_TAG not in run.tags
    pod = job.spec.template.spec
    assert "nvidia.com/gpu" not in (pod.containers[0].resources.limits or {})
    assert pod.node_selector == {"polydag/data-node": "true"}
    assert not pod.tolerations


def test_gpu_op_tags_render_a_step_job_with_the_gpu_limit():
    """k8s_job_executor path: the GPU asset's op tags plus K8S_GPU_TAGS."""
    from polydag.defs.polychromic.assets import lora_checkpoints

    job_config = DagsterK8sJobConfig(job_image="registry.example.com/polydag:0.1.0",
                                     dagster_home="/opt/dagster/dagster_home",
                                     instance_config_map="polydag-dagster-instance")
    op_tags = {**lora_checkpoints.op.tags, **K8S_GPU_TAGS}
    job = construct_dagster_k8s_job(job_config, ["dagster", "api", "execute_step"], "step-job",
                                    get_user_defined_k8s_config(op_tags), component="step_worker")
    pod = job.spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert pod.tolerations[0].key == "nvidia.com/gpu"
    # without the k8s tags the same asset gets no GPU: the tags are what asks for it
    plain = construct_dagster_k8s_job(job_config, ["x"], "step-job",
                                      get_user_defined_k8s_config(dict(lora_checkpoints.op.tags)))
    assert not plain.spec.template.spec.containers[0].resources.limits


def test_k8s_gpu_tags_shape_and_errors():
    two = json.loads(k8s_gpu_tags(2, node_selector={"pool": "a100"})[K8S_CONFIG_TAG])
    assert two["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert two["pod_spec_config"]["node_selector"] == {"pool": "a100"}
    with pytest.raises(ValueError, match="gpus must be a positive integer"):
        k8s_gpu_tags(0)


def test_deploy_configs_agree_and_validate():
    deploy = _deploy_instance_config()
    launcher = deploy["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(resolve_to_config_type(K8sRunLauncher.config_type()),
                            launcher["config"])
    assert result.success, result.errors
    from polydag.instance.run_coordinator import PolydagRunCoordinator

    coordinator = deploy["run_coordinator"]["config"]
    result = process_config(resolve_to_config_type(PolydagRunCoordinator.config_type()),
                            coordinator)
    assert result.success, result.errors
    assert coordinator["gpu_run_tags"] == K8S_GPU_TAGS
    # the Helm values render the same coordinator and the same run pod settings
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    custom = values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    assert custom["config"] == coordinator
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert k8s["volumes"] == launcher["config"]["volumes"]
    assert k8s["envVars"] == launcher["config"]["env_vars"]
    images = {f"{values[c]['image']['repository']}:{values[c]['image']['tag']}"
              for c in ("dagsterWebserver", "dagsterDaemon")}
    user = values["dagster-user-deployments"]["deployments"][0]["image"]
    images.add(f"{user['repository']}:{user['tag']}")
    assert images == {launcher["config"]["job_image"]}
