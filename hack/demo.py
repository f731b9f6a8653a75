"""`make demo`: the local edge lab, the operator, a multi-tenant scenario, real inferences, a summary.

1. Set-up: the lab (builds the Kubernetes binaries on the first run), the CRDs, classes and operator.
2. The research-like scenario (hack/demo/scenario.yaml) is applied; the operator places every tenant.
3. Real load goes to the tenants on edge-local (this machine's real Triton): two on ONNX Runtime and,
   as lab stand-ins for an NCS2 and an EdgeTPU, one on OpenVINO and one on TFLite (hack/demo/standins.yaml);
   the operator tunes their concurrency from Prometheus while a live table shows placement,
   concurrency, throughput, p95.
4. The world changes: a Jetson goes away (its tenants are re-placed), load doubles on one tenant.
5. A summary, a plot (out/demo/demo.png), and how to explore and stop the lab.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml
from matplotlib.ticker import MaxNLocator
from rich.console import Console
from rich.live import Live
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from edgetenant.profiling.loadgen import run_load  # noqa: E402
from tests.lab import InClusterOperator, Lab, install, wait_for  # noqa: E402

NAMESPACE = "edge-demo"
LOCAL = ("mobilenet-v2-local", "resnet18-local")
# Stand-in tenants (hack/demo/standins.yaml) -> the zoo export each serves.
STANDINS = {"mobilenet-v2-ncs2-standin": "openvino", "mobilenet-v2-edgetpu-standin": "tflite"}
LOST_NODE = "jetson-nano-1"
console = Console(highlight=False, width=max(150, Console().width))


@dataclass
class Sample:
    t: float
    tenant: str
    client_throughput: float
    client_p95_ms: float
    concurrency: int


@dataclass
class DemoRun:
    lab: Lab
    out: Path
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    local: list[str] = field(default_factory=lambda: list(LOCAL))  # the tenants on edge-local
    clients: dict[str, int] = field(
        default_factory=lambda: {"mobilenet-v2-local": 4, "resnet18-local": 2} | dict.fromkeys(STANDINS, 2)
    )

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def tenants(self) -> list[dict[str, Any]]:
        return list(self.lab.get_json("itn", "-n", NAMESPACE)["items"])

    def table(self, phase: str) -> Table:
        table = Table(title=f"[bold]{phase}[/]  (t={self.elapsed():.0f}s)", expand=False)
        for column in (
            "tenant",
            "class",
            "node",
            "conc. cur/target",
            "thr. req/s",
            "p95 ms",
            "Placed",
            "Ready",
            "last decision",
        ):
            table.add_column(column)
        latest = {s.tenant: s for s in self.samples}
        for item in self.tenants():
            status = item.get("status") or {}
            target = status.get("targetPlacement") or {}
            conc = status.get("concurrency") or {}
            conds = {c["type"]: c for c in status.get("conditions", [])}
            observed = status.get("observed") or {}
            name = item["metadata"]["name"]
            sample = latest.get(name)
            thr = (
                f"{sample.client_throughput:.1f}"
                if sample
                else (f"{observed['throughput']:.1f}" if observed.get("throughput") else "-")
            )
            p95 = f"{sample.client_p95_ms:.0f}" if sample else "-"
            placed = conds.get("Placed", {})
            ready = conds.get("Ready", {})
            decision = (status.get("lastDecision") or {}).get("action", "")
            table.add_row(
                name,
                target.get("acceleratorClass", "-"),
                target.get("node", "-"),
                f"{conc.get('current', '-')}/{conc.get('target', '-')}",
                thr,
                p95,
                "[green]True[/]"
                if placed.get("status") == "True"
                else f"[red]{placed.get('reason', '…')}[/]",
                "[green]True[/]"
                if ready.get("status") == "True"
                else f"[yellow]{ready.get('reason', '…')}[/]",
                decision,
            )
        return table


def pod_ip(lab: Lab, tenant: str) -> str | None:
    pods = lab.get_json("pods", "-n", NAMESPACE, "-l", f"edgetenant.io/tenant={tenant}")["items"]
    for pod in pods:
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
        )
        if ready and pod["status"].get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            return str(pod["status"]["podIP"])
    return None


async def load_phase(run: DemoRun, phase: str, seconds: float, live: Live) -> None:
    """Closed-loop load on each local tenant in 5-second windows; one sample per window."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:

        async def window(tenant: str) -> None:
            ip = await asyncio.to_thread(pod_ip, run.lab, tenant)
            if ip is None:
                return
            model = tenant
            try:
                result = await run_load(
                    f"http://{ip}:8000", model, concurrency=run.clients[tenant], duration_s=5.0
                )
            except Exception as error:  # a pod moving or restarting: show it, keep going
                console.log(f"[yellow]{tenant}: load window failed: {error}[/]")
                return
            item = await asyncio.to_thread(run.lab.get_json, "itn", tenant, "-n", NAMESPACE)
            concurrency = int(((item.get("status") or {}).get("concurrency") or {}).get("current") or 0)
            run.samples.append(Sample(run.elapsed(), tenant, result.throughput, result.p95_ms, concurrency))

        await asyncio.gather(*(window(t) for t in run.local))
        live.update(await asyncio.to_thread(run.table, phase))


