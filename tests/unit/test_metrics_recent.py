"""The raw reconcile durations beside the histogram: a fixed ring, served oldest first."""

from __future__ import annotations

from typing import Any

from edgetenant import metrics


def test_the_ring_keeps_the_newest_oldest_first() -> None:
    ring = metrics.RecentSeconds(4)
    assert ring.values() == []
    for value in range(3):
        ring.add(value)
    assert ring.values() == [0, 1, 2]
    for value in range(3, 10):
        ring.add(value)
    assert ring.values() == [6, 7, 8, 9]


def test_the_debug_path_serves_what_the_histogram_observed() -> None:
    before = len(metrics.RECONCILE_SECONDS.recent.values())
    metrics.RECONCILE_SECONDS.observe(0.125)
    seen: list[Any] = []
    body = b"".join(
        metrics._app({"PATH_INFO": metrics.RECENT_PATH}, lambda status, headers: seen.append(status))
    )
    assert seen == ["200 OK"]
    lines = body.decode().splitlines()
    assert len(lines) == min(before + 1, metrics.RECENT_SAMPLES)
    assert lines[-1] == "0.125000"
