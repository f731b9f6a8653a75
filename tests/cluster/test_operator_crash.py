"""kill -9 the operator while it reconciles many tenants; a new one must converge with no duplicates."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.cluster.test_operator import OPERATOR_ENV, tenant, wait_placed
from tests.lab import Lab, OperatorProcess, wait_for


def test_kill_9_midway_then_restart_converges_without_duplicates(
    lab: Lab, operator_kubeconfig: Path, tmp_path: Path, namespace: str
) -> None:
    count = 24
    klass = f"crash-{namespace}"
    add_capacity(lab, klass, nodes=3)
    tenants = [tenant(f"burst-{i:02d}", namespace, acceleratorClasses=[klass]) for i in range(count)]
    first = OperatorProcess(operator_kubeconfig, tmp_path / "first.log", OPERATOR_ENV).start()
    try:
        lab.apply(tenants)
        wait_for(
            "the operator to be halfway",
            lambda: len(lab.get_json("deployments", "-n", namespace)["items"]) >= 3,
            timeout=60,
            interval=0.2,
        )
    finally:
        first.kill(signal.SIGKILL)
    second = OperatorProcess(operator_kubeconfig, tmp_path / "second.log", OPERATOR_ENV).start()
    try:
        for body in tenants:
            wait_placed(lab, namespace, body["metadata"]["name"], timeout=120)
        uids = {t["metadata"]["uid"] for t in lab.get_json("itn", "-n", namespace)["items"]}
        for kind in ("deployments", "services", "configmaps"):
            items = list(
                lab.get_json(kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=edgetenant")["items"]
            )
            assert len(items) == count, f"{kind}: {len(items)} for {count} tenants"
            assert all(i["metadata"]["ownerReferences"][0]["uid"] in uids for i in items), f"orphaned {kind}"
    finally:
        second.kill()
        lab.kubectl("delete", "acceleratorclass", klass, "--ignore-not-found", check=False)
        lab.kubectl("delete", "nodes", "-l", f"edgetenant.io/test={klass}", "--wait=false", check=False)


def add_capacity(lab: Lab, klass: str, nodes: int) -> None:
    """Simulated nodes and a class of their own, so the burst fits whatever else the lab holds."""
    for i in range(nodes):
        name = f"{klass}-{i}"
        labels = {
            "kubernetes.io/arch": "arm64",
            "kubernetes.io/os": "linux",
            "edgetenant.io/test": klass,
            "edgetenant.io/lab-simulated": "true",
        }
        lab.add_node(
            name, labels, {"cpu": "8", "memory": "16Gi", "pods": "110", "example.com/crash-gpu": "16"}
        )
    lab.apply(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "AcceleratorClass",
            "metadata": {"name": klass},
            "spec": {
                "resourceName": "example.com/crash-gpu",
                "nodeSelector": {"edgetenant.io/test": klass},
                "memoryPerDeviceMiB": 8192,
                "sharing": {"mode": "TimeSliced", "slots": 2},
                "instanceKind": "KIND_GPU",
                "formats": [
                    {
                        "format": "onnx",
                        "backend": "onnxruntime",
                        "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
                    }
                ],
            },
        }
    )
