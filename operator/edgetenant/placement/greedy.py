"""Greedy placement with a relocation pass: always available, fast at any scale, and the warm
start (hint) for CP-SAT. Pure: no I/O, no clock.

Tenants are taken in order (pinned first, then by priority x demand, then key); each goes to the
choice with the largest gain in the reference objective given those already placed, ties broken
by class preference, node name, device index, lower concurrency. Relocation passes then take
each tenant out and put it back at its best choice until nothing improves.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgetenant.placement.problem import Assignment, Choice, Level, Problem, TenantCandidates

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class _State:
    """Per-device aggregates that make a tenant's marginal gain O(1) per candidate."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        n = len(problem.devices)
        self.memory = np.array([d.memory_mib for d in problem.devices], dtype=np.float64)
        self.slots = np.array([d.slots for d in problem.devices], dtype=np.int64)
        self.memory_used = np.zeros(n)
        self.slots_used = np.zeros(n, dtype=np.int64)
        self.utilisation = np.zeros(n)  # U = sum demand / thr
        self.weight = np.zeros(n)  # sum priority * demand
        self.placed: dict[int, tuple[int, int, float, float]] = {}  # tenant -> (device, c, u, memory)
        self._arrays: dict[int, IntArray] = {}

    def value(self, devices: IntArray | int) -> FloatArray:
        u = self.utilisation[devices]
        return np.asarray(self.weight[devices] * np.minimum(1.0, 1.0 / np.maximum(u, 1.0)))

    def devices_array(self, devices: tuple[int, ...]) -> IntArray:
        found = self._arrays.get(id(devices))
        if found is None:
            found = self._arrays[id(devices)] = np.array(devices, dtype=np.int64)
        return found

    def add(self, t: int, device: int, concurrency: int, u: float, memory: float) -> None:
        tenant = self.problem.tenants[t].tenant
        self.memory_used[device] += memory
        self.slots_used[device] += 1
        self.utilisation[device] += u
        self.weight[device] += tenant.priority * tenant.demand
        self.placed[t] = (device, concurrency, u, memory)

    def remove(self, t: int) -> None:
        device, _, u, memory = self.placed.pop(t)
        tenant = self.problem.tenants[t].tenant
        self.memory_used[device] -= memory
        self.slots_used[device] -= 1
        self.utilisation[device] -= u
        self.weight[device] -= tenant.priority * tenant.demand

    def best(self, t: int) -> tuple[float, int, int, float, float] | None:
        """(gain, device, concurrency, u, memory) of the tenant's best choice, or None."""
        tc: TenantCandidates = self.problem.tenants[t]
        best: tuple[float, int, int, float, float] | None = None
        for cc in tc.classes:
            devices = self.devices_array(cc.devices)
            if tc.pinned:
                devices = devices[devices == tc.current]
            if devices.size == 0:
                continue
            # Rows are devices, columns levels: the first maximum of the flattened matrix is the
            # earliest node, then the lowest concurrency. Rounding keeps float noise from
            # deciding ties.
            gains = np.round(self.gains(t, devices, cc.levels), 9)
            flat = int(np.argmax(gains))
            g = float(gains.flat[flat])
            if g == -np.inf or (best is not None and g <= best[0]):
                continue
            i, j = divmod(flat, len(cc.levels))
            level = cc.levels[j]
            best = (
                g,
                int(devices[i]),
                level.concurrency,
                tc.tenant.demand / level.throughput,
                level.memory_mib,
            )
        return best

    def gains(self, t: int, devices: IntArray, levels: tuple[Level, ...]) -> FloatArray:
        """Marginal objective of adding tenant t: rows devices, columns levels (-inf: no room)."""
        tc = self.problem.tenants[t]
        tenant = tc.tenant
        pd = tenant.priority * tenant.demand
        base = self.value(devices)
        u_now = self.utilisation[devices]
        weight = self.weight[devices]
        free_memory = self.memory[devices] - self.memory_used[devices] + 1e-9
        has_slot = self.slots_used[devices] < self.slots[devices]
        bonus = (
            np.where(devices == tc.current, self.problem.move_cost, 0.0) if tc.current is not None else 0.0
        )
        result = np.empty((devices.size, len(levels)))
        for j, level in enumerate(levels):
            new_u = np.maximum(u_now + tenant.demand / level.throughput, 1.0)
            gain = (weight + pd) / new_u - base + bonus
            ok = has_slot & (level.memory_mib <= free_memory)
            result[:, j] = np.where(ok, gain, -np.inf)
        return result

    def first_at_least(
        self, t: int, here: tuple[int, int, float, float] | None
    ) -> tuple[int, int, float, float] | None:
        """The first choice in tie-break order scoring at least as well as `here` (t is out)."""
        tc = self.problem.tenants[t]
        target = 0.0
        if here is not None:
            cc = next(
                cc
                for cc in tc.classes
                if here[0] in cc.devices and any(lv.concurrency == here[1] for lv in cc.levels)
            )
            level = next(lv for lv in cc.levels if lv.concurrency == here[1])
            target = float(self.gains(t, np.array([here[0]]), (level,))[0, 0])
        tolerance = 1e-9 * max(1.0, abs(target))
        for cc in tc.classes:
            devices = self.devices_array(cc.devices)
            if tc.pinned:
                devices = devices[devices == tc.current]
            if devices.size == 0:
                continue
            gains = self.gains(t, devices, cc.levels)
            hits = np.flatnonzero(gains.ravel() >= target - tolerance)
            if hits.size:
                i, j = divmod(int(hits[0]), len(cc.levels))
                level = cc.levels[j]
                return (
                    int(devices[i]),
                    level.concurrency,
                    tc.tenant.demand / level.throughput,
                    level.memory_mib,
                )
        return here

    def place(self, t: int) -> bool:
        choice = self.best(t)
        # A tenant is placed when it adds value; one with no demand still gets a device.
        if choice is None or choice[0] < 0 or (choice[0] == 0 and self.problem.tenants[t].tenant.demand > 0):
            return False
        _, device, concurrency, u, memory = choice
        self.add(t, device, concurrency, u, memory)
        return True

    def assignment(self) -> dict[str, Choice]:
        return {
            self.problem.tenants[t].tenant.key: Choice(self.problem.devices[d].ref, c)
            for t, (d, c, _, _) in sorted(self.placed.items())
        }