def plot(run: DemoRun, path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for offset, tenant in enumerate(run.local):
        points = [s for s in run.samples if s.tenant == tenant]
        if not points:
            continue
        top.plot([p.t for p in points], [p.client_throughput for p in points], marker="o", label=tenant)
        # A small offset keeps two tenants at the same count apart.
        counts = [p.concurrency + 0.04 * offset for p in points]
        bottom.step([p.t for p in points], counts, where="post", marker=".", label=tenant)
    marks: dict[float, str] = {}
    for t, label in run.marks:
        key = next((k for k in marks if abs(k - t) < 3), t)
        marks[key] = f"{marks[key]}, {label}" if key in marks else label
    for t, label in marks.items():
        for axis in (top, bottom):
            axis.axvline(t, color="grey", linestyle="--", linewidth=0.8)
        top.annotate(label, (t, top.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=8)
    top.set_ylabel("throughput (req/s, measured by the client)")
    bottom.set_ylabel("Triton instances (status.concurrency.current)")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))  # instance counts are whole numbers
    bottom.set_xlabel("seconds since the scenario was applied")
    top.legend()
    bottom.legend()
    top.set_title("edgetenant demo: live concurrency tuning on edge-local (real Triton, real Prometheus)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def apply_standins(lab: Lab) -> list[str]:
    """The stand-in tenants whose model this machine can export (OpenVINO's converter installs with the
    zoo extra; TFLite's needs Python 3.12+, see hack/zoo/): applied, and named. Any other is said and
    left out."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before the converters load ONNX Runtime
    from edgetenant import zoo  # noqa: PLC0415  (the converters load only here)
    from edgetenant.zoo.export import ConverterUnavailable  # noqa: PLC0415

    documents = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((REPO / "hack" / "demo" / "standins.yaml").read_text())
        if d
    }
    applied = []
    for tenant, model_format in STANDINS.items():
        try:
            with console.status(f"  exporting the zoo's mobilenet_v2 to {model_format} for {tenant}"):
                zoo.ensure_model("mobilenet_v2", format=model_format)
        except ConverterUnavailable as why:
            console.print(f"  [yellow]{tenant} left out: {why}[/]")
            continue
        lab.apply(documents[tenant])
        applied.append(tenant)
    if applied:
        console.print(
            f"  stand-ins on edge-local (this CPU, not the devices they play): {', '.join(applied)}"
        )
    return applied


def restore_topology(lab: Lab) -> None:
    """Re-create any topology node a previous demo run removed."""
    subprocess.run(
        [sys.executable, str(REPO / "hack" / "lab" / "lab.py"), "nodes"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_demo(args: argparse.Namespace) -> int:
    out = REPO / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]edgetenant demo")
    console.print(
        "Step 1/5: the local edge lab "
        "(the first run builds Kubernetes, containerd and Prometheus from source: about 25 min on 2 cores)"
    )
    subprocess.run([sys.executable, str(REPO / "hack" / "lab" / "lab.py"), "up"], check=True)
    lab = Lab.from_env()
    assert lab is not None, "the lab did not come up"
    restore_topology(lab)
    console.print(
        "Step 2/5: CRDs, AcceleratorClasses and the operator's RBAC (kubectl apply -k manifests/overlays/dev)"
    )
    install(lab)
    lab.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s")
    with console.status("  the operator: scaling its Deployment up on edge-local (image from make images)"):
        operator = InClusterOperator(
            lab, {"EDGETENANT_TUNE_INTERVAL_S": "6", "EDGETENANT_RESYNC_S": "3"}
        ).start()
    console.print(
        f"  operator: in the cluster from its image, as the edgetenant-operator ServiceAccount "
        f"(kubectl -n {operator.NAMESPACE} logs deploy/{operator.NAME})"
    )

    console.print("Step 3/5: the scenario: 7 image-classification tenants (hack/demo/scenario.yaml)")
    lab.kubectl("apply", "-f", str(REPO / "hack" / "demo" / "scenario.yaml"))
    run = DemoRun(lab, out)
    run.local += apply_standins(lab)
    run.marks.append((0.0, "scenario applied"))
    with Live(run.table("placing"), console=console, refresh_per_second=2) as live:

        def local_ready() -> bool:
            live.update(run.table("placing and loading models"))
            return all(pod_ip(lab, t) for t in run.local) and all(
                any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (i.get("status") or {}).get("conditions", [])
                )
                for i in run.tenants()
                if i["metadata"]["name"] in run.local
            )

        wait_for(
            "the tenants on edge-local to be Ready (Triton loaded the models)",
            local_ready,
            timeout=300,
            interval=2,
        )
        run.marks.append((run.elapsed(), "load starts"))
        console.print("Step 4/5: real load on edge-local; the operator tunes concurrency from Prometheus")
        asyncio.run(load_phase(run, "steady load: the tuning loop climbs", args.phase_s, live))
        run.marks.append((run.elapsed(), f"{LOST_NODE} lost"))
        lab.kubectl("delete", "node", LOST_NODE)
        run.clients["mobilenet-v2-local"] *= 2
        run.marks.append((run.elapsed(), "load x2 on mobilenet-v2"))
        asyncio.run(load_phase(run, f"{LOST_NODE} is gone, mobilenet-v2 load doubled", args.phase_s, live))
        live.update(run.table("final"))

    console.print("\nStep 5/5: summary")
    final = run.tenants()
    events = lab.kubectl(
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector=source=edgetenant",
        "--sort-by=.lastTimestamp",
        "-o",
        "custom-columns=TIME:.lastTimestamp,OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
    ).stdout
    summary = Table(title="Where every tenant ended up")
    for column in ("tenant", "class", "node", "Ready", "concurrency"):
        summary.add_column(column, no_wrap=True)
    summary.add_column("why", overflow="fold")  # the whole reason, wrapped between words
    for item in final:
        status = item.get("status") or {}
        target = status.get("targetPlacement") or {}
        conds = {c["type"]: c for c in status.get("conditions", [])}
        ready = conds.get("Ready", {})
        conc = status.get("concurrency") or {}
        summary.add_row(
            item["metadata"]["name"],
            target.get("acceleratorClass", "-"),
            target.get("node", "-"),
            ready.get("status", "-"),
            f"{conc.get('current', '-')}/{conc.get('target', '-')} (ceiling {conc.get('ceiling') or '-'})",
            ready.get("message") or "",
        )
    console.print(summary)
    for tenant in run.local:
        points = [s for s in run.samples if s.tenant == tenant]
        if points:
            first, best = points[0], max(points, key=lambda s: s.client_throughput)
            console.print(
                f"  {tenant}: {first.client_throughput:.1f} req/s at {first.concurrency} instance(s) → "
                f"best {best.client_throughput:.1f} req/s at {best.concurrency} "
                f"(p95 {best.client_p95_ms:.0f} ms)"
            )
    (out / "events.txt").write_text(events)
    (out / "samples.json").write_text(json.dumps([s.__dict__ for s in run.samples], indent=1))
    plot(run, out / "demo.png")
    console.print(f"\nEvents the operator posted: {out / 'events.txt'} (last lines below)")
    console.print("\n".join(events.strip().splitlines()[-10:]))
    console.rule("[bold]explore")
    console.print(f"  plot:        {out / 'demo.png'}")
    console.print(f'  tenants:     eval "$(hack/lab/lab env)"; kubectl get itn -n {NAMESPACE} -o wide')
    console.print(f"  one tenant:  kubectl describe itn mobilenet-v2-local -n {NAMESPACE}")
    console.print(f"  Prometheus:  {lab.prometheus_url}/graph?g0.expr=rate(nv_inference_count[30s])")
    console.print(f"  plan:        .venv/bin/edgetenant plan --kubeconfig {lab.kubeconfig}")
    console.rule("[bold]still running")
    console.print(
        f"  the lab ({lab.dir}): API server, Prometheus, the nodes; the operator's pod on edge-local "
        f"(tuning); {len(final)} tenants in namespace {NAMESPACE}, holding their devices"
    )
    console.print("  stop all of it:  hack/lab/lab down   (make test runs in a lab of its own either way)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--phase-s", type=float, default=float(os.environ.get("DEMO_PHASE_S", "75")))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
