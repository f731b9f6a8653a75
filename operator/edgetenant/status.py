"""What a tenant's status should say, from what was observed. Pure: no I/O, time passed in.

The reconciler observes (the plan, the tenant's pods, what Triton on each pod answers) and this module
turns that into the status block and the Events that announce changes. Conditions follow kstatus:
Ready, Reconciling and Stalled, plus Placed and ModelLoaded; MetricsAvailable and SLOMet belong to
the tuning loop and are carried over untouched.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from edgetenant.placement import AcceleratorClass, Node, Placement
from edgetenant.placement.problem import devices_of

MOVE_WINDOW = timedelta(hours=1)
MAX_MOVE_HISTORY = 10
OWNED_CONDITIONS = ("Ready", "Reconciling", "Stalled", "Placed", "ModelLoaded", "PlanWarnings")


class Writer(StrEnum):
    """Who writes a status field. One owner per field: a writer never regresses another's fields."""

    RECONCILER = "reconciler"
    TUNING = "tuning"


FIELDS: dict[Writer, frozenset[str]] = {
    Writer.RECONCILER: frozenset(
        {
            "observedGeneration",
            "targetPlacement",
            "activePlacement",
            "moveHistory",
            "movesInLastHour",
            "endpoint",
            "modelName",
            "replicas",
            "selector",
        }
    ),
    Writer.TUNING: frozenset({"concurrency", "lastDecision", "observed", "lastFailure"}),
}
CONDITIONS: dict[Writer, tuple[str, ...]] = {
    Writer.RECONCILER: OWNED_CONDITIONS,
    Writer.TUNING: ("MetricsAvailable", "SLOMet"),
}
CONDITION_ORDER = (*CONDITIONS[Writer.RECONCILER], *CONDITIONS[Writer.TUNING])


def owned_patch(latest: dict[str, Any], proposed: dict[str, Any], writer: Writer) -> dict[str, Any]:
    """The merge patch that writes `writer`'s part of `proposed` over the newest status `latest`.

    Fields another writer owns are dropped, whatever `proposed` says about them; conditions are merged
    by type (a merge patch replaces the whole list). The reconciler also seeds `concurrency` (what
    was rendered) until the tuning loop has decided once. Empty when nothing would change.
    """
    owned = FIELDS[writer]
    patch = {
        key: value
        for key, value in proposed.items()
        if latest.get(key) != value
        and (
            key in owned
            or (key == "concurrency" and writer is Writer.RECONCILER and not latest.get("lastDecision"))
        )
    }
    if "conditions" in proposed:
        mine = {c["type"]: c for c in proposed["conditions"] if c["type"] in CONDITIONS[writer]}
        others = [c for c in latest.get("conditions", []) if c["type"] not in CONDITIONS[writer]]
        merged = sorted(
            [*others, *mine.values()],
            key=lambda c: CONDITION_ORDER.index(c["type"]) if c["type"] in CONDITION_ORDER else 99,
        )
        if merged != latest.get("conditions", []):
            patch["conditions"] = merged
    return patch


