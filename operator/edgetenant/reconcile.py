"""Observe → decide → act for the whole cluster, level-based and idempotent.

kopf's watches keep `ClusterCache` current (handlers.py). Whenever something placement-relevant
changes, the planner solves the whole cluster again (placement.solve, with move costs, so an unchanged
cluster yields the same plan); every tenant is then reconciled against the plan: its ConfigMap, Service
and Deployment are server-side applied (only when what is rendered differs from what was last applied),
Triton on each pod is asked whether the model is ready, and the status and Events are written. Killed
halfway, the next pass finishes the job: nothing is remembered that the cluster does not also say.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pydantic

from edgetenant.adapters.kube import Kube
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.api.models import AcceleratorClass, ConcurrencyMode, InferenceTenant
from edgetenant.errors import EdgeTenantError, PermanentError
from edgetenant.metrics import MOVES, PLAN_OBJECTIVE, PLAN_SECONDS, RECONCILE_SECONDS, RECONCILES, TENANTS
from edgetenant.placement import Placement, Plan, snapshot_from_objects, solve
from edgetenant.render.kube import HTTP_PORT, TENANT_LABEL, RenderSettings, endpoint, render_all
from edgetenant.settings import Settings
from edgetenant.status import Observation, PodView, desired_status, recent_moves, status_changed

log = logging.getLogger(__name__)


def tenant_key(body: dict[str, Any]) -> str:
    return f"{body['metadata'].get('namespace', 'default')}/{body['metadata']['name']}"


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ClusterCache:
    """The operator's view of the cluster, kept current by kopf's watch events."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # tenant key -> pod name -> pod

    def pods_of(self, key: str) -> list[dict[str, Any]]:
        return list(self.pods.get(key, {}).values())

    def put_pod(self, pod: dict[str, Any], deleted: bool) -> str | None:
        """Record a pod event; returns the key of the tenant it serves (None if it serves none)."""
        meta = pod["metadata"]
        tenant = meta.get("labels", {}).get(TENANT_LABEL)
        if tenant is None:
            return None
        key = f"{meta.get('namespace')}/{tenant}"
        if deleted:
            self.pods.get(key, {}).pop(meta["name"], None)
            if not self.pods.get(key):
                self.pods.pop(key, None)
        else:
            self.pods.setdefault(key, {})[meta["name"]] = pod
        return key

    def serving_ips(self, key: str) -> list[str]:
        """IPs of the tenant's ready pods: every one of them gets every concurrency change.

        From the operator's own pod watch, which carries the same readiness the EndpointSlice
        controller publishes, without a list call per tick (and loopback pod IPs, as in the local
        lab, cannot appear in EndpointSlices at all: their validation refuses 127.0.0.0/8).
        """
        ips = []
        for pod in self.pods_of(key):
            status = pod.get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
            )
            if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
                ips.append(str(status["podIP"]))
        return sorted(ips)

    def placement_inputs(self, now: datetime) -> list[dict[str, Any]]:
        """Objects for the planner. A tenant's current device is its committed target (so a move in
        flight is not re-decided), and its move count is recomputed for the current hour."""
        objects: list[dict[str, Any]] = [
            *self.nodes.values(),
            *self.classes.values(),
            *self.profiles.values(),
        ]
        for body in self.tenants.values():
            if body["metadata"].get("deletionTimestamp"):
                continue
            tenant = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}
            status = body.get("status") or {}
            current = status.get("targetPlacement") or status.get("activePlacement")
            ceiling = (status.get("concurrency") or {}).get("ceiling")
            tenant["status"] = {
                "activePlacement": current,
                "movesInLastHour": len(recent_moves(status.get("moveHistory", []), now)),
                "concurrency": {"current": 0, "target": 0, "ceiling": ceiling} if ceiling else None,
                "observed": _demand_bucket(status.get("observed")),
            }
            objects.append(tenant)
        return objects

    def placement_fingerprint(self, now: datetime) -> str:
        def node_view(node: dict[str, Any]) -> Any:
            conditions = node.get("status", {}).get("conditions", [])
            ready = [c.get("status") for c in conditions if c.get("type") == "Ready"]
            meta = node["metadata"]
            return [
                meta.get("labels"),
                node.get("spec", {}).get("taints"),
                node.get("status", {}).get("allocatable"),
                ready,
            ]

        def view(obj: dict[str, Any]) -> Any:
            if obj.get("kind") == "Node":
                return node_view(obj)
            status = dict(obj.get("status") or {})
            # The placement and move count a tenant carries were written from the current plan: they
            # are its consequence, not an input, so writing them must not trigger another solve.
            status.pop("activePlacement", None)
            status.pop("movesInLastHour", None)
            return [obj["metadata"].get("namespace"), obj["metadata"].get("name"), obj.get("spec"), status]

        # Moves age out of the hour window: include the hour so the budget refreshes.
        return _fingerprint([view(o) for o in self.placement_inputs(now)] + [now.strftime("%Y%m%d%H")])


