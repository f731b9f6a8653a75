"""An upper bound on the reference objective for instances too large for exact search: the LP
that pools each class's devices into one budget of device time, slots and memory.

Valid because any plan satisfies it: a tenant t served s_t on class k uses s_t / thr(t,k,c) <=
s_t / thr_max(t,k) of one device's time, counts once against the class's slots (s_t / d_t <= 1)
and needs at least its smallest memory; every device offers time 1. Moves are left out (they only
lower the objective), so this bounds plans without forced moves.
"""

from __future__ import annotations

from ortools.linear_solver import pywraplp

from edgetenant.placement.problem import Problem


def pooled_lp_bound(problem: Problem) -> float:
    solver = pywraplp.Solver.CreateSolver("GLOP")
    devices_by_class: dict[str, list[int]] = {}
    for i, d in enumerate(problem.devices):
        devices_by_class.setdefault(d.ref.accelerator_class, []).append(i)
    time_rows: dict[str, list[tuple[float, object]]] = {}
    slot_rows: dict[str, list[tuple[float, object]]] = {}
    memory_rows: dict[str, list[tuple[float, object]]] = {}
    objective = solver.Objective()
    for t, tc in enumerate(problem.tenants):
        tenant = tc.tenant
        if tenant.demand <= 0:
            continue
        parts = []
        for cc in tc.classes:
            s = solver.NumVar(0.0, tenant.demand, f"s{t}_{cc.accelerator_class}")
            parts.append(s)
            objective.SetCoefficient(s, tenant.priority)
            thr = max(lv.throughput for lv in cc.levels)
            memory = min(lv.memory_mib for lv in cc.levels)
            time_rows.setdefault(cc.accelerator_class, []).append((1.0 / thr, s))
            slot_rows.setdefault(cc.accelerator_class, []).append((1.0 / tenant.demand, s))
            memory_rows.setdefault(cc.accelerator_class, []).append((memory / tenant.demand, s))
        if parts:
            row = solver.Constraint(0.0, tenant.demand)
            for s in parts:
                row.SetCoefficient(s, 1.0)
    for name, members in devices_by_class.items():
        capacity = {
            "time": float(len(members)),
            "slots": float(sum(problem.devices[i].slots for i in members)),
            "memory": float(sum(problem.devices[i].memory_mib for i in members)),
        }
        for kind, rows in (("time", time_rows), ("slots", slot_rows), ("memory", memory_rows)):
            row = solver.Constraint(0.0, capacity[kind])
            for coefficient, s in rows.get(name, []):
                row.SetCoefficient(s, coefficient)
    objective.SetMaximization()
    status = solver.Solve()
    assert status == pywraplp.Solver.OPTIMAL, status
    return float(objective.Value())
