"""The tuning loop inside the operator: one `tune_tick` per serving tenant per tuning interval.

The pure controller and its edge (tuning.loop) know nothing of Kubernetes. This module gives them the
tenant's knobs, its ready pods' IPs (every pod gets every change) and its Prometheus selector, and
keeps the result: `status.concurrency` / `lastDecision` / `observed` / `lastFailure`, the
`MetricsAvailable` and `SLOMet` conditions, an Event per change, operator metrics, and the learned
points in an online ModelProfile so placement improves with use. It meets the reconciler at one seam:
status and Events go through the `TenantWriter` (which lets it write only the fields it owns), and
`wake(key)` asks the reconciler to render the new instance count into the tenant's ConfigMap.

Each tenant is judged on its own interval: the rate window spans at least three scrapes of the
interval Prometheus really uses for the tenant's pods (from its targets API), so tuning works with
15-60 s scrapes as well as the lab's 2 s (docs/tuning.md).

Tuning state is kept per tenant UID: a tenant deleted and created again under the same name starts
afresh. A kernel OOM kill of a tenant's Triton backs the instance count off below the count that was
killed, records it as the ceiling, and lowers the ConfigMap, so the restarted container fits and the
crash loop ends. The kubelet reports a killed container; a killed process inside a living container
(cgroup v1 kills the biggest process, a Python-backend stub) only cAdvisor's counter shows, read from
Prometheus: then the model is loaded again at the lower count on that pod, as no restart will.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic

from edgetenant.adapters import prometheus
from edgetenant.api.models import AcceleratorClass, ConcurrencyMode, InferenceTenant
from edgetenant.cache import ClusterCache, pod_ready
from edgetenant.errors import EdgeTenantError
from edgetenant.metrics import TENANT_CONCURRENCY, TUNING_DECISIONS
from edgetenant.render.kube import GRPC_PORT, HTTP_PORT, served_model_name, triton_spec
from edgetenant.settings import Settings
from edgetenant.status import Writer, condition, iso
from edgetenant.status_writer import TenantWriter
from edgetenant.tuning import Decision, TunerState
from edgetenant.tuning.data import config_for_tenant
from edgetenant.tuning.loop import TuningTarget, render_from_spec, target_for, tune_tick
from edgetenant.tuning.policy import ceiling_expires_at, out_of_memory

log = logging.getLogger(__name__)
TUNING_CONDITIONS = ("MetricsAvailable", "SLOMet")
SCRAPE_INTERVAL_TTL_S = 300.0  # look the tenant's scrape interval up again after this


def tuning_status(old: dict[str, Any], decision: Decision, generation: int) -> dict[str, Any]:
    """The status fields the tuning loop owns, from one decision (pure)."""
    conditions = {c["type"]: c for c in old.get("conditions", [])}
    now = decision.at
    metrics = condition(
        conditions,
        "MetricsAvailable",
        decision.metrics_available,
        "Fresh" if decision.metrics_available else "MetricsUnavailable",
        "" if decision.metrics_available else f"holding concurrency {decision.target}: {decision.reason}",
        generation=generation,
        now=now,
    )
    slo_reason = {True: "WithinSLO", False: "SLOViolated", None: "NoSLOOrNoData"}[decision.slo_met]
    slo = condition(conditions, "SLOMet", decision.slo_met, slo_reason, "", generation=generation, now=now)
    expires = ceiling_expires_at(decision.state)
    status: dict[str, Any] = {
        "conditions": [metrics, slo],
        "concurrency": {
            "current": decision.state.current,
            "target": decision.target,
            "ceiling": decision.ceiling,
            "ceilingExpiresAt": iso(expires) if expires is not None else None,
        },
        "lastDecision": decision.summary(),
    }
    if decision.signals is not None:
        s = decision.signals
        status["observed"] = {
            "throughput": round(s.throughput, 3),
            "latencyP95Ms": None if s.latency_p95_ms is None else round(s.latency_p95_ms, 2),
            "queueMs": round(s.queue_ms, 3),
            "computeMs": round(s.compute_ms, 3),
            "runsOn": s.runs_on,
            "at": iso(s.at),
        }
    return status


def oom_status(old: dict[str, Any], decision: Decision, message: str) -> dict[str, Any]:
    """The tuning fields after an OOM kill: the backed-off count and the failure (pure)."""
    status = tuning_status(old, decision, int(old.get("observedGeneration") or 0))
    status.pop("conditions")  # metrics say nothing new
    status["lastFailure"] = {"at": iso(decision.at), "reason": "OutOfMemory", "message": message[:1024]}
    return status


def oom_kills(pods: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(identity, message) of every kernel OOM kill of a Triton container the pods report (pure).
    The identity names one kill (pod uid, restart count, finish time), so each is acted on once."""
    kills = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (container.get("lastState") or {}, container.get("state") or {}):
                terminated = state.get("terminated") or {}
                if terminated.get("reason") != "OOMKilled":
                    continue
                identity = f"{meta.get('uid')}/{container.get('restartCount')}/{terminated.get('finishedAt')}"
                message = (
                    f"the kernel killed container {container.get('name')} of pod {meta.get('name')} "
                    f"(exit {terminated.get('exitCode', 137)}) for going over its memory limit"
                )
                kills.append((identity, message))
    return kills


