"""What the cache keeps of an object: everything the operator reads, without what it never reads."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from edgetenant.cache import ClusterCache, kept, placement_fingerprint
from edgetenant.rollout import pod_device_uses

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MANAGED_FIELDS = [
    {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsType": "FieldsV1",
     "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, f"f:{LAST_APPLIED}": {}}}, "f:spec": {}}},
    {"manager": "edgetenant", "operation": "Update", "subresource": "status", "fieldsType": "FieldsV1",
     "fieldsV1": {"f:status": {"f:conditions": {}}}},
]  # fmt: skip


def tenant() -> dict[str, Any]:
    spec = {"model": {"name": "mobilenet_v2"}, "acceleratorClasses": ["cpu"]}
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {
            "name": "t",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "12",
            "annotations": {LAST_APPLIED: json.dumps({"spec": spec}), "team": "vision"},
            "managedFields": MANAGED_FIELDS,
        },
        "spec": spec,
        "status": {"activePlacement": {"node": "n1", "acceleratorClass": "cpu"}},
    }


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "t-abc",
            "namespace": "ns",
            "labels": {"edgetenant.io/tenant": "t"},
            "annotations": {"edgetenant.io/template": "h1"},
            "managedFields": MANAGED_FIELDS,
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "triton", "resources": {"limits": {"example.com/gpu": "1"}}}],
        },
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def node() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"kubernetes.io/arch": "arm64"}, "managedFields": []},
        "spec": {"taints": [{"key": "edge", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"example.com/gpu": "4"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "images": [{"names": [f"registry.local/image-{i}:v1"], "sizeBytes": 1 << 28} for i in range(50)],
        },
    }


def test_the_bookkeeping_nothing_reads_is_dropped_and_the_rest_kept() -> None:
    original = pod()
    copy_kept = kept(original)
    assert "managedFields" not in copy_kept["metadata"]
    assert copy_kept["metadata"]["annotations"] == {"edgetenant.io/template": "h1"}
    assert {k: v for k, v in copy_kept.items() if k != "metadata"} == {
        k: v for k, v in original.items() if k != "metadata"
    }
    assert original == pod()  # the object it was given is left as it was

    tenant_kept = kept(tenant())
    assert tenant_kept["metadata"]["annotations"] == {"team": "vision"}  # the user's own annotations stay
    assert "managedFields" not in tenant_kept["metadata"]

    node_kept = kept(node())
    assert "images" not in node_kept["status"]
    assert node_kept["status"]["allocatable"] == {"example.com/gpu": "4"}
    assert node_kept["spec"] == node()["spec"]


def test_what_the_operator_derives_is_the_same_from_the_kept_copy() -> None:
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    full, slim = ClusterCache(), ClusterCache()
    for cache, keep in ((full, copy.deepcopy), (slim, kept)):
        cache.nodes["n1"] = keep(node())
        cache.tenants["ns/t"] = keep(tenant())  # as a write's answer would be, bypassing put_tenant
        cache.put_pod(keep(pod()), deleted=False)
    assert slim.serving_ips("ns/t") == full.serving_ips("ns/t") == ["127.0.0.7"]
    uses = pod_device_uses({"ns/t": slim.pods_of("ns/t")})
    assert uses == pod_device_uses({"ns/t": full.pods_of("ns/t")})
    assert [use.node for use in uses] == ["n1"]
    assert placement_fingerprint(slim.placement_inputs(now), now) == placement_fingerprint(
        full.placement_inputs(now), now
    )


def test_a_tenant_is_cached_without_what_nothing_reads() -> None:
    cache = ClusterCache()
    cache.put_tenant("ns/t", tenant())
    meta = cache.tenants["ns/t"]["metadata"]
    assert "managedFields" not in meta
    assert LAST_APPLIED not in meta["annotations"]
    assert meta["resourceVersion"] == "12"
