"""A real Prometheus scraping Triton sees exactly the requests the load generator sent.

Tolerances: the counter's increase must match the load generator's count exactly (every
request is one inference); the PromQL ``rate`` over a window inside the run must be within
20% of the load generator's throughput (1 s scrapes: a 6 s window gains or loses up to one
sample's worth at each edge, and throughput itself wanders on a shared 2-core machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from dataplane_support import SCRAPE_INTERVAL_S, prometheus_query

from edgetenant.dataplane.local import PrometheusProcess, TritonProcess
from edgetenant.profiling.loadgen import run_load
from edgetenant.render.triton import TritonModelSpec

Run = Callable[[Coroutine[Any, Any, Any]], Any]
RATE_TOLERANCE = 0.20


def _counter(prometheus: PrometheusProcess, model: str) -> float:
    result = prometheus_query(prometheus.url, f'sum(nv_inference_count{{model="{model}"}})')
    return float(result[0]["value"][1]) if result else 0.0


def _wait_for_fresh_scrape(prometheus: PrometheusProcess, model: str, since: float) -> None:
    """Block until Prometheus holds a sample of the model's counter taken after ``since``."""
    deadline = time.monotonic() + 30
    query = f'timestamp(nv_inference_count{{model="{model}"}})'
    while time.monotonic() < deadline:
        result = prometheus_query(prometheus.url, query)
        if result and float(result[0]["value"][1]) > since:
            return
        time.sleep(SCRAPE_INTERVAL_S / 4)
    raise AssertionError(f"no scrape of {model} after {since}")


def test_promql_sees_what_the_load_generator_counted(
    serve: Callable[..., TritonModelSpec],
    triton: TritonProcess,
    prometheus: PrometheusProcess,
    run: Run,
) -> None:
    spec = serve("prom-efficientnet", "efficientnet_b0", instance_count=2)
    _wait_for_fresh_scrape(prometheus, spec.name, time.time())
    before = _counter(prometheus, spec.name)

    result = run(run_load(triton.url, spec.name, concurrency=2, duration_s=10.0))
    finished = time.time()
    _wait_for_fresh_scrape(prometheus, spec.name, finished + SCRAPE_INTERVAL_S)
    after = _counter(prometheus, spec.name)

    assert result.errors == 0, result.error_samples
    assert after - before == result.requests
    # A 6 s window ending 2 s before the load stopped lies wholly inside steady load.
    rate = prometheus_query(
        prometheus.url, f'sum(rate(nv_inference_count{{model="{spec.name}"}}[6s]))', at=finished - 2
    )
    assert rate, "no rate sample"
    promql_rate = float(rate[0]["value"][1])
    assert abs(promql_rate - result.throughput) <= RATE_TOLERANCE * result.throughput, (
        promql_rate,
        result.throughput,
    )
