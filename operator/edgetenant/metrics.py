"""The operator's own Prometheus metrics (prometheus-client), served on settings.metrics_port.

A leaf module: it imports nothing of the operator, so every other module may record into it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Fine enough around one second to tell a p99 of 0.5 s from one of 2.5 s.
RECONCILE_SECONDS = Histogram(
    "edgetenant_reconcile_seconds",
    "Time to reconcile one tenant (apply, readiness, status).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10),
)
PLAN_SECONDS = Histogram(
    "edgetenant_plan_seconds",
    "Time to solve the cluster's placement.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PLAN_OBJECTIVE = Gauge("edgetenant_plan_objective", "Objective of the current placement plan.")
TENANTS = Gauge(
    "edgetenant_tenants",
    "Tenants: total, placed, unplaced, and by a condition's status (ready, slo_violated, "
    "metrics_unavailable, stalled).",
    ["condition"],
)
TENANT_CONCURRENCY = Gauge(
    "edgetenant_tenant_concurrency", "Triton instances per replica.", ["namespace", "tenant", "kind"]
)
TUNING_DECISIONS = Counter(
    "edgetenant_tuning_decisions_total", "Concurrency decisions by action.", ["namespace", "tenant", "action"]
)
MOVES = Counter("edgetenant_moves_total", "Tenants moved to another device.")
API_REQUESTS = Counter(
    "edgetenant_kube_api_requests_total",
    "Kubernetes API requests the operator made, by kind (write, read, lease).",
    ["verb"],
)
RECONCILES = Counter("edgetenant_reconciles_total", "Tenant reconciles.")
RECONCILE_ERRORS = Counter(
    "edgetenant_reconcile_errors_total", "Tenant reconciles that failed, by kind of error.", ["kind"]
)
PASS_FAILURES = Counter("edgetenant_pass_failures_total", "Reconcile passes that failed as a whole.")
LEADER = Gauge("edgetenant_leader", "1 while this replica holds the leader Lease and runs the loops.")
LEADER_TRANSITIONS = Counter("edgetenant_leader_transitions_total", "Times this replica became leader.")


def serve_metrics(port: int, address: str) -> None:
    """Start the /metrics endpoint (a daemon thread)."""
    start_http_server(port, addr=address)
