"""The control loop's edge: read signals from Prometheus, ``step``, apply to every Triton.

Shared by the operator (one ``tune_tick`` per tenant from a kopf timer) and by
``edgetenant tune`` (``TuningLoop``). Knows nothing of Kubernetes: the caller passes the
endpoints (each pod's model-control URL), the knobs and the saved state, and keeps the
returned state.

A change is applied while the model serves traffic, so it goes to Triton's gRPC endpoint
(``grpc://host:port``): an HTTP load holds up every HTTP inference connection that shares the
load's worker thread in Triton until the load returns (see ``adapters.triton``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edgetenant.adapters import prometheus
from edgetenant.errors import EdgeTenantError, MetricsUnavailable, ModelLoadError
from edgetenant.render.triton import DynamicBatching, TritonModelSpec, model_config_json
from edgetenant.tuning.data import Decision, Signals, TunerConfig, TunerState, initial_state
from edgetenant.tuning.policy import load_failed, not_applied, step

# (instances, batching) -> the model's Triton config as JSON, for load_model(config=...).
RenderConfig = Callable[[int, bool], str]
# (endpoint URL, model name, config JSON) -> None; raises ModelLoadError when Triton refuses the
# config and another EdgeTenantError (e.g. TransientError) when it cannot be reached.
LoadModel = Callable[[str, str, str], Awaitable[None]]
ReadSignals = Callable[[prometheus.SignalQuery, datetime], Awaitable[Signals]]


def render_from_spec(spec: TritonModelSpec) -> RenderConfig:
    """Configs from the operator's render spec, with the controller's instance count and batching.

    Batching on uses the spec's own dynamic-batching settings when it has them (batching
    mode Fixed), else Triton's zero-delay default.
    """

    def render(instances: int, batching: bool) -> str:
        dynamic = (spec.dynamic_batching or DynamicBatching()) if batching else None
        return model_config_json(
            dataclasses.replace(spec, instance_count=instances, dynamic_batching=dynamic)
        )

    return render


def render_from_config(config: dict[str, Any]) -> RenderConfig:
    """Configs from a model's live config (as Triton returns it): only the instance count and
    dynamic batching change. For ``edgetenant tune`` against a Triton the operator did not render."""
    base = json.loads(json.dumps(config))  # a private deep copy

    def render(instances: int, batching: bool) -> str:
        out = json.loads(json.dumps(base))
        groups = out.get("instance_group") or [{"kind": "KIND_AUTO"}]
        out["instance_group"] = [{**groups[0], "count": instances}]
        if batching:
            out["dynamic_batching"] = base.get("dynamic_batching") or {}
        else:
            out.pop("dynamic_batching", None)
        return json.dumps(out, sort_keys=True, separators=(",", ":"))

    return render


@dataclass(frozen=True, slots=True)
class TuningTarget:
    """One tenant's model: where its metrics are and which Tritons serve it."""

    model: str
    # Model-control URLs, one per pod; every one gets each change. grpc://host:port, or
    # http://host:port for a Triton that offers no gRPC (its HTTP clients stall during a load).
    endpoints: Sequence[str]
    render_config: RenderConfig
    query: prometheus.SignalQuery
    load_model: LoadModel
    read_signals: ReadSignals


def target_for(
    *,
    model: str,
    endpoints: Sequence[str],
    prometheus_url: str,
    render_config: RenderConfig,
    labels: dict[str, str] | None = None,
    label_regexes: dict[str, str] | None = None,
    window_s: float = 20.0,
    load_model: LoadModel | None = None,
) -> TuningTarget:
    """A target reading Prometheus at ``prometheus_url`` and loading through tritonclient."""
    client = prometheus.connect(prometheus_url)

    async def read(query: prometheus.SignalQuery, at: datetime) -> Signals:
        return await prometheus.read_signals(client, query, at=at)

    return TuningTarget(
        model=model,
        endpoints=tuple(endpoints),
        render_config=render_config,
        query=prometheus.SignalQuery(
            model=model, labels=labels or {}, label_regexes=label_regexes or {}, window_s=window_s
        ),
        load_model=load_model or triton_load_model,
        read_signals=read,
    )


async def triton_load_model(endpoint: str, model: str, config_json: str) -> None:
    """Load ``model`` with ``config_json`` on the Triton at ``endpoint`` (grpc:// or http://)."""
    from edgetenant.adapters.triton import load_model_at  # noqa: PLC0415  (lazy: pulls in tritonclient)

    await load_model_at(endpoint, model, config=config_json)


