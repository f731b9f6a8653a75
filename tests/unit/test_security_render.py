"""Tenant isolation as rendered (pure): the admin key, its Secret, the NetworkPolicy, the pod's
privileges; the master key's life cycle with a stand-in store."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgetenant.admin_keys import MASTER_KEY_FIELD, AdminKeys
from edgetenant.api.models import AcceleratorClass, InferenceTenant
from edgetenant.errors import ConflictError, PermanentError
from edgetenant.render.access import (
    ADMIN_HEADER,
    ADMIN_KEY_ENV,
    KEY_HASH_ANNOTATION,
    NetworkSettings,
    key_fingerprint,
    tenant_admin_key,
)
from edgetenant.render.kube import RenderSettings, deployment_template_hash, render_all

REPO = Path(__file__).resolve().parents[2]
KEY = "5f0c1b2a" * 8


def klass(name: str, **parameters: str) -> AcceleratorClass:
    doc = yaml.safe_load((REPO / "manifests" / "acceleratorclasses" / f"{name}.yaml").read_text())
    for fmt in doc["spec"]["formats"]:
        fmt.setdefault("parameters", {}).update(parameters)
    return AcceleratorClass.model_validate(doc)


def tenant(name: str = "mnv2", uid: str = "u-1", **spec: Any) -> InferenceTenant:
    return InferenceTenant.model_validate(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": name, "namespace": "vision", "uid": uid},
            "spec": {"model": {"format": "onnx", "uri": "http://models.local/m.onnx"}, **spec},
        }
    )


def rendered(body: InferenceTenant | None = None, key: str = KEY, **class_params: str) -> dict[str, Any]:
    objects = render_all(
        body or tenant(),
        klass("x86-cpu", **class_params),
        "edge-local",
        1,
        RenderSettings(network=NetworkSettings(operator_namespace="ops", monitoring_namespace="mon")),
        admin_key=key,
    )
    assert objects[-1]["kind"] == "Deployment", "the Deployment is applied last"
    return {o["kind"]: o for o in objects}


def test_the_key_is_only_in_the_secret_and_triton_reads_it_from_there() -> None:
    objects = rendered()
    for kind, obj in objects.items():
        if kind != "Secret":
            assert KEY not in json.dumps(obj), f"the key is in the {kind} in clear"
    secret = objects["Secret"]
    assert base64.b64decode(secret["data"]["admin-key"]).decode() == KEY
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    triton = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    group = f"model-repository,shared-memory,trace,logging:{ADMIN_HEADER}=$({ADMIN_KEY_ENV})"
    assert f"--http-restricted-api={group}" in triton["args"]
    assert f"--grpc-restricted-protocol={group}" in triton["args"]
    (env,) = triton["env"]
    assert env == {
        "name": ADMIN_KEY_ENV,
        "valueFrom": {"secretKeyRef": {"name": "mnv2-triton-admin", "key": "admin-key"}},
    }


def test_a_triton_older_than_the_restricted_apis_gets_no_flags_it_would_refuse() -> None:
    args = rendered(tritonVersion="2.19.0")["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any("restricted" in a for a in args)
    args = rendered(tritonVersion="2.37.0")["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert sum("restricted" in a for a in args) == 2


def test_no_pod_gets_a_service_account_token() -> None:
    pod = rendered()["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def test_a_new_key_rolls_the_pods_and_shows_only_its_hash() -> None:
    first, second = rendered(key=KEY)["Deployment"], rendered(key=KEY[::-1])["Deployment"]
    annotations = first["spec"]["template"]["metadata"]["annotations"]
    assert annotations[KEY_HASH_ANNOTATION] == key_fingerprint(KEY) != KEY
    assert deployment_template_hash(first) != deployment_template_hash(second)


def test_keys_differ_per_tenant_and_per_incarnation() -> None:
    master = b"m" * 32
    one = tenant_admin_key(master, namespace="a", name="t", uid="1")
    assert one == tenant_admin_key(master, namespace="a", name="t", uid="1")
    others = {
        tenant_admin_key(master, namespace="b", name="t", uid="1"),
        tenant_admin_key(master, namespace="a", name="u", uid="1"),
        tenant_admin_key(master, namespace="a", name="t", uid="2"),  # deleted and created again
        tenant_admin_key(b"n" * 32, namespace="a", name="t", uid="1"),
        # The fields are separated: ("a", "bc") and ("ab", "c") are different tenants.
        tenant_admin_key(master, namespace="a\nt", name="", uid="1"),
    }
    assert one not in others and len(others) == 5


def test_network_policy_lets_in_the_namespace_the_peers_the_operator_and_monitoring() -> None:
    peers = [
        {"namespaceSelector": {"matchLabels": {"team": "vision"}}},
        {"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["gateway"]}]}},
    ]
    policy = rendered(tenant(network={"allowFrom": peers}))["NetworkPolicy"]
    spec = policy["spec"]
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "InferenceTenant"
    assert spec["podSelector"] == {"matchLabels": {"edgetenant.io/tenant": "mnv2"}}
    assert spec["policyTypes"] == ["Ingress"], "egress stays open: the fetcher reaches the model URI"
    clients, operator, monitoring = spec["ingress"]
    inference = [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 8001}]
    assert clients == {"from": [{"podSelector": {}}, *peers], "ports": inference}
    assert operator == {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "edgetenant-operator"}},
            }
        ],
        "ports": inference,
    }
    assert monitoring == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}],
        "ports": [{"protocol": "TCP", "port": 8002}],
    }


class Store:
    """Secrets in memory; `rival` creates the key between our read and our create (a second replica)."""

    def __init__(self, data: dict[str, bytes] | None = None, rival: bytes | None = None) -> None:
        self.data = data
        self.rival = rival
        self.creates = 0

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.data

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        self.creates += 1
        if self.rival is not None:
            self.data = {MASTER_KEY_FIELD: self.rival}
            raise ConflictError("exists")
        self.data = data


def test_the_master_key_is_created_once_then_read() -> None:
    store = Store()
    keys = AdminKeys(store, "ops")
    first = asyncio.run(keys.for_tenant(tenant()))
    assert store.creates == 1 and store.data is not None
    assert len(store.data[MASTER_KEY_FIELD]) == 32
    again = AdminKeys(store, "ops")  # a new leader reads the same key
    assert asyncio.run(again.for_tenant(tenant())) == first
    assert store.creates == 1


def test_a_replica_that_loses_the_race_uses_the_winners_key() -> None:
    store = Store(rival=b"r" * 32)
    key = asyncio.run(AdminKeys(store, "ops").for_tenant(tenant()))
    assert key == tenant_admin_key(b"r" * 32, namespace="vision", name="mnv2", uid="u-1")


def test_a_master_key_that_is_too_short_is_refused_with_what_to_do() -> None:
    with pytest.raises(PermanentError, match="delete it"):
        asyncio.run(AdminKeys(Store({MASTER_KEY_FIELD: b"short"}), "ops").master())
