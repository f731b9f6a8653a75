"""Leader election on a coordination.k8s.io Lease: only the leader plans, applies and tunes.

Every replica watches (its cache stays warm); only the one holding the Lease runs the reconcile and
tuning loops. The rules are client-go's (`k8s.io/client-go/tools/leaderelection`):

- The holder renews every `retry_period_s`. If it cannot renew for `renew_deadline_s` it stops its
  loops at once, before its lease can have expired for anyone else (renew deadline < duration).
- A candidate judges expiry by its own clock: the lease is free when the record it sees has not
  changed for `lease_duration_s` since it first saw it, so clock skew between nodes does not matter.
- Writes carry the resourceVersion read, so of two candidates racing for a free lease exactly one
  wins (the other gets a conflict).
- A leader that shuts down cleanly releases the lease, so a standby takes over within one retry.

After a `kill -9` of the leader, a standby leads within lease duration + retry period (+ one API
round trip): 17 s with the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from edgetenant.errors import ConflictError, EdgeTenantError
from edgetenant.metrics import LEADER, LEADER_TRANSITIONS

log = logging.getLogger(__name__)


class LeaseApi(Protocol):
    def get_lease(self, namespace: str, name: str) -> Awaitable[dict[str, Any] | None]: ...

    def write_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> Awaitable[dict[str, Any]]: ...


class Step(StrEnum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # we hold it
    ACQUIRE = "acquire"  # free (released) or expired: take it over
    WAIT = "wait"  # another holder's lease is still valid


@dataclass(frozen=True, slots=True)
class Seen:
    """The lease record as last seen, and when (our monotonic clock) it was first seen that way."""

    record: tuple[Any, ...]
    since: float


def record_of(lease: dict[str, Any]) -> tuple[Any, ...]:
    spec = lease.get("spec") or {}
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))


def next_step(
    identity: str, lease: dict[str, Any] | None, seen: Seen | None, now: float, duration_s: float
) -> tuple[Step, Seen | None]:
    """What a candidate does with the lease it just read (pure; `now` is its monotonic clock)."""
    if lease is None:
        return Step.CREATE, None
    record = record_of(lease)
    if seen is None or seen.record != record:
        seen = Seen(record, now)
    holder = record[0]
    if holder == identity:
        return Step.RENEW, seen
    if not holder:
        return Step.ACQUIRE, seen
    spec = lease.get("spec") or {}
    duration = float(spec.get("leaseDurationSeconds") or duration_s)
    if now - seen.since > duration:
        return Step.ACQUIRE, seen
    return Step.WAIT, seen


def micro_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    *,
    name: str,
    namespace: str,
    identity: str,
    step: Step,
    lease: dict[str, Any] | None,
    now: datetime,
    duration_s: float,
) -> dict[str, Any]:
    """The Lease to write for `step` (pure): a renewal keeps the acquire time; a takeover counts a
    transition; the resourceVersion read makes the write conditional."""
    old_spec = (lease or {}).get("spec") or {}
    transitions = int(old_spec.get("leaseTransitions") or 0)
    taking_over = step in (Step.CREATE, Step.ACQUIRE)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if lease is not None:
        metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": round(duration_s),
            "acquireTime": micro_time(now) if taking_over else old_spec.get("acquireTime") or micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions + (1 if taking_over and lease is not None else 0),
        },
    }


@dataclass
class LeaderElector:
    api: LeaseApi
    identity: str
    namespace: str
    name: str = "edgetenant-operator"
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    leading: bool = False

    async def run(
        self,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], Awaitable[None]],
    ) -> None:
        """Campaign for ever; calls back on every change of leadership. Releases the lease when
        cancelled while leading."""
        seen: Seen | None = None
        last_renewed = 0.0
        try:
            while True:
                now = time.monotonic()
                try:
                    lease = await self.api.get_lease(self.namespace, self.name)
                    step, seen = next_step(self.identity, lease, seen, now, self.lease_duration_s)
                    if step is not Step.WAIT:
                        body = lease_body(
                            name=self.name,
                            namespace=self.namespace,
                            identity=self.identity,
                            step=step,
                            lease=lease,
                            now=datetime.now(UTC),
                            duration_s=self.lease_duration_s,
                        )
                        written = await self.api.write_lease(self.namespace, self.name, body)
                        seen = Seen(record_of(written), time.monotonic())
                        last_renewed = now
                        if not self.leading:
                            await self._become(True, on_started_leading, on_stopped_leading)
                    elif self.leading:
                        # Someone else holds it (we were too slow to renew): stop at once.
                        await self._become(False, on_started_leading, on_stopped_leading)
                except ConflictError:
                    pass  # another candidate wrote first; read again next round
                except EdgeTenantError as error:
                    log.warning("leader election: %s", error)
                if self.leading and time.monotonic() - last_renewed > self.renew_deadline_s:
                    log.warning("could not renew the lease for %.0f s: stepping down", self.renew_deadline_s)
                    await self._become(False, on_started_leading, on_stopped_leading)
                # Jitter, so candidates that started together do not keep colliding.
                await asyncio.sleep(self.retry_period_s * random.uniform(0.9, 1.1))
        finally:
            if self.leading:
                await self._release()
                await self._become(False, on_started_leading, on_stopped_leading)

    async def _become(
        self,
        leading: bool,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], Awaitable[None]],
    ) -> None:
        self.leading = leading
        LEADER.set(1 if leading else 0)
        if leading:
            LEADER_TRANSITIONS.inc()
            log.info("%s now leads (Lease %s/%s)", self.identity, self.namespace, self.name)
            await on_started_leading()
        else:
            log.info("%s no longer leads", self.identity)
            await on_stopped_leading()

    async def _release(self) -> None:
        """Hand the lease back (empty holder), so a standby need not wait for it to expire."""
        with contextlib.suppress(EdgeTenantError, asyncio.CancelledError):
            lease = await asyncio.shield(self.api.get_lease(self.namespace, self.name))
            if lease is None or record_of(lease)[0] != self.identity:
                return
            spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            await asyncio.shield(self.api.write_lease(self.namespace, self.name, {**lease, "spec": spec}))
            log.info("%s released the lease", self.identity)
