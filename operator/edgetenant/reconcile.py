"""Observe → decide → act for the whole cluster, level-based and idempotent.

kopf's watches keep the `ClusterCache` current (handlers.py). Whenever something placement-relevant
changes, the planner solves the whole cluster again (placement.solve, with move costs, so an unchanged
cluster yields the same plan); every tenant is then reconciled against the plan: its ConfigMap, Service
and Deployment are server-side applied (only when what is rendered differs from what was last applied),
Triton on each pod is asked whether the model is ready, and the status and Events are written through
the `TenantWriter`. Killed halfway, the next pass finishes the job: nothing is remembered that the
cluster does not also say.

Failures stay where they happen: a tenant whose reconcile fails is reported and retried with the next
pass while every other tenant is reconciled; a pass that fails as a whole is retried with exponential
backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pydantic

from edgetenant.adapters.kube import Kube
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.admin_keys import AdminKeys
from edgetenant.api.models import AcceleratorClass, ConcurrencyMode, InferenceTenant
from edgetenant.cache import ClusterCache, fingerprint, kept, placement_fingerprint, tenant_key
from edgetenant.errors import EdgeTenantError, PermanentError
from edgetenant.metrics import (
    MOVES,
    PASS_FAILURES,
    PLAN_OBJECTIVE,
    PLAN_SECONDS,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    RECONCILES,
    TENANTS,
)
from edgetenant.placement import Placement, Plan, Snapshot, Unplaced, snapshot_from_objects, solve
from edgetenant.placement.objects import class_from_model, node_from_object, parse_count
from edgetenant.render.access import NetworkSettings
from edgetenant.render.kube import (
    HTTP_PORT,
    TEMPLATE_ANNOTATION,
    TENANT_LABEL,
    RenderSettings,
    deployment_template_hash,
    endpoint,
    render_all,
    spec_render_problem,
)
from edgetenant.rollout import DeviceUse, can_surge, pod_device_uses
from edgetenant.settings import Settings
from edgetenant.status import Observation, PodView, Writer, class_status, desired_status, status_changed
from edgetenant.status_writer import TenantWriter

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True, slots=True)
class PassContext:
    """What every tenant's reconcile in one pass shares: the plan and who holds which device."""

    placements: Mapping[str, Placement]
    unplaced: Mapping[str, Unplaced]
    planned: tuple[DeviceUse, ...]
    running: tuple[DeviceUse, ...]
    warnings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The tenant specs the plan was made from, as (uid, generation): a tenant deleted and created again
    # starts at generation 1 again (None: do not check, for a hand-made context).
    specs: Mapping[str, tuple[str, int]] | None = None


def backoff_s(failures: int, *, base_s: float = 1.0, cap_s: float = MAX_BACKOFF_S) -> float:
    """Exponential backoff with full jitter after `failures` consecutive failed passes (pure but for
    the random draw)."""
    return float(random.uniform(0.5, 1.0) * min(cap_s, base_s * 2.0 ** max(0, failures - 1)))


# edgetenant_tenants{condition=...}: tenants whose condition has this status.
TENANT_CONDITION_COUNTS: dict[str, tuple[str, str]] = {
    "ready": ("Ready", "True"),
    "slo_violated": ("SLOMet", "False"),
    "metrics_unavailable": ("MetricsAvailable", "False"),
    "stalled": ("Stalled", "True"),
}


