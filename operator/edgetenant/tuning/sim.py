"""A simulated device for testing the controller, built from a measured ModelProfile.

Pure and seeded: the profile's points (throughput and p95 against instance count, as the
profiler measured them on a real Triton) are interpolated; an offered load (closed loop: N
clients; open loop: Poisson arrivals at a rate) turns them into the Signals Triton's metrics
would show; noise comes from a seeded generator; a load above the memory limit fails.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from edgetenant.tuning.data import Decision, Signals, TunerState
from edgetenant.tuning.policy import load_failed, step

# An overloaded open-loop queue grows without bound; the simulation caps the reported wait
# at this many service times, which is far above any threshold the controller uses.
_OVERLOAD_QUEUE_SERVICE_TIMES = 50.0


class SimulatedLoadError(Exception):
    """The simulated device refused a configuration (out of memory)."""


@dataclass(frozen=True, slots=True)
class CurvePoint:
    concurrency: int
    throughput: float  # inferences/s with every instance busy
    latency_p95_ms: float
    memory_mib: float | None = None


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """N clients, each sending its next request when the last one returns."""

    clients: int


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """Poisson arrivals at ``rate`` requests per second."""

    rate: float


Load = ClosedLoop | OpenLoop


def curve_from_profile(profile: Mapping[str, Any]) -> list[CurvePoint]:
    """Batch-size-1 points of a ModelProfile (its dict or YAML form), sorted by concurrency."""
    spec = profile.get("spec", profile)
    points = [
        CurvePoint(
            concurrency=int(p["concurrency"]),
            throughput=float(p["throughput"]),
            latency_p95_ms=float(p["latencyP95Ms"]),
            memory_mib=None if p.get("memoryMiB") is None else float(p["memoryMiB"]),
        )
        for p in spec["points"]
        if int(p.get("batchSize", 1)) == 1
    ]
    return sorted(points, key=lambda p: p.concurrency)


@dataclass(slots=True)
class SimulatedDevice:
    """One model on one device; ``load`` changes its instance count like Triton's load API."""

    curve: Sequence[CurvePoint]
    memory_limit_mib: float | None = None
    memory_per_instance_mib: float | None = None  # used when the profile has no memory figures
    reports_memory: bool = False  # Jetson-like devices report nothing
    noise: float = 0.02  # relative standard deviation of every reading
    seed: int = 0
    concurrency: int = 1
    batching: bool = False
    loads: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not self.curve:
            raise ValueError("a simulated device needs at least one measured point")
        self._rng = random.Random(self.seed)

    # -- the device ------------------------------------------------------------------------------

    def capacity(self, concurrency: int) -> float:
        """Throughput with ``concurrency`` instances all busy (linear between measured points)."""
        return _interpolate(self.curve, concurrency, lambda p: p.throughput)

    def memory_mib(self, concurrency: int) -> float | None:
        if all(p.memory_mib is not None for p in self.curve):
            return _interpolate(self.curve, concurrency, lambda p: p.memory_mib or 0.0)
        if self.memory_per_instance_mib is not None:
            return self.memory_per_instance_mib * concurrency
        return None

    def load(self, concurrency: int, batching: bool = False) -> None:
        needed = self.memory_mib(concurrency)
        if self.memory_limit_mib is not None and needed is not None and needed > self.memory_limit_mib:
            raise SimulatedLoadError(
                f"out of memory: {concurrency} instances need {needed:.0f} MiB of {self.memory_limit_mib:.0f}"
            )
        self.concurrency = concurrency
        self.batching = batching
        self.loads += 1

    def best_static(self, load: Load, *, max_concurrency: int) -> tuple[int, float]:
        """The brute-force answer: the count with the most throughput under ``load`` that loads."""
        best = (1, 0.0)
        for c in range(1, max_concurrency + 1):
            needed = self.memory_mib(c)
            if self.memory_limit_mib is not None and needed is not None and needed > self.memory_limit_mib:
                break
            throughput = self.expected(c, load)[0]
            if throughput > best[1] * 1.0001:
                best = (c, throughput)
        return best

    def expected(self, concurrency: int, load: Load) -> tuple[float, float, float, float]:
        """Noise-free (throughput/s, queue ms, compute ms, p95 ms) at ``concurrency`` under ``load``."""
        if isinstance(load, ClosedLoop):
            return self._closed(concurrency, load.clients)
        return self._open(concurrency, load.rate)

    def signals(self, at: datetime, load: Load, *, window_s: float) -> Signals:
        """What Prometheus would report over the last ``window_s`` seconds, with noise."""
        throughput, queue_ms, compute_ms, p95_ms = self.expected(self.concurrency, load)
        memory = self.memory_mib(self.concurrency) if self.reports_memory else None
        return Signals(
            at=at,
            window_s=window_s,
            throughput=self._noisy(throughput),
            queue_ms=self._noisy(queue_ms),
            compute_ms=self._noisy(compute_ms),
            latency_p95_ms=self._noisy(p95_ms),
            failure_rate=0.0,
            pending=None,
            memory_used_mib=memory,
        )

    # -- queueing --------------------------------------------------------------------------------

    def _service_ms(self, busy: float) -> float:
        """Mean compute time per request with ``busy`` instances computing at once."""
        busy = max(busy, 1.0)
        return 1000.0 * busy / _interpolate_float(self.curve, busy, lambda p: p.throughput)

    def _p95_ratio(self, busy: float) -> float:
        """p95 over mean latency as measured (the profiler ran as many clients as instances)."""
        busy = max(busy, 1.0)
        p95 = _interpolate_float(self.curve, busy, lambda p: p.latency_p95_ms)
        return min(max(p95 / self._service_ms(busy), 1.0), 3.0)

    def _closed(self, concurrency: int, clients: int) -> tuple[float, float, float, float]:
        if clients <= 0:
            return 0.0, 0.0, 0.0, 0.0
        busy = min(clients, concurrency)
        throughput = self.capacity(busy)
        compute_ms = 1000.0 * busy / throughput
        queue_ms = 1000.0 * (clients - busy) / throughput  # Little's law over the waiting clients
        return throughput, queue_ms, compute_ms, (queue_ms + compute_ms) * self._p95_ratio(busy)

    def _open(self, concurrency: int, rate: float) -> tuple[float, float, float, float]:
        if rate <= 0:
            return 0.0, 0.0, 0.0, 0.0
        capacity = self.capacity(concurrency)
        if rate >= capacity:
            compute_ms = self._service_ms(concurrency)
            queue_ms = _OVERLOAD_QUEUE_SERVICE_TIMES * compute_ms
            return capacity, queue_ms, compute_ms, (queue_ms + compute_ms) * 1.2
        # Busy instances and their service time depend on each other: iterate to the fixed point.
        busy = rate * self._service_ms(1.0) / 1000.0
        for _ in range(20):
            busy = min(rate * self._service_ms(busy) / 1000.0, float(concurrency))
        compute_ms = self._service_ms(busy)
        utilisation = rate / capacity
        queue_ms = _erlang_c(concurrency, utilisation) * compute_ms / (concurrency * (1 - utilisation))
        # M/M/c waits are exponential-ish: their p95 is ~3x the mean wait.
        p95_ms = compute_ms * self._p95_ratio(busy) + 3.0 * queue_ms
        return rate, queue_ms, compute_ms, p95_ms

    def _noisy(self, value: float) -> float:
        if self.noise <= 0 or value == 0:
            return value
        return max(value * self._rng.gauss(1.0, self.noise), 0.0)


