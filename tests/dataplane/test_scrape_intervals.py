"""Tuning reads real metrics at the scrape intervals production Prometheus uses (15, 30 and 60 s):
the operator asks Prometheus's targets API for the interval of the tenant's pods and sizes its rate
window from it. The old fixed window (one 15 s tuning interval less a 2 s scrape) reads nothing at
these intervals, so tuning held for ever."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgetenant.adapters import prometheus
from edgetenant.dataplane import local
from edgetenant.errors import MetricsUnavailable
from edgetenant.profiling.loadgen import run_load
from edgetenant.render.triton import TritonModelSpec

MODEL = "scrape-mobilenet"
INTERVALS_S = (15, 30, 60)
LABELS = {"namespace": "scrape-test", "pod": "scrape-mobilenet-5d8f7c9b4-x2x7q"}
POD_REGEX = "scrape-mobilenet-[a-z0-9]+-[a-z0-9]+"
TUNE_INTERVAL_S = 15.0
OLD_WINDOW_S = 13.0  # what the operator used to assume: 15 s interval less a 2 s scrape
RATE = 4.0  # req/s: light, steady load


@pytest.fixture(scope="module")
def scrapers(
    triton: local.TritonProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, local.PrometheusProcess]]:
    started: dict[int, local.PrometheusProcess] = {}
    try:
        for interval in INTERVALS_S:
            config = local.render_static_scrape_config(
                [triton.metrics_target], interval=f"{interval}s", labels=LABELS
            )
            started[interval] = local.start_prometheus(
                config, data_dir=tmp_path_factory.mktemp(f"prometheus-{interval}s")
            )
        yield started
    finally:
        for process in started.values():
            process.stop()


def test_rate_windows_follow_the_scrape_interval_prometheus_uses(
    serve: Callable[..., TritonModelSpec],
    triton: local.TritonProcess,
    scrapers: dict[int, local.PrometheusProcess],
    tmp_path: Path,
) -> None:
    serve(MODEL, "mobilenet_v2", instance_count=1)
    stop = threading.Event()
    errors: list[str] = []

    def load() -> None:
        # Bounded: at most 260 s, and it stops as soon as the test has what it needs.
        deadline = time.monotonic() + 260
        while not stop.is_set() and time.monotonic() < deadline:
            result = asyncio.run(run_load(triton.url, MODEL, rate=RATE, duration_s=10))
            errors.extend(result.error_samples)

    loader = threading.Thread(target=load)
    loader.start()
    load_started = time.monotonic()
    try:
        found: dict[int, tuple[float, float | None]] = {}
        deadline = time.monotonic() + 240
        while len(found) < len(INTERVALS_S) and time.monotonic() < deadline:
            time.sleep(5)
            for interval, process in scrapers.items():
                if interval in found:
                    continue
                client = prometheus.connect(process.url)
                seen = prometheus.query_scrape_interval_s(
                    client, {"namespace": LABELS["namespace"]}, {"pod": POD_REGEX}
                )
                assert seen in (None, float(interval)), f"targets API says {seen} for a {interval}s scrape"
                if seen is None:
                    continue
                window = prometheus.rate_window_s(seen, TUNE_INTERVAL_S)
                # Until the window lies wholly inside the load, the rate still averages in the idle
                # time before it: judge the figure only then (for 60 s scrapes: just that it reads).
                covered = time.monotonic() - load_started >= window + seen
                if not covered and interval < 60:
                    continue
                query = prometheus.SignalQuery(
                    model=MODEL, labels={"namespace": LABELS["namespace"]}, label_regexes={"pod": POD_REGEX},
                    window_s=window, read_memory=False,
                )  # fmt: skip
                try:
                    signals = prometheus.query_signals(client, query)
                except MetricsUnavailable:
                    continue  # fewer than two scrapes so far
                found[interval] = (window, signals.throughput if covered else None)
        assert set(found) == set(INTERVALS_S), f"no signals within 240 s for {set(INTERVALS_S) - set(found)}"
        for interval, (window, throughput) in found.items():
            assert window == 3 * interval
            assert prometheus.tuning_interval_s(interval, TUNE_INTERVAL_S) == 4 * interval
            if throughput is not None:
                assert 0.7 * RATE < throughput < 1.3 * RATE, (
                    f"{interval}s scrape: {throughput:.2f}/s for {RATE}/s"
                )
            # The old fixed window spans less than two scrapes: rate() has nothing to say.
            old = prometheus.SignalQuery(
                model=MODEL, labels={"namespace": LABELS["namespace"]}, label_regexes={"pod": POD_REGEX},
                window_s=OLD_WINDOW_S, read_memory=False,
            )  # fmt: skip
            with pytest.raises(MetricsUnavailable):
                prometheus.query_signals(prometheus.connect(scrapers[interval].url), old)
    finally:
        stop.set()
        loader.join(timeout=30)
    assert not errors, errors[:3]


def test_a_target_prometheus_does_not_list_has_no_interval(
    scrapers: dict[int, local.PrometheusProcess],
) -> None:
    client = prometheus.connect(scrapers[15].url)
    assert prometheus.query_scrape_interval_s(client, {"namespace": "elsewhere"}, {}) is None
