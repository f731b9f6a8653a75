"""Pure decisions of the operator runtime: make-before-break or replace, and the Lease rules."""

from __future__ import annotations

from datetime import UTC, datetime

from edgetenant.leader import Seen, Step, lease_body, next_step, record_of
from edgetenant.rollout import DeviceUse, can_surge, pod_device_uses

GPU = "nvidia.com/gpu"


def test_a_template_change_on_a_single_device_node_replaces_the_pod() -> None:
    # The tenant's old pod holds the node's only GPU: a surged new pod could never be scheduled.
    assert not can_surge(
        tenant="ns/a",
        node="nano",
        resource=GPU,
        allocatable=1,
        planned=[DeviceUse("ns/a", "nano", GPU)],
        running=[DeviceUse("ns/a", "nano", GPU)],
    )


def test_a_spare_device_allows_make_before_break() -> None:
    assert can_surge(
        tenant="ns/a",
        node="tx2",
        resource=GPU,
        allocatable=2,
        planned=[DeviceUse("ns/a", "tx2", GPU)],
        running=[DeviceUse("ns/a", "tx2", GPU)],
    )


def test_a_move_onto_a_free_device_surges() -> None:
    assert can_surge(
        tenant="ns/a",
        node="tx2",
        resource=GPU,
        allocatable=1,
        planned=[DeviceUse("ns/a", "tx2", GPU)],
        running=[DeviceUse("ns/a", "nano", GPU)],
    )


def test_a_swap_between_two_full_nodes_does_not_deadlock() -> None:
    # a: nano -> tx2, b: tx2 -> nano, one GPU each: surging both would wait on each other for ever.
    planned = [DeviceUse("ns/a", "tx2", GPU), DeviceUse("ns/b", "nano", GPU)]
    running = [DeviceUse("ns/a", "nano", GPU), DeviceUse("ns/b", "tx2", GPU)]
    for tenant, node in (("ns/a", "tx2"), ("ns/b", "nano")):
        assert not can_surge(
            tenant=tenant, node=node, resource=GPU, allocatable=1, planned=planned, running=running
        )


def test_cpu_classes_always_surge() -> None:
    assert can_surge(tenant="ns/a", node="n", resource="", allocatable=0, planned=[], running=[])


def test_device_uses_come_from_scheduled_pods_limits() -> None:
    pods = {
        "ns/a": [
            {
                "spec": {
                    "nodeName": "nano",
                    "containers": [{"resources": {"limits": {GPU: "1", "memory": "1Gi"}}}],
                },
                "status": {"phase": "Running"},
            },
            {"spec": {"containers": [{"resources": {"limits": {GPU: "1"}}}]}, "status": {"phase": "Pending"}},
            {
                "spec": {"nodeName": "tx2", "containers": [{"resources": {"limits": {GPU: "1"}}}]},
                "status": {"phase": "Failed"},
            },
        ]
    }
    assert pod_device_uses(pods) == [DeviceUse("ns/a", "nano", GPU)]


def lease(holder: str | None, renew: str = "t1", transitions: int = 0) -> dict[str, object]:
    return {
        "metadata": {"name": "l", "namespace": "ns", "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "renewTime": renew,
            "leaseTransitions": transitions,
            "leaseDurationSeconds": 15,
            "acquireTime": "t0",
        },
    }


def test_no_lease_is_created_and_our_own_is_renewed() -> None:
    assert next_step("me", None, None, 0.0, 15)[0] is Step.CREATE
    assert next_step("me", lease("me"), None, 0.0, 15)[0] is Step.RENEW


def test_another_holder_is_waited_for_until_its_record_stops_changing_for_a_lease_duration() -> None:
    step, seen = next_step("me", lease("other"), None, 100.0, 15)
    assert step is Step.WAIT
    # Renewed meanwhile (the record changed): the clock starts again from when we saw the change.
    step, seen = next_step("me", lease("other", renew="t2"), seen, 110.0, 15)
    assert step is Step.WAIT and seen is not None and seen.since == 110.0
    assert next_step("me", lease("other", renew="t2"), seen, 124.0, 15)[0] is Step.WAIT
    assert next_step("me", lease("other", renew="t2"), seen, 126.0, 15)[0] is Step.ACQUIRE


def test_a_released_lease_is_taken_at_once() -> None:
    assert next_step("me", lease(None), Seen(record_of(lease("other")), 0.0), 1.0, 15)[0] is Step.ACQUIRE


def test_a_takeover_counts_a_transition_and_writes_conditionally() -> None:
    now = datetime(2026, 12, 2, 3, 0, 0, 123456, tzinfo=UTC)
    body = lease_body(
        name="l",
        namespace="ns",
        identity="me",
        step=Step.ACQUIRE,
        lease=lease("other", transitions=3),
        now=now,
        duration_s=15,
    )
    assert body["metadata"]["resourceVersion"] == "7", "the write fails if someone else wrote first"
    assert body["spec"]["leaseTransitions"] == 4
    assert body["spec"]["holderIdentity"] == "me"
    assert body["spec"]["renewTime"] == "2026-12-02T03:00:00.123456Z"
    renewal = lease_body(
        name="l", namespace="ns", identity="me", step=Step.RENEW, lease=lease("me"), now=now, duration_s=15
    )
    assert renewal["spec"]["acquireTime"] == "t0" and renewal["spec"]["leaseTransitions"] == 0
