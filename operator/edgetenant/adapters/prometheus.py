"""Prometheus adapter: Triton's ``nv_inference_*`` metrics for one model, read as ``tuning.Signals``.

Every PromQL query the project runs is written once, here (``QUERIES``). A selector picks
the model and, for the operator, the tenant's pods by their scrape labels; rates sum over
the selected pods. Foreign errors (requests, prometheus-api-client) become
``edgetenant.errors.MetricsUnavailable``. The client is synchronous: async callers use
``read_signals``, which runs it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from edgetenant.errors import MetricsUnavailable
from edgetenant.tuning.data import Signals

# {sel} is the label selector body, {w} the rate window (e.g. "20s"). Durations in Triton
# are cumulative microseconds over requests, so their rate over the request rate is the
# mean per request. p95 comes from Triton's latency summary (--metrics-config
# summary_latencies=true); across pods the worst pod's p95 is the honest figure.
QUERIES: Final[dict[str, str]] = {
    "throughput": "sum(rate(nv_inference_count{{{sel}}}[{w}]))",
    "requests": "sum(rate(nv_inference_request_success{{{sel}}}[{w}]))",
    "failures": "sum(rate(nv_inference_request_failure{{{sel}}}[{w}]))",
    "queue_us": "sum(rate(nv_inference_queue_duration_us{{{sel}}}[{w}]))",
    "compute_us": "sum(rate(nv_inference_compute_infer_duration_us{{{sel}}}[{w}]))",
    "p95_us": 'max(nv_inference_request_summary_us{{{sel},quantile="0.95"}})',
    "pending": "sum(nv_inference_pending_request_count{{{sel}}})",
    "newest": "max(timestamp(nv_inference_count{{{sel}}}))",
}
# What the serving runtime says it runs on: the OpenVINO and TFLite shims publish one such gauge per
# instance (dataplane/openvino_model.py, tflite_model.py), so a stand-in on a CPU reads "CPU", never the
# device its class is named after. Other backends publish none (then it is unknown, not an error).
DEVICE_QUERY: Final = "count by (device, runtime) (edgetenant_shim_device_info{{{sel}}})"
# GPU memory is per device, not per model: selected by the pod labels only. Jetson boards
# and CPUs export nothing here, so it is optional.
MEMORY_QUERY: Final = "sum(nv_gpu_memory_used_bytes{{{sel}}})"

# The kernel's OOM kills in each pod's Triton container, as the kubelet's cAdvisor counts them
# (kube-prometheus scrapes it). On cgroup v1 (JetPack 4 Jetsons, hybrid hosts) the kernel kills one
# process of the container, Triton's Python-backend stub, not the container: no container status says
# OOMKilled, and this counter is the only witness.
OOM_QUERY: Final = 'max by (pod) (container_oom_events_total{{{sel},container="triton"}})'

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SignalQuery:
    """Which series describe one tenant's model.

    ``labels`` are exact matches on scrape labels (e.g. ``{"namespace": "shop", "pod": ...}``),
    ``label_regexes`` regex matches (e.g. ``{"pod": "shop-resnet-.*"}``). ``window_s`` is
    the rate window; it must span at least two scrapes.
    """

    model: str
    labels: Mapping[str, str] = field(default_factory=dict)
    label_regexes: Mapping[str, str] = field(default_factory=dict)
    window_s: float = 20.0
    read_memory: bool = True

    def selector(self, *, with_model: bool = True) -> str:
        matchers = [f'model="{_escape(self.model)}"'] if with_model else []
        for name, value in sorted(self.labels.items()):
            matchers.append(f'{_label(name)}="{_escape(value)}"')
        for name, value in sorted(self.label_regexes.items()):
            matchers.append(f'{_label(name)}=~"{_escape(value)}"')
        return ",".join(matchers)

    def window(self) -> str:
        return f"{max(round(self.window_s * 1000), 1)}ms"

    def promql(self) -> dict[str, str]:
        """The queries for this model, by name (what ``read_signals`` sends)."""
        queries = {name: q.format(sel=self.selector(), w=self.window()) for name, q in QUERIES.items()}
        pod_selector = self.selector(with_model=False)
        if self.read_memory and pod_selector:
            queries["memory_bytes"] = MEMORY_QUERY.format(sel=pod_selector)
        return queries


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration_s(text: str) -> float:
    """A Prometheus duration ("15s", "1m30s", "500ms") in seconds; ValueError when it is not one."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not a Prometheus duration")
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def query_scrape_interval_s(
    client: PrometheusConnect, labels: Mapping[str, str], label_regexes: Mapping[str, str]
) -> float | None:
    """The scrape interval Prometheus uses for the targets whose labels match (the longest, if they
    differ), from its targets API; None when no active target matches. Blocking."""
    try:
        targets: list[dict[str, Any]] = client.get_targets(state="active").get("activeTargets", [])
    except (requests.RequestException, PrometheusApiClientException, KeyError) as exc:
        raise MetricsUnavailable(f"Prometheus at {client.url} did not list its targets: {exc}") from exc
    patterns = {name: re.compile(f"^(?:{value})$") for name, value in label_regexes.items()}
    intervals = []
    for target in targets:
        found = target.get("labels") or {}
        if all(found.get(k) == v for k, v in labels.items()) and all(
            p.match(found.get(k, "")) for k, p in patterns.items()
        ):
            with contextlib.suppress(ValueError, TypeError):
                intervals.append(parse_duration_s(str(target.get("scrapeInterval"))))
    return max(intervals) if intervals else None


