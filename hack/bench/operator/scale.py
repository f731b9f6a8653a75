"""Operator at scale: N tenants on M simulated nodes in the lab.

Measures the time until every tenant is Placed, reconcile latency p50/p99 (the operator's own
histogram), Kubernetes API requests per reconcile, and the operator's peak resident memory.

    hack/lab/lab up
    .venv/bin/python hack/bench/operator/scale.py --tenants 500 --nodes 100

It creates its own nodes (label edgetenant.io/bench=true), AcceleratorClass and namespace, and removes
them afterwards. Results are printed as a markdown table (paste into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from tests.lab import Lab, OperatorProcess, install, wait_for  # noqa: E402

NAMESPACE = "bench-scale"
METRICS_PORT = 18089


def bench_class() -> dict[str, Any]:
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "AcceleratorClass",
        "metadata": {"name": "bench-gpu"},
        "spec": {
            "resourceName": "example.com/bench-gpu",
            "nodeSelector": {"edgetenant.io/bench": "true"},
            "memoryPerDeviceMiB": 8192,
            "sharing": {"mode": "TimeSliced", "slots": 8},
            "instanceKind": "KIND_GPU",
            "formats": [
                {"format": "onnx", "backend": "onnxruntime", "image": "nvcr.io/nvidia/tritonserver:24.10-py3"}
            ],
            "relativeSpeed": 1.0,
        },
    }


def tenants(count: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": f"t-{i:04d}", "namespace": NAMESPACE},
            "spec": {
                "model": {
                    "format": "onnx",
                    "uri": f"http://127.0.0.1:1/m{i % 7}.onnx",
                    "memoryHintMiB": 200 + 50 * (i % 5),
                },
                "acceleratorClasses": ["bench-gpu"],
                "slo": {"throughput": 5 + i % 20},
                "priority": 100 + i % 3 * 50,
            },
        }
        for i in range(count)
    ]


def scrape(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})?\s+([0-9.eE+-]+)$", line)
        if match:
            out[match.group(1) or ""] = float(match.group(2))
    return out


def quantile(buckets: dict[str, float], q: float) -> float:
    """Upper bound of the bucket holding quantile q (Prometheus histogram buckets)."""
    points = sorted(
        (float(re.search(r'le="([^"]+)"', k).group(1)), v) for k, v in buckets.items() if "le=" in k
    )  # type: ignore[union-attr]
    total = points[-1][1]
    for bound, count in points:
        if count >= q * total:
            return bound
    return float("inf")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args()
    lab = Lab.from_env()
    if lab is None:
        print("the lab is down: run hack/lab/lab up", file=sys.stderr)
        return 1
    work = REPO / "out" / "bench-operator"
    work.mkdir(parents=True, exist_ok=True)
    install(lab)
    labels = {"kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux", "edgetenant.io/bench": "true"}
    for i in range(args.nodes):
        capacity = {"cpu": "8", "memory": "16Gi", "pods": "110", "example.com/bench-gpu": "8"}
        lab.add_node(f"bench-node-{i:03d}", labels, capacity)
    lab.apply(bench_class())
    wait_for(
        "a previous run's namespace to go",
        lambda: lab.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0,
        timeout=600,
        interval=2,
    )
    lab.kubectl("create", "namespace", NAMESPACE)
    kubeconfig = lab.service_account_kubeconfig(
        "edgetenant-system", "edgetenant-operator", work / "kubeconfig"
    )
    operator = OperatorProcess(
        kubeconfig,
        work / "operator.log",
        {"EDGETENANT_METRICS_PORT": str(METRICS_PORT), "EDGETENANT_RESYNC_S": "10"},
    ).start()
    assert operator.popen is not None
    try:
        time.sleep(3)
        started = time.monotonic()
        body = tenants(args.tenants)
        for i in range(0, len(body), 100):
            lab.apply(body[i : i + 100])

        def placed() -> int:
            items = lab.get_json("itn", "-n", NAMESPACE)["items"]
            done = sum(
                1
                for item in items
                if any(
                    c["type"] == "Placed" and c["status"] == "True"
                    for c in (item.get("status") or {}).get("conditions", [])
                )
            )
            return done if done == args.tenants else 0

        wait_for("all tenants Placed", placed, timeout=600, interval=2)
        all_placed_s = time.monotonic() - started
        time.sleep(12)  # one more resync, so the per-reconcile figures include steady-state passes
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as response:
            text = response.read().decode()
        buckets = scrape(text, "edgetenant_reconcile_seconds_bucket")
        reconciles = sum(scrape(text, "edgetenant_reconciles_total").values())
        requests = sum(scrape(text, "edgetenant_kube_api_requests_total").values())
        rss = peak_rss_mib(operator.popen.pid)
        header = (
            "tenants",
            "nodes",
            "all Placed",
            "reconcile p50",
            "reconcile p99",
            "API req / reconcile",
            "peak RSS",
        )
        print("| " + " | ".join(header) + " |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| {args.tenants} | {args.nodes} | {all_placed_s:.1f} s "
            f"| ≤ {quantile(buckets, 0.5) * 1000:.0f} ms "
            f"| ≤ {quantile(buckets, 0.99) * 1000:.0f} ms | {requests / max(reconciles, 1):.2f} "
            f"({requests:.0f} / {reconciles:.0f}) | {rss:.0f} MiB |"
        )
    finally:
        operator.kill()
        lab.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        lab.kubectl("delete", "acceleratorclass", "bench-gpu", "--ignore-not-found", check=False)
        lab.kubectl("delete", "nodes", "-l", "edgetenant.io/bench=true", "--wait=false", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
