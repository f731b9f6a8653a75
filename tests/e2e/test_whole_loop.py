"""The whole loop for real: the operator places a tenant on edge-local, the lab runs the Triton container
it rendered as a real process, real inferences succeed, Prometheus scrapes it, the tuning loop raises
concurrency under load and records it, a lost node re-places its tenants, and deleting everything
leaves no process or object behind."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edgetenant.adapters.triton import TritonAdapter
from edgetenant.profiling.loadgen import run_load
from tests.e2e.support import POD_RANGE, alive, serving_pods, triton_pids
from tests.lab import InClusterOperator, Lab, lab_env, wait_for

MODEL = "mobilenet-v2-e2e"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def modelstore() -> str:
    env = lab_env()
    assert env is not None
    return env["EDGETENANT_MODELSTORE_URL"]


def local_tenant(namespace: str, modelstore: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "model": {"format": "onnx", "uri": f"{modelstore}/mobilenet_v2.onnx", "memoryHintMiB": 200},
            "acceleratorClasses": ["x86-cpu"],
            "slo": {"latencyP95Ms": 400, "throughput": 40},
            "concurrency": {"mode": "Auto", "min": 1, "max": 3, "initial": 1},
            "batching": {"mode": "Disabled"},
            "placement": {"nodeSelector": {"kubernetes.io/hostname": "edge-local"}},
        },
    }


def status_of(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    return dict(lab.get_json("itn", name, "-n", namespace).get("status") or {})


def is_true(status: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in status.get("conditions", []))


def pod_ip(lab: Lab, namespace: str) -> str:
    pods = lab.get_json("pods", "-n", namespace, "-l", f"edgetenant.io/tenant={MODEL}")["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP")]
    assert running, "no running pod"
    return str(running[0]["status"]["podIP"])


@pytest.fixture(scope="module")
def ready_tenant(lab: Lab, operator: InClusterOperator, namespace: str, modelstore: str) -> dict[str, Any]:
    lab.apply(local_tenant(namespace, modelstore))
    return dict(
        wait_for(
            "Ready=True: Triton on the pod reports the model ready",
            lambda: (s := status_of(lab, namespace, MODEL)) and is_true(s, "Ready") and s,
            timeout=240,
            interval=2,
        )
    )


def test_status_shows_the_real_placement(ready_tenant: dict[str, Any]) -> None:
    assert ready_tenant["activePlacement"]["node"] == "edge-local"
    assert ready_tenant["activePlacement"]["acceleratorClass"] == "x86-cpu"
    assert ready_tenant["targetPlacement"] == ready_tenant["activePlacement"]
    assert is_true(ready_tenant, "ModelLoaded")
    assert ready_tenant["concurrency"]["target"] >= 1


def test_real_inferences_succeed_through_what_the_operator_rendered(
    lab: Lab, namespace: str, ready_tenant: Any
) -> None:
    ip = pod_ip(lab, namespace)
    assert ipaddress.ip_address(ip) in POD_RANGE, "a pod IP from the node's CNI"
    result = asyncio.run(run_load(f"http://{ip}:8000", MODEL, concurrency=2, requests=40))
    assert result.errors == 0, result.error_samples
    assert result.requests == 40

    async def outputs() -> Any:
        async with TritonAdapter(f"http://{ip}:8000") as triton:
            return await triton.model_metadata(MODEL)

    metadata = asyncio.run(outputs())
    assert metadata.outputs[0].shape[-1] == 1000


def test_the_tuning_loop_raises_concurrency_under_load_and_records_it(
    lab: Lab, namespace: str, ready_tenant: Any
) -> None:
    ip = pod_ip(lab, namespace)

    async def load_until_scaled() -> dict[str, Any]:
        for _ in range(24):  # at most 24 windows of 5 s
            await run_load(f"http://{ip}:8000", MODEL, concurrency=6, duration_s=5.0)
            status = await asyncio.to_thread(status_of, lab, namespace, MODEL)
            if (status.get("concurrency") or {}).get("target", 1) > 1:
                return status
        return await asyncio.to_thread(status_of, lab, namespace, MODEL)

    status = asyncio.run(load_until_scaled())
    assert status["concurrency"]["target"] > 1, status.get("lastDecision")
    assert is_true(status, "MetricsAvailable"), "the loop decided from real Prometheus signals"
    assert status["observed"]["throughput"] > 0
    target = status["concurrency"]["target"]

    async def live_count() -> int:
        async with TritonAdapter(f"http://{ip}:8000") as triton:
            config = await triton.model_config(MODEL)
        return int(config["instance_group"][0]["count"])

    # Every pod runs the decided count live, and the ConfigMap records it for restarts.
    assert wait_for(
        "Triton's live instance count", lambda: asyncio.run(live_count()) == target or None, timeout=30
    )
    config_map = wait_for(
        "the ConfigMap to record the target",
        lambda: (
            (cm := lab.get_json("configmap", f"{MODEL}-triton-config", "-n", namespace))
            and f"count: {target}" in cm["data"]["config.pbtxt"]
            and cm
        ),
        timeout=30,
    )
    assert config_map
    wait_for(  # Events are posted off the reconcile's path: shortly after the status
        "the ScaleUp Event",
        lambda: any(
            e["reason"] == "ScaleUp"
            for e in lab.get_json(
                "events", "-n", namespace, "--field-selector", f"involvedObject.name={MODEL}"
            )["items"]
        ),
        timeout=30,
    )
    profiles = lab.get_json("modelprofiles", "-n", namespace)["items"]
    online = [p for p in profiles if p["metadata"].get("labels", {}).get("edgetenant.io/source") == "online"]
    assert online and online[0]["spec"]["points"], "learned points become an online ModelProfile"


def test_losing_a_node_re_places_its_tenants(
    lab: Lab, operator: InClusterOperator, namespace: str, modelstore: str
) -> None:
    name = "nano-tenant"
    body = local_tenant(namespace, modelstore)
    body["metadata"]["name"] = name
    body["spec"]["acceleratorClasses"] = ["jetson-nano", "jetson-tx2"]
    body["spec"]["placement"] = {}
    lab.apply(body)
    first = wait_for("placed", lambda: status_of(lab, namespace, name).get("targetPlacement"), timeout=60)
    lab.kubectl("delete", "node", first["node"])
    try:
        moved = wait_for(
            "re-placed on the remaining Jetson",
            lambda: (
                (t := status_of(lab, namespace, name).get("targetPlacement"))
                and t["node"] != first["node"]
                and t
            ),
            timeout=90,
        )
        assert moved["acceleratorClass"] in {"jetson-nano", "jetson-tx2"}
    finally:
        lab.kubectl("delete", "itn", name, "-n", namespace, "--wait=false", check=False)
        subprocess.run([sys.executable, str(REPO / "hack" / "lab" / "lab.py"), "nodes"], check=True)


def test_metrics_reach_prometheus_through_kubernetes_discovery(
    lab: Lab, namespace: str, ready_tenant: Any
) -> None:
    query = urllib.parse.urlencode({"query": f'nv_inference_count{{namespace="{namespace}"}}'})

    def series() -> list[Any]:
        with urllib.request.urlopen(f"{lab.prometheus_url}/api/v1/query?{query}", timeout=5) as response:
            return list(json.load(response)["data"]["result"])

    found = wait_for("Prometheus to scrape the pod it discovered through the API server", series, timeout=60)
    assert found[0]["metric"]["pod"].startswith(MODEL)


def test_deleting_everything_leaves_no_process_or_object(lab: Lab, namespace: str, ready_tenant: Any) -> None:
    pids = [
        pid
        for pod in serving_pods(lab, namespace, MODEL)
        for pid in triton_pids(lab, namespace, pod["metadata"]["name"])
    ]
    assert pids, "the lab's node runs Triton for the pod"
    lab.kubectl("delete", "itn", "--all", "-n", namespace)
    for kind in ("deployments", "services", "configmaps", "pods"):
        wait_for(
            f"no {kind} left",
            lambda kind=kind: (
                not lab.get_json(kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=edgetenant")[
                    "items"
                ]
            ),
            timeout=90,
        )
    wait_for("the Triton processes to stop", lambda: not alive(pids), timeout=60)
