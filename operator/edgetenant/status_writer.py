"""Every write about a tenant goes through here: its status (one serialiser) and its Events.

The seam where the reconciler and the tuning driver meet. Each writer computes its fields from the
newest status the operator knows, under the tenant's lock, and writes only the fields it owns
(`status.owned_patch`): the reconciler never writes back an instance count the tuning loop has
changed meanwhile, and the tuning loop never touches placement. The patch carries the
resourceVersion it was computed from, so a write based on a stale status (a user edited the spec, or
another operator replica wrote) is refused by the API server and recomputed, never applied blindly.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from edgetenant.cache import ClusterCache, tenant_key
from edgetenant.errors import ConflictError, EdgeTenantError
from edgetenant.status import Writer, owned_patch

log = logging.getLogger(__name__)
StatusFn = Callable[[dict[str, Any]], dict[str, Any]]
# Events in flight at once: a backlog (an operator starting beside hundreds of tenants) clears as fast as
# it did when each reconcile posted its own, and an Event queued behind it waits seconds, not minutes.
EVENT_POSTERS = 8


class TenantApi(Protocol):
    """The API calls the writer needs (adapters.kube.Kube has them)."""

    def patch_tenant_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None = None
    ) -> Awaitable[dict[str, Any]]: ...

    def get_tenant(self, namespace: str, name: str) -> Awaitable[dict[str, Any] | None]: ...

    def post_event(
        self, involved: dict[str, Any], event_type: str, reason: str, message: str
    ) -> Awaitable[None]: ...


class TenantWriter:
    def __init__(self, api: TenantApi, cache: ClusterCache, *, event_interval_s: float) -> None:
        self.api = api
        self.cache = cache
        self.event_interval_s = event_interval_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._events: dict[str, dict[str, float]] = {}  # tenant key -> reason:message -> time posted
        # Events not yet posted; bounded so an API server outage cannot grow it without limit.
        self._outbox: collections.deque[tuple[dict[str, Any], str, str, str]] = collections.deque(
            maxlen=10_000
        )
        self._posters: set[asyncio.Task[None]] = set()
        self.writes = 0  # API writes made (status patches and Events), for metrics and tests

    def lock(self, key: str) -> asyncio.Lock:
        """The tenant's lock: held while a writer computes and writes (and while the reconciler renders
        the instance count into the ConfigMap, so that count is never older than the status)."""
        return self._locks.setdefault(key, asyncio.Lock())

    async def write_status(self, key: str, writer: Writer, compute: StatusFn) -> dict[str, Any] | None:
        """Write `writer`'s fields of `compute(newest status)`; returns the patch written (None if none)."""
        async with self.lock(key):
            return await self.write_status_locked(key, writer, compute)

    async def write_status_locked(self, key: str, writer: Writer, compute: StatusFn) -> dict[str, Any] | None:
        """`write_status` for a caller that already holds `lock(key)`."""
        namespace, name = key.split("/", 1)
        for attempt in range(3):
            body = self.cache.tenants.get(key)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            latest = body.get("status") or {}
            patch = owned_patch(latest, compute(copy.deepcopy(latest)), writer)
            if not patch:
                return None
            try:
                updated = await self.api.patch_tenant_status(
                    namespace, name, patch, resource_version=body["metadata"].get("resourceVersion")
                )
            except ConflictError:
                # Someone wrote after our copy was taken: read the newest and compute again.
                fresh = await self.api.get_tenant(namespace, name)
                if fresh is None:
                    self.cache.tenants.pop(key, None)
                    return None
                self.cache.put_tenant(key, fresh)
                log.debug("%s: status conflict (attempt %d), recomputing", key, attempt + 1)
                continue
            self.writes += 1
            self.cache.put_tenant(key, updated)
            return patch
        raise ConflictError(f"status of {key} kept changing under three writes")

    def event(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Queue an Event, at most once per reason+message per tenant per `event_interval_s`. A few tasks
        post them, in the order queued, off the caller's path (as client-go's recorder does): a reconcile
        never waits on the API server for an Event."""
        seen = self._events.setdefault(tenant_key(body), {})
        now = time.monotonic()
        token = f"{reason}:{message}"
        if now - seen.get(token, -1e9) < self.event_interval_s:
            return
        seen[token] = now
        if len(self._outbox) == self._outbox.maxlen:
            log.warning("more than %d Events waiting to be posted: dropping the oldest", self._outbox.maxlen)
        self._outbox.append((body, event_type, reason, message))
        if len(self._posters) < EVENT_POSTERS:
            poster = asyncio.get_running_loop().create_task(self._post_events(), name="events")
            self._posters.add(poster)
            poster.add_done_callback(self._posters.discard)

    async def _post_events(self) -> None:
        while self._outbox:
            body, event_type, reason, message = self._outbox.popleft()
            if tenant_key(body) not in self.cache.tenants:
                continue  # the tenant is gone (its namespace too, often): the Event would help no one
            try:
                await self.api.post_event(body, event_type, reason, message)
                self.writes += 1
            except EdgeTenantError as error:
                log.warning("could not post event %s: %s", reason, error)
            except Exception:
                # One Event's surprise must not drop the ones queued behind it.
                log.exception("posting event %s failed", reason)

    async def flush_events(self) -> None:
        """Wait until every queued Event is posted (or failed, or dropped)."""
        while self._posters:
            await asyncio.gather(*self._posters)

    def forget(self, key: str) -> None:
        """The tenant is gone: drop its lock and its Event memory."""
        self._events.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            self._locks.pop(key, None)
