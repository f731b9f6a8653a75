"""The operator's view of the cluster, kept current by kopf's watch events.

One owner: the event loop. The watch handlers are coroutines, so kopf runs them on the loop, and so do
the reconciler and the tuning driver; nothing touches these dicts from another thread. Work that runs
in a thread (planning) gets `placement_inputs()`, a list taken on the loop, and reads only objects that
are never mutated: a cached object is always replaced by a new dict, never edited in place.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgetenant.render.kube import TENANT_LABEL
from edgetenant.status import recent_moves


def tenant_key(body: dict[str, Any]) -> str:
    return f"{body['metadata'].get('namespace', 'default')}/{body['metadata']['name']}"


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# What the API server sends that the operator never reads, and that would otherwise be most of what it
# keeps: server-side apply's bookkeeping (about 40 % of a pod's JSON), kubectl's and Argo CD's copy of
# the applied manifest, and a node's list of every image it holds.
_UNREAD_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def kept(body: Mapping[str, Any]) -> dict[str, Any]:
    """The copy of an object the cache keeps: the object less the fields nothing here reads. Shallow:
    each watch event or API answer is a freshly decoded object that nothing else mutates."""
    obj = dict(body)
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations") or {}
    if _UNREAD_ANNOTATION in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _UNREAD_ANNOTATION}
    obj["metadata"] = meta
    if obj.get("kind") == "Node" and "images" in (obj.get("status") or {}):
        obj["status"] = {k: v for k, v in obj["status"].items() if k != "images"}
    return obj


def pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def replica_failure(deployment: Mapping[str, Any]) -> str:
    """The message of a Deployment's ReplicaFailure condition (its pods cannot be created), else ''."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason") or "pods cannot be created")
    return ""


@dataclass
class ClusterCache:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # tenant key -> pod name -> pod
    # tenant key -> why its Deployment cannot create pods (ReplicaFailure: admission refused them)
    pod_refusals: dict[str, str] = field(default_factory=dict)
    # "namespace/pod" -> the last OOM kill of one of its processes that no container status shows
    # (cgroup v1: the kernel kills a process, not the container; the tuning loop reads it from cAdvisor)
    process_ooms: dict[str, str] = field(default_factory=dict)

    def pods_of(self, key: str) -> list[dict[str, Any]]:
        return list(self.pods.get(key, {}).values())

    def put_tenant(self, key: str, body: Mapping[str, Any]) -> None:
        """A watch event or a write's answer: keep it unless a newer version (our own write's answer)
        is already cached."""
        cached = self.tenants.get(key)
        if cached is not None and _older(body, cached):
            return
        self.tenants[key] = kept(body)

    def drop_tenant(self, key: str, body: Mapping[str, Any]) -> bool:
        """A DELETED event: forget the tenant, unless what is cached is another incarnation under the same
        name (a different UID). NB: kopf serialises events per object UID, not per name, so the old
        incarnation's DELETED can arrive after the new one's ADDED; dropping it then would lose the new
        tenant until its next event. Returns whether the tenant was dropped."""
        cached = self.tenants.get(key)
        if cached is None:
            return False
        if cached["metadata"].get("uid") != body["metadata"].get("uid"):
            return False
        del self.tenants[key]
        return True

    def put_pod(self, pod: dict[str, Any], deleted: bool) -> str | None:
        """Record a pod event; returns the key of the tenant it serves (None if it serves none)."""
        meta = pod["metadata"]
        tenant = (meta.get("labels") or {}).get(TENANT_LABEL)
        if tenant is None:
            return None
        key = f"{meta.get('namespace')}/{tenant}"
        if deleted:
            self.pods.get(key, {}).pop(meta["name"], None)
            self.process_ooms.pop(f"{meta.get('namespace')}/{meta['name']}", None)
            if not self.pods.get(key):
                self.pods.pop(key, None)
        else:
            self.pods.setdefault(key, {})[meta["name"]] = pod
        return key

    def put_deployment(self, deployment: Mapping[str, Any], deleted: bool) -> str | None:
        """Record whether a tenant's Deployment reports that its pods are refused (the ReplicaSet's
        FailedCreate: Pod Security admission, a quota); returns the tenant key when that changed."""
        meta = deployment["metadata"]
        tenant = (meta.get("labels") or {}).get(TENANT_LABEL)
        if tenant is None:
            return None
        key = f"{meta.get('namespace')}/{tenant}"
        refused = "" if deleted else replica_failure(deployment)
        if refused == self.pod_refusals.get(key, ""):
            return None
        if refused:
            self.pod_refusals[key] = refused
        else:
            self.pod_refusals.pop(key, None)
        return key

    def serving_ips(self, key: str) -> list[str]:
        """IPs of the tenant's ready pods: every one of them gets every concurrency change.

        From the operator's own pod watch, which carries the same readiness the EndpointSlice
        controller publishes, without a list call per tick (and loopback pod IPs, as in the local
        lab, cannot appear in EndpointSlices at all: their validation refuses 127.0.0.0/8).
        """
        ips = []
        for pod in self.pods_of(key):
            ip = (pod.get("status") or {}).get("podIP")
            if pod_ready(pod) and ip and not pod["metadata"].get("deletionTimestamp"):
                ips.append(str(ip))
        return sorted(ips)

    def placement_inputs(self, now: datetime) -> list[dict[str, Any]]:
        """Objects for the planner. A tenant's current device is its committed target (so a move in
        flight is not re-decided), and its move count is recomputed for the current hour."""
        objects: list[dict[str, Any]] = [
            *self.nodes.values(),
            *self.classes.values(),
            *self.profiles.values(),
        ]
        for body in self.tenants.values():
            if body["metadata"].get("deletionTimestamp"):
                continue
            tenant = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}
            status = body.get("status") or {}
            current = status.get("targetPlacement") or status.get("activePlacement")
            ceiling = (status.get("concurrency") or {}).get("ceiling")
            tenant["status"] = {
                "activePlacement": current,
                "movesInLastHour": len(recent_moves(status.get("moveHistory", []), now)),
                "concurrency": {"current": 0, "target": 0, "ceiling": ceiling} if ceiling else None,
                "observed": _demand_bucket(status.get("observed")),
            }
            objects.append(tenant)
        return objects


