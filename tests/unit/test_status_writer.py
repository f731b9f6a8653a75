"""TenantWriter's Events: queued without waiting, posted by a few tasks, rate-limited per tenant, dropped
once their tenant is gone."""

from __future__ import annotations

import asyncio
from typing import Any

from edgetenant.cache import ClusterCache
from edgetenant.errors import EdgeTenantError
from edgetenant.status_writer import TenantWriter


class SlowEvents:
    """post_event waits until the test opens the gate; the first message given fails."""

    def __init__(self, failing: str = "") -> None:
        self.gate = asyncio.Event()
        self.posted: list[tuple[str, str]] = []
        self.failing = failing

    async def patch_tenant_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("not used")

    async def get_tenant(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise AssertionError("not used")

    async def post_event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        await self.gate.wait()
        if message == self.failing:
            raise EdgeTenantError("the API server refused it")
        self.posted.append((reason, message))


def body(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"}}


def cache_with(*names: str) -> ClusterCache:
    cache = ClusterCache()
    for name in names:
        cache.put_tenant(f"ns/{name}", body(name))
    return cache


def test_events_are_queued_without_waiting_and_posted() -> None:
    async def scenario() -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
        api = SlowEvents(failing="refused")
        writer = TenantWriter(api, cache_with("a", "b"), event_interval_s=600)
        writer.event(body("a"), "Normal", "Placed", "placed on n1")
        writer.event(body("a"), "Warning", "Unschedulable", "refused")
        writer.event(body("b"), "Normal", "Placed", "placed on n2")
        writer.event(body("a"), "Normal", "Placed", "placed on n1")  # the same, within the interval
        await asyncio.sleep(0.05)
        before = list(api.posted)  # the API server has not answered yet: nothing posted, nobody waited
        api.gate.set()
        await writer.flush_events()
        return before, api.posted, writer.writes

    before, posted, writes = asyncio.run(scenario())
    assert before == []
    assert posted == [("Placed", "placed on n1"), ("Placed", "placed on n2")], (
        "a failure does not stop the rest"
    )
    assert writes == 2


def test_a_second_burst_after_the_first_was_posted_is_posted_too() -> None:
    async def scenario() -> list[tuple[str, str]]:
        api = SlowEvents()
        api.gate.set()
        writer = TenantWriter(api, cache_with("a"), event_interval_s=0)
        writer.event(body("a"), "Normal", "Placed", "first")
        await writer.flush_events()
        writer.event(body("a"), "Normal", "Placed", "second")  # the poster had finished: a new one starts
        await writer.flush_events()
        return api.posted

    assert asyncio.run(scenario()) == [("Placed", "first"), ("Placed", "second")]


def test_an_event_of_a_tenant_gone_meanwhile_is_dropped_and_a_backlog_is_posted_in_parallel() -> None:
    async def scenario() -> tuple[list[tuple[str, str]], int]:
        api = SlowEvents()
        cache = cache_with(*(f"t{i}" for i in range(20)), "live")
        writer = TenantWriter(api, cache, event_interval_s=600)
        for i in range(20):
            writer.event(body(f"t{i}"), "Warning", "InvalidSpec", f"t{i}")
        writer.event(body("live"), "Warning", "OOMKilled", "live")
        for i in range(20):
            if i % 2:
                cache.tenants.pop(f"ns/t{i}")  # deleted before its Event went out
        await asyncio.sleep(0.05)
        in_flight = len(writer._posters)
        api.gate.set()
        await writer.flush_events()
        return api.posted, in_flight

    posted, in_flight = asyncio.run(scenario())
    assert 1 < in_flight <= 8
    assert ("OOMKilled", "live") in posted
    assert all(int(message[1:]) % 2 == 0 for reason, message in posted if reason == "InvalidSpec")
