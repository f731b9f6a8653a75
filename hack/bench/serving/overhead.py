"""Serving overhead: Triton's best throughput against ONNX Runtime called directly, per zoo model.

For every zoo model, in one run, interleaved (hack/bench/noise.py), on the same cores with the
same threads (one intra-op thread per session or instance, batch-1 requests):

* ``ort xN``: N processes calling ONNX Runtime directly, with the shim's session settings
  (ort_direct.py, in the data-plane environment) — no server, no client, no copies;
* ``triton xN``: a real Triton 2.51 with N instances of the ONNX Runtime Python-backend shim,
  ``--clients`` closed-loop HTTP clients (the load generator, in this process);
* ``triton xN +batch D``: the same with Triton's dynamic batching (max batch 8, queue delay D µs);
* ``... shm`` (``--inputs http shm``): the same with the inputs in system shared memory registered
  with Triton, as a caller on the same host can send them (the request names the region).

Per point it records throughput and p95, the mean batch Triton formed (its inference count over
its execution count), and the CPU each part spent per request: the client, the tritonserver
process, and the backend stubs (where ONNX Runtime runs; the stub CPU beyond ``ort``'s CPU per
run is the shim's own cost). Writes results.json and RESULTS.md beside this file (with --name N,
results-N.json and RESULTS-N.md); a run whose rounds spread more than --max-spread is written to
results[-N].rejected.json instead (exit 4).

    .venv/bin/python hack/bench/serving/overhead.py                      # every zoo model (~25 min)
    .venv/bin/python hack/bench/serving/overhead.py --models mobilenet_v2 --rounds 2
    .venv/bin/python hack/bench/serving/overhead.py --delays --inputs http shm --name shm  # vs shared memory
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import noise  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgetenant import zoo  # noqa: E402
from edgetenant.adapters.triton import TritonAdapter  # noqa: E402
from edgetenant.dataplane import local, repository  # noqa: E402
from edgetenant.profiling.loadgen import run_load  # noqa: E402
from edgetenant.render.triton import SHIM_BACKEND, DynamicBatching, TritonModelSpec  # noqa: E402

STUB = "triton_python_b"  # the backend stub's command name, as the kernel truncates it


class Config(NamedTuple):
    runtime: str  # "ort" or "triton"
    instances: int
    delay_us: int | None = None  # Triton dynamic batching's queue delay; None: batching off
    shared_memory: bool = False  # inputs through system shared memory instead of the HTTP body

    @property
    def label(self) -> str:
        batching = "" if self.delay_us is None else f" +batch {self.delay_us}us"
        return f"{self.runtime} x{self.instances}{batching}{' shm' if self.shared_memory else ''}"


def stub_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        if comm == STUB and int(text.rsplit(")", 1)[1].split()[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def cpu_now(server: int, stubs: list[int]) -> tuple[float, float, float]:
    """CPU seconds so far of this process (the client), the tritonserver and its stubs."""
    return time.process_time(), noise.cpu_s(server) or 0.0, sum(noise.cpu_s(p) or 0.0 for p in stubs)


def triton_counts(metrics: str, model: str) -> tuple[float, float]:
    """(inferences, executions) of ``model`` from Triton's metrics text."""
    found = {"nv_inference_count": 0.0, "nv_inference_exec_count": 0.0}
    for family in text_string_to_metric_families(metrics):
        if family.name not in found:
            continue
        for sample in family.samples:  # the parser names a counter's samples <family>_total
            if sample.name == f"{family.name}_total" and sample.labels.get("model") == model:
                found[family.name] += sample.value
    return found["nv_inference_count"], found["nv_inference_exec_count"]


def fetch_metrics(url: str) -> str:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as response:
        return str(response.read().decode())


