"""The tuning loop inside the operator: one `tune_tick` per Auto (or Fixed) tenant per interval.

The pure controller and its edge (tuning.loop) know nothing of Kubernetes. This module gives them the
tenant's knobs, its ready pods' IPs (every pod gets every change), its Prometheus
selector, and keeps the result: `status.concurrency` / `lastDecision` / `observed`, the
`MetricsAvailable` and `SLOMet` conditions, an Event per change, operator metrics, the tuned instance
count in the ConfigMap (through the reconciler, which renders it from `status.concurrency.target`),
and the learned points in an online ModelProfile so placement improves with use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pydantic

from edgetenant.api.models import AcceleratorClass, ConcurrencyMode, InferenceTenant
from edgetenant.errors import EdgeTenantError
from edgetenant.metrics import TENANT_CONCURRENCY, TUNING_DECISIONS
from edgetenant.render.kube import HTTP_PORT, served_model_name, triton_spec
from edgetenant.status import condition, iso
from edgetenant.tuning import Decision, TunerState
from edgetenant.tuning.data import config_for_tenant
from edgetenant.tuning.loop import render_from_spec, target_for, tune_tick

if TYPE_CHECKING:
    from edgetenant.reconcile import Reconciler
    from edgetenant.settings import Settings

log = logging.getLogger(__name__)
TUNING_CONDITIONS = ("MetricsAvailable", "SLOMet")


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
    others = [c for c in old.get("conditions", []) if c["type"] not in TUNING_CONDITIONS]
    status: dict[str, Any] = {
        "conditions": [*others, metrics, slo],
        "concurrency": {
            "current": decision.state.current,
            "target": decision.target,
            "ceiling": decision.ceiling,
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
            "at": iso(s.at),
        }
    return status


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
    def __init__(self, reconciler: Reconciler, settings: Settings) -> None:
        self.reconciler = reconciler
        self.settings = settings
        self.states: dict[str, TunerState] = {}
        self.learned_seen: dict[str, int] = {}

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tune_interval_s)
            keys = list(self.reconciler.cache.tenants)
            results = await asyncio.gather(*(self.tick(key) for key in keys), return_exceptions=True)
            for key, result in zip(keys, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    log.warning("tuning %s failed: %s", key, result)

    def state_for(self, key: str, tenant: InferenceTenant, status: dict[str, Any]) -> TunerState:
        concurrency = status.get("concurrency") or {}
        # Two readings per judgement: edge devices shared by several tenants are noisy.
        config = config_for_tenant(tenant, ceiling=concurrency.get("ceiling"), probe_readings=2)
        known = self.states.get(key)
        if known is not None:
            return known.model_copy(update={"config": config})
        # After a restart: resume from what the status says runs now (never back to `initial`).
        state = TunerState.from_status(None, config)
        if concurrency.get("target"):
            state = state.model_copy(
                update={"current": int(concurrency["target"]), "ceiling": concurrency.get("ceiling")}
            )
        return state

    async def tick(self, key: str) -> Decision | None:
        body = self.reconciler.cache.tenants.get(key)
        if body is None:
            return None
        status = body.get("status") or {}
        target_placement = status.get("targetPlacement")
        loaded = any(
            c["type"] == "ModelLoaded" and c["status"] == "True" for c in status.get("conditions", [])
        )
        if not target_placement or not loaded:
            return None  # nothing serves yet: nothing to tune
        try:
            tenant = InferenceTenant.model_validate(body)
            klass = AcceleratorClass.model_validate(
                self.reconciler.cache.classes[target_placement["acceleratorClass"]]
            )
        except (pydantic.ValidationError, KeyError):
            return None
        namespace, name = str(tenant.metadata.namespace), str(tenant.metadata.name)
        endpoints = self.reconciler.cache.serving_ips(key)
        if not endpoints:
            return None
        state = self.state_for(key, tenant, status)
        spec = triton_spec(tenant, klass, state.current)
        target = target_for(
            model=served_model_name(tenant),
            endpoints=[f"http://{ip}:{HTTP_PORT}" for ip in endpoints],
            prometheus_url=self.settings.prometheus_url,
            render_config=render_from_spec(spec),
            labels={"namespace": namespace},
            label_regexes={"pod": f"{name}-[a-z0-9]+-[a-z0-9]+"},
            # One interval's worth of samples (less a scrape), so each change is judged on the next tick.
            window_s=max(6.0, self.settings.tune_interval_s - self.settings.scrape_interval_s),
        )
        decision = await tune_tick(state, target)
        self.states[key] = decision.state
        await self.record(key, tenant, decision, target_placement)
        return decision

    async def record(
        self, key: str, tenant: InferenceTenant, decision: Decision, placement: dict[str, Any]
    ) -> None:
        namespace, name = str(tenant.metadata.namespace), str(tenant.metadata.name)
        generation = int(tenant.metadata.generation or 0)
        await self.reconciler.write_status(key, lambda old: tuning_status(old, decision, generation))
        TUNING_DECISIONS.labels(namespace, name, decision.action.value).inc()
        TENANT_CONCURRENCY.labels(namespace, name, "current").set(decision.state.current)
        TENANT_CONCURRENCY.labels(namespace, name, "target").set(decision.target)
        body = self.reconciler.cache.tenants.get(key)
        if decision.changed and body is not None:
            kind = "Warning" if decision.action.value in {"BackOff", "StepBack"} else "Normal"
            await self.reconciler.event(body, kind, decision.action.value, decision.reason)
            self.reconciler.trigger(key)  # re-render the ConfigMap with the new instance count
        if tenant.spec.concurrency.mode == ConcurrencyMode.AUTO:
            await self.learn(key, tenant, decision.state, placement)

    async def learn(
        self, key: str, tenant: InferenceTenant, state: TunerState, placement: dict[str, Any]
    ) -> None:
        learned = len(state.points)
        if learned == self.learned_seen.get(key):
            return
        body = profile_body(tenant, placement["acceleratorClass"], placement["node"], state)
        if body is None:
            return
        try:
            await self.reconciler.kube.apply(body)
            self.learned_seen[key] = learned
        except EdgeTenantError as error:
            log.warning("could not record the learned profile of %s: %s", key, error)
