"""Every query of the Grafana dashboard (manifests/dashboards/edgetenant.json, as hack/tools/dashboard.py
builds it) answers with data from the lab's real Prometheus during a real run: the operator (leading,
scraped through Kubernetes service discovery like any pod) and a tenant serving real inferences on
edge-local. An invalid query (Prometheus refuses it) or an empty answer fails the test, naming the panel.

Where edge-local is a real kubelet (the lab's default) the operator runs in the cluster from its image
and its pod is scraped as it is; with `EDGETENANT_LAB_NODE=none` the operator runs from this checkout
inside the lab's network namespace, and a stand-in pod on a simulated node carries the scrape
annotations with the operator's address (every 127/8 address is this namespace's loopback), so
Prometheus finds it exactly as it finds a pod.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgetenant.profiling.loadgen import run_load
from tests.lab import InClusterOperator, Lab, OperatorProcess, lab_env, wait_for

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack" / "tools"))
import dashboard  # noqa: E402

MODEL = "dash-mobilenet-v2"
# Grafana's own variables, as Grafana would fill them for "last 15 minutes, all namespaces" at the
# lab's 2 s scrape interval.
VARIABLES = {"$__rate_interval": "30s", "$namespace": ".*"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def run_namespace(lab: Lab) -> Iterator[str]:
    name = f"dash-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def scraped_operator(
    lab: Lab, run_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InClusterOperator | OperatorProcess]:
    env = {"EDGETENANT_TUNE_INTERVAL_S": "5", "EDGETENANT_RESYNC_S": "2"}
    if (lab_env() or {}).get("EDGETENANT_LAB_NODE") == "kubelet":
        in_cluster = InClusterOperator(lab, env).start()
        yield in_cluster
        in_cluster.kill()
        return
    work = tmp_path_factory.mktemp("operator")
    kubeconfig = lab.service_account_kubeconfig(
        "edgetenant-system", "edgetenant-operator", work / "kubeconfig"
    )
    port = free_port()
    process = OperatorProcess(
        kubeconfig,
        work / "operator.log",
        {
            **env,
            "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url,
            "EDGETENANT_METRICS_PORT": str(port),
            "EDGETENANT_METRICS_ADDRESS": "0.0.0.0",
        },
        standalone=False,  # it campaigns for the Lease and leads, as a replica does
    ).start()
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "operator-metrics",
                "namespace": run_namespace,
                "labels": {"app.kubernetes.io/name": "edgetenant-operator"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(port)},
            },
            "spec": {"nodeName": "x86-nuc-1", "containers": [{"name": "operator", "image": "stand-in:1"}]},
        }
    )
    yield process
    process.kill()
    print(process.log_tail())


@pytest.fixture(scope="module")
def serving(lab: Lab, run_namespace: str, scraped_operator: Any) -> str:
    env = lab_env()
    assert env is not None
    lab.apply(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": MODEL, "namespace": run_namespace},
            "spec": {
                "model": {
                    "format": "onnx",
                    "uri": f"{env['EDGETENANT_MODELSTORE_URL']}/mobilenet_v2.onnx",
                    "memoryHintMiB": 200,
                },
                "acceleratorClasses": ["x86-cpu"],
                "slo": {"latencyP95Ms": 400, "throughput": 20},
                "concurrency": {"mode": "Auto", "min": 1, "max": 2, "initial": 1},
                "placement": {"nodeSelector": {"kubernetes.io/hostname": "edge-local"}},
            },
        }
    )

    def ready_ip() -> str | None:
        status = lab.get_json("itn", MODEL, "-n", run_namespace).get("status") or {}
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])):
            return None
        pods = lab.get_json("pods", "-n", run_namespace, "-l", f"edgetenant.io/tenant={MODEL}")["items"]
        ips = [p["status"].get("podIP") for p in pods if not p["metadata"].get("deletionTimestamp")]
        return next((ip for ip in ips if ip), None)

    ip = str(wait_for("the tenant to serve on edge-local", ready_ip, timeout=300, interval=2))
    return f"http://{ip}:8000"


def query(lab: Lab, expr: str) -> dict[str, Any]:
    url = f"{lab.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:  # 400: Prometheus refused the query
        answer = json.loads(error.read() or b"{}") or {"status": "error", "error": str(error)}
    return answer


def test_every_dashboard_query_answers_during_a_real_run(lab: Lab, serving: str) -> None:
    # Real inferences for a while, so rates, latencies and the tuner's decisions have something to say.
    result = asyncio.run(run_load(serving, MODEL, concurrency=2, duration_s=25.0, warmup_s=1.0))
    assert result.requests > 0, result.error_samples
    board = json.loads((REPO / "manifests" / "dashboards" / "edgetenant.json").read_text())
    queries = dashboard.panel_queries(board)
    assert len(queries) == sum(len(p[3]) for p in dashboard.PANELS)

    def filled(expr: str) -> str:
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        return expr

    def answers() -> dict[str, str]:
        """Panel -> what is wrong with its query ('' when it has data)."""
        problems = {}
        for title, expr in queries:
            answer = query(lab, filled(expr))
            if answer.get("status") != "success":
                problems[title] = f"invalid: {answer.get('error')}"
            elif not answer["data"]["result"]:
                problems[title] = "empty"
        return problems

    # Prometheus scrapes every 2 s and the tuner decides every 5 s: give the last series a few rounds.
    try:
        wait_for("every panel's query to have data", lambda: not answers(), timeout=90, interval=5)
    except AssertionError:
        pytest.fail(f"dashboard queries without data or refused: {answers()}")
