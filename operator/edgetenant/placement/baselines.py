"""Baselines the solver is compared with; each returns an Assignment scored by the same
`evaluate`. None of them tunes concurrency: a tenant runs at the feasible concurrency nearest to
its `initial` one, as a plain Deployment would. Pure: no I/O, no clock (random is seeded).

  spread     Kubernetes-default-like: priority order, the compatible device with the most free
             memory (LeastAllocated), ties by name.
  first-fit  tenants by name, devices in preference order (class, node, index): the first that fits.
  fastest    each tenant on its fastest compatible class, the least utilised device there.
  random     a seeded random order, device and concurrency among those that fit.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from edgetenant.placement.problem import Choice, ClassCandidates, Level, Problem, TenantCandidates


class _Room:
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.memory_used = [0.0] * len(problem.devices)
        self.slots_used = [0] * len(problem.devices)
        self.utilisation = [0.0] * len(problem.devices)
        self.chosen: dict[str, Choice] = {}

    def fits(self, d: int, level: Level) -> bool:
        device = self.problem.devices[d]
        return (
            self.slots_used[d] < device.slots
            and self.memory_used[d] + level.memory_mib <= device.memory_mib + 1e-9
        )

    def free_fraction_after(self, d: int, level: Level) -> float:
        device = self.problem.devices[d]
        return (device.memory_mib - self.memory_used[d] - level.memory_mib) / max(device.memory_mib, 1e-9)

    def take(self, tc: TenantCandidates, d: int, level: Level) -> None:
        self.memory_used[d] += level.memory_mib
        self.slots_used[d] += 1
        self.utilisation[d] += tc.tenant.demand / level.throughput
        self.chosen[tc.tenant.key] = Choice(self.problem.devices[d].ref, level.concurrency)


def _initial_level(tc: TenantCandidates, cc: ClassCandidates) -> Level:
    return min(
        cc.levels, key=lambda lv: (abs(lv.concurrency - tc.tenant.initial_concurrency), lv.concurrency)
    )


def _devices(tc: TenantCandidates, cc: ClassCandidates) -> list[int]:
    return [d for d in cc.devices if not tc.pinned or d == tc.current]


def spread(problem: Problem) -> dict[str, Choice]:
    room = _Room(problem)
    order = sorted(problem.tenants, key=lambda tc: (not tc.pinned, -tc.tenant.priority, tc.tenant.key))
    for tc in order:
        best: tuple[float, int, Level] | None = None
        for cc in tc.classes:
            level = _initial_level(tc, cc)
            for d in _devices(tc, cc):
                if room.fits(d, level):
                    score = room.free_fraction_after(d, level)
                    if best is None or score > best[0]:
                        best = (score, d, level)
        if best is not None:
            room.take(tc, best[1], best[2])
    return room.chosen


def first_fit(problem: Problem) -> dict[str, Choice]:
    room = _Room(problem)
    for tc in sorted(problem.tenants, key=lambda tc: (not tc.pinned, tc.tenant.key)):
        placed = False
        for cc in tc.classes:
            level = _initial_level(tc, cc)
            for d in _devices(tc, cc):
                if room.fits(d, level):
                    room.take(tc, d, level)
                    placed = True
                    break
            if placed:
                break
    return room.chosen


def fastest(problem: Problem) -> dict[str, Choice]:
    room = _Room(problem)
    order = sorted(problem.tenants, key=lambda tc: (not tc.pinned, -tc.tenant.priority, tc.tenant.key))
    for tc in order:
        classes = [cc for cc in tc.classes if _devices(tc, cc)]
        if not classes:
            continue
        cc = max(classes, key=lambda cc: (_initial_level(tc, cc).throughput, -cc.rank))
        level = _initial_level(tc, cc)
        options = [d for d in _devices(tc, cc) if room.fits(d, level)]
        if options:
            room.take(tc, min(options, key=lambda d: room.utilisation[d]), level)
    return room.chosen


def random(problem: Problem, *, seed: int = 0) -> dict[str, Choice]:
    rng = _random.Random(seed)
    room = _Room(problem)
    order = list(problem.tenants)
    rng.shuffle(order)
    order.sort(key=lambda tc: not tc.pinned)  # stable: pinned first, the rest stay shuffled
    for tc in order:
        options = [
            (d, lv) for cc in tc.classes for d in _devices(tc, cc) for lv in cc.levels if room.fits(d, lv)
        ]
        if options:
            d, level = rng.choice(options)
            room.take(tc, d, level)
    return room.chosen


BASELINES: dict[str, Callable[[Problem], dict[str, Choice]]] = {
    "spread": spread,
    "first-fit": first_fit,
    "fastest": fastest,
    "random": random,
}
