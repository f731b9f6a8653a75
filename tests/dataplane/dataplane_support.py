"""Helpers for the data-plane tests (plain functions; the fixtures are in conftest.py).

Import as ``from dataplane_support import ...`` (tests/dataplane is on sys.path for its tests).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from typing import Any, TypeVar

from edgetenant.render.triton import SHIM_BACKEND, TritonModelSpec

T = TypeVar("T")
SCRAPE_INTERVAL_S = 1.0


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion (the suite has no asyncio plugin)."""
    return asyncio.run(coro)


def shim_spec(name: str, **fields: Any) -> TritonModelSpec:
    """A spec for the bundled Triton (Python-backend shim), CME-style defaults: 1 thread per instance."""
    defaults: dict[str, Any] = {"backend": SHIM_BACKEND, "max_batch_size": 8, "threads_per_instance": 1}
    return TritonModelSpec(name=name, **(defaults | fields))


def prometheus_query(url: str, query: str, *, at: float | None = None) -> list[dict[str, Any]]:
    """Instant PromQL query through the HTTP API; the result vector."""
    params = {"query": query} | ({"time": f"{at:.3f}"} if at is not None else {})
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