async def scrape_interval_s(
    client: PrometheusConnect, labels: Mapping[str, str], label_regexes: Mapping[str, str]
) -> float | None:
    """``query_scrape_interval_s`` off the event loop."""
    return await asyncio.to_thread(query_scrape_interval_s, client, labels, label_regexes)


def rate_window_s(scrape_interval_s: float, tune_interval_s: float) -> float:
    """The rate window for a target scraped every `scrape_interval_s`.

    At least three scrapes, so `rate()` always has two samples (Prometheus needs two; a window of
    exactly two intervals sometimes holds only one), and otherwise one tuning interval less one scrape,
    so each change is judged on samples taken after it. A tuning interval shorter than window + scrape
    is stretched to it (`tuning_interval_s`).
    """
    return max(3.0 * scrape_interval_s, tune_interval_s - scrape_interval_s)


def tuning_interval_s(scrape_interval_s: float, tune_interval_s: float) -> float:
    """How often a tenant scraped every `scrape_interval_s` can be judged: its window plus one scrape."""
    return max(tune_interval_s, rate_window_s(scrape_interval_s, tune_interval_s) + scrape_interval_s)


def connect(url: str, *, timeout_s: float = 5.0) -> PrometheusConnect:
    """A client that fails fast: no retries (the control loop tries again next interval)."""
    return PrometheusConnect(
        url=url,
        disable_ssl=True,
        retry=Retry(total=0),
        timeout=max(1, math.ceil(timeout_s)),
    )


def query_signals(client: PrometheusConnect, query: SignalQuery, *, at: datetime | None = None) -> Signals:
    """Read one model's signals as of ``at`` (default: now). Blocking.

    Raises MetricsUnavailable when Prometheus cannot be reached or holds no recent sample of
    the model's ``nv_inference_count``.
    """
    at = at or datetime.now(UTC)
    values = {name: _scalar(client, promql, at) for name, promql in query.promql().items()}
    newest = values["newest"]
    if newest is None or values["throughput"] is None:
        raise MetricsUnavailable(
            f"Prometheus at {client.url} has no samples of nv_inference_count{{{query.selector()}}} "
            f"in the last {query.window_s:.0f}s"
        )
    requests_rate = values["requests"] or 0.0
    per_request = 1000.0 * requests_rate  # us/s over req/s -> us per request, then /1000 -> ms

    def mean_ms(total_us_per_s: float | None) -> float:
        return (total_us_per_s or 0.0) / per_request if per_request > 0 else 0.0

    memory_bytes = values.get("memory_bytes")
    p95_us = values["p95_us"]
    runs_on = _runs_on(client, DEVICE_QUERY.format(sel=query.selector()), at)
    return Signals(
        at=at,
        window_s=query.window_s,
        sample_age_s=max(at.timestamp() - newest, 0.0),
        throughput=max(values["throughput"], 0.0),
        request_rate=max(requests_rate, 0.0),
        queue_ms=max(mean_ms(values["queue_us"]), 0.0),
        compute_ms=max(mean_ms(values["compute_us"]), 0.0),
        latency_p95_ms=None if p95_us is None else p95_us / 1000.0,
        failure_rate=max(values["failures"] or 0.0, 0.0),
        pending=values["pending"],
        memory_used_mib=None if memory_bytes is None else memory_bytes / 2**20,
        runs_on=runs_on,
    )


async def read_signals(
    client: PrometheusConnect, query: SignalQuery, *, at: datetime | None = None
) -> Signals:
    """``query_signals`` off the event loop."""
    return await asyncio.to_thread(query_signals, client, query, at=at)


def query_oom_events(client: PrometheusConnect, query: SignalQuery) -> dict[str, int]:
    """The kernel's OOM kills so far in each of the tenant's pods' Triton containers (pod -> count;
    pods without any are left out). Blocking; MetricsUnavailable when Prometheus does not answer."""
    result = _vector(client, OOM_QUERY.format(sel=query.selector(with_model=False)), datetime.now(UTC))
    counts = {str(r["metric"].get("pod", "")): int(float(r["value"][1])) for r in result if r.get("metric")}
    return {pod: count for pod, count in counts.items() if pod and count > 0}


async def read_oom_events(client: PrometheusConnect, query: SignalQuery) -> dict[str, int]:
    """``query_oom_events`` off the event loop."""
    return await asyncio.to_thread(query_oom_events, client, query)


def _vector(client: PrometheusConnect, promql: str, at: datetime) -> list[dict[str, Any]]:
    """The series of an instant query at ``at``; MetricsUnavailable when Prometheus does not answer."""
    try:
        result: list[dict[str, Any]] = client.custom_query(promql, params={"time": f"{at.timestamp():.3f}"})
    except (requests.RequestException, PrometheusApiClientException) as exc:
        raise MetricsUnavailable(f"Prometheus at {client.url} did not answer {promql!r}: {exc}") from exc
    return result


def _scalar(client: PrometheusConnect, promql: str, at: datetime) -> float | None:
    """The single value of an aggregated instant query; None when no series matched (or NaN)."""
    result = _vector(client, promql, at)
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


def _runs_on(client: PrometheusConnect, promql: str, at: datetime) -> str | None:
    """ "CPU (openvino 2026.4.1)"-style text of every device the model's instances run on, or None."""
    try:
        result = _vector(client, promql, at)
    except MetricsUnavailable:
        return None  # optional: the signals above already proved Prometheus answers
    found = sorted(
        f"{r['metric'].get('device') or '?'} ({r['metric'].get('runtime') or '?'})"
        for r in result
        if r.get("metric")
    )
    return ", ".join(found) or None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _label(name: str) -> str:
    if not _LABEL_NAME.match(name):
        raise ValueError(f"{name!r} is not a Prometheus label name")
    return name
