"""The kernel, not a harness, enforces a tenant pod's memory limit on the real node, and the tenant's
status says so."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.lab import InClusterOperator, Lab, wait_for
from tests.node.support import condition, events, status_of, tenant

NAME = "resnet50-too-small"
# cgroup v1 (this machine's hybrid mode, and JetPack 4's Jetsons) has no group OOM kill: the kernel
# kills the biggest process in the container, Triton's Python-backend stub, and Triton lives on, so
# no container status says OOMKilled; the operator reads cAdvisor's counter from Prometheus then
# (tuning_driver.process_oom_kills). On cgroup v2 the container is killed and the kubelet says so.


@pytest.fixture(scope="module")
def too_small(lab: Lab, namespace: str, operator: InClusterOperator) -> str:
    # Each instance of ResNet-50 (100 MB of weights, loaded by ONNX Runtime in its own Python-backend
    # process) needs far more than the 1 MiB this tenant claims: three instances against a limit of
    # Triton's 256 MiB + 3 x 1 MiB.
    spec = {"model": {"memoryHintMiB": 1}, "concurrency": {"min": 1, "max": 3, "initial": 3}}
    lab.apply(tenant(namespace, NAME, "resnet50", **spec))
    return NAME


def oom_events(lab: Lab, namespace: str) -> float:
    """The kernel's OOM kills in the tenant's Triton containers, as the kubelet's cAdvisor counts them
    (from Prometheus, which scrapes it as kube-prometheus does)."""
    query = f'sum(container_oom_events_total{{namespace="{namespace}",container="triton"}})'
    url = f"{lab.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_the_kernel_oom_kills_what_goes_over_the_limit(lab: Lab, namespace: str, too_small: str) -> None:
    wait_for(
        "the kernel's OOM kill in the Triton container", lambda: oom_events(lab, namespace) > 0, timeout=300
    )
    status = status_of(lab, namespace, too_small)
    assert condition(status, "Ready").get("status") != "True", "a model that does not fit is not served"


def test_the_tenants_status_says_it_was_oom_killed(lab: Lab, namespace: str, too_small: str) -> None:
    def reported() -> dict[str, Any] | None:
        status = status_of(lab, namespace, too_small)
        failed = status.get("lastFailure", {}).get("reason") == "OutOfMemory"
        loaded = condition(status, "ModelLoaded")
        return status if failed and "OOM-killed" in loaded.get("message", "") else None

    status = wait_for("the tenant's status to report the OOM kill", reported, timeout=240, interval=2)
    assert "memory limit" in status["lastFailure"]["message"]
    assert condition(status, "ModelLoaded")["status"] != "True"
    wait_for(  # Events are posted off the reconcile's path: shortly after the status
        "the OOMKilled Warning Event",
        lambda: any(
            e["reason"] == "OOMKilled" and e["type"] == "Warning" for e in events(lab, namespace, too_small)
        ),
        timeout=30,
    )
