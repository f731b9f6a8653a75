"""The concurrency loop against a real Triton, a real Prometheus and the real load generator.

One scenario (module fixture) serves MobileNet V2 on the ORT shim: a brute-force sweep of the
static instance counts under a closed loop of clients, then the loop from one instance under
the same load (convergence, then a steady period). Other tests: a light load (it comes down),
Prometheus stopped (it holds), a load Triton refuses (it backs off). Short intervals (4 s,
Prometheus scraping every second) keep the tier fast; the issue's 5-minute steady run lives in
hack/bench/tuning. Nothing here asserts on time, nor on how close the loop gets to the brute-force
best: that is a performance figure, measured by hack/bench/tuning with paired rounds (BENCHMARKS.md
section 5). On two shared cores the sweep cannot tell 2 from 3 instances (the same count measured
twice differs by up to 20 %), and a change made under load takes 3-50 s, so a single short scenario
judged against 95 % failed in CI on a machine that had nothing wrong with the loop. The tests assert
what the loop does: it probes up under a load that queues, judges every probe with metrics, applies
what it decides, never ends worse than the default, and holds still once settled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgetenant.adapters.triton import TritonAdapter, TritonControl
from edgetenant.dataplane import local
from edgetenant.profiling.loadgen import LoadResult, run_load
from edgetenant.render.triton import TritonModelSpec
from edgetenant.tuning import Action, Decision, TunerConfig, TunerState, initial_state
from edgetenant.tuning.loop import TuningLoop, TuningTarget, render_from_spec, target_for

Run = Callable[[Coroutine[Any, Any, Any]], Any]

INTERVAL_S = 4.0
WINDOW_S = 3.0  # interval - scrape interval: each reading starts after the last change
CLIENTS = 6
MAX_INSTANCES = 3
CONVERGE = 10  # intervals allowed to reach 95 % of the brute-force best
STEADY = 10  # intervals of steady load after that (~40 s; the benchmark runs 5 minutes)
LIGHT_RATE = 3.0  # req/s: a fraction of what one MobileNet V2 instance serves here
SWEEP_ORDER = (1, 2, 3, 3, 2, 1)  # there and back: a drifting machine affects every count alike
SWEEP_POINT_S = 5.0


def config(**overrides: Any) -> TunerConfig:
    # Two readings per trial step: this shared 2-core machine is noisy.
    defaults: dict[str, Any] = {
        "max": MAX_INSTANCES,
        "down_window": 2,
        "down_cooldown_s": 8.0,
        "probe_readings": 2,
    }
    return TunerConfig(**(defaults | overrides))


async def set_instances(triton: local.TritonProcess, spec: TritonModelSpec, instances: int) -> None:
    async with TritonControl(triton.control_url) as control:
        await control.load_model(spec.name, config=render_from_spec(spec)(instances, False))


async def tick_every(
    state: TunerState, target: TuningTarget, count: int, decisions: list[Decision]
) -> TunerState:
    """``count`` control intervals of the loop ``edgetenant tune`` runs, appending each decision."""
    loop = TuningLoop(target=target, config=state.config, interval_s=INTERVAL_S, state=state)
    await loop.run(intervals=count, apply_initial=False, on_tick=lambda r: decisions.append(r.decision))
    assert loop.state is not None
    return loop.state


@dataclass
class Scenario:
    sweep: dict[int, float]  # mean of the there-and-back measurements per instance count
    spread: float  # the sweep's own repeatability: worst |first - second| / mean over the counts
    decisions: list[Decision] = field(default_factory=list)
    live_instances: int = 0  # Triton's own instance count once the loop has run

    @property
    def best(self) -> float:
        return max(self.sweep.values())


@pytest.fixture(scope="module")
def scenario(
    serve: Callable[..., TritonModelSpec],
    triton: local.TritonProcess,
    prometheus: local.PrometheusProcess,
    run: Run,
) -> Scenario:
    spec = serve("tune-mobilenet", "mobilenet_v2", instance_count=1)

    async def go() -> Scenario:
        await run_load(triton.url, spec.name, concurrency=2, duration_s=3.0)  # warm ORT up
        samples: dict[int, list[float]] = {}
        for instances in SWEEP_ORDER:  # the brute-force search, as the profiler does it
            await set_instances(triton, spec, instances)
            result = await run_load(
                triton.url, spec.name, concurrency=CLIENTS, duration_s=SWEEP_POINT_S, warmup_s=1.0
            )
            assert result.errors == 0, result.error_samples
            samples.setdefault(instances, []).append(result.throughput)
        scenario = Scenario(
            sweep={c: statistics.fmean(v) for c, v in samples.items()},
            spread=max(abs(v[0] - v[-1]) / statistics.fmean(v) for v in samples.values()),
        )

        await set_instances(triton, spec, 1)
        target = target_for(
            model=spec.name,
            endpoints=[triton.control_url],
            prometheus_url=prometheus.url,
            render_config=render_from_spec(spec),
            window_s=WINDOW_S,
        )
        state = initial_state(config()).model_copy(update={"last_change_at": datetime.now(UTC)})
        # The load lasts as long as the loop runs: on a busy machine its intervals (each change reloads
        # the model) outlast their nominal length, and a load that stopped on a clock would read as a drop.
        loop_done = asyncio.Event()

        async def heavy_load() -> list[LoadResult]:
            segments: list[LoadResult] = []
            while not loop_done.is_set():
                segments.append(
                    await run_load(triton.url, spec.name, concurrency=CLIENTS, duration_s=INTERVAL_S)
                )
            return segments

        load = asyncio.create_task(heavy_load())
        await asyncio.sleep(0.5)
        await tick_every(state, target, CONVERGE + STEADY, scenario.decisions)
        loop_done.set()
        for segment in await load:
            assert segment.errors == 0, segment.error_samples  # live changes lose no request
        async with TritonAdapter(triton.url) as admin:
            live = await admin.model_config(spec.name)
        scenario.live_instances = int(live["instance_group"][0]["count"])
        return scenario

    result: Scenario = run(go())
    return result


def test_probes_up_under_load_judges_each_probe_and_applies_its_choice(scenario: Scenario) -> None:
    trail = [
        (d.action.value, d.target, d.signals and round(d.signals.throughput, 1), d.reason)
        for d in scenario.decisions
    ]
    print("sweep:", scenario.sweep, "spread:", round(scenario.spread, 3))  # shown when it fails
    print(*trail, sep="\n")
    converging = scenario.decisions[:CONVERGE]
    probes = [i for i, d in enumerate(converging) if d.action is Action.SCALE_UP]
    assert probes, "six clients queue on one instance: the loop should try a second one"
    for i in probes:  # every probe is judged by a later reading, never left standing unseen
        later = scenario.decisions[i + 1 :]
        assert any(d.metrics_available and d.signals is not None for d in later), trail[i]
    assert all(1 <= d.target <= MAX_INSTANCES for d in scenario.decisions)
    assert scenario.live_instances == scenario.decisions[-1].target  # applied, not only decided


def test_never_settles_worse_than_the_default(scenario: Scenario) -> None:
    """By the brute-force table, the count it settles on serves at least what one instance does, give
    or take what the sweep itself could not tell apart (`spread`)."""
    settled = scenario.decisions[CONVERGE - 1].target
    floor = (1.0 - scenario.spread) * scenario.sweep[1]
    assert scenario.sweep[settled] >= floor, (settled, scenario.sweep, scenario.spread)


def test_changes_at_most_once_during_steady_load(scenario: Scenario) -> None:
    steady = scenario.decisions[CONVERGE : CONVERGE + STEADY]
    changes = [(d.action.value, d.reason) for d in steady if d.changed]
    assert len(changes) <= 1, changes
    assert all(d.metrics_available for d in steady)


def test_comes_down_when_load_drops(
    serve: Callable[..., TritonModelSpec],
    triton: local.TritonProcess,
    prometheus: local.PrometheusProcess,
    run: Run,
) -> None:
    spec = serve("tune-light", "mobilenet_v2", instance_count=MAX_INSTANCES)
    target = target_for(
        model=spec.name,
        endpoints=[triton.control_url],
        prometheus_url=prometheus.url,
        render_config=render_from_spec(spec),
        window_s=WINDOW_S,
    )

    async def go() -> tuple[list[Decision], int]:
        # Running at the top, as after a busy period; now only a light open-loop load arrives.
        state = initial_state(config(initial=MAX_INSTANCES)).model_copy(
            update={"last_change_at": datetime.now(UTC)}
        )
        load = asyncio.create_task(
            run_load(triton.url, spec.name, rate=LIGHT_RATE, duration_s=12 * INTERVAL_S)
        )
        await asyncio.sleep(0.5)
        decisions: list[Decision] = []
        await tick_every(state, target, 11, decisions)
        result = await load
        assert result.errors == 0, result.error_samples
        async with TritonAdapter(triton.url) as admin:
            live = await admin.model_config(spec.name)
        return decisions, int(live["instance_group"][0]["count"])

    decisions, live_count = run(go())
    downs = [d for d in decisions if d.action is Action.SCALE_DOWN]
    assert downs, [(d.action.value, d.reason) for d in decisions]
    assert all(d.previous - d.target == 1 for d in downs)  # one step at a time
    assert not any(d.action is Action.SCALE_UP for d in decisions)
    assert decisions[-1].target == 1
    assert live_count == 1  # applied to Triton, not only decided


def test_holds_and_reports_metrics_unavailable_when_prometheus_stops(
    serve: Callable[..., TritonModelSpec],
    triton: local.TritonProcess,
    tmp_path: Path,
    run: Run,
) -> None:
    spec = serve("tune-blind", "mobilenet_v2", instance_count=2)
    private = local.start_prometheus(
        local.render_static_scrape_config([triton.metrics_target], interval="1s"), data_dir=tmp_path / "prom"
    )
    try:
        target = target_for(
            model=spec.name,
            endpoints=[triton.control_url],
            prometheus_url=private.url,
            render_config=render_from_spec(spec),
            window_s=WINDOW_S,
        )

        async def go() -> tuple[list[Decision], list[Decision], int]:
            state = initial_state(config(initial=2, down_window=1, down_cooldown_s=0.0))
            load = asyncio.create_task(run_load(triton.url, spec.name, concurrency=1, duration_s=40.0))
            seeing: list[Decision] = []
            state = await tick_every(state, target, 3, seeing)
            private.stop()
            load.cancel()  # no load at all now: only missing metrics may keep it from coming down
            blind: list[Decision] = []
            await tick_every(state, target, 4, blind)
            async with TritonAdapter(triton.url) as admin:
                live = await admin.model_config(spec.name)
            return seeing, blind, int(live["instance_group"][0]["count"])

        seeing, blind, live_count = run(go())
    finally:
        private.stop()
    assert seeing[-1].metrics_available
    held = seeing[-1].target
    assert all(d.action is Action.HOLD for d in blind)
    assert all(d.target == held for d in blind)
    assert all(not d.metrics_available for d in blind)
    assert all("metrics unavailable" in d.reason and "Prometheus" in d.reason for d in blind)
    assert live_count == held


def test_failed_load_backs_off_and_records_the_ceiling(
    serve: Callable[..., TritonModelSpec],
    triton: local.TritonProcess,
    prometheus: local.PrometheusProcess,
    run: Run,
) -> None:
    spec = serve("tune-ceiling", "mobilenet_v2", instance_count=1)
    good = render_from_spec(spec)

    def render(instances: int, batching: bool) -> str:
        # Stands in for a device that holds one instance: a second one cannot be placed, and
        # Triton refuses the config (GPU instances on a machine without a GPU).
        if instances < 2:
            return good(instances, batching)
        gpu = dataclasses.replace(spec, instance_kind="KIND_GPU", gpus=(0,))
        return render_from_spec(gpu)(instances, batching)

    target = target_for(
        model=spec.name,
        endpoints=[triton.control_url],
        prometheus_url=prometheus.url,
        render_config=render,
        window_s=WINDOW_S,
    )

    async def go() -> tuple[list[Decision], bool, int]:
        state = initial_state(config()).model_copy(update={"last_change_at": datetime.now(UTC)})
        load = asyncio.create_task(run_load(triton.url, spec.name, concurrency=CLIENTS, duration_s=26.0))
        await asyncio.sleep(0.5)
        decisions: list[Decision] = []
        await tick_every(state, target, 6, decisions)
        await load
        async with TritonAdapter(triton.url) as admin:
            ready = await admin.model_ready(spec.name)
            live = await admin.model_config(spec.name)
        return decisions, ready, int(live["instance_group"][0]["count"])

    decisions, ready, live_count = run(go())
    backoffs = [d for d in decisions if d.action is Action.BACK_OFF]
    assert len(backoffs) == 1, [(d.action.value, d.reason) for d in decisions]
    assert backoffs[0].ceiling == 2
    assert backoffs[0].target == 1
    assert decisions[-1].state.ceiling == 2
    assert decisions[-1].target == 1
    assert "ceiling" in decisions[-1].reason
    assert ready  # the old config kept serving
    assert live_count == 1
