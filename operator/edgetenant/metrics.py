"""The operator's own Prometheus metrics (prometheus-client), served on settings.metrics_port.

A leaf module: it imports nothing of the operator, so every other module may record into it.
Besides `/metrics` the same port answers `/debug/reconcile-seconds`: the last `RECENT_SAMPLES`
reconcile durations, one per line, oldest first (for benchmarks: exact quantiles, not buckets).
"""

from __future__ import annotations

import array
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

RECENT_SAMPLES = 16384  # 128 KiB of doubles, fixed
RECENT_PATH = "/debug/reconcile-seconds"


class RecentSeconds:
    """A fixed ring of the newest durations. `add` is an index store (no allocation, no lock):
    one writer, the event loop; a reader may see a sample being overwritten, which a benchmark's
    quantile does not notice."""

    def __init__(self, size: int) -> None:
        self._ring = array.array("d", bytes(8 * size))
        self._count = 0

    def add(self, seconds: float) -> None:
        self._ring[self._count % len(self._ring)] = seconds
        self._count += 1

    def values(self) -> list[float]:
        count, size = self._count, len(self._ring)
        if count <= size:
            return self._ring[:count].tolist()
        start = count % size
        return (self._ring[start:] + self._ring[:start]).tolist()


class _ReconcileSeconds(Histogram):
    """`edgetenant_reconcile_seconds`, which also keeps the newest raw durations."""

    recent = RecentSeconds(RECENT_SAMPLES)

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        super().observe(amount, exemplar)
        self.recent.add(amount)


# Fine enough around one second to tell a p99 of 0.5 s from one of 2.5 s.
RECONCILE_SECONDS = _ReconcileSeconds(
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


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line."""


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == RECENT_PATH:
        body = "".join(f"{v:.6f}\n" for v in _ReconcileSeconds.recent.values()).encode()
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body]
    return _METRICS_APP(environ, start_response)  # type: ignore[no-any-return]


_METRICS_APP = make_wsgi_app()


def serve_metrics(port: int, address: str) -> None:
    """Serve /metrics and /debug/reconcile-seconds in a daemon thread (what prometheus-client's
    `start_http_server` does, with the one extra path)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(str(sockaddr[0]), port, _app, Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