def greedy_order(problem: Problem) -> list[int]:
    return sorted(
        range(len(problem.tenants)),
        key=lambda t: (
            not problem.tenants[t].pinned,
            -problem.tenants[t].tenant.priority * problem.tenants[t].tenant.demand,
            problem.tenants[t].tenant.key,
        ),
    )


def solve_greedy(problem: Problem, *, relocation_passes: int = 3) -> dict[str, Choice]:
    state = _State(problem)
    order = greedy_order(problem)
    for t in order:
        state.place(t)
    for _ in range(relocation_passes):
        changed = False
        for t in order:
            before = state.placed.get(t)
            if before is not None:
                state.remove(t)
            state.place(t)
            after = state.placed.get(t)
            changed |= (before and before[:2]) != (after and after[:2])
        if not changed:
            break
    return state.assignment()


def shortlist(problem: Problem, assignment: Assignment, *, per_tenant: int) -> dict[int, set[int]]:
    """For each tenant, the devices worth offering CP-SAT on a large instance: where it is now,
    its current device, and the `per_tenant` devices with the best gain given everyone else."""
    state = _State(problem)
    for key, choice in assignment.items():
        t = problem.tenant_index[key]
        level = problem.level(key, choice)
        assert level is not None
        state.add(
            t,
            problem.device_index[choice.device],
            choice.concurrency,
            problem.tenants[t].tenant.demand / level.throughput,
            level.memory_mib,
        )
    result: dict[int, set[int]] = {}
    for t, tc in enumerate(problem.tenants):
        here = state.placed.get(t)
        if here is not None:
            state.remove(t)
        keep = {d for d in (tc.current, here and here[0]) if d is not None}
        scored: list[tuple[float, int]] = []
        for cc in tc.classes:
            devices = state.devices_array(cc.devices)
            if tc.pinned:
                devices = devices[devices == tc.current]
            if devices.size == 0:
                continue
            gains = state.gains(t, devices, cc.levels).max(axis=1)
            top = np.argsort(-gains, kind="stable")[:per_tenant]
            scored.extend((float(gains[i]), int(devices[i])) for i in top if gains[i] > -np.inf)
        scored.sort(key=lambda s: -s[0])
        keep.update(d for _, d in scored[:per_tenant])
        result[t] = keep
        if here is not None:
            state.add(t, *here)
    return result


def polish(problem: Problem, assignment: Assignment) -> dict[str, Choice]:
    """Break ties deterministically without lowering the objective: each tenant (by key) takes
    the first choice in preference order (class preference, node name, device index, lower
    concurrency; unplaced last) that scores at least as well as where it is."""
    state = _State(problem)
    for key, choice in assignment.items():
        t = problem.tenant_index[key]
        level = problem.level(key, choice)
        assert level is not None
        d = problem.device_index[choice.device]
        state.add(
            t, d, choice.concurrency, problem.tenants[t].tenant.demand / level.throughput, level.memory_mib
        )
    for t in range(len(problem.tenants)):
        here = state.placed.get(t)
        if here is not None:
            state.remove(t)
        first = state.first_at_least(t, here)
        if first is not None:
            state.add(t, *first)
    return state.assignment()
