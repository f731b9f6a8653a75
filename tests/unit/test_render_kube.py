"""The Kubernetes objects rendered for a tenant (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgetenant.api.models import AcceleratorClass, InferenceTenant
from edgetenant.render.kube import RenderSettings, deployment_template_hash, render_all

REPO = Path(__file__).resolve().parents[2]
KEY = "0123456789abcdef"  # a tenant admin key (render.access)


def klass(name: str) -> AcceleratorClass:
    doc = yaml.safe_load((REPO / "manifests" / "acceleratorclasses" / f"{name}.yaml").read_text())
    return AcceleratorClass.model_validate(doc)


def tenant(**spec: Any) -> InferenceTenant:
    body = {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": "mnv2", "namespace": "vision", "uid": "u-1", "generation": 2},
        "spec": {"model": {"format": "onnx", "uri": "http://127.0.0.1:18080/mobilenet_v2.onnx"}, **spec},
    }
    return InferenceTenant.model_validate(body)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def test_gpu_tenant_gets_its_device_node_tolerations_and_runtime_class() -> None:
    objects = by_kind(
        render_all(tenant(), klass("jetson-tx2"), "jetson-tx2-1", 3, RenderSettings(), admin_key=KEY)
    )
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    triton = pod["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["jetson-tx2-1"]}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"
    config = objects["ConfigMap"]["data"]["config.pbtxt"]
    assert 'backend: "onnxruntime"' in config
    assert "count: 3" in config
    assert "kind: KIND_GPU" in config


def test_workload_is_owned_labelled_scraped_and_restricted() -> None:
    objects = render_all(tenant(), klass("x86-cpu"), "edge-local", 1, RenderSettings(), admin_key=KEY)
    for obj in objects:
        owner = obj["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "InferenceTenant"
        assert owner["uid"] == "u-1"
        assert obj["metadata"]["labels"]["edgetenant.io/tenant"] == "mnv2"
    deployment = by_kind(objects)["Deployment"]
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    for container in template["spec"]["containers"] + template["spec"]["initContainers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    args = template["spec"]["containers"][0]["args"]
    assert "--model-control-mode=explicit" in args
    assert "--load-model=mnv2" in args
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "resources" in template["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in template["spec"]["containers"][0]["resources"]["limits"]


def test_fetcher_gets_the_uri_and_writes_into_the_model_repository() -> None:
    deployment = by_kind(
        render_all(tenant(), klass("x86-cpu"), "edge-local", 1, RenderSettings(), admin_key=KEY)
    )["Deployment"]
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert "--uri=http://127.0.0.1:18080/mobilenet_v2.onnx" in init["args"]
    assert "--dest=/models/mnv2/1/model.onnx" in init["args"]


@pytest.mark.parametrize(("mode", "expect"), [("Auto", True), ("Disabled", False)])
def test_batching_modes_reach_the_triton_config(mode: str, expect: bool) -> None:
    objects = by_kind(
        render_all(tenant(batching={"mode": mode}), klass("x86-cpu"), "n", 1, RenderSettings(), admin_key=KEY)
    )
    assert ("dynamic_batching" in objects["ConfigMap"]["data"]["config.pbtxt"]) is expect


def test_rendering_is_deterministic() -> None:
    first = render_all(tenant(), klass("jetson-nano"), "jetson-nano-1", 2, RenderSettings(), admin_key=KEY)
    second = render_all(tenant(), klass("jetson-nano"), "jetson-nano-1", 2, RenderSettings(), admin_key=KEY)
    assert first == second


def test_memory_limit_holds_the_most_instances_the_spec_allows() -> None:
    body = tenant(
        model={"format": "onnx", "uri": "http://127.0.0.1:18080/m.onnx", "memoryHintMiB": 300},
        concurrency={"mode": "Auto", "min": 1, "max": 4, "initial": 2},
    )
    settings = RenderSettings(triton_overhead_mib=200)
    deployment = by_kind(render_all(body, klass("jetson-tx2"), "jetson-tx2-1", 2, settings, admin_key=KEY))[
        "Deployment"
    ]
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == f"{200 + 2 * 300}Mi"
    assert resources["limits"]["memory"] == f"{200 + 4 * 300}Mi"
    measured = render_all(
        body, klass("jetson-tx2"), "jetson-tx2-1", 2, settings, admin_key=KEY, measured_instance_mib=100.4
    )
    limits = by_kind(measured)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ]
    assert limits["memory"] == f"{200 + 4 * 100}Mi", "a measured profile wins over the hint"


def test_tuning_never_changes_the_pod_template() -> None:
    def template_hash(instances: int, **kwargs: Any) -> str:
        objects = render_all(
            tenant(),
            klass("jetson-tx2"),
            "jetson-tx2-1",
            instances,
            RenderSettings(),
            admin_key=KEY,
            **kwargs,
        )
        return deployment_template_hash(by_kind(objects)["Deployment"])

    assert template_hash(1) == template_hash(5), "instance counts live in the ConfigMap, not the template"
    assert template_hash(1) == template_hash(1, surge=False), "the rollout strategy is not the template"
    other_node = render_all(tenant(), klass("jetson-tx2"), "jetson-tx2-2", 1, RenderSettings(), admin_key=KEY)
    assert deployment_template_hash(by_kind(other_node)["Deployment"]) != template_hash(1)


def test_without_a_spare_device_the_rollout_replaces_the_pod() -> None:
    objects = render_all(
        tenant(), klass("jetson-tx2"), "jetson-tx2-1", 1, RenderSettings(), admin_key=KEY, surge=False
    )
    strategy = by_kind(objects)["Deployment"]["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