def process_oom_kills(counts: dict[str, int], pods: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(identity, message, pod name) of the kernel's OOM kills of a process inside a Triton container
    that lives on, from cAdvisor's per-pod counts (pure). A pod whose container status reports an
    OOMKilled termination is left to `oom_kills`: on cgroup v2 the counter counts the same kills."""
    kills = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name", ""))
        count = counts.get(name, 0)
        if count <= 0 or oom_kills([pod]):
            continue
        message = (
            f"the kernel OOM-killed a process in container triton of pod {name} ({count} time(s) so far) "
            "for going over its memory limit; the container lives on (cgroup v1 kills one process, "
            "here a Python-backend stub), so the model instances it ran failed"
        )
        kills.append((f"{meta.get('uid')}/process/{count}", message, name))
    return kills


def unready_running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods that run but do not serve (pure): where a process OOM kill would show."""
    return [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and not pod_ready(p)
        and not p["metadata"].get("deletionTimestamp")
    ]


def profile_body(
    tenant: InferenceTenant, accelerator_class: str, node: str, state: TunerState
) -> dict[str, Any] | None:
    """An online ModelProfile from the points the loop has learned (None until it has some)."""
    # A ModelProfile point needs a p95; points learned without a latency summary are kept in memory only.
    points = [
        {k: v for k, v in p.items() if v is not None}
        for p in state.profile_points()
        if p.get("latencyP95Ms") is not None
    ]
    if not points:
        return None
    model = served_model_name(tenant)
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "ModelProfile",
        "metadata": {
            "name": f"{model}-{accelerator_class}-online",
            "namespace": tenant.metadata.namespace,
            "labels": {"edgetenant.io/source": "online", "edgetenant.io/model": model},
        },
        "spec": {
            "model": model,
            "format": str(tenant.spec.model.format),
            "acceleratorClass": accelerator_class,
            "node": node,
            "points": points,
            **({"ceiling": state.ceiling} if state.ceiling is not None else {}),
        },
    }


