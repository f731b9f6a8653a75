"""Plain data of the concurrency controller: signals in, decisions and state out.

Pure; no I/O, no clock. Every type is a frozen pydantic model so that the controller's state
survives a round trip through a tenant's ``status`` (camelCase JSON) unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from edgetenant.api.models import BatchingMode, ConcurrencyMode, InferenceTenant


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )


# The tenant's own enums, so the spec's values pass straight through.
Mode = ConcurrencyMode


class Action(StrEnum):
    """What a decision does. `docs/tuning.md` explains each one."""

    HOLD = "Hold"
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    STEP_BACK = "StepBack"
    BACK_OFF = "BackOff"
    CLAMP = "Clamp"
    FIXED = "Fixed"
    ENABLE_BATCHING = "EnableBatching"
    DISABLE_BATCHING = "DisableBatching"


class Signals(_Frozen):
    """One reading of a model's Triton metrics, summed over its pods.

    Rates are averaged over ``window_s`` seconds ending at ``at`` (the query's evaluation time).
    Per-request times are means; ``latency_p95_ms`` comes from Triton's latency summaries.
    """

    at: datetime
    window_s: float = Field(gt=0)
    sample_age_s: float = Field(default=0.0, ge=0, description="age of the newest scrape at `at`")
    throughput: float = Field(ge=0, description="successful inferences per second")
    request_rate: float | None = Field(
        default=None,
        ge=0,
        description="successful requests per second (= throughput without client batching)",
    )
    queue_ms: float = Field(ge=0, description="mean queue time per request")
    compute_ms: float = Field(ge=0, description="mean compute (infer) time per request")
    latency_p95_ms: float | None = Field(default=None, ge=0)
    failure_rate: float = Field(default=0.0, ge=0, description="failed requests per second")
    pending: float | None = Field(default=None, ge=0, description="requests waiting in Triton's queues")
    memory_used_mib: float | None = Field(
        default=None, ge=0, description="device memory in use where the device reports it (never on Jetson)"
    )
    runs_on: str | None = Field(
        default=None, description="what the runtime reports it runs on, e.g. 'CPU (openvino 2026.4.1)'"
    )

    @property
    def window_start(self) -> datetime:
        return self.at - timedelta(seconds=self.window_s)

    @property
    def busy_instances(self) -> float:
        """Little's law: mean number of instances computing at once."""
        rate = self.throughput if self.request_rate is None else self.request_rate
        return rate * self.compute_ms / 1000.0

    @property
    def failure_ratio(self) -> float:
        total = self.throughput + self.failure_rate
        return self.failure_rate / total if total > 0 else 0.0

    def summary(self) -> dict[str, float]:
        """Rounded numbers for a status field, an Event or a log line."""
        out: dict[str, float] = {
            "throughput": round(self.throughput, 2),
            "queueMs": round(self.queue_ms, 2),
            "computeMs": round(self.compute_ms, 2),
            "failureRate": round(self.failure_rate, 3),
        }
        if self.latency_p95_ms is not None:
            out["latencyP95Ms"] = round(self.latency_p95_ms, 2)
        if self.pending is not None:
            out["pending"] = round(self.pending, 1)
        if self.memory_used_mib is not None:
            out["memoryUsedMiB"] = round(self.memory_used_mib, 1)
        return out


class TunerConfig(_Frozen):
    """The tenant's knobs plus the policy's parameters (defaults suit a 10-30 s interval)."""

    mode: Mode = Mode.AUTO
    min: int = Field(default=1, ge=1)
    max: int = Field(default=8, ge=1)
    initial: int = Field(default=1, ge=1)
    value: int | None = Field(default=None, ge=1, description="the instance count in Fixed mode")
    slo_p95_ms: float | None = Field(default=None, gt=0)
    ceiling: int | None = Field(
        default=None, ge=1, description="known failing concurrency (e.g. from a ModelProfile)"
    )
    batching: BatchingMode = BatchingMode.DISABLED
    max_batch_size: int = Field(default=0, ge=0)
    memory_limit_mib: float | None = Field(
        default=None, gt=0, description="device memory this tenant may use; only used when reported"
    )

    dead_band: float = Field(default=0.05, ge=0, description="a step must gain more than this fraction")
    queue_ratio_up: float = Field(
        default=0.2, ge=0, description="queue time / compute time above which demand exceeds capacity"
    )
    min_queue_ms: float = Field(default=0.5, ge=0, description="queue time below this is never demand")
    up_utilisation: float = Field(
        default=0.8, gt=0, le=1, description="busy share of the instances above which they are saturated"
    )
    down_utilisation: float = Field(
        default=0.6, gt=0, le=1, description="come down when busy instances fit in n-1 at this load"
    )
    up_window: int = Field(default=1, ge=1, description="consecutive readings of demand before a step up")
    down_window: int = Field(
        default=3, ge=1, description="consecutive readings of low load before a step down"
    )
    up_cooldown_s: float = Field(default=0.0, ge=0)
    down_cooldown_s: float = Field(default=60.0, ge=0)
    max_signal_age_s: float = Field(default=60.0, gt=0)
    reprobe_after_s: float = Field(
        default=900.0, gt=0, description="retry one step above the knee after this"
    )
    ceiling_ttl_s: float = Field(
        default=3600.0,
        gt=0,
        description="forget a learned ceiling after this, so a changed device or model is tried again",
    )
    failure_ratio_limit: float = Field(default=0.01, ge=0)
    probe_readings: int = Field(
        default=1, ge=1, description="readings averaged before a trial step is judged (more on noisy hosts)"
    )
    batching_settle: int = Field(
        default=3, ge=1, description="readings held at a settled count before batching is tried"
    )

    @model_validator(mode="after")
    def _bounds(self) -> TunerConfig:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Probe(_Frozen):
    """A change on trial: kept only if the next full window shows it gained throughput."""

    kind: Literal["concurrency", "batching"]
    goal: Literal["throughput", "latency"] = "throughput"
    from_concurrency: int
    to_concurrency: int
    from_batching: bool
    to_batching: bool
    baseline_throughput: float
    baseline_p95_ms: float | None = None
    started_at: datetime
    # Readings taken so far with the change in place (judged once `probeReadings` are in).
    readings: int = 0
    throughput_sum: float = 0.0
    failure_sum: float = 0.0
    p95_max_ms: float | None = None


class LearnedPoint(_Frozen):
    """Throughput and p95 seen at one setting while demand exceeded capacity (so: capacity)."""

    concurrency: int
    batching: bool = False
    throughput: float
    latency_p95_ms: float | None = None
    memory_mib: float | None = None
    samples: int = 1
    measured_at: datetime

    def to_profile_point(self, max_batch_size: int = 1) -> dict[str, Any]:
        """A ModelProfile point (camelCase, ``source: Online``)."""
        return {
            "concurrency": self.concurrency,
            "batchSize": max_batch_size if self.batching else 1,
            "throughput": round(self.throughput, 3),
            "latencyP95Ms": None if self.latency_p95_ms is None else round(self.latency_p95_ms, 3),
            "memoryMiB": None if self.memory_mib is None else round(self.memory_mib),
            "source": "Online",
            "measuredAt": self.measured_at.isoformat(),
        }


class TunerState(_Frozen):
    """Everything the controller remembers between steps; kept in the tenant's status."""

    config: TunerConfig = TunerConfig()
    current: int = 1
    batching: bool = False
    ceiling: int | None = Field(default=None, description="lowest concurrency that failed to load or run")
    ceiling_at: datetime | None = Field(default=None, description="when the ceiling was learned")
    knee: int | None = Field(default=None, description="best concurrency: one more gained nothing")
    knee_at: datetime | None = None
    last_change_at: datetime | None = None
    probe: Probe | None = None
    up_streak: int = 0
    down_streak: int = 0
    settled_streak: int = 0
    batching_verdict: bool | None = Field(default=None, description="whether batching helped when tried")
    metrics_available: bool = True
    last_good_at: datetime | None = None
    points: tuple[LearnedPoint, ...] = ()

    def point(self, concurrency: int, batching: bool = False) -> LearnedPoint | None:
        for p in self.points:
            if p.concurrency == concurrency and p.batching == batching:
                return p
        return None

    def profile_points(self) -> list[dict[str, Any]]:
        """The learned points as ModelProfile points (``source: Online``), sorted."""
        ordered = sorted(self.points, key=lambda p: (p.batching, p.concurrency))
        return [p.to_profile_point(self.config.max_batch_size) for p in ordered]

    def to_status(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_status(cls, data: dict[str, Any] | None, config: TunerConfig) -> TunerState:
        """The state kept in a status (or a fresh one), with the tenant's current knobs."""
        if not data:
            return initial_state(config)
        return cls.model_validate(data).model_copy(update={"config": config})


class Decision(_Frozen):
    """One step's outcome: what to run next, why, and the state to keep."""

    at: datetime
    action: Action
    reason: str
    target: int
    previous: int
    batching: bool
    previous_batching: bool
    ceiling: int | None
    knee: int | None
    metrics_available: bool
    slo_met: bool | None
    signals: Signals | None
    state: TunerState

    @property
    def changed(self) -> bool:
        return self.target != self.previous or self.batching != self.previous_batching

    def summary(self) -> dict[str, Any]:
        """``status.lastDecision``: at, action, reason, signals."""
        return {
            "at": self.at.isoformat(),
            "action": self.action.value,
            "reason": self.reason,
            "signals": self.signals.summary() if self.signals else {},
        }


def config_for_tenant(tenant: InferenceTenant, *, ceiling: int | None = None, **policy: Any) -> TunerConfig:
    """The tenant's knobs (concurrency, SLO, batching, max batch size) plus policy parameters.

    ``ceiling`` is a known failing concurrency, e.g. a ModelProfile's; ``policy`` overrides
    the policy's defaults (e.g. ``down_cooldown_s=30``).
    """
    spec = tenant.spec
    return TunerConfig(
        mode=spec.concurrency.mode,
        min=spec.concurrency.min,
        max=spec.concurrency.max,
        initial=spec.concurrency.initial,
        value=spec.concurrency.value,
        slo_p95_ms=spec.slo.latency_p95_ms,
        ceiling=ceiling,
        batching=spec.batching.mode,
        max_batch_size=spec.model.max_batch_size,
        memory_limit_mib=policy.pop("memory_limit_mib", None),
        **policy,
    )


def initial_state(config: TunerConfig) -> TunerState:
    start = config.value if config.mode is Mode.FIXED and config.value else config.initial
    start = max(config.min, min(config.max, start))
    if config.ceiling is not None and config.mode is Mode.AUTO:
        start = max(1, min(start, config.ceiling - 1))
    return TunerState(
        config=config,
        current=start,
        batching=config.batching is BatchingMode.FIXED and config.max_batch_size > 1,
    )