class Reconciler:
    def __init__(
        self, kube: Kube, settings: Settings, cache: ClusterCache, writer: TenantWriter, keys: AdminKeys
    ) -> None:
        self.kube = kube
        self.keys = keys  # each tenant's Triton admin key (docs/security.md)
        self.settings = settings
        self.cache = cache
        self.writer = writer
        self.dirty = asyncio.Event()
        self.dirty_keys: set[str] = set()
        self.dirty_all = True
        self.plan: Plan | None = None
        self._plan_fingerprint = ""
        self.planned_specs: dict[str, tuple[str, int]] = {}  # tenant key -> (uid, generation) last planned
        self.applied: dict[str, str] = {}  # tenant key -> fingerprint of what was last applied
        self.render_settings = RenderSettings(
            fetcher_image=settings.fetcher_image,
            model_max_mib=settings.model_max_mib,
            network=NetworkSettings(
                operator_namespace=keys.namespace, monitoring_namespace=settings.monitoring_namespace
            ),
        )

    # --- the loop -------------------------------------------------------------------------------------
    def trigger(self, key: str | None = None) -> None:
        """Wake the loop: for one tenant (its pods changed), or for everyone (key None).
        Called on the event loop only (asyncio.Event is not thread-safe)."""
        if key is None:
            self.dirty_all = True
        else:
            self.dirty_keys.add(key)
        self.dirty.set()

    async def run_forever(self) -> None:
        last_full = 0.0
        failures = 0
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
                failures = 0
            except Exception:
                failures += 1
                delay = backoff_s(failures)
                PASS_FAILURES.inc()
                log.exception("reconcile pass failed (%d in a row); retrying in %.1f s", failures, delay)
                self.dirty_all = True
                await asyncio.sleep(delay)

    async def replan(self, now: datetime) -> Plan:
        """The plan for the cache as it is now. The inputs are taken here, on the event loop; parsing
        and solving run in a thread over objects nobody mutates."""
        inputs = self.cache.placement_inputs(now)
        self.planned_specs = {
            tenant_key(obj): (str(obj["metadata"].get("uid")), int(obj["metadata"].get("generation") or 0))
            for obj in inputs
            if obj.get("kind") == "InferenceTenant"
        }
        # A tenant whose children cannot be rendered (its name, its URI) is never applied
        # (spec_problem): it must not hold a device in the plan either.
        inputs = [
            obj
            for obj in inputs
            if obj.get("kind") != "InferenceTenant"
            or not spec_render_problem(
                str(obj["metadata"].get("name", "")),
                str(((obj.get("spec") or {}).get("model") or {}).get("uri", "")),
            )
        ]
        plan = await asyncio.to_thread(self._solve_if_changed, inputs, now)
        self.plan = plan
        return plan

    def _solve_if_changed(self, inputs: list[dict[str, Any]], now: datetime) -> Plan:
        fingerprint_now = placement_fingerprint(inputs, now)
        if self.plan is not None and fingerprint_now == self._plan_fingerprint:
            return self.plan
        snapshot = _snapshot(inputs)
        plan = solve(
            snapshot, time_limit_s=self.settings.solver_time_limit_s, move_cost=self.settings.move_cost
        )
        self._plan_fingerprint = fingerprint_now
        for message in plan.global_warnings:
            log.warning("planning: %s", message)
        if plan.search is not None and plan.search.deadline_hit:
            log.warning(
                "planning hit its %.1f s safety net: this plan may differ from run to run "
                "(EDGETENANT_SOLVER_TIME_LIMIT_S)",
                self.settings.solver_time_limit_s,
            )
        for failed in plan.planning_errors:
            log.error("planning %s failed (the others are planned): %s", failed.tenant, failed.reason)
        PLAN_SECONDS.observe(plan.solve_ms / 1000)
        PLAN_OBJECTIVE.set(plan.objective)
        MOVES.inc(plan.moves)
        log.info(
            "planned %d tenants: %d placed, %d unplaced, %d moves, objective %.1f (%s, %.0f ms)",
            len(snapshot.tenants),
            len(plan.placements),
            len(plan.unplaced),
            plan.moves,
            plan.objective,
            plan.solver,
            plan.solve_ms,
        )
        return plan

    async def reconcile_all(self, keys: set[str] | None = None) -> None:
        """Plan, then reconcile the given tenants (all when None, or when the plan changed)."""
        now = datetime.now(UTC)
        previous = self.plan
        plan = await self.replan(now)
        if plan is not previous or keys is None:
            keys = set(self.cache.tenants)
        context = self.pass_context(plan)
        limit = asyncio.Semaphore(self.settings.parallel_reconciles)

        async def one(key: str) -> None:
            async with limit:
                started = time.monotonic()
                try:
                    await self.reconcile_tenant(key, context)
                except EdgeTenantError as error:
                    RECONCILE_ERRORS.labels(type(error).__name__).inc()
                    log.warning("%s: %s", key, error)
                except Exception:
                    # One tenant's unexpected error must not stop the others: report it, retry it.
                    RECONCILE_ERRORS.labels("unexpected").inc()
                    log.exception("%s: reconcile failed; retrying with the next pass", key)
                    self.dirty_keys.add(key)
                RECONCILE_SECONDS.observe(time.monotonic() - started)
                RECONCILES.inc()

        await asyncio.gather(*(one(key) for key in sorted(keys) if key in self.cache.tenants))
        await self.write_class_statuses(now)
        TENANTS.labels("total").set(len(self.cache.tenants))
        # The counts the alerts (manifests/monitoring) and the dashboard read, by a condition's status.
        for label, (condition, status) in TENANT_CONDITION_COUNTS.items():
            TENANTS.labels(label).set(
                sum(
                    1
                    for body in self.cache.tenants.values()
                    if any(
                        c["type"] == condition and c["status"] == status
                        for c in (body.get("status") or {}).get("conditions", [])
                    )
                )
            )
        TENANTS.labels("placed").set(len(plan.placements))
        TENANTS.labels("unplaced").set(len(plan.unplaced))

    async def write_class_statuses(self, now: datetime) -> None:
        """Each AcceleratorClass's status says where its devices are (`kubectl get accel` shows them)."""
        nodes = []
        for body in self.cache.nodes.values():
            with contextlib.suppress(EdgeTenantError):
                nodes.append(node_from_object(body))
        for name, body in list(self.cache.classes.items()):
            try:
                klass = class_from_model(AcceleratorClass.model_validate(body))
            except pydantic.ValidationError:
                continue
            old = body.get("status") or {}
            generation = int(body["metadata"].get("generation") or 0)
            new = class_status(klass, nodes, old, generation=generation, now=now)
            if not status_changed(old, new):
                continue
            try:
                self.cache.classes[name] = kept(await self.kube.patch_class_status(name, new))
            except EdgeTenantError as error:
                log.warning("could not write the status of AcceleratorClass %s: %s", name, error)

    def pass_context(self, plan: Plan) -> PassContext:
        planned = []
        for p in plan.placements:
            klass = self.cache.classes.get(p.accelerator_class) or {}
            resource = str((klass.get("spec") or {}).get("resourceName") or "")
            planned.append(DeviceUse(p.tenant, p.node, resource))
        return PassContext(
            placements={p.tenant: p for p in plan.placements},
            unplaced={u.tenant: u for u in plan.unplaced},
            warnings=plan.tenant_warnings,
            specs=dict(self.planned_specs),
            planned=tuple(planned),
            running=tuple(pod_device_uses({key: pods.values() for key, pods in self.cache.pods.items()})),
        )

    # --- one tenant -----------------------------------------------------------------------------------
    def spec_problem(self, tenant: InferenceTenant) -> str | None:
        """Invalid in ways the schema cannot see: a name no Service can have, a URI no URL parser reads,
        classes that do not exist."""
        if problem := spec_render_problem(str(tenant.metadata.name), tenant.spec.model.uri):
            return problem
        unknown = [name for name in tenant.spec.accelerator_classes if name not in self.cache.classes]
        if unknown:
            known = ", ".join(sorted(self.cache.classes)) or "none"
            return f"unknown AcceleratorClass {', '.join(unknown)} (known: {known})"
        return None

    @staticmethod
    def instance_count(tenant: InferenceTenant, status: dict[str, Any]) -> int:
        conc = tenant.spec.concurrency
        if conc.mode == ConcurrencyMode.FIXED and conc.value:
            return conc.value
        target = (status.get("concurrency") or {}).get("target")
        return int(target) if target else conc.initial

    def surge(self, key: str, placement: Placement, resource: str, context: PassContext) -> bool:
        node = self.cache.nodes.get(placement.node) or {}
        allocatable = parse_count(((node.get("status") or {}).get("allocatable") or {}).get(resource, 0))
        return can_surge(
            tenant=key,
            node=placement.node,
            resource=resource,
            allocatable=allocatable,
            planned=context.planned,
            running=context.running,
        )

    async def reconcile_tenant(self, key: str, context: PassContext) -> None:
        body = self.cache.tenants.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            tenant = InferenceTenant.model_validate(body)
        except pydantic.ValidationError as error:
            # The schema should have refused it; say so instead of crashing the pass.
            raise PermanentError(f"{key} does not parse: {error.errors()[:2]}") from error
        planned_for = (str(tenant.metadata.uid), int(tenant.metadata.generation or 0))
        if context.specs is not None and context.specs.get(key) != planned_for:
            # NB: the spec changed (or the tenant appeared) after this pass's plan was made: its
            # placement may not fit this spec (another format, selector, class list), and "not in the
            # plan" is not "unplaceable". The change woke the loop; the next pass plans this spec.
            self.dirty_keys.add(key)
            return
        placement = context.placements.get(key)
        unplaced = context.unplaced.get(key)
        problem = self.spec_problem(tenant)
        pods = await self.observe_pods(key, tenant)  # network I/O: outside the tenant's lock
        admin_key = await self.keys.for_tenant(tenant)
        events: list[tuple[str, str, str]] = []
        refused: PermanentError | None = None  # the API server refused one of the children
        async with self.writer.lock(key):
            # The newest status, under the lock the tuning loop writes with: the instance count
            # rendered into the ConfigMap is never older than the one the tuning loop last decided.
            status = (self.cache.tenants.get(key) or body).get("status") or {}
            instances = self.instance_count(tenant, status)
            resource, template = "", None
            if placement is not None and problem is None:
                klass = AcceleratorClass.model_validate(self.cache.classes[placement.accelerator_class])
                resource = klass.spec.resource_name
                objects = render_all(
                    tenant,
                    klass,
                    placement.node,
                    instances,
                    self.render_settings,
                    admin_key=admin_key,
                    surge=self.surge(key, placement, resource, context),
                    measured_instance_mib=measured_instance_mib(
                        self.cache.profiles.values(),
                        namespace=str(tenant.metadata.namespace),
                        model=tenant.spec.model.name or str(tenant.metadata.name),
                        accelerator_class=placement.accelerator_class,
                    ),
                )
                template = deployment_template_hash(objects[-1])
                rendered = fingerprint(objects)
                if rendered != self.applied.get(key):
                    *before_pods, deployment = objects
                    try:
                        # The key, the config and the NetworkPolicy exist before the first pod does.
                        await asyncio.gather(*(self.kube.apply(obj) for obj in before_pods))
                        await self.kube.apply(deployment)
                        self.applied[key] = rendered
                    except PermanentError as error:
                        # Refused (quota, admission, validation): said in the status and an Event,
                        # raised below, and applied again by the next pass.
                        refused = error
            obs = Observation(
                generation=int(tenant.metadata.generation or 0),
                placement=placement if problem is None else None,
                unplaced_reason=unplaced.reason if unplaced else None,
                unplaced_kind=unplaced.kind.value if unplaced else "Unschedulable",
                plan_warnings=context.warnings.get(key, ()),
                pods_refused=self.cache.pod_refusals.get(key, ""),
                apply_refused=str(refused or ""),
                spec_problem=problem,
                pods=pods,
                instance_count=instances,
                endpoint=endpoint(tenant) if placement is not None else None,
                resource=resource,
                selector=f"{TENANT_LABEL}={tenant.metadata.name}",
                replicas=len(pods),
                estimated=bool(placement and placement.estimated),
                model_name=tenant.spec.model.name or str(tenant.metadata.name),
                template=template,
                events=events,
            )
            now = datetime.now(UTC)

            def compute(latest: dict[str, Any]) -> dict[str, Any]:
                events.clear()  # computed again after a conflict: only the last computation's Events
                return desired_status(latest, obs, now)

            await self.writer.write_status_locked(key, Writer.RECONCILER, compute)
        newest = self.cache.tenants.get(key) or body
        for event_type, reason, message in events:
            self.writer.event(newest, event_type, reason, message)
        if refused is not None:
            raise refused

    async def observe_pods(self, key: str, tenant: InferenceTenant) -> tuple[PodView, ...]:
        model = tenant.spec.model.name or str(tenant.metadata.name)
        views = await asyncio.gather(*(self._pod_view(pod, model) for pod in self.cache.pods_of(key)))
        return tuple(sorted(views, key=lambda v: v.name))

    async def _pod_view(self, pod: dict[str, Any], model: str) -> PodView:
        meta, spec, st = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        fetch_reason, fetch_failed = model_source_problem(pod)
        ip = st.get("podIP")
        ready, message = False, "no pod IP yet"
        if meta.get("deletionTimestamp"):
            message = "terminating"
        elif ip and st.get("phase") == "Running":
            ready, message = await model_ready(
                f"http://{ip}:{HTTP_PORT}", model, self.settings.triton_timeout_s
            )
        oom = oom_killed(pod) or self.cache.process_ooms.get(f"{meta.get('namespace')}/{meta['name']}", "")
        if oom and not ready:
            message = f"{oom}; {message}"
        return PodView(
            name=meta["name"],
            node=spec.get("nodeName"),
            ip=ip,
            phase=st.get("phase", "Pending"),
            model_ready=ready,
            message="" if ready else message,
            fetch_failed=fetch_failed,
            fetch_reason=fetch_reason,
            template=str((meta.get("annotations") or {}).get(TEMPLATE_ANNOTATION, "")),
        )

    # --- cache maintenance (called by the kopf handlers) ------------------------------------------
    def forget(self, key: str) -> None:
        self.applied.pop(key, None)
        self.writer.forget(key)

    def forget_applied(self, key: str) -> None:
        """A child was deleted or changed by someone else: re-apply on the next pass."""
        self.applied.pop(key, None)