@dataclass(frozen=True, slots=True)
class TickResult:
    decision: Decision
    applied_to: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())


async def tune_tick(state: TunerState, target: TuningTarget, *, now: datetime | None = None) -> Decision:
    """One control interval: read, decide, apply to every endpoint; returns the decision.

    Keep ``decision.state`` (``.to_status()``) for the next tick. Never raises for
    unavailable metrics (the decision holds and says so) or a refused load (it backs off
    and records the ceiling).
    """
    return (await tune_tick_detailed(state, target, now=now)).decision


async def tune_tick_detailed(
    state: TunerState, target: TuningTarget, *, now: datetime | None = None
) -> TickResult:
    clock_given = now is not None
    now = now or datetime.now(UTC)
    why_blind = ""
    try:
        signals: Signals | None = await target.read_signals(target.query, now)
    except MetricsUnavailable as exc:
        signals, why_blind = None, str(exc)
    decision = step(state, signals, now)
    if why_blind:
        decision = decision.model_copy(update={"reason": f"{decision.reason}: {why_blind}"})
    if not decision.changed:
        return TickResult(decision)

    config = target.render_config(decision.target, decision.batching)
    errors = await _apply_everywhere(target, config)
    if not errors:
        # A load takes a while (new instances start while the old serve): the change counts from
        # when it finished, so the next judged window holds only the new setting.
        applied_at = now if clock_given else max(now, datetime.now(UTC))
        state = decision.state.model_copy(update={"last_change_at": applied_at})
        return TickResult(decision.model_copy(update={"state": state}), applied_to=tuple(target.endpoints))
    refused = [f"{url}: {exc}" for url, exc in errors if isinstance(exc, ModelLoadError)]
    message = "; ".join(refused or [f"{url}: {exc}" for url, exc in errors])
    undone = load_failed(decision, now, message) if refused else not_applied(decision, now, message)
    # Pods that took the change go back, so every pod runs the same config.
    back = target.render_config(undone.target, undone.batching)
    await _apply_everywhere(target, back)
    return TickResult(undone, errors=tuple(f"{url}: {exc}" for url, exc in errors))


async def apply_state(state: TunerState, target: TuningTarget) -> None:
    """Make every endpoint run the state's setting (at start-up). Raises the first failure."""
    await apply_setting(target, state.current, state.batching)


async def apply_setting(target: TuningTarget, instances: int, batching: bool) -> None:
    """Apply one setting to every endpoint, as a tick applies a decision. Raises the first failure."""
    errors = await _apply_everywhere(target, target.render_config(instances, batching))
    if errors:
        raise errors[0][1]


async def _apply_everywhere(target: TuningTarget, config_json: str) -> list[tuple[str, EdgeTenantError]]:
    async def one(url: str) -> tuple[str, EdgeTenantError] | None:
        try:
            await target.load_model(url, target.model, config_json)
        except EdgeTenantError as exc:
            return url, exc
        return None

    results = await asyncio.gather(*(one(url) for url in target.endpoints))
    return [r for r in results if r is not None]


@dataclass(slots=True)
class TuningLoop:
    """``tune_tick`` every ``interval_s`` seconds (the standalone ``edgetenant tune``)."""

    target: TuningTarget
    config: TunerConfig
    interval_s: float = 10.0
    state: TunerState | None = None
    history: list[TickResult] = field(default_factory=list)

    async def run(
        self,
        *,
        intervals: int | None = None,
        duration_s: float | None = None,
        on_tick: Callable[[TickResult], None] | None = None,
        apply_initial: bool = True,
    ) -> list[TickResult]:
        """Run until ``intervals`` ticks or ``duration_s`` seconds (whichever comes first)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        state = self.state or initial_state(self.config)
        if apply_initial:
            await apply_state(state, self.target)
            state = state.model_copy(update={"last_change_at": datetime.now(UTC)})
        count = 0
        next_at = started + self.interval_s
        while (intervals is None or count < intervals) and (
            duration_s is None or loop.time() - started + self.interval_s <= duration_s + 1e-6
        ):
            await asyncio.sleep(max(next_at - loop.time(), 0.0))
            result = await tune_tick_detailed(state, self.target)
            # A slow tick (a long load) never causes catch-up ticks: those would all read the
            # same instant. After a change the next one waits a full interval from its end.
            spacing = self.interval_s if result.applied_to else self.interval_s / 2
            next_at = max(next_at + self.interval_s, loop.time() + spacing)
            state = result.decision.state
            self.state = state
            self.history.append(result)
            if on_tick is not None:
                on_tick(result)
            count += 1
        return self.history
