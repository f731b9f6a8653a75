"""Operator at scale: N tenants on M simulated nodes in the lab.

Measures the time until every tenant is Placed, reconcile latency p50/p99 (exact, from the
operator's `/debug/reconcile-seconds`, and interpolated within the buckets of its
`edgetenant_reconcile_seconds` histogram, as Prometheus' histogram_quantile does), Kubernetes API
requests per reconcile, the operator's resident memory (after start-up, and its peak), and the CPU
time of the operator and of each lab process (kube-apiserver, etcd, ...) over the run.

    EDGETENANT_LAB_DIR=/tmp/lab-scale EDGETENANT_LAB_PORT_OFFSET=4000 hack/lab/lab up --node=none
    EDGETENANT_LAB_DIR=/tmp/lab-scale EDGETENANT_LAB_PORT_OFFSET=4000 \\
        .venv/bin/python hack/bench/operator/scale.py --tenants 500 --nodes 100

Noise: the machine is shared. The 1-minute load average and `uptime` are recorded at the start and
the end, and the CPU seconds that processes outside the lab, the operator and this script used
during the run ("neighbours"). Above `--max-load` at the start it waits up to `--wait` seconds
for the load to drop, then refuses to run (exit 3, nothing written) unless `--force`; a run in
which the neighbours took more than a quarter of the machine is marked `noisy`. Results go to
stdout (a markdown row) and `--out` (JSON, one object per run appended).

The operator runs from this checkout (PYTHONPATH=<another checkout>/operator runs that one: a
before/after comparison), from byte-compiled modules as in its image (`bytecode_env`).

It creates its own nodes (label edgetenant.io/bench=true), AcceleratorClass and namespace, and removes
them afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hack" / "bench"))

import noise  # noqa: E402

from tests.lab import Lab, OperatorProcess, install, wait_for  # noqa: E402

NAMESPACE = "bench-scale"
METRICS_PORT = 18089
# 2 cores: the lab and the operator together keep about two busy while tenants arrive, so a
# neighbour's load of 2.5 means they get well under half the machine.
MAX_LOAD = 2.5
CORES = os.cpu_count() or 1
NOISY_SHARE = 0.25


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


def bucket_quantile(buckets: dict[str, float], q: float) -> float:
    """Quantile q of a Prometheus histogram, linear within the bucket that holds it (what
    histogram_quantile does); the lowest bucket interpolates from 0, +Inf answers its lower bound."""
    points = []
    for labels, count in buckets.items():
        match = re.search(r'le="([^"]+)"', labels)
        if match:
            points.append((float(match.group(1)), count))
    points.sort()
    total = points[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(
                count - lower_count, 1e-12
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]  # nearest rank


def status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / noise.TICKS


def own_cpu_s() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def lab_pids(lab: Lab) -> dict[str, int]:
    state = json.loads((lab.dir / "state.json").read_text())
    return {name: pid for name, pid in state.get("pids", {}).items() if name != "namespaces"}


def bytecode_env(work: Path) -> dict[str, str]:
    """The operator as its image runs it: from byte-compiled modules. Without them (this machine sets
    PYTHONDONTWRITEBYTECODE) every start compiles the Kubernetes client's 4.5 MB `core_v1_api.py`
    and the rest from source: +70 MiB of resident memory that the image, which ships `.pyc` files
    (BENCHMARKS.md section 6), never has. The caches go to a folder of the benchmark's own
    (PYTHONPYCACHEPREFIX), not into the virtualenv, and are compiled once, before the run."""
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    warm = (
        "import edgetenant.handlers, edgetenant.placement.cpsat\n"
        "from kubernetes import client, dynamic\n"
        "client.CoreV1Api(); client.CustomObjectsApi(); client.CoordinationV1Api()\n"
    )
    subprocess.run([sys.executable, "-c", warm], env={**os.environ, **env}, check=True, cwd=REPO)
    return env


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def wait_for_quiet(max_load: float, wait_s: float) -> float:
    """The 1-minute load average once it is at most max_load, or the last one seen after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        load = os.getloadavg()[0]
        if load <= max_load or time.monotonic() >= deadline:
            return load
        print(f"load average {load:.2f} > {max_load}: waiting (up to {wait_s:.0f} s)", file=sys.stderr)
        time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text


def answers(url: str) -> bool:
    try:
        fetch(url)
    except OSError:
        return False
    return True


def recent_seconds(metrics_url: str) -> list[float]:
    """The raw durations, or none from an operator without /debug/reconcile-seconds (whose metrics
    server answers every path with /metrics)."""
    try:
        return [float(v) for v in fetch(f"{metrics_url}/debug/reconcile-seconds").split()]
    except (OSError, ValueError):
        return []


