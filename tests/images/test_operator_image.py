"""The operator image, run as manifests/operator/deployment.yaml says, against the lab's real API server.

The container gets the Deployment's user, read-only root file system, dropped capabilities, args, env
and volumes, plus what a kubelet adds: the ServiceAccount token (a real token for the operator's
ServiceAccount, with its RBAC), KUBERNETES_SERVICE_HOST/PORT, and the `kubernetes` Service
(https://kubernetes.default.svc, which kopf dials; `support.kubernetes_service` stands in for it on a
loopback address). The container shares the host's network only to reach loopback servers: what the
Deployment binds to 0.0.0.0 is moved to 127.0.0.1, Prometheus is the lab's, and names resolve from
/etc/hosts or not at all, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack.images import build

from tests.images.support import (
    SERVICE_IP,
    Podman,
    Volumes,
    built_archive,
    container_options,
    free_port,
    kubeconfig_server,
    kubernetes_service,
    loopback_only,
)
from tests.lab import Lab, wait_for

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "edgetenant-system"
# Inside the image, with no writable directory at all: Python's tempfile has nowhere to go, and the
# operator's own apply path (server-side apply through the dynamic client) must still work.
APPLY_WITHOUT_TMP = """
import asyncio, sys, tempfile
try:
    tempfile.gettempdir()
except FileNotFoundError:
    pass
else:
    raise SystemExit("a writable temporary directory exists: this check would prove nothing")
from edgetenant.adapters.kube import Kube, load_config
load_config(None)
config_map = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "applied-from-the-image", "namespace": sys.argv[1]}, "data": {"k": "v"}}
asyncio.run(Kube().apply(config_map))
print("applied")
"""


@dataclass(frozen=True)
class OperatorPod:
    spec: dict[str, Any]
    container: dict[str, Any]
    service_account: dict[str, str]
    api_host: str
    api_port: int


def rendered_deployment(lab: Lab) -> dict[str, Any]:
    """The operator's Deployment as `kubectl apply -k manifests/overlays/k3s-edge` would create it."""
    rendered = lab.kubectl("kustomize", str(REPO / "manifests" / "overlays" / "k3s-edge")).stdout
    (deployment,) = [
        doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == "edgetenant-operator"
    ]
    return dict(deployment)


@pytest.fixture(scope="module")
def operator_pod(lab: Lab, podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorPod]:
    deployment = rendered_deployment(lab)
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert podman.load(built_archive("operator")) == container["image"], (
        "the manifest names an image not built"
    )
    token = lab.kubectl(
        "create", "token", spec["serviceAccountName"], "-n", NAMESPACE, "--duration=1h"
    ).stdout.strip()
    host, port, lab_ca = kubeconfig_server(
        json.loads(lab.kubectl("config", "view", "--raw", "-o", "json").stdout)
    )
    with kubernetes_service((host, port), lab_ca, tmp_path_factory.mktemp("service")) as service_ca:
        yield OperatorPod(
            spec=spec,
            container=container,
            service_account={"token": token, "ca.crt": service_ca, "namespace": NAMESPACE},
            api_host=SERVICE_IP,
            api_port=443,
        )


def kubelet_env(pod: OperatorPod) -> dict[str, str]:
    return {"KUBERNETES_SERVICE_HOST": pod.api_host, "KUBERNETES_SERVICE_PORT": str(pod.api_port)}


