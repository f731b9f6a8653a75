"""The controller against simulated devices built from ModelProfiles measured on a real Triton.

The fixtures in tests/unit/data/profiles/ are copies of what ``edgetenant profile`` measured
(see the README there); the simulator only interpolates them, adds seeded noise and a load.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetenant.api.models import ModelProfile
from edgetenant.tuning import Action, Mode, TunerConfig, initial_state
from edgetenant.tuning.sim import (
    ClosedLoop,
    CurvePoint,
    Load,
    OpenLoop,
    SimulatedDevice,
    Tick,
    curve_from_profile,
    simulate,
)

PROFILE_DIR = Path(__file__).parent / "data" / "profiles"
PROFILES = sorted(PROFILE_DIR.glob("*.yaml"))
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SEEDS = range(5)
HEAVY = ClosedLoop(clients=16)  # more clients than any max: demand always exceeds capacity
# Short cooldowns so a scenario fits in tens of intervals; the logic is the same as the defaults.
FAST = {"down_cooldown_s": 30.0, "down_window": 3}


def _load_profile(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    ModelProfile.model_validate(data)  # the fixtures are real API objects
    return data


@pytest.fixture(params=PROFILES, ids=[p.stem for p in PROFILES])
def curve(request: pytest.FixtureRequest) -> list[CurvePoint]:
    points = curve_from_profile(_load_profile(request.param))
    assert len(points) >= 3, "a profile fixture needs at least three batch-1 points"
    return points


def test_there_are_measured_profiles() -> None:
    assert len(PROFILES) >= 2


def changes(ticks: list[Tick]) -> int:
    return sum(1 for t in ticks if t.decision.changed)


def run(
    curve: list[CurvePoint],
    config: TunerConfig,
    load: Load | Any,
    *,
    intervals: int,
    seed: int = 0,
    **device: Any,
) -> tuple[SimulatedDevice, list[Tick]]:
    sim = SimulatedDevice(curve, seed=seed, **device)
    load_at = load if callable(load) else (lambda _i: load)
    return sim, simulate(sim, initial_state(config), load_at, intervals=intervals, interval_s=10, start=START)


@pytest.mark.parametrize("seed", SEEDS)
def test_reaches_95_percent_of_the_best_static_config_within_10_intervals_and_stays(
    curve: list[CurvePoint], seed: int
) -> None:
    sim, ticks = run(curve, TunerConfig(max=8, **FAST), HEAVY, intervals=70, seed=seed)
    _, best = sim.best_static(HEAVY, max_concurrency=8)
    reached = next(i for i, t in enumerate(ticks) if t.throughput >= 0.95 * best)
    assert reached < 10
    settled = ticks[10:]
    assert changes(settled) <= 1, [t.decision.reason for t in settled if t.decision.changed]
    assert min(t.throughput for t in settled) >= 0.95 * best


@pytest.mark.parametrize("seed", SEEDS)
def test_open_loop_demand_is_served_without_climbing_past_need(curve: list[CurvePoint], seed: int) -> None:
    sim = SimulatedDevice(curve)
    best_count, best = sim.best_static(HEAVY, max_concurrency=8)
    rate = 0.85 * best
    sim, ticks = run(curve, TunerConfig(max=8, **FAST), OpenLoop(rate), intervals=40, seed=seed)
    assert ticks[-1].throughput == pytest.approx(rate)
    assert max(t.decision.target for t in ticks) <= best_count + 1


@pytest.mark.parametrize("seed", SEEDS)
def test_comes_down_when_load_falls(curve: list[CurvePoint], seed: int) -> None:
    light = OpenLoop(0.3 * curve[0].throughput)
    # Starts at 4 instances, as a busy period (or a neighbour leaving) may leave it.
    _, ticks = run(
        curve,
        TunerConfig(initial=4, max=8, **FAST),
        lambda i: HEAVY if i < 20 else light,
        intervals=60,
        seed=seed,
    )
    peak = ticks[19].decision.target
    assert peak >= 3  # under heavy load it never came down
    assert ticks[-1].decision.target == 1
    assert all(t.decision.action is not Action.SCALE_UP for t in ticks[25:])
    downs = [t.decision for t in ticks[20:] if t.decision.action is Action.SCALE_DOWN]
    assert all(d.previous - d.target == 1 for d in downs)  # one step at a time
    assert all(t.throughput == pytest.approx(light.rate) for t in ticks[20:])  # demand still served


def test_never_below_min_when_idle(curve: list[CurvePoint]) -> None:
    _, ticks = run(curve, TunerConfig(min=2, initial=3, max=8, **FAST), OpenLoop(0.0), intervals=40)
    assert [t.decision.target for t in ticks][-1] == 2
    assert min(t.decision.target for t in ticks) == 2


@pytest.mark.parametrize("seed", SEEDS)
def test_holds_while_metrics_are_missing(curve: list[CurvePoint], seed: int) -> None:
    blind = range(20, 40)
    sim = SimulatedDevice(curve, seed=seed)
    ticks = simulate(
        sim,
        initial_state(TunerConfig(initial=4, max=8, **FAST)),
        lambda i: HEAVY if i < 20 else OpenLoop(0.0),
        intervals=60,
        interval_s=10,
        start=START,
        metrics_at=lambda i: i not in blind,
    )
    before = ticks[19].decision.target
    during = [ticks[i].decision for i in blind]
    assert all(d.action is Action.HOLD and d.target == before for d in during)
    assert all(not d.metrics_available for d in during)
    assert ticks[40].decision.metrics_available
    assert ticks[-1].decision.target < before  # once it can see the load fell, it comes down


@pytest.mark.parametrize("seed", SEEDS)
def test_backs_off_at_a_memory_limit_and_records_the_ceiling(curve: list[CurvePoint], seed: int) -> None:
    probe = SimulatedDevice(curve, memory_per_instance_mib=100.0)
    one, two = probe.memory_mib(1), probe.memory_mib(2)
    assert one is not None
    assert two is not None
    limit = (one + two) / 2  # one instance fits, two do not
    sim, ticks = run(
        curve,
        TunerConfig(max=8, **FAST),
        HEAVY,
        intervals=40,
        seed=seed,
        memory_per_instance_mib=100.0,
        memory_limit_mib=limit,
    )
    backoffs = [i for i, t in enumerate(ticks) if t.decision.action is Action.BACK_OFF]
    assert len(backoffs) == 1  # tried once, never again
    decision = ticks[backoffs[0]].decision
    assert decision.ceiling == 2
    assert "out of memory" in decision.reason
    assert all(t.decision.target == 1 for t in ticks[backoffs[0] :])
    assert ticks[-1].decision.state.ceiling == 2
    assert "ceiling" in ticks[-1].decision.reason
    assert sim.concurrency == 1


def test_fixed_mode_is_honoured(curve: list[CurvePoint]) -> None:
    sim, ticks = run(
        curve,
        TunerConfig(mode=Mode.FIXED, value=2, max=8, **FAST),
        lambda i: HEAVY if i < 15 else OpenLoop(0.0),
        intervals=30,
    )
    assert all(t.decision.target == 2 for t in ticks)
    assert sim.loads == 1  # loaded once at start, never changed


@settings(max_examples=40, deadline=None)
@given(
    low=st.integers(1, 4),
    span=st.integers(0, 4),
    seed=st.integers(0, 10_000),
    heavy_until=st.integers(0, 40),
    light_share=st.floats(0.0, 1.5),
)
def test_bounds_and_single_steps_hold_for_any_load(
    low: int, span: int, seed: int, heavy_until: int, light_share: float
) -> None:
    curve = curve_from_profile(_load_profile(PROFILES[0]))
    cfg = TunerConfig(min=low, initial=low, max=low + span, **FAST)
    light = OpenLoop(light_share * curve[0].throughput)
    _, ticks = run(curve, cfg, lambda i: HEAVY if i < heavy_until else light, intervals=50, seed=seed)
    for t in ticks:
        d = t.decision
        assert cfg.min <= d.target <= cfg.max
        assert abs(d.target - d.previous) <= 1
        assert d.reason
