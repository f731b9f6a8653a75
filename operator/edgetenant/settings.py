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
    prometheus_url: str = "http://prometheus.monitoring.svc:9090"
    tune_interval_s: float = 15.0
    scrape_interval_s: float = 2.0  # Prometheus' scrape interval for Triton pods
    metrics_port: int = 8080  # the operator's own /metrics
    metrics_address: str = "127.0.0.1"  # the in-cluster Deployment sets 0.0.0.0 (its own pod network)
    watch_timeout_s: int = 300  # server-side watch timeout, so silent watch breaks heal
    peering: str = "edgetenant"

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
                values[f.name] = kind(raw)
            except ValueError as error:
                raise ConfigError(f"EDGETENANT_{f.name.upper()}={raw!r}: expected {kind.__name__}") from error
        return cls(**values)