def test_operator_image_reports_its_version(
    podman: Podman, operator_pod: OperatorPod, tmp_path: Path
) -> None:
    volumes = Volumes(root=tmp_path)
    options = container_options(operator_pod.spec, operator_pod.container, volumes, network="none")
    result = podman.run(options, operator_pod.container["image"], ["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"edgetenant {build.project_version()}"


def test_operator_image_leaves_out_the_optional_extras(
    podman: Podman, operator_pod: OperatorPod, tmp_path: Path
) -> None:
    """No zoo builder in the operator image: the command says which extra it needs, without a traceback."""
    volumes = Volumes(root=tmp_path)
    options = container_options(operator_pod.spec, operator_pod.container, volumes, network="none")
    result = podman.run(options, operator_pod.container["image"], ["zoo", "--help"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "edgetenant[zoo]" in result.stderr
    assert "Traceback" not in result.stderr


def test_apply_path_works_with_no_writable_directory(
    lab: Lab, podman: Podman, operator_pod: OperatorPod, namespace: str, tmp_path: Path
) -> None:
    """Server-side apply from inside the image, with the read-only root and no volume at all."""
    volumes = Volumes(root=tmp_path, service_account=operator_pod.service_account)
    container = {**operator_pod.container, "volumeMounts": [], "command": ["python3"]}
    options = container_options(
        {**operator_pod.spec, "volumes": []},
        container,
        volumes,
        network="host",
        env_overrides=kubelet_env(operator_pod),
    )
    result = podman.run(options, container["image"], ["-c", APPLY_WITHOUT_TMP, namespace])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("applied")
    applied = lab.get_json("configmap", "applied-from-the-image", "-n", namespace, "--show-managed-fields")
    assert applied["data"] == {"k": "v"}
    assert any(entry.get("operation") == "Apply" for entry in applied["metadata"]["managedFields"])


@pytest.fixture
def running_operator(
    podman: Podman, operator_pod: OperatorPod, lab: Lab, tmp_path: Path
) -> Iterator[tuple[str, int]]:
    """`edgetenant run` in the image as the Deployment runs it (moved to loopback, fresh ports)."""
    metrics_port, health_port = free_port(), free_port()
    args = [
        f"--liveness=http://127.0.0.1:{health_port}/healthz" if arg.startswith("--liveness=") else arg
        for arg in loopback_only(operator_pod.container["args"])
    ]
    env = {
        **kubelet_env(operator_pod),
        "EDGETENANT_METRICS_ADDRESS": "127.0.0.1",
        "EDGETENANT_METRICS_PORT": str(metrics_port),
        "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url,
        "EDGETENANT_RESYNC_S": "2",
    }
    volumes = Volumes(root=tmp_path, service_account=operator_pod.service_account)
    options = container_options(
        operator_pod.spec,
        operator_pod.container,
        volumes,
        network="host",
        env_overrides=env,
    )
    name = f"operator-{uuid.uuid4().hex[:6]}"
    podman.start(name, options, operator_pod.container["image"], args)
    try:
        yield name, health_port
    finally:
        print(podman.logs(name))
        podman.remove(name)


def test_operator_image_reconciles_a_tenant_on_the_real_api_server(
    lab: Lab, podman: Podman, running_operator: tuple[str, int], namespace: str
) -> None:
    """The operator in its image places a tenant and server-side-applies its objects."""
    name, health_port = running_operator
    tenant = {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": "from-the-image", "namespace": namespace},
        "spec": {
            "model": {"format": "onnx", "uri": "http://127.0.0.1:1/model.onnx", "memoryHintMiB": 200},
            # A simulated board: the test is about the operator's image, not about running Triton.
            "acceleratorClasses": ["jetson-tx2"],
        },
    }
    lab.apply(tenant)

    def deployment() -> dict[str, Any] | None:
        result = lab.kubectl(
            "get",
            "deployment",
            "from-the-image",
            "-n",
            namespace,
            "--show-managed-fields",
            "-o",
            "json",
            check=False,
        )
        return json.loads(result.stdout) if result.returncode == 0 else None

    applied = wait_for("the operator in its image to apply the tenant's Deployment", deployment, timeout=120)
    managers = {entry["manager"]: entry["operation"] for entry in applied["metadata"]["managedFields"]}
    assert managers.get("edgetenant") == "Apply", managers
    for kind in ("configmap", "service"):
        lab.kubectl("get", kind, "-n", namespace, "-l", "edgetenant.io/tenant=from-the-image", "-o", "name")
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as health:
        assert health.status == 200
    running = podman.podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
    assert running == "true", podman.logs(name)