@dataclass(frozen=True, slots=True)
class PodView:
    """One serving pod as the operator saw it, including Triton's own answer."""

    name: str
    node: str | None
    ip: str | None
    phase: str
    model_ready: bool
    message: str  # why not ready, in words ("" when ready)
    fetch_failed: str = ""  # why the pod cannot get its model (the fetcher's error, a missing Secret)
    template: str = ""  # the pod template it runs (render.kube.TEMPLATE_ANNOTATION)
    fetch_reason: str = ""  # ModelLoaded's reason for it: ModelNotFound, ModelDigestMismatch, ...


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the status is computed from for one tenant at one moment."""

    generation: int
    placement: Placement | None
    unplaced_reason: str | None
    spec_problem: str | None  # invalid in ways the schema cannot catch (unknown class, bad URI)
    pods: tuple[PodView, ...]
    instance_count: int
    endpoint: str | None
    resource: str
    selector: str
    replicas: int
    estimated: bool = False
    model_name: str | None = None
    # The pod template the operator rendered for the target; only its pods count as serving the target
    # (a pod left from an earlier template on the same node may still be ready).
    template: str | None = None
    unplaced_kind: str = "Unschedulable"  # or PlanningError: the planner failed on this tenant (a bug)
    plan_warnings: tuple[str, ...] = ()  # what the planner ignored or interpreted about this tenant
    pods_refused: str = ""  # the Deployment cannot create pods (admission refused them): its words
    apply_refused: str = ""  # the API server refused a child (the Deployment, ConfigMap, ...): its words
    events: list[tuple[str, str, str]] = field(default_factory=list)  # filled by desired_status


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def condition(
    previous: dict[str, dict[str, Any]],
    kind: str,
    status: bool | None,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    value = "Unknown" if status is None else ("True" if status else "False")
    old = previous.get(kind)
    changed = old is None or old.get("status") != value
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": iso(now) if changed else old["lastTransitionTime"],  # type: ignore[index]
        "observedGeneration": generation,
    }


def placement_dict(p: Placement, resource: str, basis: str) -> dict[str, Any]:
    return {
        "node": p.node,
        "acceleratorClass": p.accelerator_class,
        "resource": resource,
        "device": str(p.device),
        "basis": basis,
    }


def recent_moves(history: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    cutoff = now - MOVE_WINDOW
    return [m for m in history if datetime.fromisoformat(str(m["at"]).replace("Z", "+00:00")) >= cutoff]


def same_device(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a["node"], a["acceleratorClass"], str(a.get("device", "0"))) == (
        b["node"],
        b["acceleratorClass"],
        str(b.get("device", "0")),
    )


def desired_status(old: dict[str, Any], obs: Observation, now: datetime) -> dict[str, Any]:
    """The new status block. Appends (type, reason, message) Events for what changed to obs.events."""
    previous = {c["type"]: c for c in old.get("conditions", [])}
    gen = obs.generation
    cond = functools.partial(condition, previous, generation=gen, now=now)
    status: dict[str, Any] = {"observedGeneration": gen}
    target = old.get("targetPlacement")
    active = old.get("activePlacement")
    history = list(old.get("moveHistory", []))

    # --- Placed ---------------------------------------------------------------------------------
    if obs.spec_problem:
        placed = cond("Placed", False, "InvalidSpec", obs.spec_problem)
        if previous.get("Stalled", {}).get("message") != obs.spec_problem:
            obs.events.append(("Warning", "InvalidSpec", obs.spec_problem))
    elif obs.placement is None:
        why = obs.unplaced_reason or "the planner found no feasible device"
        placed = cond("Placed", False, obs.unplaced_kind, why)
        if previous.get("Placed", {}).get("message") != why:
            obs.events.append(("Warning", obs.unplaced_kind, why))
    else:
        p = obs.placement
        basis = "Estimate" if obs.estimated else "Profile"
        new_target = placement_dict(p, obs.resource, basis)
        where = f"{p.accelerator_class} device {p.device} on node {p.node}"
        message = f"{where}; predicted {p.predicted_throughput:.1f} req/s, p95 {p.predicted_p95_ms:.0f} ms"
        if obs.estimated:
            message += " (estimated: no ModelProfile yet)"
        placed = cond("Placed", True, "Placed", message)
        if target is None:
            obs.events.append(("Normal", "Placed", f"placed on {where}"))
        elif not same_device(target, new_target):
            history.append({"at": iso(now), "from": target, "to": new_target, "reason": "re-planned"})
            obs.events.append(
                (
                    "Normal",
                    "MoveStarted",
                    f"moving from {target['acceleratorClass']} on {target['node']} to {where}",
                )
            )
        target = new_target
    status["targetPlacement"] = target

    # --- ModelLoaded / activePlacement ------------------------------------------------------------
    ready_pods = [pod for pod in obs.pods if pod.model_ready]
    on_target = [
        pod
        for pod in ready_pods
        if target is not None and obs.template is not None and pod.template == obs.template
    ]
    if on_target and target is not None:
        new_active: dict[str, Any] | None = target
    elif ready_pods and active is not None and any(pod.node == active["node"] for pod in ready_pods):
        new_active = active  # make-before-break: the old copy serves until the new one is ready
    elif ready_pods:
        new_active = None
    else:
        new_active = active if any(pod.node == (active or {}).get("node") for pod in obs.pods) else None
    arrived = target is not None and same_device(new_active, target)
    if arrived and target is not None and active is not None and not same_device(active, target):
        obs.events.append(("Normal", "MoveCompleted", f"now served on {target['node']}"))
    status["activePlacement"] = new_active

    fetch_problems = [pod for pod in obs.pods if pod.fetch_failed]
    # Make-before-break: while the new copy cannot come up, the previous model serves.
    still_serving = f"; the previous model still serves on {len(ready_pods)} pod(s)" if ready_pods else ""
    if on_target:
        loaded = cond(
            "ModelLoaded",
            True,
            "ModelReady",
            f"Triton reports the model ready on {len(on_target)} pod(s)",
        )
    elif obs.apply_refused:
        message = f"the API server refused the tenant's objects: {obs.apply_refused}{still_serving}"
        loaded = cond("ModelLoaded", False, "ApplyRefused", message[:1000])
    elif obs.pods_refused:
        message = f"the tenant's pods are refused: {obs.pods_refused}"
        if "hostPath" in obs.pods_refused:
            message += (
                " (a file:// model needs a hostPath volume; use pvc:// in this namespace, docs/models.md)"
            )
        loaded = cond("ModelLoaded", False, "PodsRefused", (message + still_serving)[:1000])
    elif fetch_problems:
        problem = fetch_problems[0]
        message = problem.fetch_failed + still_serving
        loaded = cond("ModelLoaded", False, problem.fetch_reason or "ModelFetchFailed", message[:1000])
    elif obs.pods:
        why = "; ".join(f"{pod.name}: {pod.message}" for pod in obs.pods if pod.message)[:1000]
        loaded = cond("ModelLoaded", False, "ModelNotReady", why or "waiting for Triton")
    else:
        loaded = cond("ModelLoaded", False, "NoPods", "no serving pod exists yet")
    fetch_failed = bool(fetch_problems or obs.pods_refused or obs.apply_refused) and not on_target
    changed = (loaded["status"], loaded["reason"]) != (
        previous.get("ModelLoaded", {}).get("status"),
        previous.get("ModelLoaded", {}).get("reason"),
    )
    if changed and loaded["status"] == "True":
        obs.events.append(("Normal", "ModelLoaded", loaded["message"]))
    elif changed and fetch_failed:
        obs.events.append(("Warning", loaded["reason"], loaded["message"]))

    # --- kstatus: Ready, Reconciling, Stalled ------------------------------------------------------
    ready = placed["status"] == "True" and loaded["status"] == "True" and same_device(new_active, target)
    stalled_reason = (
        placed["reason"] if placed["reason"] in {"InvalidSpec", "Unschedulable", "PlanningError"} else None
    )
    if obs.spec_problem or (stalled_reason and not ready_pods):
        stalled = cond("Stalled", True, str(stalled_reason), placed["message"])
    elif fetch_failed and loaded["reason"] != "ModelSourceUnreachable":  # unreachable may heal by itself
        stalled = cond("Stalled", True, loaded["reason"], loaded["message"])
    else:
        stalled = cond("Stalled", False, "Progressing", "")
    if ready:
        ready_c = cond("Ready", True, "Serving", loaded["message"])
        reconciling = cond("Reconciling", False, "Settled", "")
    else:
        why = placed["message"] if placed["status"] != "True" else loaded["message"]
        ready_c = cond(
            "Ready",
            False,
            placed["reason"] if placed["status"] != "True" else loaded["reason"],
            why,
        )
        progressing = stalled["status"] != "True"
        reconciling = cond(
            "Reconciling",
            progressing,
            "Progressing" if progressing else "Stalled",
            why if progressing else "",
        )
    # --- what the planner ignored about this tenant ----------------------------------------------
    warned = "; ".join(obs.plan_warnings)[:2000]
    warnings = cond("PlanWarnings", bool(warned), "InputsIgnored" if warned else "None", warned)
    if warned and previous.get("PlanWarnings", {}).get("message") != warned:
        obs.events.append(("Warning", "PlanWarnings", warned))

    carried = [c for c in old.get("conditions", []) if c["type"] not in OWNED_CONDITIONS]
    status["conditions"] = [ready_c, reconciling, stalled, placed, loaded, warnings, *carried]

    moves = recent_moves(history, now)
    status["moveHistory"] = history[-MAX_MOVE_HISTORY:]
    status["movesInLastHour"] = len(moves)
    status["endpoint"] = obs.endpoint
    status["modelName"] = obs.model_name
    status["replicas"] = obs.replicas
    status["selector"] = obs.selector
    concurrency = dict(old.get("concurrency") or {})
    concurrency.setdefault("target", obs.instance_count)
    if not old.get("lastDecision"):
        # Until the tuning loop reports, what runs is what was rendered (once a pod serves it).
        concurrency["current"] = obs.instance_count if on_target else 0
    status["concurrency"] = concurrency
    return status


def status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when writing `new` would change anything (so a second reconcile writes nothing)."""
    return any(old.get(key) != value for key, value in new.items())


