"""The fault suite: the lab's real components fail under a running operator, which must hold, restart
and re-converge with nothing lost or duplicated. Each test prints the time it took to recover; the
figures are in BENCHMARKS.md ("Faults").

- Prometheus outage: tuning holds its last good decision and says so, then resumes;
- the Triton process of a serving pod is killed: the node restarts it with the tuned instance count;
- API server restart and etcd restart: watches break and every call fails meanwhile;
- node loss (KWOK stops: every simulated node, edge-local included, goes NotReady) and return.

The operator runs in the cluster from its image (tests/e2e/conftest.py); it must ride out every fault
without the kubelet restarting it. (Its own kill -9 during churn is tests/cluster/test_operator_crash.py;
its pod's kill and restart on the real node is tests/node/test_node_restarts.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from tests.e2e.support import serving_pods, triton_pids
from tests.lab import LAB, InClusterOperator, Lab, lab_env, wait_for

MODEL = "faults-mobilenet"


def lab_cli(*args: str) -> None:
    subprocess.run([sys.executable, str(LAB), *args], check=True, timeout=180)


def status_of(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    return dict(lab.get_json("itn", name, "-n", namespace).get("status") or {})


def condition(status: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == kind), None)


@pytest.fixture(scope="module")
def serving(lab: Lab, operator: InClusterOperator, namespace: str) -> dict[str, Any]:
    env = lab_env()
    assert env is not None
    body = {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "model": {
                "format": "onnx",
                "uri": f"{env['EDGETENANT_MODELSTORE_URL']}/mobilenet_v2.onnx",
                "memoryHintMiB": 200,
            },
            "acceleratorClasses": ["x86-cpu"],
            "slo": {"throughput": 5},
            "concurrency": {"mode": "Auto", "min": 1, "max": 3, "initial": 2},
            "batching": {"mode": "Disabled"},
            "placement": {"nodeSelector": {"kubernetes.io/hostname": "edge-local"}},
        },
    }
    lab.apply(body)
    return dict(
        wait_for(
            "the tenant Ready with fresh metrics",
            lambda: (
                (s := status_of(lab, namespace, MODEL))
                and condition(s, "Ready") == "True"
                and condition(s, "MetricsAvailable") == "True"
                and s
            ),
            timeout=240,
            interval=2,
        )
    )


def simulated_tenant(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"format": "onnx", "uri": "http://127.0.0.1:1/m.onnx", "memoryHintMiB": 100},
            "slo": {"throughput": 1},
            "placement": {"nodeSelector": {"edgetenant.io/lab-simulated": "true"}},
        },
    }


def children(lab: Lab, namespace: str) -> dict[str, set[str]]:
    selector = "app.kubernetes.io/managed-by=edgetenant"
    return {
        kind: {i["metadata"]["uid"] for i in lab.get_json(kind, "-n", namespace, "-l", selector)["items"]}
        for kind in ("deployments", "services", "configmaps")
    }


def recover_after_restart(
    lab: Lab, namespace: str, operator: InClusterOperator, component: str, down_s: float
) -> float:
    """Stop a component for `down_s`, start it again; seconds until a tenant created right after the
    restart is Placed and the serving tenant is Ready again."""
    before = children(lab, namespace)
    restarts = operator.restarts()
    lab_cli("stop", component)
    time.sleep(down_s)
    lab_cli("start", component)
    restarted = time.monotonic()
    name = f"after-{component}"
    wait_for(
        "the API server to take writes",
        lambda: lab.kubectl("get", "ns", namespace, check=False).returncode == 0,
        timeout=60,
    )
    lab.apply(simulated_tenant(name, namespace))
    wait_for(
        f"{name} Placed",
        lambda: condition(status_of(lab, namespace, name), "Placed") == "True",
        timeout=120,
    )
    wait_for(
        "the serving tenant Ready",
        lambda: condition(status_of(lab, namespace, MODEL), "Ready") == "True",
        timeout=120,
    )
    took = time.monotonic() - restarted
    assert operator.alive() and operator.restarts() == restarts, "the operator died or was restarted"
    after = children(lab, namespace)
    for kind, uids in before.items():
        assert uids <= after[kind], f"{kind} of the serving tenant were replaced or lost"
    print(f"{component} down {down_s:.0f} s: re-converged {took:.1f} s after it came back")
    return took


def test_prometheus_outage_holds_the_last_decision_then_resumes(
    lab: Lab, namespace: str, operator: InClusterOperator, serving: dict[str, Any]
) -> None:
    target = status_of(lab, namespace, MODEL)["concurrency"]["target"]
    lab_cli("stop", "prometheus")
    try:
        blind = wait_for(
            "MetricsAvailable=False while Prometheus is down",
            lambda: (
                (s := status_of(lab, namespace, MODEL)) and condition(s, "MetricsAvailable") == "False" and s
            ),
            timeout=60,
        )
        time.sleep(15)  # three tuning intervals with no data
        held = status_of(lab, namespace, MODEL)
        assert held["concurrency"]["target"] == target, "no data must never mean scale down"
        assert condition(held, "Ready") == "True", "serving does not depend on metrics"
        assert "holding" in next(c["message"] for c in blind["conditions"] if c["type"] == "MetricsAvailable")
    finally:
        lab_cli("start", "prometheus")
    back = time.monotonic()
    wait_for(
        "MetricsAvailable=True again",
        lambda: condition(status_of(lab, namespace, MODEL), "MetricsAvailable") == "True",
        timeout=90,
    )
    print(f"Prometheus outage: tuning resumed {time.monotonic() - back:.1f} s after Prometheus came back")


def live_instance_count(pod_ip: str) -> int:
    with urllib.request.urlopen(f"http://{pod_ip}:8000/v2/models/{MODEL}/config", timeout=5) as response:
        import json  # noqa: PLC0415

        config = json.load(response)
    return int(config["instance_group"][0]["count"])


def test_a_killed_triton_comes_back_with_the_tuned_instance_count(
    lab: Lab, namespace: str, operator: InClusterOperator, serving: dict[str, Any]
) -> None:
    pod = serving_pods(lab, namespace, MODEL)[0]
    ip, name = pod["status"]["podIP"], pod["metadata"]["name"]
    old = triton_pids(lab, namespace, name)
    assert old, f"no tritonserver process serves {ip}"
    os.kill(old[0], signal.SIGKILL)  # the container's first process: Triton itself
    killed = time.monotonic()
    wait_for(
        "a new tritonserver",
        lambda: (new := triton_pids(lab, namespace, name)) and set(new).isdisjoint(old),
        timeout=90,
    )
    wait_for(
        "Ready again", lambda: condition(status_of(lab, namespace, MODEL), "Ready") == "True", timeout=120
    )
    wait_for("the model loaded", lambda: _count_or_none(ip) is not None, timeout=60)
    print(f"Triton kill -9: serving again after {time.monotonic() - killed:.1f} s")
    # The restarted server runs the tuned count: from its ConfigMap, or set by the tuning loop's resync
    # (the kubelet refreshes a ConfigMap volume with a delay).
    wait_for(
        "the restarted Triton to run the tuned instance count",
        lambda: _count_or_none(ip) == status_of(lab, namespace, MODEL)["concurrency"]["target"],
        timeout=60,
    )


def _count_or_none(ip: str) -> int | None:
    try:
        return live_instance_count(ip)
    except OSError:
        return None


def test_api_server_restart(
    lab: Lab, namespace: str, operator: InClusterOperator, serving: dict[str, Any]
) -> None:
    recover_after_restart(lab, namespace, operator, "kube-apiserver", down_s=10)


def test_etcd_restart(lab: Lab, namespace: str, operator: InClusterOperator, serving: dict[str, Any]) -> None:
    recover_after_restart(lab, namespace, operator, "etcd", down_s=10)


def test_node_loss_and_return(
    lab: Lab, namespace: str, operator: InClusterOperator, serving: dict[str, Any]
) -> None:
    before = children(lab, namespace)
    # Every lab node stops sending heartbeats: KWOK's, and the real kubelet of edge-local.
    stopped = ["kwok", "kubelet"]
    for component in stopped:
        lab_cli("stop", component)
    try:
        wait_for(
            "edge-local NotReady",
            lambda: any(
                c["type"] == "Ready" and c["status"] != "True"
                for c in lab.get_json("node", "edge-local")["status"]["conditions"]
            ),
            timeout=90,
        )
        lost = wait_for(
            "the serving tenant reported unplaced (its node is lost)",
            lambda: (s := status_of(lab, namespace, MODEL)) and condition(s, "Placed") == "False" and s,
            timeout=60,
        )
        assert "Ready" in str(lost) and children(lab, namespace)["deployments"] >= before["deployments"], (
            "a lost node must not delete the workload"
        )
    finally:
        for component in stopped:
            lab_cli("start", component)
    back = time.monotonic()
    wait_for(
        "Ready again on edge-local",
        lambda: condition(status_of(lab, namespace, MODEL), "Ready") == "True",
        timeout=180,
    )
    print(f"node loss: serving tenant Ready {time.monotonic() - back:.1f} s after the node returned")
    assert status_of(lab, namespace, MODEL)["activePlacement"]["node"] == "edge-local"
