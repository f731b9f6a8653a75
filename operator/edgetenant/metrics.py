"""The operator's own Prometheus metrics (prometheus-client), served on settings.metrics_port."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from edgetenant.reconcile import Reconciler
    from edgetenant.settings import Settings

RECONCILE_SECONDS = Histogram(
    "edgetenant_reconcile_seconds",
    "Time to reconcile one tenant (apply, readiness, status).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PLAN_SECONDS = Histogram("edgetenant_plan_seconds", "Time to solve the cluster's placement.")
PLAN_OBJECTIVE = Gauge("edgetenant_plan_objective", "Objective of the current placement plan.")
TENANTS = Gauge("edgetenant_tenants", "Tenants by condition.", ["condition"])
TENANT_CONCURRENCY = Gauge(
    "edgetenant_tenant_concurrency", "Triton instances per replica.", ["namespace", "tenant", "kind"]
)
TUNING_DECISIONS = Counter(
    "edgetenant_tuning_decisions_total", "Concurrency decisions by action.", ["namespace", "tenant", "action"]
)
MOVES = Counter("edgetenant_moves_total", "Tenants moved to another device.")
API_REQUESTS = Counter("edgetenant_kube_api_requests_total", "Kubernetes API requests the operator made.")
RECONCILES = Counter("edgetenant_reconciles_total", "Tenant reconciles.")


def serve_metrics(settings: Settings, reconciler: Reconciler) -> None:
    """Start the /metrics endpoint (a daemon thread)."""
    del reconciler  # metrics are recorded where things happen; nothing to pull from here
    start_http_server(settings.metrics_port, addr=settings.metrics_address)
