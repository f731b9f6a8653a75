"""Operator settings, from the environment (EDGETENANT_*), with sane defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from edgetenant.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings:
    resync_s: float = 10.0  # re-check readiness this often even when nothing changed
    debounce_s: float = 0.3  # let a burst of watch events settle before planning
    solver_time_limit_s: float = 2.0
    move_cost: float = 100.0  # objective units (priority x req/s) a move costs; see docs/placement.md
    parallel_reconciles: int = 16
    event_interval_s: float = 600.0  # the same Event for the same tenant at most this often
    triton_timeout_s: float = 2.0
    fetcher_image: str = "ghcr.io/edgetenant/model-fetcher:0.1.0"
    model_max_mib: int = 8192  # the largest model a fetcher accepts, unless the tenant says (maxSizeMiB)
    prometheus_url: str = "http://prometheus.monitoring.svc:9090"
    # Pods of this namespace may scrape the tenants' metrics port (their NetworkPolicy; docs/security.md).
    monitoring_namespace: str = "monitoring"
    tune_interval_s: float = 15.0  # the shortest tuning interval; stretched to fit slow scrapes
    # Used only when Prometheus' targets API does not list the tenant's pods (docs/tuning.md).
    scrape_interval_s: float = 30.0
    ceiling_ttl_s: float = 3600.0  # a learned instance-count ceiling is forgotten after this
    metrics_port: int = 8080  # the operator's own /metrics
    metrics_address: str = "127.0.0.1"  # the in-cluster Deployment sets 0.0.0.0 (its own pod network)
    watch_timeout_s: int = 300  # server-side watch timeout, so silent watch breaks heal
    # Leader election (a coordination.k8s.io Lease; docs/operations.md).
    lease_name: str = "edgetenant-operator"
    lease_namespace: str = ""  # default: the operator pod's namespace, else edgetenant-system
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    standalone: bool = False  # no leader election (`edgetenant run --standalone`)

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ConfigError(
                "leader election needs 0 < EDGETENANT_RETRY_PERIOD_S < EDGETENANT_RENEW_DEADLINE_S < "
                f"EDGETENANT_LEASE_DURATION_S (got {self.retry_period_s}, {self.renew_deadline_s}, "
                f"{self.lease_duration_s})"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"EDGETENANT_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls(), f.name))
            try:
                values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as error:
                raise ConfigError(f"EDGETENANT_{f.name.upper()}={raw!r}: expected {kind.__name__}") from error
        return cls(**values)


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(raw)