def placed_in_api(lab: Lab, count: int) -> bool:
    items = lab.get_json("itn", "-n", NAMESPACE)["items"]
    done = sum(
        1
        for item in items
        if any(
            c["type"] == "Placed" and c["status"] == "True"
            for c in (item.get("status") or {}).get("conditions", [])
        )
    )
    return done == count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=500, help="InferenceTenants to create")
    parser.add_argument("--nodes", type=int, default=100, help="simulated nodes (8 devices x 8 slots each)")
    parser.add_argument(
        "--max-load", type=float, default=MAX_LOAD, help="the 1-minute load average above which it refuses"
    )
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the load to drop first")
    parser.add_argument("--force", action="store_true", help="run and write results whatever the load")
    parser.add_argument(
        "--timeout", type=float, default=900, help="give up waiting for all Placed after this"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "out" / "bench-operator" / "scale.jsonl",
        help="append results here",
    )
    args = parser.parse_args()
    lab = Lab.from_env()
    if lab is None:
        print("the lab is down: run hack/lab/lab up", file=sys.stderr)
        return 1
    # A previous run's cleanup (the namespace's objects collected) is load of our own: wait it out first.
    wait_for(
        "a previous run's namespace to go",
        lambda: lab.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0,
        timeout=600,
        interval=2,
    )
    load_start = wait_for_quiet(args.max_load, args.wait)
    uptime_start = uptime()
    if load_start > args.max_load and not args.force:
        print(
            f"refusing: the 1-minute load average is {load_start:.2f} (> {args.max_load}) before the run, "
            f"so the figures would measure the neighbours ({uptime_start}); --force to run anyway",
            file=sys.stderr,
        )
        return 3
    work = REPO / "out" / "bench-operator"
    work.mkdir(parents=True, exist_ok=True)
    install(lab)
    labels = {"kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux", "edgetenant.io/bench": "true"}
    for i in range(args.nodes):
        capacity = {"cpu": "8", "memory": "16Gi", "pods": "110", "example.com/bench-gpu": "8"}
        lab.add_node(f"bench-node-{i:03d}", labels, capacity)
    lab.apply(bench_class())
    lab.kubectl("create", "namespace", NAMESPACE)
    kubeconfig = lab.service_account_kubeconfig(
        "edgetenant-system", "edgetenant-operator", work / "kubeconfig"
    )
    operator = OperatorProcess(
        kubeconfig,
        work / "operator.log",
        {
            "EDGETENANT_METRICS_PORT": str(METRICS_PORT),
            "EDGETENANT_RESYNC_S": "10",
            # As the Deployment and the chart set it; MALLOC_ARENA_MAX=0 measures glibc's default.
            "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2"),
            **bytecode_env(work),
        },
    ).start()
    assert operator.popen is not None
    pid = operator.popen.pid
    metrics_url = f"http://127.0.0.1:{METRICS_PORT}"
    try:
        wait_for(
            "the operator's metrics", lambda: answers(f"{metrics_url}/metrics"), timeout=60, interval=0.5
        )
        time.sleep(3)  # leads (standalone), first pass over an empty namespace
        rss_started = (status_kib(pid, "VmRSS") or 0) / 1024
        pids = lab_pids(lab)
        cpu_before = {name: noise.cpu_s(p) for name, p in pids.items()}
        operator_before = noise.cpu_s(pid) or 0.0
        busy_before, own_before = machine_busy_s(), own_cpu_s()
        started, load_applying = time.monotonic(), os.getloadavg()[0]
        body = tenants(args.tenants)
        for i in range(0, len(body), 100):
            lab.apply(body[i : i + 100])
        applied_s = time.monotonic() - started

        def placed() -> bool:
            # The operator's own gauge first (set after a pass, status written), then the API's word.
            text = fetch(f"{metrics_url}/metrics")
            if scrape(text, "edgetenant_tenants").get('{condition="placed"}') != args.tenants:
                return False
            return placed_in_api(lab, args.tenants)

        wait_for("all tenants Placed", placed, timeout=args.timeout, interval=1)
        all_placed_s = time.monotonic() - started
        cpu_after = {name: noise.cpu_s(p) for name, p in pids.items()}
        operator_after = noise.cpu_s(pid) or 0.0
        busy_after, own_after = machine_busy_s(), own_cpu_s()
        load_placed = os.getloadavg()[0]
        time.sleep(12)  # one more resync, so the per-reconcile figures include steady-state passes
        text = fetch(f"{metrics_url}/metrics")
        raw = recent_seconds(metrics_url)
        rss_peak = (status_kib(pid, "VmHWM") or 0) / 1024
        rss_end = (status_kib(pid, "VmRSS") or 0) / 1024
        load_end, uptime_end = os.getloadavg()[0], uptime()
    finally:
        operator.kill()
        # The namespace first, while its pods' nodes are there to confirm their deletion (KWOK does);
        # nodes deleted first leave the pods to the controller manager's pod GC, minutes of load
        # that the next run would measure.
        print("cleaning up: the namespace, then the nodes", file=sys.stderr)
        lab.kubectl("delete", "namespace", NAMESPACE, "--timeout=600s", check=False)
        lab.kubectl("delete", "acceleratorclass", "bench-gpu", "--ignore-not-found", check=False)
        lab.kubectl("delete", "nodes", "-l", "edgetenant.io/bench=true", "--wait=false", check=False)

    buckets = scrape(text, "edgetenant_reconcile_seconds_bucket")
    reconciles = sum(scrape(text, "edgetenant_reconciles_total").values())
    requests = sum(scrape(text, "edgetenant_kube_api_requests_total").values())
    plan_sum = sum(scrape(text, "edgetenant_plan_seconds_sum").values())
    plans = sum(scrape(text, "edgetenant_plan_seconds_count").values())
    lab_cpu = {
        name: round(after - before, 1)
        for name, after in cpu_after.items()
        if after is not None and (before := cpu_before.get(name)) is not None
    }
    operator_cpu = operator_after - operator_before
    machine = busy_after - busy_before
    own = own_after - own_before  # this script and its kubectl calls
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "tenants": args.tenants,
        "nodes": args.nodes,
        "forced": load_start > args.max_load,
        "uptime_start": uptime_start,
        "uptime_end": uptime_end,
        "load1_start": load_start,
        "load1_first_apply": load_applying,
        "load1_placed": load_placed,
        "load1_end": load_end,
        "applied_s": round(applied_s, 1),
        "all_placed_s": round(all_placed_s, 1),
        "reconciles": reconciles,
        "raw_samples": len(raw),
        "raw_complete": len(raw) >= reconciles,  # a pass may finish between the two reads
        "reconcile_p50_s": exact_quantile(raw, 0.5),
        "reconcile_p99_s": exact_quantile(raw, 0.99),
        "reconcile_max_s": max(raw, default=float("nan")),
        "reconcile_mean_s": statistics.fmean(raw) if raw else float("nan"),
        "bucket_p50_s": bucket_quantile(buckets, 0.5),
        "bucket_p99_s": bucket_quantile(buckets, 0.99),
        "api_requests": requests,
        "api_requests_per_reconcile": requests / max(reconciles, 1),
        "plans": plans,
        "plan_seconds_total": plan_sum,
        "rss_started_mib": round(rss_started, 1),
        "rss_peak_mib": round(rss_peak, 1),
        "rss_end_mib": round(rss_end, 1),
        "cpu_window_s": round(all_placed_s, 1),
        "operator_cpu_s": round(operator_cpu, 1),
        "lab_cpu_s": lab_cpu,
        "bench_cpu_s": round(own, 1),
        "machine_busy_s": round(machine, 1),
        "neighbours_cpu_s": round(machine - operator_cpu - sum(lab_cpu.values()) - own, 1),
        "raw_ms": [round(v * 1000, 1) for v in raw],
    }
    # Neighbours who took more than a quarter of the machine while tenants arrived make the
    # latencies theirs as much as ours: the row says so.
    result["noisy"] = result["neighbours_cpu_s"] > NOISY_SHARE * CORES * all_placed_s
    apiserver = lab_cpu.get("kube-apiserver", float("nan"))
    window = max(all_placed_s, 1e-9)
    header = (
        "tenants × nodes",
        "all Placed",
        "reconcile p50 / p99 (exact)",
        "p50 / p99 (buckets, interpolated)",
        "API req / reconcile",
        "operator RSS: started / peak",
        "CPU s to all Placed: operator / kube-apiserver / all lab / neighbours",
        "load 1-min: start / placed / end",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print(
        f"| {args.tenants} × {args.nodes} | {all_placed_s:.1f} s "
        f"| {result['reconcile_p50_s'] * 1000:.0f} / {result['reconcile_p99_s'] * 1000:.0f} ms "
        f"| {result['bucket_p50_s'] * 1000:.0f} / {result['bucket_p99_s'] * 1000:.0f} ms "
        f"| {result['api_requests_per_reconcile']:.2f} ({requests:.0f} / {reconciles:.0f}) "
        f"| {rss_started:.0f} / {rss_peak:.0f} MiB "
        f"| {operator_cpu:.1f} ({operator_cpu / window:.0%}) / {apiserver:.1f} ({apiserver / window:.0%}) "
        f"/ {sum(lab_cpu.values()):.1f} / {result['neighbours_cpu_s']:.1f} "
        f"| {load_start:.2f} / {load_placed:.2f} / {load_end:.2f} |"
    )
    print(f"lab CPU s: {lab_cpu}; start: {uptime_start}; end: {uptime_end}")
    if result["noisy"]:
        print(
            f"NB: taken under load: neighbours used {result['neighbours_cpu_s']:.0f} CPU s in "
            f"{all_placed_s:.0f} s (> {NOISY_SHARE:.0%} of {CORES} cores); the latencies are not ours alone"
        )
    if not result["raw_complete"]:
        print(f"NB: {len(raw)} raw samples for {reconciles:.0f} reconciles (the ring keeps the newest)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        out.write(json.dumps(result) + "\n")
    print(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
