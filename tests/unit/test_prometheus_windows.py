"""Rate windows from the scrape interval (pure arithmetic of the Prometheus adapter)."""

from __future__ import annotations

import pytest

from edgetenant.adapters import prometheus


def test_durations_parse_like_prometheus() -> None:
    assert prometheus.parse_duration_s("15s") == 15
    assert prometheus.parse_duration_s("1m30s") == 90
    assert prometheus.parse_duration_s("500ms") == 0.5
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        prometheus.parse_duration_s("15 seconds")


@pytest.mark.parametrize(
    ("scrape", "window", "interval"),
    [(2, 13, 15), (15, 45, 60), (30, 90, 120), (60, 180, 240)],
)
def test_the_window_spans_three_scrapes_and_the_interval_one_more(
    scrape: float, window: float, interval: float
) -> None:
    assert prometheus.rate_window_s(scrape, 15) == window
    assert prometheus.tuning_interval_s(scrape, 15) == interval
