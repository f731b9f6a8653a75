"""TenantWriter's Events: queued without waiting, posted in order by one task, rate-limited per tenant."""

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


def test_events_are_queued_without_waiting_and_posted_in_order() -> None:
    async def scenario() -> tuple[list[tuple[str, str]], list[tuple[str, str]], int]:
        api = SlowEvents(failing="refused")
        writer = TenantWriter(api, ClusterCache(), event_interval_s=600)
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
        writer = TenantWriter(api, ClusterCache(), event_interval_s=0)
        writer.event(body("a"), "Normal", "Placed", "first")
        await writer.flush_events()
        writer.event(body("a"), "Normal", "Placed", "second")  # the poster had finished: a new one starts
        await writer.flush_events()
        return api.posted

    assert asyncio.run(scenario()) == [("Placed", "first"), ("Placed", "second")]