async def model_ready(url: str, model: str, timeout_s: float) -> tuple[bool, str]:
    """Ask Triton on one pod whether the model is ready; (False, why) when not."""
    try:
        async with TritonAdapter(url, timeout_s=timeout_s) as triton:
            if await triton.model_ready(model):
                return True, ""
            return False, f"Triton at {url} has not loaded {model} (yet)"
    except EdgeTenantError as error:
        return False, str(error)


# The fetcher's one-line error: "edgetenant fetch: <Reason>: <what and where>" (dataplane/fetch.py).
FETCH_ERROR = re.compile(r"edgetenant fetch: (Model[A-Za-z]+): (.*)")
UNSCHEDULABLE_CLAIM = re.compile(r'persistentvolumeclaim "([^"]+)" not found')


def model_source_problem(pod: dict[str, Any]) -> tuple[str, str]:
    """(reason, message) when the pod cannot get its model, else ("", ""): the fetcher failed (its
    reason), its credentials Secret is missing (the kubelet's CreateContainerConfigError) or the
    model's claim does not exist (the scheduler's verdict)."""
    status = pod.get("status") or {}
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state") or {}
        last = (init.get("lastState") or {}).get("terminated") or {}
        terminated = state.get("terminated") or (last if state.get("waiting") else {})
        if terminated.get("exitCode", 0) != 0:
            said = str(terminated.get("message") or terminated.get("reason") or "error")
            if match := FETCH_ERROR.search(said):
                return match.group(1), f"{init['name']}: {match.group(2).strip()}"
            return "ModelFetchFailed", f"{init['name']} failed: {said.strip()}"
        waiting = state.get("waiting") or {}
        if waiting.get("reason") == "CreateContainerConfigError":
            said = str(waiting.get("message", ""))
            reason = "ModelCredentialsNotFound" if "secret" in said.lower() else "ModelFetchFailed"
            return reason, f"{init['name']} cannot start: {said} (model.credentialsSecret)"
    for condition in status.get("conditions") or []:
        unscheduled = condition.get("type") == "PodScheduled" and condition.get("status") == "False"
        if unscheduled and (match := UNSCHEDULABLE_CLAIM.search(str(condition.get("message", "")))):
            return "ModelClaimNotFound", (
                f"the model's PersistentVolumeClaim {match.group(1)!r} does not exist in the tenant's "
                "namespace (pvc:// in model.uri)"
            )
    return "", ""


