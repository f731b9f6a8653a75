"""Helpers of the real-node tier: tenants pinned to edge-local, their status, their pods."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from edgetenant.profiling.loadgen import LoadResult, run_load
from tests.lab import Lab, lab_command, lab_env, wait_for


def lab_cli(*args: str) -> None:
    """`hack/lab/lab ARGS` (e.g. stop kubelet), from the host's namespace."""
    subprocess.run(lab_command(*args), check=True, timeout=180)


def tenant(namespace: str, name: str, model_file: str, **spec: Any) -> dict[str, Any]:
    """An x86-cpu tenant pinned to the real node, its model from the lab's model store."""
    store = (lab_env() or {})["EDGETENANT_MODELSTORE_URL"]
    body: dict[str, Any] = {
        "model": {
            "format": "onnx",
            "uri": f"{store}/{model_file}.onnx",
            "maxBatchSize": 4,
            "memoryHintMiB": 200,
        },
        "acceleratorClasses": ["x86-cpu"],
        "slo": {"latencyP95Ms": 2000, "throughput": 1},
        "concurrency": {"mode": "Auto", "min": 1, "max": 2, "initial": 1},
        "batching": {"mode": "Disabled"},
        "placement": {"nodeSelector": {"kubernetes.io/hostname": "edge-local"}},
    }
    for key, value in spec.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def status_of(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    return dict(lab.get_json("itn", name, "-n", namespace).get("status") or {})


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def ready(lab: Lab, namespace: str, name: str, timeout: float = 300) -> dict[str, Any]:
    return dict(
        wait_for(
            f"{name} Ready (Triton on its pod reports the model ready)",
            lambda: (
                (s := status_of(lab, namespace, name)) and condition(s, "Ready").get("status") == "True" and s
            ),
            timeout=timeout,
            interval=2,
        )
    )


def serving_pod(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    pods = lab.get_json("pods", "-n", namespace, "-l", f"edgetenant.io/tenant={name}")["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP")]
    assert running, f"no running pod of {name}"
    return dict(running[0])


def infer(pod: dict[str, Any], model: str, requests: int = 10) -> LoadResult:
    """Real inferences, straight to the pod's IP (this test process is in the lab's namespace)."""
    return asyncio.run(
        run_load(f"http://{pod['status']['podIP']}:8000", model, concurrency=1, requests=requests)
    )


def allocatable(lab: Lab, resource: str, node: str = "edge-local") -> int:
    return int(lab.get_json("node", node)["status"]["allocatable"].get(resource, "0"))


def containers(pod: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """container -> (container ID, restart count)."""
    return {
        s["name"]: (s.get("containerID", ""), int(s.get("restartCount", 0)))
        for s in pod["status"].get("containerStatuses", [])
    }


def events(lab: Lab, namespace: str, name: str) -> list[dict[str, Any]]:
    out = lab.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return list(json.loads(out.stdout)["items"])