@dataclass
class TenantMemory:
    """Per-tenant facts that only save work: losing them costs an extra apply, nothing else."""

    applied: str = ""  # fingerprint of the objects last applied
    events: dict[str, float] = field(default_factory=dict)  # (reason+message) -> monotonic time posted


class Reconciler:
    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        self.cache = ClusterCache()
        self.dirty = asyncio.Event()
        self.dirty_keys: set[str] = set()
        self.dirty_all = True
        self.plan: Plan | None = None
        self._plan_fingerprint = ""
        self.memory: dict[str, TenantMemory] = {}
        self.status_locks: dict[str, asyncio.Lock] = {}
        self.render_settings = RenderSettings(fetcher_image=settings.fetcher_image)

    # --- the loop -------------------------------------------------------------------------------------
    def trigger(self, key: str | None = None) -> None:
        """Wake the loop: for one tenant (its pods changed), or for everyone (key None)."""
        if key is None:
            self.dirty_all = True
        else:
            self.dirty_keys.add(key)
        self.dirty.set()

    async def run_forever(self) -> None:
        last_full = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), timeout=self.settings.resync_s)
            await asyncio.sleep(self.settings.debounce_s)  # let a burst of watch events settle
            self.dirty.clear()
            full = self.dirty_all or time.monotonic() - last_full >= self.settings.resync_s
            keys, self.dirty_keys, self.dirty_all = self.dirty_keys, set(), False
            try:
                await self.reconcile_all(None if full else keys)
                if full:
                    last_full = time.monotonic()
            except Exception:
                log.exception("reconcile pass failed; retrying on the next pass")
                self.dirty_all = True
                await asyncio.sleep(1)

    def replan(self, now: datetime) -> Plan:
        fingerprint = self.cache.placement_fingerprint(now)
        if self.plan is None or fingerprint != self._plan_fingerprint:
            snapshot = snapshot_from_objects(self.cache.placement_inputs(now))
            self.plan = solve(
                snapshot, time_limit_s=self.settings.solver_time_limit_s, move_cost=self.settings.move_cost
            )
            self._plan_fingerprint = fingerprint
            PLAN_SECONDS.observe(self.plan.solve_ms / 1000)
            PLAN_OBJECTIVE.set(self.plan.objective)
            MOVES.inc(self.plan.moves)
            log.info(
                "planned %d tenants: %d placed, %d unplaced, %d moves, objective %.1f (%s, %.0f ms)",
                len(snapshot.tenants),
                len(self.plan.placements),
                len(self.plan.unplaced),
                self.plan.moves,
                self.plan.objective,
                self.plan.solver,
                self.plan.solve_ms,
            )
        return self.plan

    async def reconcile_all(self, keys: set[str] | None = None) -> None:
        """Plan, then reconcile the given tenants (all when None, or when the plan changed)."""
        now = datetime.now(UTC)
        previous = self.plan
        plan = await asyncio.to_thread(self.replan, now)
        if plan is not previous or keys is None:
            keys = set(self.cache.tenants)
        placements = {p.tenant: p for p in plan.placements}
        unplaced = {u.tenant: u.reason for u in plan.unplaced}
        limit = asyncio.Semaphore(self.settings.parallel_reconciles)

        async def one(key: str) -> None:
            async with limit:
                started = time.monotonic()
                try:
                    await self.reconcile_tenant(key, placements.get(key), unplaced.get(key))
                except EdgeTenantError as error:
                    log.warning("%s: %s", key, error)
                RECONCILE_SECONDS.observe(time.monotonic() - started)
                RECONCILES.inc()

        await asyncio.gather(*(one(key) for key in sorted(keys) if key in self.cache.tenants))
        ready = sum(
            1
            for body in self.cache.tenants.values()
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (body.get("status") or {}).get("conditions", [])
            )
        )
        TENANTS.labels("total").set(len(self.cache.tenants))
        TENANTS.labels("ready").set(ready)
        TENANTS.labels("placed").set(len(plan.placements))
        TENANTS.labels("unplaced").set(len(plan.unplaced))

    # --- one tenant -----------------------------------------------------------------------------------
    def spec_problem(self, tenant: InferenceTenant) -> str | None:
        """Invalid in ways the schema cannot see: classes that do not exist."""
        unknown = [name for name in tenant.spec.accelerator_classes if name not in self.cache.classes]
        if unknown:
            known = ", ".join(sorted(self.cache.classes)) or "none"
            return f"unknown AcceleratorClass {', '.join(unknown)} (known: {known})"
        return None

    def instance_count(self, tenant: InferenceTenant, status: dict[str, Any]) -> int:
        conc = tenant.spec.concurrency
        if conc.mode == ConcurrencyMode.FIXED and conc.value:
            return conc.value
        target = (status.get("concurrency") or {}).get("target")
        return int(target) if target else conc.initial

    async def reconcile_tenant(
        self, key: str, placement: Placement | None, unplaced_reason: str | None
    ) -> None:
        body = self.cache.tenants.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            tenant = InferenceTenant.model_validate(body)
        except pydantic.ValidationError as error:
            # The schema should have refused it; say so instead of crashing the pass.
            raise PermanentError(f"{key} does not parse: {error.errors()[:2]}") from error
        status = body.get("status") or {}
        memory = self.memory.setdefault(key, TenantMemory())
        problem = self.spec_problem(tenant)
        instances = self.instance_count(tenant, status)
        resource = ""
        if placement is not None and problem is None:
            klass = AcceleratorClass.model_validate(self.cache.classes[placement.accelerator_class])
            resource = klass.spec.resource_name
            objects = render_all(tenant, klass, placement.node, instances, self.render_settings)
            fingerprint = _fingerprint(objects)
            if fingerprint != memory.applied:
                config_map, *rest = objects
                await self.kube.apply(config_map)  # before the pods that mount it
                await asyncio.gather(*(self.kube.apply(obj) for obj in rest))
                memory.applied = fingerprint
        pods = await self.observe_pods(key, tenant)
        obs = Observation(
            generation=int(tenant.metadata.generation or 0),
            placement=placement if problem is None else None,
            unplaced_reason=unplaced_reason,
            spec_problem=problem,
            pods=pods,
            instance_count=instances,
            endpoint=endpoint(tenant) if placement is not None else None,
            resource=resource,
            selector=f"{TENANT_LABEL}={tenant.metadata.name}",
            replicas=len(pods),
            estimated=bool(placement and placement.estimated),
            model_name=tenant.spec.model.name or str(tenant.metadata.name),
        )
        new = desired_status(status, obs, datetime.now(UTC))
        if status_changed(status, new):
            await self.kube.patch_tenant_status(
                str(tenant.metadata.namespace), str(tenant.metadata.name), new
            )
            body["status"] = {**status, **new}  # our own write, visible before the watch echoes it
        for event_type, reason, message in obs.events:
            await self.event(body, event_type, reason, message)

    async def observe_pods(self, key: str, tenant: InferenceTenant) -> tuple[PodView, ...]:
        model = tenant.spec.model.name or str(tenant.metadata.name)
        views = await asyncio.gather(*(self._pod_view(pod, model) for pod in self.cache.pods_of(key)))
        return tuple(sorted(views, key=lambda v: v.name))

    async def _pod_view(self, pod: dict[str, Any], model: str) -> PodView:
        meta, spec, st = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
        fetch_failed = ""
        for init in st.get("initContainerStatuses") or []:
            terminated = (init.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode", 0) != 0:
                fetch_failed = (
                    f"{init['name']} failed: {terminated.get('message') or terminated.get('reason', 'error')}"
                )
        ip = st.get("podIP")
        ready, message = False, "no pod IP yet"
        if meta.get("deletionTimestamp"):
            message = "terminating"
        elif ip and st.get("phase") == "Running":
            ready, message = await model_ready(
                f"http://{ip}:{HTTP_PORT}", model, self.settings.triton_timeout_s
            )
        return PodView(
            name=meta["name"],
            node=spec.get("nodeName"),
            ip=ip,
            phase=st.get("phase", "Pending"),
            model_ready=ready,
            message="" if ready else message,
            fetch_failed=fetch_failed,
        )

    async def event(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Post an Event, at most once per reason+message per rate-limit window."""
        memory = self.memory.setdefault(tenant_key(body), TenantMemory())
        now = time.monotonic()
        token = f"{reason}:{message}"
        if now - memory.events.get(token, -1e9) < self.settings.event_interval_s:
            return
        memory.events[token] = now
        try:
            await self.kube.post_event(body, event_type, reason, message)
        except EdgeTenantError as error:
            log.warning("could not post event %s: %s", reason, error)

    async def write_status(self, key: str, mutate: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Patch the status fields `mutate` returns, computed from the newest status we know.

        Writers (the reconciler, the tuning loop) are serialised per tenant, and the API server's
        answer replaces the cached object, so no writer works from a status older than its own.
        """
        lock = self.status_locks.setdefault(key, asyncio.Lock())
        async with lock:
            body = self.cache.tenants.get(key)
            if body is None:
                return
            old = copy.deepcopy(body.get("status") or {})
            new = mutate(old)
            if not status_changed(old, new):
                return
            namespace, name = key.split("/", 1)
            updated = await self.kube.patch_tenant_status(namespace, name, new)
            self.cache.tenants[key] = updated

    def accept_tenant(self, key: str, body: dict[str, Any]) -> None:
        """A watch event: keep it unless our own later write is already cached."""
        cached = self.cache.tenants.get(key)
        if cached is not None and _older(body, cached):
            return
        self.cache.tenants[key] = body

    # --- cache maintenance (called by the kopf handlers) ------------------------------------------
    def forget(self, key: str) -> None:
        self.memory.pop(key, None)

    def forget_applied(self, key: str) -> None:
        """A child was deleted or changed by someone else: re-apply on the next pass."""
        if key in self.memory:
            self.memory[key].applied = ""


async def model_ready(url: str, model: str, timeout_s: float) -> tuple[bool, str]:
    """Ask Triton on one pod whether the model is ready; (False, why) when not."""
    try:
        async with TritonAdapter(url, timeout_s=timeout_s) as triton:
            if await triton.model_ready(model):
                return True, ""
            return False, f"Triton at {url} has not loaded {model} (yet)"
    except EdgeTenantError as error:
        return False, str(error)


def _demand_bucket(observed: dict[str, Any] | None) -> dict[str, Any] | None:
    """Observed throughput stands in for demand when a tenant states none. Rounded to a 25% step,
    so metric noise does not re-plan the cluster every tuning interval."""
    if not observed or not observed.get("throughput"):
        return None
    value = float(observed["throughput"])
    return {"throughput": round(1.25 ** round(math.log(value, 1.25)), 1) if value > 0 else 0.0}


def _older(candidate: dict[str, Any], known: dict[str, Any]) -> bool:
    """Whether `candidate` is an older version than `known` (etcd revisions are increasing integers;
    when they are not numbers, trust the watch)."""
    try:
        return int(candidate["metadata"]["resourceVersion"]) < int(known["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return False