def class_status(
    klass: AcceleratorClass, nodes: list[Node], old: dict[str, Any], *, generation: int, now: datetime
) -> dict[str, Any]:
    """An AcceleratorClass's status: the Ready nodes that offer its devices, how many, and a
    DevicesFound condition that says why there are none (pure)."""
    counts = [(n.name, devices_of(n, klass)) for n in sorted(nodes, key=lambda n: n.name)]
    found = [{"name": name, "devices": count} for name, count in counts if count > 0]
    total = sum(count for _, count in counts)
    if total:
        why = f"{total} device(s) on {len(found)} node(s)"
    elif not any(all(n.labels.get(k) == v for k, v in klass.node_selector.items()) for n in nodes):
        why = f"no node matches the nodeSelector {dict(klass.node_selector)}"
    elif klass.resource_name:
        why = (
            f"no Ready matching node offers an allocatable {klass.resource_name} "
            "(is its device plugin running?)"
        )
    else:
        why = "no matching node is Ready"
    previous = {c["type"]: c for c in old.get("conditions", [])}
    devices_found = condition(
        previous,
        "DevicesFound",
        total > 0,
        "DevicesFound" if total else "NoDevices",
        why,
        generation=generation,
        now=now,
    )
    return {"observedGeneration": generation, "nodes": found, "devices": total, "conditions": [devices_found]}