def placement_fingerprint(inputs: list[dict[str, Any]], now: datetime) -> str:
    """What the plan depends on; an unchanged fingerprint means an unchanged plan."""

    def node_view(node: dict[str, Any]) -> Any:
        conditions = (node.get("status") or {}).get("conditions", [])
        ready = [c.get("status") for c in conditions if c.get("type") == "Ready"]
        meta = node["metadata"]
        return [
            meta.get("name"),
            meta.get("labels"),
            (node.get("spec") or {}).get("taints"),
            (node.get("spec") or {}).get("unschedulable"),
            (node.get("status") or {}).get("allocatable"),
            ready,
        ]

    def view(obj: dict[str, Any]) -> Any:
        if obj.get("kind") == "Node":
            return node_view(obj)
        # A class's status is the operator's own account of where its devices are: not an input.
        status = dict(obj.get("status") or {}) if obj.get("kind") != "AcceleratorClass" else {}
        # The placement and move count a tenant carries were written from the current plan: they
        # are its consequence, not an input, so writing them must not trigger another solve.
        status.pop("activePlacement", None)
        status.pop("movesInLastHour", None)
        meta = obj["metadata"]
        return [
            obj.get("apiVersion"),
            obj.get("kind"),
            meta.get("namespace"),
            meta.get("name"),
            obj.get("spec"),
            status,
        ]

    # Moves age out of the hour window: include the hour so the budget refreshes.
    return fingerprint([view(o) for o in inputs] + [now.strftime("%Y%m%d%H")])


def _demand_bucket(observed: dict[str, Any] | None) -> dict[str, Any] | None:
    """Observed throughput stands in for demand when a tenant states none. Rounded to a 25% step,
    so metric noise does not re-plan the cluster every tuning interval."""
    if not observed or not observed.get("throughput"):
        return None
    value = float(observed["throughput"])
    return {"throughput": round(1.25 ** round(math.log(value, 1.25)), 1) if value > 0 else 0.0}


def _older(candidate: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """Whether `candidate` is an older version than `known` (etcd revisions are increasing integers;
    when they are not numbers, trust the watch)."""
    try:
        return int(candidate["metadata"]["resourceVersion"]) < int(known["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return False
