"""The concurrency controller: ``step(state, signals, now) -> Decision``.

Pure; no I/O, no clock (``now`` is passed in). One step per control interval; at most one
instance more or fewer per step. ``docs/tuning.md`` describes the policy in prose.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from edgetenant.api.models import BatchingMode
from edgetenant.tuning.data import (
    Action,
    Decision,
    LearnedPoint,
    Mode,
    Probe,
    Signals,
    TunerState,
)

# Weight of the newest reading in a learned point; older readings fade so the profile follows
# neighbours and thermal state, but one noisy window cannot move it much.
_LEARN_WEIGHT = 0.3

Demand = Literal["saturated", "latency"]


def bounds(state: TunerState) -> tuple[int, int]:
    """The allowed instance counts in Auto mode: [min, min(max, ceiling - 1)]."""
    cfg = state.config
    high = cfg.max
    ceilings = [c for c in (state.ceiling, cfg.ceiling) if c is not None]
    if ceilings:
        high = min(high, min(ceilings) - 1)
    high = max(high, 1)
    return min(cfg.min, high), high


def batching_allowed(state: TunerState) -> bool:
    return state.config.max_batch_size > 1 and state.config.batching is not BatchingMode.DISABLED


def step(state: TunerState, signals: Signals | None, now: datetime) -> Decision:
    """Decide the next instance count (and dynamic batching) from one reading of the metrics.

    ``signals`` is None when the metrics could not be read; the controller then holds.
    """
    cfg = state.config
    state = _forget_old_ceiling(state, now)
    if cfg.mode is Mode.FIXED:
        return _fixed(state, signals, now)

    if signals is None:
        return _hold_blind(state, None, now, "no metrics could be read")
    age = max((now - signals.at).total_seconds(), 0.0) + signals.sample_age_s
    if age > cfg.max_signal_age_s:
        return _hold_blind(state, signals, now, f"the newest metrics are {age:.0f}s old")
    state = state.model_copy(update={"metrics_available": True, "last_good_at": now})
    slo_met = _slo_met(state, signals)

    low, high = bounds(state)
    if not low <= state.current <= high:
        target = min(max(state.current, low), high)
        limit = "max/ceiling" if state.current > high else "min"
        return _decide(
            state,
            signals,
            now,
            Action.CLAMP,
            target=target,
            batching=state.batching,
            slo_met=slo_met,
            reason=f"{state.current} instances is outside [{low}, {high}] ({limit}); moving to {target}",
            probe=None,
        )
    wanted_batching = _batching_by_spec(state)
    if wanted_batching is not None and wanted_batching != state.batching:
        action = Action.ENABLE_BATCHING if wanted_batching else Action.DISABLE_BATCHING
        return _decide(
            state,
            signals,
            now,
            action,
            target=state.current,
            batching=wanted_batching,
            slo_met=slo_met,
            reason=f"dynamic batching is {cfg.batching.value} in the spec",
            probe=None,
        )

    if state.last_change_at is not None and signals.window_start < state.last_change_at:
        return _decide(
            state,
            signals,
            now,
            Action.HOLD,
            target=state.current,
            batching=state.batching,
            slo_met=slo_met,
            reason=f"waiting for a full {signals.window_s:.0f}s metrics window after the change at "
            f"{state.last_change_at:%H:%M:%S}",
        )

    demand = _demand(state, signals)
    state = _learn(state, signals, now) if demand == "saturated" else state

    if state.probe is not None:
        probe = _with_reading(state.probe, signals)
        if probe.readings < cfg.probe_readings:
            return _decide(
                state.model_copy(update={"probe": probe}), signals, now, Action.HOLD,
                target=state.current, batching=state.batching, slo_met=slo_met,
                reason=f"judging the last step: reading {probe.readings}/{cfg.probe_readings} "
                f"({signals.throughput:.1f}/s vs {probe.baseline_throughput:.1f}/s before)",
            )  # fmt: skip
        judged = _averaged(probe, signals)
        verdict = _judge_probe(state, probe, judged, now, slo_met)
        if isinstance(verdict, Decision):
            return verdict
        decision = _steady(verdict, signals, now, demand=demand, slo_met=slo_met, low=low, high=high)
        base = probe.baseline_throughput
        kept = (
            f"kept {probe.to_concurrency} instances"
            if probe.kind == "concurrency"
            else "kept dynamic batching"
        ) + f" ({base:.1f}/s -> {judged.throughput:.1f}/s)"
        return decision.model_copy(update={"reason": f"{kept}; {decision.reason}"})

    return _steady(state, signals, now, demand=demand, slo_met=slo_met, low=low, high=high)


def ceiling_expires_at(state: TunerState) -> datetime | None:
    """When the learned ceiling is forgotten (None without one)."""
    if state.ceiling is None or state.ceiling_at is None:
        return None
    return state.ceiling_at + timedelta(seconds=state.config.ceiling_ttl_s)


def _forget_old_ceiling(state: TunerState, now: datetime) -> TunerState:
    expires = ceiling_expires_at(state)
    if expires is None or now < expires:
        return state
    return state.model_copy(update={"ceiling": None, "ceiling_at": None})


def out_of_memory(state: TunerState, instances: int, now: datetime, message: str) -> Decision:
    """The kernel killed the server for going over its memory limit while running `instances`.

    That count becomes the ceiling and the tenant goes one below it (never below `min`), so the
    restarted container, which starts with the count recorded in its ConfigMap, fits. At `min` there is
    nothing lower to go to: the decision says so (the limit or the model's memory hint is wrong).
    """
    cfg = state.config
    ceiling = instances if state.ceiling is None else min(state.ceiling, instances)
    lowest = max(1, cfg.min)
    target = max(lowest, min(state.current, instances - 1))
    if instances <= lowest:
        reason = (
            f"out of memory at the minimum of {instances} instance(s) ({message}); nothing lower to try: "
            "raise spec.model.memoryHintMiB or give the device more memory"
        )
    else:
        reason = f"out of memory at {instances} instance(s) ({message}); back to {target}, ceiling {ceiling}"
    new_state = state.model_copy(
        update={
            "current": target,
            "ceiling": ceiling,
            "ceiling_at": now,
            "probe": None,
            "last_change_at": now,
            "up_streak": 0,
            "down_streak": 0,
            "settled_streak": 0,
        }
    )
    return Decision(
        at=now,
        action=Action.BACK_OFF,
        reason=reason,
        target=target,
        previous=instances,
        batching=state.batching,
        previous_batching=state.batching,
        ceiling=ceiling,
        knee=state.knee,
        metrics_available=state.metrics_available,
        slo_met=None,
        signals=None,
        state=new_state,
    )


def load_failed(decision: Decision, now: datetime, message: str) -> Decision:
    """The decision could not be applied (Triton refused the config, e.g. out of memory).

    Goes back to the previous setting and records the attempted instance count as the ceiling.
    """
    return _undo(decision, now, message, learn_ceiling=True)


def not_applied(decision: Decision, now: datetime, message: str) -> Decision:
    """The decision could not be applied for a reason that says nothing about the model
    (Triton unreachable): keep the previous setting, learn nothing, try again next interval."""
    return _undo(decision, now, message, learn_ceiling=False)


def _undo(decision: Decision, now: datetime, message: str, *, learn_ceiling: bool) -> Decision:
    state = decision.state
    if not learn_ceiling:
        kept = state.model_copy(
            update={
                "current": decision.previous,
                "batching": decision.previous_batching,
                "probe": None,
                # Some pods may have taken the change before the others failed: wait a full window.
                "last_change_at": now,
            }
        )
        return decision.model_copy(
            update={
                "at": now,
                "action": Action.HOLD,
                "reason": f"could not apply {decision.action.value} to {decision.target} ({message}); "
                f"holding {decision.previous}",
                "target": decision.previous,
                "batching": decision.previous_batching,
                "state": kept,
            }
        )
    ceiling = state.ceiling
    verdict = state.batching_verdict
    if decision.target > decision.previous:
        ceiling = decision.target if ceiling is None else min(ceiling, decision.target)
    if decision.batching and not decision.previous_batching:
        verdict = False
    note = f"; ceiling is now {ceiling}" if ceiling is not None else ""
    reason = (
        f"loading {decision.target} instance(s){' with batching' if decision.batching else ''} failed "
        f"({message}); back to {decision.previous}{note}"
    )
    new_state = state.model_copy(
        update={
            "current": decision.previous,
            "batching": decision.previous_batching,
            "ceiling": ceiling,
            "ceiling_at": now if ceiling != state.ceiling else state.ceiling_at,
            "batching_verdict": verdict,
            "probe": None,
            "last_change_at": now,
            "up_streak": 0,
            "down_streak": 0,
            "settled_streak": 0,
        }
    )
    return decision.model_copy(
        update={
            "at": now,
            "action": Action.BACK_OFF,
            "reason": reason,
            "target": decision.previous,
            "batching": decision.previous_batching,
            "previous": decision.target,
            "previous_batching": decision.batching,
            "ceiling": ceiling,
            "state": new_state,
        }
    )


# -- the steady-state policy ---------------------------------------------------------------------


def _steady(
    state: TunerState,
    signals: Signals,
    now: datetime,
    *,
    demand: Demand | None,
    slo_met: bool | None,
    low: int,
    high: int,
) -> Decision:
    cfg = state.config
    current = state.current
    quiet = not demand and current > low and signals.busy_instances <= (current - 1) * cfg.down_utilisation
    up_streak = state.up_streak + 1 if demand else 0  # either kind of demand
    down_streak = state.down_streak + 1 if quiet else 0
    state = state.model_copy(update={"up_streak": up_streak, "down_streak": down_streak})
    since_change = _seconds_since(state.last_change_at, now)
    queue = f"queue {signals.queue_ms:.1f} ms vs compute {signals.compute_ms:.1f} ms per request"

    if demand:
        blocked = _climb_blocker(state, signals, now, high)
        if blocked is None and since_change < cfg.up_cooldown_s:
            blocked = f"up cooldown ({since_change:.0f}/{cfg.up_cooldown_s:.0f}s)"
        if blocked is None and up_streak < cfg.up_window:
            blocked = f"demand seen in {up_streak}/{cfg.up_window} readings"
        if blocked is None:
            target = current + 1
            probe = Probe(
                kind="concurrency",
                goal="throughput" if demand == "saturated" else "latency",
                from_concurrency=current,
                to_concurrency=target,
                from_batching=state.batching,
                to_batching=state.batching,
                baseline_throughput=_baseline(state, signals),
                baseline_p95_ms=signals.latency_p95_ms,
                started_at=now,
            )
            why = (
                "demand exceeds capacity"
                if demand == "saturated"
                else f"queueing breaks the p95 SLO ({signals.latency_p95_ms:.1f} ms)"
            )
            return _decide(
                state,
                signals,
                now,
                Action.SCALE_UP,
                target=target,
                batching=state.batching,
                slo_met=slo_met,
                reason=f"{why} ({queue}); trying {target} instances (baseline {signals.throughput:.1f}/s)",
                probe=probe,
            )
        settled = state.settled_streak + 1
        state = state.model_copy(update={"settled_streak": settled})
        batching = _try_batching(state, signals, now, slo_met, settled)
        if batching is not None:
            return batching
        slo = "" if slo_met is not False else "; the p95 SLO is not met and more instances cannot help"
        return _decide(
            state,
            signals,
            now,
            Action.HOLD,
            target=current,
            batching=state.batching,
            slo_met=slo_met,
            reason=f"holding {current}: {blocked} ({queue}){slo}",
        )

    state = state.model_copy(update={"settled_streak": 0})
    if quiet:
        busy = f"{signals.busy_instances:.2f} busy of {current} instances"
        if down_streak < cfg.down_window:
            reason = f"load is low ({busy}), seen in {down_streak}/{cfg.down_window} readings"
        elif since_change < cfg.down_cooldown_s:
            reason = f"load is low ({busy}); down cooldown ({since_change:.0f}/{cfg.down_cooldown_s:.0f}s)"
        else:
            return _decide(
                state,
                signals,
                now,
                Action.SCALE_DOWN,
                target=current - 1,
                batching=state.batching,
                slo_met=slo_met,
                reason=f"load fell ({busy}, {signals.throughput:.1f}/s): {current - 1} suffice; freeing one",
                probe=None,
            )
        return _decide(
            state,
            signals,
            now,
            Action.HOLD,
            target=current,
            batching=state.batching,
            slo_met=slo_met,
            reason=f"holding: {reason}",
        )
    return _decide(
        state,
        signals,
        now,
        Action.HOLD,
        target=current,
        batching=state.batching,
        slo_met=slo_met,
        reason=f"capacity matches demand at {current} ({signals.throughput:.1f}/s, {queue})",
    )


def _climb_blocker(state: TunerState, signals: Signals, now: datetime, high: int) -> str | None:
    """Why one more instance must not be tried now, or None."""
    cfg = state.config
    current = state.current
    if current >= high:
        if current >= cfg.max:
            return f"at max {cfg.max}"
        return f"at the ceiling (next, {current + 1}, failed before)"
    if state.knee is not None and current >= state.knee:
        due = _seconds_since(state.knee_at, now) >= cfg.reprobe_after_s
        if not due:
            return (
                f"at the knee {state.knee} (one more gained nothing; retry after {cfg.reprobe_after_s:.0f}s)"
            )
    if signals.memory_used_mib is not None and cfg.memory_limit_mib is not None and current > 0:
        predicted = signals.memory_used_mib * (current + 1) / current
        if predicted > cfg.memory_limit_mib:
            return (
                f"one more instance needs ~{predicted:.0f} MiB of the {cfg.memory_limit_mib:.0f} MiB allowed"
            )
    return None


def _judge_probe(
    state: TunerState, probe: Probe, signals: Signals, now: datetime, slo_met: bool | None
) -> Decision | TunerState:
    """Keep a trial change that gained throughput; undo one that did not or broke the SLO."""
    cfg = state.config
    base = probe.baseline_throughput
    gain = signals.throughput / base - 1.0 if base > 0 else (1.0 if signals.throughput > 0 else 0.0)
    broke_slo = (
        cfg.slo_p95_ms is not None
        and signals.latency_p95_ms is not None
        and signals.latency_p95_ms > cfg.slo_p95_ms
        and (probe.baseline_p95_ms is None or probe.baseline_p95_ms <= cfg.slo_p95_ms)
    )
    what = (
        f"{probe.to_concurrency} instances"
        if probe.kind == "concurrency"
        else f"dynamic batching at {probe.to_concurrency}"
    )
    measured = f"{base:.1f}/s -> {signals.throughput:.1f}/s ({gain:+.1%})"
    cleared = state.model_copy(update={"probe": None})

    if signals.failure_ratio > cfg.failure_ratio_limit:
        ceiling = state.ceiling
        verdict = state.batching_verdict
        if probe.kind == "concurrency":
            ceiling = probe.to_concurrency if ceiling is None else min(ceiling, probe.to_concurrency)
        else:
            verdict = False
        cleared = cleared.model_copy(
            update={
                "ceiling": ceiling,
                "ceiling_at": now if ceiling != state.ceiling else state.ceiling_at,
                "batching_verdict": verdict,
            }
        )
        return _decide(
            cleared,
            signals,
            now,
            Action.BACK_OFF,
            target=probe.from_concurrency,
            batching=probe.from_batching,
            slo_met=slo_met,
            reason=f"{what} failed {signals.failure_ratio:.1%} of requests; back to {probe.from_concurrency}"
            + (f", ceiling {ceiling}" if probe.kind == "concurrency" else ""),
        )

    useless_why = f"gained nothing beyond the {cfg.dead_band:.0%} dead band"
    if probe.goal == "latency":
        # Climbed to cut queueing under the SLO: a step helps if it cut p95 or served more (a saturated
        # device drains its queue), and never if it lost throughput.
        old_p95, new_p95 = probe.baseline_p95_ms, signals.latency_p95_ms
        cut_p95 = old_p95 is not None and new_p95 is not None and new_p95 < old_p95 * (1 - cfg.dead_band)
        useless = gain < -cfg.dead_band or not (cut_p95 or gain >= cfg.dead_band)
        if useless and old_p95 is not None and new_p95 is not None:
            measured = f"p95 {old_p95:.1f} -> {new_p95:.1f} ms, {measured}"
        if gain < -cfg.dead_band:
            useless_why = f"lost throughput beyond the {cfg.dead_band:.0%} dead band"
        else:
            useless_why = f"cut neither p95 nor queueing beyond the {cfg.dead_band:.0%} dead band"
    else:
        useless = gain < cfg.dead_band
    if broke_slo or useless:
        why = (
            f"broke the p95 SLO ({signals.latency_p95_ms:.1f} > {cfg.slo_p95_ms:.0f} ms)"
            if broke_slo
            else useless_why
        )
        if probe.kind == "concurrency":
            knee_state = cleared.model_copy(update={"knee": probe.from_concurrency, "knee_at": now})
            return _decide(
                knee_state,
                signals,
                now,
                Action.STEP_BACK,
                target=probe.from_concurrency,
                batching=probe.from_batching,
                slo_met=slo_met,
                reason=f"{what} {why} ({measured}); knee at {probe.from_concurrency}",
            )
        return _decide(
            cleared.model_copy(update={"batching_verdict": False}),
            signals,
            now,
            Action.DISABLE_BATCHING,
            target=probe.from_concurrency,
            batching=probe.from_batching,
            slo_met=slo_met,
            reason=f"{what} {why} ({measured}); batching off",
        )

    if probe.kind == "batching":
        return cleared.model_copy(update={"batching_verdict": True})
    knee = state.knee if state.knee is not None and state.knee > probe.to_concurrency else None
    return cleared.model_copy(update={"knee": knee, "knee_at": None if knee is None else state.knee_at})


def _try_batching(
    state: TunerState, signals: Signals, now: datetime, slo_met: bool | None, settled: int
) -> Decision | None:
    """Second knob: once the instance count has settled under demand, try dynamic batching once."""
    cfg = state.config
    if (
        cfg.batching is not BatchingMode.AUTO
        or not batching_allowed(state)
        or state.batching
        or state.batching_verdict is not None
        or settled < cfg.batching_settle
    ):
        return None
    probe = Probe(
        kind="batching",
        from_concurrency=state.current,
        to_concurrency=state.current,
        from_batching=False,
        to_batching=True,
        baseline_throughput=_baseline(state, signals),
        baseline_p95_ms=signals.latency_p95_ms,
        started_at=now,
    )
    return _decide(
        state,
        signals,
        now,
        Action.ENABLE_BATCHING,
        target=state.current,
        batching=True,
        slo_met=slo_met,
        reason=f"instance count settled at {state.current} with requests still queueing; "
        f"trying dynamic batching (baseline {signals.throughput:.1f}/s)",
        probe=probe,
    )


# -- the other modes and the blind case ----------------------------------------------------------


def _fixed(state: TunerState, signals: Signals | None, now: datetime) -> Decision:
    cfg = state.config
    target = cfg.value if cfg.value is not None else cfg.initial
    batching = _batching_by_spec(state)
    batching = state.batching if batching is None else batching
    fresh = signals is not None and (
        max((now - signals.at).total_seconds(), 0.0) + signals.sample_age_s <= cfg.max_signal_age_s
    )
    slo_met = _slo_met(state, signals) if fresh and signals is not None else None
    state = state.model_copy(
        update={
            "metrics_available": fresh,
            "last_good_at": now if fresh else state.last_good_at,
            "probe": None,
        }
    )
    if (
        fresh
        and signals is not None
        and target == state.current
        and (state.last_change_at is None or signals.window_start >= state.last_change_at)
        and _demand(state, signals)
    ):
        state = _learn(state, signals, now)
    if target != state.current or batching != state.batching:
        return _decide(
            state,
            signals,
            now,
            Action.FIXED,
            target=target,
            batching=batching,
            slo_met=slo_met,
            reason=f"Fixed mode: {target} instance(s){', batching on' if batching else ''} as the spec says",
        )
    note = "" if fresh else " (metrics unavailable)"
    return _decide(
        state,
        signals,
        now,
        Action.HOLD,
        target=target,
        batching=batching,
        slo_met=slo_met,
        reason=f"Fixed mode: {target} instance(s) as the spec says{note}",
    )


def _hold_blind(state: TunerState, signals: Signals | None, now: datetime, why: str) -> Decision:
    """No usable metrics: keep the last good setting. No data is never read as low load."""
    state = state.model_copy(update={"metrics_available": False, "up_streak": 0, "down_streak": 0})
    since = f" since {state.last_good_at:%H:%M:%S}" if state.last_good_at else ""
    return _decide(
        state,
        signals,
        now,
        Action.HOLD,
        target=state.current,
        batching=state.batching,
        slo_met=None,
        reason=f"metrics unavailable ({why}){since}; "
        f"holding {state.current} instance(s), the last good decision",
    )


# -- helpers ---------------------------------------------------------------------------------------


def _baseline(state: TunerState, signals: Signals) -> float:
    """Throughput to beat: the learned capacity at the current setting once it rests on a few
    readings (steadier than one window), else this reading."""
    point = state.point(state.current, state.batching)
    if point is not None and point.samples >= 3:
        return point.throughput
    return signals.throughput


def _with_reading(probe: Probe, signals: Signals) -> Probe:
    p95 = signals.latency_p95_ms
    return probe.model_copy(
        update={
            "readings": probe.readings + 1,
            "throughput_sum": probe.throughput_sum + signals.throughput,
            "failure_sum": probe.failure_sum + signals.failure_rate,
            "p95_max_ms": p95 if probe.p95_max_ms is None or p95 is None else max(p95, probe.p95_max_ms),
        }
    )


def _averaged(probe: Probe, signals: Signals) -> Signals:
    """The trial's readings as one: mean throughput and failures, the worst p95."""
    if probe.readings <= 1:
        return signals
    return signals.model_copy(
        update={
            "throughput": probe.throughput_sum / probe.readings,
            "failure_rate": probe.failure_sum / probe.readings,
            "latency_p95_ms": probe.p95_max_ms,
        }
    )


def _demand(state: TunerState, signals: Signals) -> Demand | None:
    """Whether more instances are wanted: requests queue while every instance is busy
    ("saturated": demand exceeds capacity), or queueing alone breaks the p95 SLO ("latency").
    Random arrivals queue a little at any load, so queueing without saturation is not demand.
    """
    cfg = state.config
    threshold = max(cfg.min_queue_ms, cfg.queue_ratio_up * signals.compute_ms)
    if signals.throughput <= 0 or signals.queue_ms < threshold:
        return None
    if signals.busy_instances >= cfg.up_utilisation * state.current:
        return "saturated"
    if _slo_met(state, signals) is False:
        return "latency"
    return None


def _slo_met(state: TunerState, signals: Signals | None) -> bool | None:
    slo = state.config.slo_p95_ms
    if slo is None or signals is None or signals.latency_p95_ms is None:
        return None
    return signals.latency_p95_ms <= slo


def _batching_by_spec(state: TunerState) -> bool | None:
    """The batching setting the spec forces, or None when the controller chooses."""
    cfg = state.config
    if cfg.batching is BatchingMode.DISABLED or cfg.max_batch_size <= 1:
        return False
    if cfg.batching is BatchingMode.FIXED:
        return True
    return None if cfg.mode is Mode.AUTO else False


def _learn(state: TunerState, signals: Signals, now: datetime) -> TunerState:
    """Fold a saturated reading (so: the capacity) into the point for the current setting."""
    old = state.point(state.current, state.batching)
    if old is None:
        point = LearnedPoint(
            concurrency=state.current,
            batching=state.batching,
            throughput=signals.throughput,
            latency_p95_ms=signals.latency_p95_ms,
            memory_mib=signals.memory_used_mib,
            measured_at=now,
        )
    else:
        point = LearnedPoint(
            concurrency=state.current,
            batching=state.batching,
            throughput=_blend(old.throughput, signals.throughput),
            latency_p95_ms=_blend_optional(old.latency_p95_ms, signals.latency_p95_ms),
            memory_mib=_blend_optional(old.memory_mib, signals.memory_used_mib),
            samples=old.samples + 1,
            measured_at=now,
        )
    others = tuple(p for p in state.points if p is not old)
    return state.model_copy(update={"points": (*others, point)})


def _blend(old: float, new: float) -> float:
    return (1 - _LEARN_WEIGHT) * old + _LEARN_WEIGHT * new


def _blend_optional(old: float | None, new: float | None) -> float | None:
    if old is None or new is None:
        return new if old is None else old
    return _blend(old, new)


def _seconds_since(then: datetime | None, now: datetime) -> float:
    return float("inf") if then is None else (now - then).total_seconds()


def _decide(
    state: TunerState,
    signals: Signals | None,
    now: datetime,
    action: Action,
    *,
    target: int,
    batching: bool,
    slo_met: bool | None,
    reason: str,
    **updates: Any,
) -> Decision:
    """Build the decision and the state to keep; a change restarts the streaks and the clock."""
    changed = target != state.current or batching != state.batching
    if changed:
        updates |= {
            "current": target,
            "batching": batching,
            "last_change_at": now,
            "up_streak": 0,
            "down_streak": 0,
            "settled_streak": 0,
        }
    new_state = state.model_copy(update=updates)
    return Decision(
        at=now,
        action=action,
        reason=reason,
        target=target,
        previous=state.current,
        batching=batching,
        previous_batching=state.batching,
        ceiling=min(
            (c for c in (new_state.ceiling, new_state.config.ceiling) if c is not None), default=None
        ),
        knee=new_state.knee,
        metrics_available=new_state.metrics_available,
        slo_met=slo_met,
        signals=signals,
        state=new_state,
    )
