"""The concurrency controller's rules, one reading at a time (pure; time is passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgetenant.tuning import (
    Action,
    BatchingMode,
    Decision,
    Mode,
    Signals,
    TunerConfig,
    TunerState,
    initial_state,
    load_failed,
    step,
)

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
WINDOW = 10.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def saturated(
    now: datetime, *, throughput: float, instances: int, p95: float | None = None, **extra: float
) -> Signals:
    """Every instance busy and requests queueing: what a closed loop of many clients shows."""
    compute_ms = 1000.0 * instances / throughput
    values: dict[str, float | None] = {
        "queue_ms": 3 * compute_ms,
        "compute_ms": compute_ms,
        "latency_p95_ms": p95 if p95 is not None else 5 * compute_ms,
    }
    values.update(extra)
    return Signals(at=now, window_s=WINDOW, throughput=throughput, **values)


def idle(now: datetime, *, throughput: float = 1.0, compute_ms: float = 20.0) -> Signals:
    return Signals(
        at=now,
        window_s=WINDOW,
        throughput=throughput,
        queue_ms=0.0,
        compute_ms=compute_ms,
        latency_p95_ms=25.0,
    )


def run(state: TunerState, readings: list[Signals | None], *, start: float = 0.0) -> list[Decision]:
    """Feed one reading per 10 s interval; returns the decisions."""
    decisions = []
    for i, signals in enumerate(readings):
        decision = step(state, signals, at(start + WINDOW * (i + 1)))
        decisions.append(decision)
        state = decision.state
    return decisions


def test_climbs_one_step_at_a_time_while_steps_gain_then_steps_back_to_the_knee() -> None:
    state = initial_state(TunerConfig(max=8))
    capacity = {1: 40.0, 2: 70.0, 3: 71.0}
    decisions: list[Decision] = []
    for i in range(4):
        now = at(WINDOW * (i + 1))
        decision = step(
            state, saturated(now, throughput=capacity[state.current], instances=state.current), now
        )
        decisions.append(decision)
        state = decision.state

    assert [d.action for d in decisions] == [Action.SCALE_UP, Action.SCALE_UP, Action.STEP_BACK, Action.HOLD]
    assert [d.target for d in decisions] == [2, 3, 2, 2]
    assert state.knee == 2
    assert "gained nothing" in decisions[2].reason
    assert "knee" in decisions[3].reason
    # Learned capacity points become ModelProfile points marked Online.
    points = {p["concurrency"]: p for p in state.profile_points()}
    assert points[1]["throughput"] == pytest.approx(40.0)
    assert points[2]["source"] == "Online"


def test_holds_and_flags_metrics_unavailable_when_there_are_no_metrics() -> None:
    state = initial_state(TunerConfig(initial=3, max=8))
    decisions = run(state, [None] * 20)
    assert all(d.action is Action.HOLD and d.target == 3 for d in decisions)
    assert all(not d.metrics_available for d in decisions)
    assert "metrics unavailable" in decisions[-1].reason


def test_stale_metrics_hold_instead_of_reading_as_no_load() -> None:
    state = initial_state(
        TunerConfig(initial=4, max=8, max_signal_age_s=30, down_window=1, down_cooldown_s=0)
    )
    old = idle(at(0), throughput=0.0)
    decisions = [step(state, old, at(100 + 10 * i)) for i in range(5)]
    assert all(d.action is Action.HOLD and d.target == 4 and not d.metrics_available for d in decisions)

    reported_late = Signals(
        at=at(100), window_s=WINDOW, sample_age_s=90, throughput=0.0, queue_ms=0.0, compute_ms=0.0
    )
    assert step(state, reported_late, at(100)).action is Action.HOLD


def test_metrics_coming_back_clears_the_flag() -> None:
    state = initial_state(TunerConfig(max=8))
    blind = step(state, None, at(10))
    back = step(blind.state, saturated(at(20), throughput=40, instances=1), at(20))
    assert not blind.metrics_available
    assert back.metrics_available
    assert back.action is Action.SCALE_UP


def test_waits_for_a_full_window_after_a_change() -> None:
    state = initial_state(TunerConfig(max=8))
    up = step(state, saturated(at(10), throughput=40, instances=1), at(10))
    early = Signals(at=at(15), window_s=WINDOW, throughput=60, queue_ms=50, compute_ms=30)
    decision = step(up.state, early, at(15))
    assert decision.action is Action.HOLD
    assert "full 10s metrics window" in decision.reason
    assert decision.state.probe is not None  # still on trial


def test_comes_down_one_step_after_the_slow_window_and_cooldown() -> None:
    cfg = TunerConfig(initial=3, max=8, down_window=3, down_cooldown_s=30)
    decisions = run(initial_state(cfg), [idle(at(10 * (i + 1))) for i in range(8)])
    actions = [d.action for d in decisions]
    assert actions[:2] == [Action.HOLD, Action.HOLD]
    assert actions[2] is Action.SCALE_DOWN
    assert decisions[2].target == 2
    # Next step down waits for both the window and the cooldown.
    assert actions[3:5] == [Action.HOLD, Action.HOLD]
    assert Action.SCALE_DOWN in actions[5:]
    assert all(d.target >= 1 for d in decisions)


def test_never_goes_below_min() -> None:
    cfg = TunerConfig(initial=2, min=2, max=8, down_window=1, down_cooldown_s=0)
    decisions = run(initial_state(cfg), [idle(at(10 * (i + 1)), throughput=0.0) for i in range(10)])
    assert all(d.target == 2 for d in decisions)


def test_stops_at_max() -> None:
    cfg = TunerConfig(max=2)
    state = initial_state(cfg)
    targets = []
    for i in range(6):
        now = at(10 * (i + 1))
        decision = step(state, saturated(now, throughput=40.0 * state.current, instances=state.current), now)
        targets.append(decision.target)
        state = decision.state
    assert max(targets) == 2
    assert "at max 2" in decision.reason


def test_spec_change_below_current_clamps_at_once() -> None:
    state = initial_state(TunerConfig(initial=6, max=8)).model_copy(update={"config": TunerConfig(max=4)})
    decision = step(state, saturated(at(10), throughput=100, instances=6), at(10))
    assert decision.action is Action.CLAMP
    assert decision.target == 4


def test_failed_load_backs_off_and_records_the_ceiling() -> None:
    state = initial_state(TunerConfig(initial=2, max=8))
    up = step(state, saturated(at(10), throughput=70, instances=2), at(10))
    assert up.action is Action.SCALE_UP
    assert up.target == 3

    back = load_failed(up, at(10.2), "out of memory")
    assert back.action is Action.BACK_OFF
    assert back.target == 2
    assert back.state.current == 2
    assert back.ceiling == 3
    assert back.state.ceiling == 3
    assert "out of memory" in back.reason

    later = step(back.state, saturated(at(30), throughput=70, instances=2), at(30))
    assert later.action is Action.HOLD
    assert later.target == 2
    assert "ceiling" in later.reason


def test_failing_requests_after_a_step_back_off_with_a_ceiling() -> None:
    state = initial_state(TunerConfig(initial=2, max=8))
    up = step(state, saturated(at(10), throughput=70, instances=2), at(10))
    failing = saturated(at(20), throughput=80, instances=3, failure_rate=10.0)
    decision = step(up.state, failing, at(20))
    assert decision.action is Action.BACK_OFF
    assert decision.target == 2
    assert decision.state.ceiling == 3


def test_a_step_that_breaks_the_slo_is_undone() -> None:
    state = initial_state(TunerConfig(max=8, slo_p95_ms=100))
    up = step(state, saturated(at(10), throughput=40, instances=1, p95=80), at(10))
    assert up.action is Action.SCALE_UP
    worse = saturated(at(20), throughput=60, instances=2, p95=140)
    decision = step(up.state, worse, at(20))
    assert decision.action is Action.STEP_BACK
    assert decision.target == 1
    assert "SLO" in decision.reason
    assert decision.slo_met is False


def test_queueing_that_breaks_the_slo_below_saturation_climbs_and_keeps_a_step_that_helps() -> None:
    # 55 % busy, but random arrivals queue long enough to break a tight p95 SLO.
    state = initial_state(TunerConfig(initial=2, max=8, slo_p95_ms=50))
    slow = Signals(at=at(10), window_s=WINDOW, throughput=55, queue_ms=30, compute_ms=20, latency_p95_ms=90)
    up = step(state, slow, at(10))
    assert up.action is Action.SCALE_UP
    assert up.state.probe is not None
    assert up.state.probe.goal == "latency"
    better = Signals(at=at(20), window_s=WINDOW, throughput=55, queue_ms=5, compute_ms=20, latency_p95_ms=40)
    kept = step(up.state, better, at(20))
    assert kept.target == 3
    assert kept.state.probe is None
    assert kept.state.knee is None


def test_a_latency_probe_that_serves_more_is_kept_and_one_that_helps_nothing_says_so() -> None:
    """Seen in the demo: +118.8 % throughput was stepped back as "gained nothing" because p95 (the
    latency probe's measure) did not fall; serving more is a gain, and the words must fit the rule."""
    state = initial_state(TunerConfig(initial=1, max=4, slo_p95_ms=50))
    slow = Signals(at=at(10), window_s=WINDOW, throughput=4, queue_ms=60, compute_ms=20, latency_p95_ms=120)
    up = step(state, slow, at(10))
    assert up.state.probe is not None and up.state.probe.goal == "latency"
    more = Signals(at=at(20), window_s=WINDOW, throughput=8.7, queue_ms=60, compute_ms=20, latency_p95_ms=125)
    kept = step(up.state, more, at(20))
    assert kept.action is not Action.STEP_BACK and "kept 2 instances" in kept.reason, kept.reason
    assert kept.target >= 2
    same = Signals(at=at(20), window_s=WINDOW, throughput=4, queue_ms=60, compute_ms=20, latency_p95_ms=121)
    back = step(up.state, same, at(20))
    assert back.action is Action.STEP_BACK
    assert "cut neither p95 nor queueing" in back.reason and "gained nothing" not in back.reason


def test_holds_at_the_knee_until_the_reprobe_time() -> None:
    cfg = TunerConfig(max=8, reprobe_after_s=300)
    state = initial_state(cfg).model_copy(update={"current": 2, "knee": 2, "knee_at": at(0)})
    held = step(state, saturated(at(100), throughput=70, instances=2), at(100))
    assert held.action is Action.HOLD
    reprobe = step(held.state, saturated(at(310), throughput=70, instances=2), at(310))
    assert reprobe.action is Action.SCALE_UP
    assert reprobe.target == 3


def test_memory_guard_uses_reported_memory_only() -> None:
    cfg = TunerConfig(initial=2, max=8, memory_limit_mib=1000)
    state = initial_state(cfg)
    near_full = saturated(at(10), throughput=70, instances=2, memory_used_mib=700)
    held = step(state, near_full, at(10))
    assert held.action is Action.HOLD
    assert "MiB" in held.reason
    # Without memory figures (a Jetson) the controller still climbs.
    assert step(state, saturated(at(10), throughput=70, instances=2), at(10)).action is Action.SCALE_UP


def test_fixed_mode_is_honoured_whatever_the_signals() -> None:
    cfg = TunerConfig(mode=Mode.FIXED, value=3, max=8, down_window=1, down_cooldown_s=0)
    state = initial_state(cfg)
    assert state.current == 3
    readings: list[Signals | None] = [
        saturated(at(10), throughput=40, instances=3),
        idle(at(20), throughput=0.0),
        None,
        saturated(at(40), throughput=90, instances=3),
    ]
    decisions = run(state, readings)
    assert all(d.target == 3 for d in decisions)
    assert all(d.action is Action.HOLD for d in decisions)

    moved = step(state.model_copy(update={"current": 1}), None, at(50))
    assert moved.action is Action.FIXED
    assert moved.target == 3


def test_batching_is_tried_once_the_count_settles_and_dropped_when_it_gains_nothing() -> None:
    cfg = TunerConfig(max=2, batching=BatchingMode.AUTO, max_batch_size=8, batching_settle=2)
    state = initial_state(cfg).model_copy(update={"current": 2})
    first = step(state, saturated(at(10), throughput=70, instances=2), at(10))
    assert first.action is Action.HOLD
    tried = step(first.state, saturated(at(20), throughput=70, instances=2), at(20))
    assert tried.action is Action.ENABLE_BATCHING
    assert tried.batching
    dropped = step(tried.state, saturated(at(30), throughput=71, instances=2), at(30))
    assert dropped.action is Action.DISABLE_BATCHING
    assert not dropped.batching
    assert dropped.state.batching_verdict is False
    after = run(dropped.state, [saturated(at(40 + 10 * i), throughput=70, instances=2) for i in range(6)])
    assert all(d.action is Action.HOLD and not d.batching for d in after)


def test_batching_that_helps_is_kept() -> None:
    cfg = TunerConfig(max=2, batching=BatchingMode.AUTO, max_batch_size=8, batching_settle=1)
    state = initial_state(cfg).model_copy(update={"current": 2})
    tried = step(state, saturated(at(10), throughput=70, instances=2), at(10))
    assert tried.action is Action.ENABLE_BATCHING
    kept = step(tried.state, saturated(at(20), throughput=120, instances=2), at(20))
    assert kept.batching
    assert kept.state.batching_verdict is True


def test_batching_off_and_fixed_follow_the_spec() -> None:
    off = initial_state(TunerConfig(batching=BatchingMode.DISABLED, max_batch_size=8)).model_copy(
        update={"batching": True}
    )
    assert step(off, idle(at(10)), at(10)).action is Action.DISABLE_BATCHING
    fixed = initial_state(TunerConfig(batching=BatchingMode.FIXED, max_batch_size=8))
    assert fixed.batching


def test_state_survives_a_round_trip_through_status() -> None:
    state = initial_state(TunerConfig(max=8, slo_p95_ms=200))
    for i in range(3):
        now = at(10 * (i + 1))
        state = step(
            state, saturated(now, throughput=40.0 * state.current, instances=state.current), now
        ).state
    saved = state.to_status()
    assert "upStreak" in saved or "lastChangeAt" in saved  # camelCase on the wire
    restored = TunerState.from_status(saved, state.config)
    assert restored == state
    nxt = saturated(at(40), throughput=40.0 * state.current, instances=state.current)
    assert step(restored, nxt, at(40)) == step(state, nxt, at(40))


def test_from_status_without_saved_state_starts_at_initial() -> None:
    cfg = TunerConfig(initial=2, max=4)
    assert TunerState.from_status(None, cfg).current == 2


def test_every_decision_carries_a_reason_and_its_signals() -> None:
    state = initial_state(TunerConfig(max=8))
    reading = saturated(at(10), throughput=40, instances=1)
    decision = step(state, reading, at(10))
    summary = decision.summary()
    assert summary["action"] == "ScaleUp"
    assert summary["reason"]
    assert summary["signals"]["throughput"] == 40.0


def test_min_above_max_is_refused() -> None:
    with pytest.raises(ValueError, match="min"):
        TunerConfig(min=5, max=2)


def test_a_trial_step_can_be_judged_on_several_readings() -> None:
    state = initial_state(TunerConfig(max=8, probe_readings=2))
    up = step(state, saturated(at(10), throughput=40, instances=1), at(10))
    lucky = step(up.state, saturated(at(20), throughput=46, instances=2), at(20))
    assert lucky.action is Action.HOLD
    assert "reading 1/2" in lucky.reason
    # The mean of 46 and 36 gains nothing over 40: the step goes back.
    judged = step(lucky.state, saturated(at(30), throughput=36, instances=2), at(30))
    assert judged.action is Action.STEP_BACK
    assert judged.target == 1


def test_the_baseline_is_the_learned_capacity_once_it_has_a_few_readings() -> None:
    state = initial_state(TunerConfig(initial=2, max=2))  # at max: learns without stepping
    for i, throughput in enumerate([70.0, 70.0, 70.0]):
        now = at(10 * (i + 1))
        state = step(state, saturated(now, throughput=throughput, instances=2), now).state
    state = state.model_copy(update={"config": TunerConfig(initial=2, max=8)})
    low_reading = saturated(at(40), throughput=60, instances=2)  # one unlucky window
    up = step(state, low_reading, at(40))
    assert up.action is Action.SCALE_UP
    assert up.state.probe is not None
    assert up.state.probe.baseline_throughput == pytest.approx(70.0, rel=0.05)