def oom_killed(pod: dict[str, Any]) -> str:
    """'container X was OOM-killed ...' when the kernel killed one of the pod's containers for going
    over its memory limit (as the kubelet reports it), else ''."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        for state in (container.get("state") or {}, container.get("lastState") or {}):
            terminated = state.get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                return (
                    f"container {container.get('name')} was OOM-killed (over its memory limit; "
                    f"restarted {container.get('restartCount', 0)} times)"
                )
    return ""


def measured_instance_mib(
    profiles: Iterable[dict[str, Any]], *, namespace: str, model: str, accelerator_class: str
) -> float | None:
    """Memory per model instance measured by a ModelProfile of this model on this class (the largest
    memoryMiB/concurrency of its points; a profile in the tenant's namespace wins), else None."""
    best: tuple[bool, float] | None = None
    for profile in profiles:
        spec = profile.get("spec") or {}
        if spec.get("model") != model or spec.get("acceleratorClass") != accelerator_class:
            continue
        per_instance = [
            float(p["memoryMiB"]) / max(1, int(p.get("concurrency") or 1))
            for p in spec.get("points") or []
            if p.get("memoryMiB")
        ]
        if not per_instance:
            continue
        candidate = ((profile.get("metadata") or {}).get("namespace") == namespace, max(per_instance))
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


def _snapshot(inputs: list[dict[str, Any]]) -> Snapshot:
    """The snapshot of what the planner can read: one malformed object (the schema should have refused
    it) is left out with a log line instead of stopping placement for the whole cluster."""
    try:
        return snapshot_from_objects(inputs)
    except EdgeTenantError:
        pass
    good = []
    for obj in inputs:
        try:
            snapshot_from_objects([obj])
        except EdgeTenantError as error:
            log.warning("left out of planning: %s", error)
            continue
        good.append(obj)
    return snapshot_from_objects(good)
