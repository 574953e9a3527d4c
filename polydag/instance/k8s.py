"""Kubernetes placement of the GPU assets (see ``deploy/README.md``).

``K8S_GPU_TAGS`` is the ``dagster-k8s/config`` tag that asks Kubernetes for one NVIDIA GPU,
schedules onto GPU nodes and tolerates their taint. It is read in two places:

* as **op tags** of the GPU assets (merge it into ``op_tags`` next to ``polydag/gpu``): the
  ``k8s_job_executor`` then starts each GPU step in its own pod with the GPU. Locally it does
  nothing: the polydag launcher and the in-process executor ignore ``dagster-k8s/*`` tags;
* as **run tags**, added at submission to every run that executes a GPU step by
  :class:`polydag.instance.run_coordinator.PolydagRunCoordinator` (``gpu_run_tags`` in
  ``deploy/k8s/dagster.yaml``): the ``K8sRunLauncher`` then starts the whole run in one pod
  with the GPU, keeping the in-process executor.

The node selector ``nvidia.com/gpu.present=true`` is the label NVIDIA's GPU feature discovery
(and the GPU operator) puts on GPU nodes; the toleration matches the ``nvidia.com/gpu`` taint
that GKE, AKS and most GPU node pools carry. Change them with :func:`k8s_gpu_tags`.
"""

import json
import os
from typing import Mapping, Sequence

K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)


def k8s_gpu_config(
    gpus: int = 1,
    *,
    node_selector: Mapping[str, str] = GPU_NODE_SELECTOR,
    tolerations: Sequence[Mapping[str, str]] = GPU_TOLERATIONS,
) -> dict:
    """The ``dagster-k8s/config`` value (as a dict) for a pod with ``gpus`` NVIDIA GPUs."""
    if not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a positive integer, got {gpus!r}")
    return {
        # Extended resources such as nvidia.com/gpu are requested through limits (the request
        # defaults to the limit and may not differ from it).
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}},
        "pod_spec_config": {
            "node_selector": dict(node_selector),
            "tolerations": [dict(t) for t in tolerations],
        },
    }


def k8s_gpu_tags(gpus: int = 1, **kwargs) -> dict[str, str]:
    """``{"dagster-k8s/config": <json>}`` for op tags or run tags (tag values are strings)."""
    return {K8S_CONFIG_TAG: json.dumps(k8s_gpu_config(gpus, **kwargs), sort_keys=True)}


K8S_GPU_TAGS = k8s_gpu_tags()

EXECUTOR_ENV = "POLYDAG_EXECUTOR"


def executor_from_env():
    """The executor for the code location: ``in_process_executor`` (default), or
    ``k8s_job_executor`` (one pod per step, honouring the GPU op tags) when
    ``POLYDAG_EXECUTOR=k8s``. dagster-k8s is imported only in that case."""
    choice = os.environ.get(EXECUTOR_ENV, "in_process").strip().lower()
    if choice in ("", "in_process"):
        from dagster import in_process_executor

        return in_process_executor
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={choice!r}: use 'in_process' (default) or 'k8s'")