async def measure_ort(
    env: local.DataplaneEnv, onnx: Path, config: Config, args: argparse.Namespace
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(env.python), str(HERE / "ort_direct.py"), "--model", str(onnx),
        "--processes", str(config.instances), "--duration", str(args.duration), "--warmup", str(args.warmup),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ort_direct.py failed for {onnx} ({config.label})")
    result = json.loads(out)
    return {
        "throughput": result["throughput"],
        "p95_ms": result["p95_ms"],
        "errors": 0,
        "ort_cpu_ms_per_request": 1000 * result["cpu_s"] / max(result["runs"], 1),
    }


async def measure_triton(
    triton: local.TritonProcess, admin: TritonAdapter, served: str, config: Config, args: argparse.Namespace
) -> dict[str, Any]:
    batching = (
        None if config.delay_us is None else DynamicBatching(max_queue_delay_microseconds=config.delay_us)
    )
    spec = TritonModelSpec(
        name=served,
        backend=SHIM_BACKEND,
        max_batch_size=8,
        instance_count=config.instances,
        threads_per_instance=1,
        dynamic_batching=batching,
    )
    await admin.apply_spec(spec)
    await asyncio.sleep(1)  # the new stubs settle
    stubs = stub_pids(triton.pid)
    before_metrics = triton_counts(fetch_metrics(triton.metrics_url), served)
    before = cpu_now(triton.pid, stubs)
    result = await run_load(
        triton.url,
        served,
        concurrency=args.clients,
        duration_s=args.duration,
        warmup_s=args.warmup,
        shared_memory=config.shared_memory,
    )
    after = cpu_now(triton.pid, stubs)
    after_metrics = triton_counts(fetch_metrics(triton.metrics_url), served)
    # CPU and counts cover the warm-up too: divide by every request sent in that time.
    inferences = after_metrics[0] - before_metrics[0]
    executions = after_metrics[1] - before_metrics[1]
    per_request = 1000 / max(inferences, 1)
    return {
        "throughput": result.throughput,
        "p95_ms": result.p95_ms,
        "errors": result.errors,
        "mean_batch": inferences / executions if executions else None,
        "client_cpu_ms_per_request": (after[0] - before[0]) * per_request,
        "server_cpu_ms_per_request": (after[1] - before[1]) * per_request,
        "stub_cpu_ms_per_request": (after[2] - before[2]) * per_request,
    }


def configs_for(args: argparse.Namespace) -> list[Config]:
    configs = [Config("ort", n) for n in range(1, args.max_instances + 1)]
    for shared in (False, True):
        if ("shm" if shared else "http") not in args.inputs:
            continue
        for delay in [None, *args.delays]:
            configs += [Config("triton", n, delay, shared) for n in range(1, args.max_instances + 1)]
    return configs


async def profile_model(
    name: str, env: local.DataplaneEnv, triton: local.TritonProcess, args: argparse.Namespace
) -> dict[str, Any]:
    served = f"overhead-{name.replace('_', '-')}"
    onnx = zoo.ensure_model(name)
    repository.write_model(
        triton.model_repository,
        TritonModelSpec(name=served, backend=SHIM_BACKEND, threads_per_instance=1),
        onnx,
    )
    points: dict[str, list[dict[str, Any]]] = {}
    configs = configs_for(args)
    async with TritonAdapter(triton.url) as admin:
        for round_index, config in noise.interleaved(configs, args.rounds):
            if config.runtime == "ort":
                point = await measure_ort(env, onnx, config, args)
            else:
                point = await measure_triton(triton, admin, served, config, args)
            point["load1"] = noise.load1()
            points.setdefault(config.label, []).append(point)
            batch = f" batch {point['mean_batch']:.2f}" if point.get("mean_batch") else ""
            print(
                f"  {name} round {round_index + 1} {config.label:24} {point['throughput']:7.1f}/s "
                f"p95 {point['p95_ms']:7.1f} ms{batch} (load {point['load1']:.2f})",
                flush=True,
            )
        await admin.unload_model(served)
    return {
        "configs": [c._asdict() | {"label": c.label} for c in configs],
        "points": points,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(results: dict[str, Any]) -> dict[str, dict[str, noise.Spread]]:
    return {
        model: {
            label: noise.spread([r["throughput"] for r in runs]) for label, runs in entry["points"].items()
        }
        for model, entry in results["models"].items()
    }


def best(
    spreads: dict[str, noise.Spread], prefix: str, batching: bool | None = None, shared: bool = False
) -> tuple[str, noise.Spread] | None:
    """The best median among ``prefix`` points (with or without batching, over HTTP or shared memory)."""
    chosen = {
        label: s
        for label, s in spreads.items()
        if label.startswith(prefix)
        and (batching is None or ("+batch" in label) == batching)
        and label.endswith(" shm") == shared
    }
    if not chosen:
        return None
    label = max(chosen, key=lambda key: chosen[key].median)
    return label, chosen[label]


def render_report(results: dict[str, Any]) -> str:
    spreads = summarize(results)
    settings = results["settings"]
    lines = [
        "# Serving overhead: Triton vs ONNX Runtime called directly",
        "",
        "Generated by `hack/bench/serving/overhead.py`; raw figures in "
        f"`{results.get('name', 'results')}.json`.",
        "",
        f"Measured {results['measured_at']} on {results['machine']['cpu']} "
        f"({results['machine']['cores']} cores), "
        f"1-minute load average {results['load1_min']:.2f}–{results['load1_max']:.2f} over the run. "
        f"{settings['rounds']} interleaved rounds of {settings['duration']} s per point (after "
        f"{settings['warmup']} s of warm-up), medians with the rounds' min–max; Triton points with "
        f"{settings['clients']} closed-loop HTTP clients. Largest spread of any point: "
        f"{results['max_spread']:.0%} (published at most {settings['max_spread']:.0%})"
        + (
            f" — **noisy**: {'; '.join(results.get('noisy_points', []))}; published with --force."
            if results.get("noisy")
            else "."
        ),
        "",
    ]
    configs = next(iter(results["models"].values()))["configs"]
    labels = [c["label"] for c in configs]
    header = "| model | ORT direct, best | Triton, best without batching | ratio |"
    if any(c["delay_us"] is not None for c in configs):
        header += " Triton, best with batching | mean batch | ratio | batching's gain |"
    if any(c.get("shared_memory") for c in configs):
        header += " Triton, inputs in shared memory | ratio | shared memory's gain |"
    lines += [header, "|---|" + "---:|" * (header.count("|") - 2)]
    for model, by_label in spreads.items():
        found = best(by_label, "ort"), best(by_label, "triton", batching=False)
        assert found[0] and found[1], "every run has ORT and HTTP points (main() insists on --inputs http)"
        (ort_label, ort), (plain_label, plain) = found
        row = (
            f"| {model} | {ort.describe()} ({ort_label}) | {plain.describe()} "
            f"({plain_label.removeprefix('triton ')}) | {plain.median / ort.median:.0%} |"
        )
        if found := best(by_label, "triton", batching=True):
            batch_label, batched = found
            mean_batch = median_of(results["models"][model]["points"][batch_label], "mean_batch")
            row += (
                f" {batched.describe()} ({batch_label.removeprefix('triton ')}) | {mean_batch or 1:.2f} "
                f"| {batched.median / ort.median:.0%} | {batched.median / plain.median:.2f}× |"
            )
        if found := best(by_label, "triton", batching=False, shared=True):
            shm_label, shm = found
            row += (
                f" {shm.describe()} ({shm_label.removeprefix('triton ')}) | {shm.median / ort.median:.0%} "
                f"| {shm.median / plain.median:.2f}× |"
            )
        lines.append(row)
    lines += [
        "",
        "CPU per request at one instance, batching off (ms; median of the rounds): what the client (the "
        "Python load generator, on the same cores), the tritonserver process and the backend stubs spent, "
        "against ONNX Runtime's own CPU per run called directly.",
        "",
        "| model | ORT direct | stubs (ORT + shim) | shim's share (stubs − ORT) | tritonserver | client |"
        + (" tritonserver, shared memory | client, shared memory |" if "triton x1 shm" in labels else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if "triton x1 shm" in labels else ""),
    ]
    for model, entry in results["models"].items():
        points = entry["points"]
        ort_cpu = median_of(points["ort x1"], "ort_cpu_ms_per_request") or 0.0
        stub = median_of(points["triton x1"], "stub_cpu_ms_per_request") or 0.0
        row = f"| {model} | {ort_cpu:.2f} | {stub:.2f} | {stub - ort_cpu:.2f} |"
        for label in ("triton x1", "triton x1 shm") if "triton x1 shm" in points else ("triton x1",):
            server = median_of(points[label], "server_cpu_ms_per_request") or 0.0
            client = median_of(points[label], "client_cpu_ms_per_request") or 0.0
            row += f" {server:.2f} | {client:.2f} |"
        lines.append(row)
    lines += ["", "Every point (req/s, median (min–max)):", ""]
    lines += ["| model | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for model, by_label in spreads.items():
        lines.append(f"| {model} | " + " | ".join(by_label[label].describe() for label in labels) + " |")
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = local.find_dataplane_env()
    results: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": noise.machine(),
        "settings": {
            key: getattr(args, key)
            for key in (
                "rounds",
                "duration",
                "warmup",
                "clients",
                "max_instances",
                "delays",
                "inputs",
                "max_spread",
            )
        },
        "name": args.name,
        "models": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="edgetenant-overhead-"))
    (workdir / "models").mkdir()
    with local.start_triton(workdir / "models", log_path=workdir / "tritonserver.log") as triton:
        for name in args.models:
            print(f"{name}:", flush=True)
            results["models"][name] = await profile_model(name, env, triton, args)
    loads = [p["load1"] for e in results["models"].values() for runs in e["points"].values() for p in runs]
    results["load1_min"], results["load1_max"] = min(loads), max(loads)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(zoo.ZOO), choices=list(zoo.ZOO))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients per Triton point")
    parser.add_argument("--max-instances", type=int, default=2, help="1..N processes or instances")
    parser.add_argument(
        "--delays", type=int, nargs="*", default=[0, 2000], help="dynamic batching queue delays (µs) to try"
    )
    parser.add_argument(
        "--inputs",
        nargs="+",
        choices=["http", "shm"],
        default=["http"],
        help="how Triton points send inputs: in the HTTP body, and/or through system shared memory",
    )
    noise.add_arguments(parser)
    parser.add_argument("--name", default="results", help="results file stem (RESULTS.md is named to match)")
    parser.add_argument("--report-only", action="store_true", help="re-render the report from its JSON")
    args = parser.parse_args()
    if "http" not in args.inputs:
        parser.error(
            "--inputs must include http: the HTTP points are what the other points are compared with"
        )
    args.name = "results" if args.name == "results" else f"results-{args.name}"
    results_path = HERE / f"{args.name}.json"
    report_path = HERE / f"{args.name.replace('results', 'RESULTS')}.md"
    if args.report_only:
        report_path.write_text(render_report(json.loads(results_path.read_text())))
        return 0
    if noise.too_busy(args):
        return noise.EXIT_BUSY
    results = asyncio.run(run(args))
    spreads = {f"{m} {label}": s for m, by in summarize(results).items() for label, s in by.items()}
    if noise.reject(results, spreads, args, HERE / f"{args.name}.rejected.json"):
        return noise.EXIT_NOISY
    results_path.write_text(json.dumps(results, indent=2))
    report_path.write_text(render_report(results))
    print(render_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