def _interpolate(
    curve: Sequence[CurvePoint], concurrency: int, value: Callable[[CurvePoint], float]
) -> float:
    return _interpolate_float(curve, float(concurrency), value)


def _interpolate_float(curve: Sequence[CurvePoint], x: float, value: Callable[[CurvePoint], float]) -> float:
    """Linear between measured points; flat beyond the last (more instances than measured add nothing)."""
    if x <= curve[0].concurrency:
        return value(curve[0]) * (x / curve[0].concurrency if x < curve[0].concurrency else 1.0)
    for lo, hi in pairwise(curve):
        if lo.concurrency <= x <= hi.concurrency:
            frac = (x - lo.concurrency) / (hi.concurrency - lo.concurrency)
            return value(lo) + frac * (value(hi) - value(lo))
    return value(curve[-1])


def _erlang_c(servers: int, utilisation: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (utilisation per server < 1)."""
    offered = servers * utilisation
    term = 1.0
    total = 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    last = term * offered / servers / (1 - utilisation)
    return last / (total + last) if math.isfinite(last) else 1.0


@dataclass(frozen=True, slots=True)
class Tick:
    """One control interval of a simulated run."""

    index: int
    load: Load
    signals: Signals | None
    decision: Decision
    throughput: float  # noise-free throughput after the decision was applied


def simulate(
    device: SimulatedDevice,
    state: TunerState,
    load_at: Callable[[int], Load],
    *,
    intervals: int,
    interval_s: float = 10.0,
    start: datetime,
    metrics_at: Callable[[int], bool] = lambda _: True,
) -> list[Tick]:
    """Run the controller against the device for ``intervals`` control intervals.

    ``load_at(i)`` is the offered load during interval i; ``metrics_at(i)`` False simulates
    Prometheus being unreachable (the controller then sees no signals).
    """
    device.load(state.current, state.batching)
    ticks: list[Tick] = []
    for i in range(intervals):
        now = start + timedelta(seconds=interval_s * (i + 1))
        load = load_at(i)
        signals = device.signals(now, load, window_s=interval_s) if metrics_at(i) else None
        decision = step(state, signals, now)
        if decision.changed:
            try:
                device.load(decision.target, decision.batching)
            except SimulatedLoadError as exc:
                decision = load_failed(decision, now, str(exc))
        state = decision.state
        ticks.append(Tick(i, load, signals, decision, device.expected(device.concurrency, load)[0]))
    return ticks
