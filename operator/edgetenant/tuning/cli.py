"""``edgetenant tune``: the operator's concurrency loop, standalone, against any Triton.

Reads the model's live config from the first Triton, then every interval reads Prometheus,
decides, and loads the new instance count into every Triton given; prints each decision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgetenant.api.models import MAX_CONCURRENCY, BatchingMode
from edgetenant.cli import bounded
from edgetenant.tuning.data import Action, Mode, TunerConfig
from edgetenant.tuning.loop import TickResult, TuningLoop, render_from_config, target_for

_STYLE = {
    Action.SCALE_UP: "green",
    Action.SCALE_DOWN: "cyan",
    Action.STEP_BACK: "yellow",
    Action.BACK_OFF: "red",
    Action.CLAMP: "magenta",
    Action.FIXED: "magenta",
    Action.ENABLE_BATCHING: "green",
    Action.DISABLE_BATCHING: "yellow",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgetenant tune", description=__doc__)
    p.add_argument("--triton", action="append", required=True, metavar="URL", help="Triton HTTP URL (repeat)")
    p.add_argument(
        "--control",
        action="append",
        metavar="URL",
        help="Triton gRPC URL for the changes, grpc://host:port, one per --triton (default: the HTTP "
        "URLs, whose loads hold up that Triton's HTTP inference until they return)",
    )
    p.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus URL scraping those Tritons")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument(
        "--interval",
        type=bounded(float, 1, 3600, " s"),
        default=10.0,
        metavar="S",
        help="control interval (default 10)",
    )
    p.add_argument(
        "--window",
        type=bounded(float, 1, 3600, " s"),
        metavar="S",
        help="rate window; must hold >= 2 scrapes and fit in the interval (default: interval - 1)",
    )
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="extra PromQL label match")
    p.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.AUTO.value,
        help="Auto: tune between --min and --max; Fixed: hold --value (default Auto)",
    )
    instances = bounded(int, 1, MAX_CONCURRENCY)
    p.add_argument("--value", type=instances, metavar="N", help="instance count in Fixed mode")
    p.add_argument("--min", type=instances, default=1, metavar="N", help="fewest instances (default 1)")
    p.add_argument("--max", type=instances, default=8, metavar="N", help="most instances (default 8)")
    p.add_argument(
        "--initial", type=instances, default=1, metavar="N", help="instances to start with (applied at start)"
    )
    p.add_argument(
        "--slo-p95-ms", type=bounded(float, 0.001, 3.6e6, " ms"), metavar="MS", help="p95 latency SLO in ms"
    )
    p.add_argument(
        "--ceiling",
        type=bounded(int, 2, MAX_CONCURRENCY),
        metavar="N",
        help="a concurrency known to fail (e.g. from a ModelProfile)",
    )
    p.add_argument(
        "--batching",
        choices=sorted({b.value for b in BatchingMode}),
        default=BatchingMode.DISABLED.value,
        help="Triton dynamic batching (default Disabled)",
    )
    p.add_argument(
        "--dead-band",
        type=bounded(float, 0, 1),
        default=0.05,
        metavar="F",
        help="a step must gain more than this fraction (default 0.05)",
    )
    p.add_argument(
        "--down-cooldown",
        type=bounded(float, 0, 86400, " s"),
        default=60.0,
        metavar="S",
        help="wait this long after a change before stepping down (default 60)",
    )
    p.add_argument(
        "--reprobe-after",
        type=bounded(float, 0, 86400 * 7, " s"),
        default=900.0,
        metavar="S",
        help="try one step up again after this long at the knee (default 900)",
    )
    p.add_argument(
        "--probe-readings",
        type=bounded(int, 1, 10),
        default=1,
        metavar="N",
        help="readings per trial step (default 1; 2 on noisy hosts)",
    )
    p.add_argument("--no-apply-initial", action="store_true", help="keep the running config at start")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument(
        "--max-intervals", type=bounded(int, 1, 10**7), metavar="N", help="stop after N intervals"
    )
    stop.add_argument(
        "--duration", type=bounded(float, 1, 86400 * 365, " s"), metavar="S", help="stop after S seconds"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per decision")
    p.add_argument(
        "--state-out", type=Path, metavar="FILE", help="write the final state and learned points here (JSON)"
    )
    return p


def _labels(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--label {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


async def _run(args: argparse.Namespace, console: Console) -> int:
    from edgetenant.adapters.triton import TritonAdapter  # noqa: PLC0415  (lazy: tritonclient is heavy)

    async with TritonAdapter(args.triton[0]) as triton:
        live = await triton.model_config(args.model)
    max_batch = int(live.get("max_batch_size", 0))
    config = TunerConfig(
        mode=Mode(args.mode),
        value=args.value,
        min=args.min,
        max=args.max,
        initial=args.initial,
        slo_p95_ms=args.slo_p95_ms,
        ceiling=args.ceiling,
        batching=BatchingMode(args.batching),
        max_batch_size=max_batch,
        dead_band=args.dead_band,
        down_cooldown_s=args.down_cooldown,
        reprobe_after_s=args.reprobe_after,
        probe_readings=args.probe_readings,
        max_signal_age_s=max(60.0, 3 * args.interval),
    )
    if args.control and len(args.control) != len(args.triton):
        raise SystemExit("--control: give one per --triton")
    window = args.window or max(args.interval - 1.0, 2.0)
    target = target_for(
        model=args.model,
        endpoints=args.control or args.triton,
        prometheus_url=args.prometheus,
        render_config=render_from_config(live),
        labels=_labels(args.label),
        window_s=window,
    )
    loop = TuningLoop(target=target, config=config, interval_s=args.interval)

    def show(result: TickResult) -> None:
        d = result.decision
        if args.json:
            print(json.dumps({**d.summary(), "target": d.target, "batching": d.batching}), flush=True)
            return
        style = _STYLE.get(d.action, "")
        sig = d.signals
        numbers = (
            f"{sig.throughput:7.1f}/s q{sig.queue_ms:6.1f} c{sig.compute_ms:6.1f}"
            + (f" p95 {sig.latency_p95_ms:6.1f}" if sig.latency_p95_ms is not None else "")
            if sig
            else "no metrics"
        )
        # Text, not markup: reasons may hold brackets.
        console.print(
            Text.assemble(
                f"{d.at:%H:%M:%S} ",
                (f"{d.action.value:<15}", style),
                f" {d.previous}->{d.target}{' +batch' if d.batching else ''}  {numbers}  {d.reason}",
            )
        )

    console.print(
        f"tuning {args.model} on {', '.join(args.triton)} every {args.interval:g}s "
        f"(window {window:g}s, {config.mode.value} {config.min}..{config.max})"
    )
    await loop.run(
        intervals=args.max_intervals,
        duration_s=args.duration,
        on_tick=show,
        apply_initial=not args.no_apply_initial,
    )
    final = loop.state
    if final is not None and not args.json:
        table = Table(title=f"learned points for {args.model}")
        for column in ("concurrency", "batching", "throughput/s", "p95 ms", "readings"):
            table.add_column(column, justify="right")
        for p in sorted(final.points, key=lambda p: (p.batching, p.concurrency)):
            table.add_row(
                str(p.concurrency),
                "on" if p.batching else "off",
                f"{p.throughput:.1f}",
                "-" if p.latency_p95_ms is None else f"{p.latency_p95_ms:.1f}",
                str(p.samples),
            )
        console.print(table)
        console.print(f"final: {final.current} instance(s), knee {final.knee}, ceiling {final.ceiling}")
    if args.state_out and final is not None:
        args.state_out.write_text(
            json.dumps({"state": final.to_status(), "profilePoints": final.profile_points()}, indent=2)
        )
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=args.json)
    # A failure (Triton or Prometheus not answering, a refused config) propagates to the dispatcher
    # (edgetenant.cli), which prints it as one line.
    return asyncio.run(_run(args, console))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