class TuningDriver:
    def __init__(
        self,
        *,
        settings: Settings,
        cache: ClusterCache,
        writer: TenantWriter,
        apply: Callable[[dict[str, Any]], Awaitable[Any]],
        wake: Callable[[str], None],
        admin_key: Callable[[InferenceTenant], Awaitable[str]],
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.writer = writer
        self.apply: Callable[[dict[str, Any]], Awaitable[Any]] = apply  # adapters.kube.Kube.apply
        self.wake = wake  # ask the reconciler to render the tenant again
        self.admin_key = admin_key  # the tenant's Triton admin key: model control needs it
        self.states: dict[str, TunerState] = {}  # tenant UID -> controller state
        self.next_due: dict[str, float] = {}  # tenant UID -> monotonic time of its next tick
        self.scrape: dict[str, tuple[float, float]] = {}  # tenant UID -> (interval, looked up at)
        self.ooms_seen: dict[str, set[str]] = {}  # tenant UID -> OOM kills already acted on
        self.learned_seen: dict[str, int] = {}
        self.prometheus = prometheus.connect(settings.prometheus_url)

    async def run_forever(self) -> None:
        poll_s = min(self.settings.tune_interval_s, 5.0)
        while True:
            await asyncio.sleep(poll_s)
            self.forget_gone()
            now = time.monotonic()
            due = [key for key, body in self.cache.tenants.items() if self.is_due(_uid(body), now)]
            results = await asyncio.gather(*(self.tick(key) for key in due), return_exceptions=True)
            for key, result in zip(due, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    log.warning("tuning %s failed: %s", key, result, exc_info=result)

    def is_due(self, uid: str, now: float) -> bool:
        # A tenant seen for the first time waits one interval, like a pod that just started serving.
        due = self.next_due.setdefault(uid, now + self.settings.tune_interval_s)
        return now >= due

    def forget_gone(self) -> None:
        live = {_uid(body) for body in self.cache.tenants.values()}
        for table in (self.states, self.next_due, self.scrape, self.ooms_seen, self.learned_seen):
            for uid in [u for u in table if u not in live]:
                del table[uid]

    def state_for(
        self, uid: str, tenant: InferenceTenant, status: dict[str, Any], scrape_s: float | None = None
    ) -> TunerState:
        concurrency = status.get("concurrency") or {}
        # Two readings per judgement: edge devices shared by several tenants are noisy. Samples may be
        # up to two scrapes old before the metrics count as stale.
        config = config_for_tenant(
            tenant,
            probe_readings=2,
            max_signal_age_s=max(60.0, 2 * (scrape_s or self.settings.scrape_interval_s) + 15.0),
            ceiling_ttl_s=self.settings.ceiling_ttl_s,
        )
        known = self.states.get(uid)
        if known is not None:
            return known.model_copy(update={"config": config})
        # After a restart (or a change of leader): resume from what the status says runs now (never
        # back to `initial`), with the ceiling it recorded and when that ceiling expires.
        state = TunerState.from_status(None, config)
        if concurrency.get("target"):
            state = state.model_copy(update={"current": int(concurrency["target"])})
        if concurrency.get("ceiling"):
            expires = concurrency.get("ceilingExpiresAt")
            learned = (
                datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
                - timedelta(seconds=self.settings.ceiling_ttl_s)
                if expires
                else datetime.now(UTC)
            )
            state = state.model_copy(update={"ceiling": int(concurrency["ceiling"]), "ceiling_at": learned})
        return state

    async def scrape_interval(self, uid: str, namespace: str, pod_regex: str) -> tuple[float, bool]:
        """The scrape interval Prometheus uses for the tenant's pods, and whether Prometheus said so
        (else the setting)."""
        known = self.scrape.get(uid)
        if known is not None and time.monotonic() - known[1] < SCRAPE_INTERVAL_TTL_S:
            return known[0], True
        try:
            found = await prometheus.scrape_interval_s(
                self.prometheus, {"namespace": namespace}, {"pod": pod_regex}
            )
        except EdgeTenantError as error:
            log.debug("scrape interval of %s/%s unknown: %s", namespace, pod_regex, error)
            found = None
        if found is None:
            # Prometheus is down or does not list the pods (yet): the last interval it told stays
            # true (an outage must not stretch the tuning interval); the setting only without one.
            return (known[0], True) if known is not None else (self.settings.scrape_interval_s, False)
        self.scrape[uid] = (found, time.monotonic())
        return found, True

    async def tick(self, key: str) -> Decision | None:
        body = self.cache.tenants.get(key)
        if body is None:
            return None
        uid = _uid(body)
        self.next_due[uid] = time.monotonic() + self.settings.tune_interval_s
        try:
            tenant = InferenceTenant.model_validate(body)
        except pydantic.ValidationError:
            return None
        status = body.get("status") or {}
        if await self.handle_oom(key, uid, tenant, self.state_for(uid, tenant, status), status):
            return None
        target_placement = status.get("targetPlacement")
        loaded = any(
            c["type"] == "ModelLoaded" and c["status"] == "True" for c in status.get("conditions", [])
        )
        klass_body = self.cache.classes.get((target_placement or {}).get("acceleratorClass", ""))
        endpoints = self.cache.serving_ips(key)
        if not target_placement or not loaded or klass_body is None or not endpoints:
            return None  # nothing serves yet: nothing to tune (and no reason to ask Prometheus)
        namespace, name = str(tenant.metadata.namespace), str(tenant.metadata.name)
        pod_regex = tenant_pod_regex(name)
        scrape_s, told = await self.scrape_interval(uid, namespace, pod_regex)
        state = self.state_for(uid, tenant, status, scrape_s)
        try:
            klass = AcceleratorClass.model_validate(klass_body)
            spec = triton_spec(tenant, klass, state.current)
        except (pydantic.ValidationError, ValueError):
            return None
        if told:  # not told (a new pod, Prometheus down): look again after the shortest interval
            interval = prometheus.tuning_interval_s(scrape_s, self.settings.tune_interval_s)
            self.next_due[uid] = time.monotonic() + interval
        triton_key = await self.admin_key(tenant)  # not `key`: that names the tenant below

        async def load_model(url: str, model: str, config: str) -> None:
            from edgetenant.adapters.triton import load_model_at  # noqa: PLC0415  (tritonclient is heavy)

            await load_model_at(url, model, config=config, admin_key=triton_key)

        target: TuningTarget = target_for(
            model=served_model_name(tenant),
            # Live changes over Triton's gRPC model control: an HTTP load blocks every inference on
            # its HTTP worker thread until it returns (docs/dataplane.md, "Live instance changes").
            endpoints=[f"grpc://{ip}:{GRPC_PORT}" for ip in endpoints],
            prometheus_url=self.settings.prometheus_url,
            render_config=render_from_spec(spec),
            labels={"namespace": namespace},
            label_regexes={"pod": pod_regex},
            window_s=prometheus.rate_window_s(scrape_s, self.settings.tune_interval_s),
            load_model=load_model,
        )
        if await self.resync(target, endpoints, state):
            # Some pod ran another count: the next window must not mix the two.
            state = state.model_copy(update={"last_change_at": datetime.now(UTC)})
        decision = await tune_tick(state, target)
        self.states[uid] = decision.state
        await self.record(key, uid, tenant, decision, target_placement)
        return decision

    async def resync(self, target: TuningTarget, ips: list[str], state: TunerState) -> list[str]:
        """Level-based: every serving pod runs the state's instance count. A container restarted
        before the kubelet refreshed its ConfigMap, or a pod that has just joined, is set to it (read
        over HTTP, changed over gRPC like every live change). Returns the pods that were changed."""
        from edgetenant.adapters.triton import TritonAdapter  # noqa: PLC0415  (tritonclient is heavy)

        async def one(ip: str) -> str | None:
            try:
                async with TritonAdapter(
                    f"http://{ip}:{HTTP_PORT}", timeout_s=self.settings.triton_timeout_s
                ) as triton:
                    groups = (await triton.model_config(target.model)).get("instance_group") or [{}]
                if int(groups[0].get("count", state.current)) == state.current:
                    return None
                config = target.render_config(state.current, state.batching)
                await target.load_model(f"grpc://{ip}:{GRPC_PORT}", target.model, config)
            except EdgeTenantError as error:
                log.debug("resync of %s at %s: %s", target.model, ip, error)
                return None
            return ip

        changed = [ip for ip in await asyncio.gather(*(one(ip) for ip in ips)) if ip]
        if changed:
            log.info("%s: set %s back to %d instance(s)", target.model, ", ".join(changed), state.current)
        return changed

    async def handle_oom(
        self, key: str, uid: str, tenant: InferenceTenant, state: TunerState, status: dict[str, Any]
    ) -> bool:
        """Act once on each new kernel OOM kill of the tenant's Triton; True when one was handled."""
        seen = self.ooms_seen.setdefault(uid, set())
        pods = self.cache.pods_of(key)
        fresh = [(identity, message) for identity, message in oom_kills(pods) if identity not in seen]
        processes = [kill for kill in await self.process_ooms(tenant, pods) if kill[0] not in seen]
        namespace = str(tenant.metadata.namespace)
        for _, message, pod in processes:
            self.cache.process_ooms[f"{namespace}/{pod}"] = message  # the reconciler's ModelLoaded says it
        fresh += [(identity, message) for identity, message, _ in processes]
        if not fresh:
            return False
        seen.update(identity for identity, _ in fresh)
        if tenant.spec.concurrency.mode == ConcurrencyMode.FIXED:
            self.wake(key)
            return False  # the count is the user's; status shows the kill (ModelLoaded) and they decide
        running = int((status.get("concurrency") or {}).get("current") or state.current)
        message = fresh[-1][1]
        decision = out_of_memory(state, max(running, state.current), datetime.now(UTC), message)
        self.states[uid] = decision.state
        await self.writer.write_status(key, Writer.TUNING, lambda old: oom_status(old, decision, message))
        body = self.cache.tenants.get(key)
        if body is not None:
            self.writer.event(body, "Warning", "OOMKilled", decision.reason)
        self.wake(key)  # the ConfigMap gets the lower count before the container restarts again
        log.warning("%s: %s", key, decision.reason)
        killed_in = {pod for _, _, pod in processes}
        ips = [
            str(p["status"]["podIP"])
            for p in pods
            if p["metadata"]["name"] in killed_in and (p.get("status") or {}).get("podIP")
        ]
        await self.reload(tenant, status, decision.state, ips)
        return True

    async def process_ooms(
        self, tenant: InferenceTenant, pods: list[dict[str, Any]]
    ) -> list[tuple[str, str, str]]:
        """OOM kills of a process inside a living Triton container (from cAdvisor through Prometheus).
        Asked only while a pod runs without serving: a healthy tenant costs no query."""
        if not unready_running(pods):
            return []
        query = prometheus.SignalQuery(
            model="",
            labels={"namespace": str(tenant.metadata.namespace)},
            label_regexes={"pod": tenant_pod_regex(str(tenant.metadata.name))},
        )
        try:
            counts = await prometheus.read_oom_events(self.prometheus, query)
        except EdgeTenantError:
            return []  # Prometheus away: the kill is seen once it answers again
        return process_oom_kills(counts, pods)

    async def reload(
        self, tenant: InferenceTenant, status: dict[str, Any], state: TunerState, ips: list[str]
    ) -> None:
        """Load the model again at the state's instance count where a process OOM kill left it failed: the
        container did not restart, so it would not read the lowered ConfigMap by itself."""
        klass_body = self.cache.classes.get((status.get("targetPlacement") or {}).get("acceleratorClass", ""))
        if not ips or klass_body is None:
            return
        from edgetenant.adapters.triton import load_model_at  # noqa: PLC0415  (tritonclient is heavy)

        try:
            spec = triton_spec(tenant, AcceleratorClass.model_validate(klass_body), state.current)
        except (pydantic.ValidationError, ValueError):
            return
        config = render_from_spec(spec)(state.current, state.batching)
        triton_key = await self.admin_key(tenant)
        model = served_model_name(tenant)
        for ip in ips:
            try:
                await load_model_at(f"grpc://{ip}:{GRPC_PORT}", model, config=config, admin_key=triton_key)
            except EdgeTenantError as error:
                log.info(
                    "%s: loading again at %d instance(s) on %s failed: %s", model, state.current, ip, error
                )

    async def record(
        self, key: str, uid: str, tenant: InferenceTenant, decision: Decision, placement: dict[str, Any]
    ) -> None:
        namespace, name = str(tenant.metadata.namespace), str(tenant.metadata.name)
        generation = int(tenant.metadata.generation or 0)
        await self.writer.write_status(
            key, Writer.TUNING, lambda old: tuning_status(old, decision, generation)
        )
        TUNING_DECISIONS.labels(namespace, name, decision.action.value).inc()
        TENANT_CONCURRENCY.labels(namespace, name, "current").set(decision.state.current)
        TENANT_CONCURRENCY.labels(namespace, name, "target").set(decision.target)
        body = self.cache.tenants.get(key)
        if decision.changed and body is not None:
            kind = "Warning" if decision.action.value in {"BackOff", "StepBack"} else "Normal"
            self.writer.event(body, kind, decision.action.value, decision.reason)
            self.wake(key)  # re-render the ConfigMap with the new instance count
        if tenant.spec.concurrency.mode == ConcurrencyMode.AUTO:
            await self.learn(uid, tenant, decision.state, placement)

    async def learn(
        self, uid: str, tenant: InferenceTenant, state: TunerState, placement: dict[str, Any]
    ) -> None:
        learned = len(state.points)
        if learned == self.learned_seen.get(uid):
            return
        body = profile_body(tenant, placement["acceleratorClass"], placement["node"], state)
        if body is None:
            return
        try:
            await self.apply(body)
            self.learned_seen[uid] = learned
        except EdgeTenantError as error:
            log.warning("could not record the learned profile of %s: %s", tenant.key, error)


def tenant_pod_regex(name: str) -> str:
    """The tenant's pods by name (its Deployment's ReplicaSet hash and the pod suffix)."""
    return f"{name}-[a-z0-9]+-[a-z0-9]+"


def _uid(body: dict[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
