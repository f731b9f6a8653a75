"""kill -9 the operator in the middle of a churn of 500 tenants; a new one must converge with nothing
lost and nothing duplicated."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.cluster.test_operator import OPERATOR_ENV, tenant
from tests.lab import Lab, OperatorProcess, wait_for

COUNT = 500


def test_kill_9_mid_churn_of_500_tenants_then_restart_converges_without_duplicates(
    lab: Lab, operator_kubeconfig: Path, tmp_path: Path, namespace: str
) -> None:
    klass = f"crash-{namespace}"
    add_capacity(lab, klass, nodes=3, devices_per_node=400)
    env = {**OPERATOR_ENV, "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url}
    tenants = [tenant(f"burst-{i:03d}", namespace, acceleratorClasses=[klass]) for i in range(COUNT)]
    first = OperatorProcess(operator_kubeconfig, tmp_path / "first.log", env).start()
    try:
        lab.apply(tenants[: COUNT // 2])
        wait_for(
            "the operator a good way into the churn",
            lambda: len(lab.get_json("deployments", "-n", namespace)["items"]) >= COUNT // 5,
            timeout=300,
            interval=1,
        )
        # More churn while it works: the second half arrives, a few tenants go, one changes.
        lab.apply(tenants[COUNT // 2 :])
        lab.kubectl("delete", "itn", "burst-000", "burst-001", "burst-002", "-n", namespace, "--wait=false")
    finally:
        first.kill(signal.SIGKILL)
    killed = time.monotonic()
    second = OperatorProcess(operator_kubeconfig, tmp_path / "second.log", env).start()
    try:
        wait_for(
            f"all {COUNT - 3} tenants Placed",
            lambda: all_placed(lab, namespace, COUNT - 3),
            timeout=600,
            interval=3,
        )
        print(f"500-tenant churn, kill -9: all placed {time.monotonic() - killed:.0f} s after the kill")
        uids = {t["metadata"]["uid"] for t in lab.get_json("itn", "-n", namespace)["items"]}
        assert len(uids) == COUNT - 3

        def one_child_each() -> bool:
            for kind in ("deployments", "services", "configmaps"):
                items = lab.get_json(kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=edgetenant")[
                    "items"
                ]
                owners = [i["metadata"]["ownerReferences"][0]["uid"] for i in items]
                if len(owners) != len(set(owners)) or set(owners) != uids:
                    return False
            return True

        # Children of the deleted tenants go with the garbage collector; none may be duplicated.
        wait_for(
            "exactly one Deployment, Service and ConfigMap per tenant",
            one_child_each,
            timeout=180,
            interval=3,
        )
    finally:
        second.kill()
        print(second.log_tail(2000))
        lab.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        lab.kubectl("delete", "acceleratorclass", klass, "--ignore-not-found", check=False)
        lab.kubectl("delete", "nodes", "-l", f"edgetenant.io/test={klass}", "--wait=false", check=False)


def all_placed(lab: Lab, namespace: str, count: int) -> bool:
    items: list[dict[str, Any]] = lab.get_json("itn", "-n", namespace)["items"]
    placed = [
        i
        for i in items
        if any(
            c["type"] == "Placed" and c["status"] == "True"
            for c in (i.get("status") or {}).get("conditions", [])
        )
    ]
    return len(items) == count and len(placed) == count


def add_capacity(lab: Lab, klass: str, nodes: int, devices_per_node: int = 16) -> None:
    """Simulated nodes and a class of their own, so the burst fits whatever else the lab holds."""
    for i in range(nodes):
        name = f"{klass}-{i}"
        labels = {
            "kubernetes.io/arch": "arm64",
            "kubernetes.io/os": "linux",
            "edgetenant.io/test": klass,
            "edgetenant.io/lab-simulated": "true",
        }
        capacity = {
            "cpu": "512",
            "memory": "1Ti",
            "pods": "1000",
            "example.com/crash-gpu": str(devices_per_node),
        }
        lab.add_node(name, labels, capacity)
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
