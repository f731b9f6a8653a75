"""CP-SAT without pandas: the part of OR-Tools' `cp_model` API that `cpsat.py` uses.

`ortools.sat.python.cp_model` imports pandas (and numpy) at module level for its `*_series`
helpers, which the operator never calls: +42 MiB resident and ~320 modules in every replica that
plans. The model builder and the solver behind it live in the compiled `cp_model_helper`, which
imports neither; `cp_model.CpModel` is a thin Python subclass of its `CpBaseModel` and
`cp_model.CpSolver` a thin wrapper of its `SolveWrapper`. `Model` and `solve` below are those
wrappers, cut down to what the placement program needs, with the same method names and the
same bodies as OR-Tools 9.15's `cp_model.py` (Apache-2.0, Copyright 2010-2025 Google LLC), so
the program CP-SAT receives is byte for byte the one `cp_model.CpModel` would build
(tests/unit/test_placement_sat.py compares the two, and solves with both).

NB: the `_add_*` methods of `CpBaseModel` are OR-Tools' own private API (not in its .pyi):
`cp_model.py` calls them the same way. A new OR-Tools that changes them fails the test above;
`solver._import_cpsat` then still falls back to the greedy if this module cannot import.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ortools.sat.python import cp_model_helper as cmh
from ortools.util.python import sorted_interval_list

Constraint = cmh.Constraint
IntVar = cmh.IntVar
LinearExpr = cmh.LinearExpr
SatParameters = cmh.SatParameters
CpSolverResponse = cmh.CpSolverResponse
CpSolverStatus = cmh.CpSolverStatus
OPTIMAL = cmh.CpSolverStatus.OPTIMAL
FEASIBLE = cmh.CpSolverStatus.FEASIBLE

# What `cp_model` accepts as an integer without numpy: the operator passes only Python ints.
LinearExprT = LinearExpr | IntVar | int


class Model(cmh.CpBaseModel):
    """`cp_model.CpModel`'s builders that the placement program uses (same names, same protos)."""

    def __init__(self) -> None:
        cmh.CpBaseModel.__init__(self, None)

    @property
    def proto(self) -> cmh.CpModelProto:
        proto: cmh.CpModelProto = self.model_proto
        return proto

    def new_int_var(self, lb: int, ub: int, name: str) -> IntVar:
        return IntVar(self.model_proto).with_name(name).with_domain(sorted_interval_list.Domain(lb, ub))

    def new_bool_var(self, name: str) -> IntVar:
        return IntVar(self.model_proto).with_name(name).with_domain(sorted_interval_list.Domain(0, 1))

    def add(self, ct: cmh.BoundedLinearExpression | bool) -> Constraint:
        """A linear constraint (`expr <= k`, `a >= b`, ...); a plain bool adds a trivially true or
        false one, as `cp_model` does when `sum([])` made the comparison an int's."""
        if isinstance(ct, cmh.BoundedLinearExpression):
            return self._call("_add_bounded_linear_expression", ct)
        if ct and self.is_boolean_value(ct):
            return self._call("_add_bool_argument_constraint", cmh.BoolArgumentConstraint.bool_or, [True])
        if not ct and self.is_boolean_value(ct):
            return self._call("_add_bool_argument_constraint", cmh.BoolArgumentConstraint.bool_or, [])
        raise TypeError(f"not supported: Model.add({type(ct).__name__!r})")

    def add_at_most_one(self, literals: Iterable[IntVar]) -> Constraint:
        return self._call("_add_bool_argument_constraint", cmh.BoolArgumentConstraint.at_most_one, literals)

    def maximize(self, obj: LinearExprT) -> None:
        """`cp_model.CpModel.maximize` for an integer objective (the only kind built here)."""
        self.model_proto.clear_objective()
        self.model_proto.clear_floating_point_objective()
        objective = self.model_proto.objective
        if isinstance(obj, int):
            objective.offset = obj
            objective.scaling_factor = 1.0
            return
        if not isinstance(obj, LinearExpr) or not obj.is_integer():
            raise TypeError(f"not supported: an objective of {type(obj).__name__!r}")
        flat = cmh.FlatIntExpr(obj)
        for var in flat.vars:
            objective.vars.append(var.index)
        objective.scaling_factor = -1.0
        objective.offset = -flat.offset
        for c in flat.coeffs:
            objective.coeffs.append(-c)

    def add_hint(self, var: IntVar, value: int | bool) -> None:
        hint = self.model_proto.solution_hint
        if var.index >= 0:
            hint.vars.append(var.index)
            hint.values.append(int(value))
        else:
            hint.vars.append(-var.index - 1)
            hint.values.append(int(not value))

    def _call(self, method: str, *args: Any) -> Constraint:
        result: Constraint = getattr(self, method)(*args)
        return result


def solve(model: Model, parameters: SatParameters) -> CpSolverResponse:
    """`cp_model.CpSolver().solve(model)`: one search with `parameters`, no callbacks."""
    wrapper = cmh.SolveWrapper()
    wrapper.set_parameters(parameters)
    response: CpSolverResponse = wrapper.solve(model.proto)  # type: ignore[no-untyped-call]  # stub: *args
    return response


def boolean_value(response: CpSolverResponse, literal: IntVar) -> bool:
    return bool(cmh.ResponseHelper.boolean_value(response, literal))
