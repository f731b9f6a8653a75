"""A tenant deleted and created again under the same name: the watch's events for the two incarnations
may arrive interleaved (kopf orders events per object UID, not per name)."""

from __future__ import annotations

from typing import Any

from edgetenant.cache import ClusterCache


def body(uid: str, resource_version: int) -> dict[str, Any]:
    meta = {"name": "t", "namespace": "ns", "uid": uid, "resourceVersion": str(resource_version)}
    return {"apiVersion": "edgetenant.io/v1alpha1", "kind": "InferenceTenant", "metadata": meta, "spec": {}}


def test_the_old_incarnations_delete_arriving_late_keeps_the_new_one() -> None:
    cache = ClusterCache()
    cache.put_tenant("ns/t", body("old", 10))
    cache.put_tenant("ns/t", body("new", 12))  # ADDED of the new incarnation, first
    assert not cache.drop_tenant("ns/t", body("old", 11))  # then DELETED of the old one
    assert cache.tenants["ns/t"]["metadata"]["uid"] == "new"
    assert cache.drop_tenant("ns/t", body("new", 13))
    assert "ns/t" not in cache.tenants
    assert not cache.drop_tenant("ns/t", body("new", 13))  # already gone: nothing to forget


def test_a_late_event_of_the_old_incarnation_does_not_replace_the_new_one() -> None:
    cache = ClusterCache()
    cache.put_tenant("ns/t", body("new", 12))
    cache.put_tenant("ns/t", body("old", 11))  # MODIFIED of the old one, late
    assert cache.tenants["ns/t"]["metadata"]["uid"] == "new"
