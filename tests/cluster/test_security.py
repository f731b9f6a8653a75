"""Tenant isolation against the real API server: Pod Security admission of every rendered pod, the
rendered NetworkPolicy and Secret as the API server validates them, and the operator writing them
(owned, garbage-collected, the key never in the pod spec).

The lab's API server runs the PodSecurity admission plugin; tenant namespaces here carry
`pod-security.kubernetes.io/enforce: restricted`, as docs/security.md asks of every tenant namespace.
The lab's node has no NetworkPolicy controller (bridge CNI), so policies are checked as the API server
accepts and stores them, not by sending packets; docs/security.md says which clusters enforce them.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgetenant.api.models import AcceleratorClass, InferenceTenant
from edgetenant.render.access import KEY_HASH_ANNOTATION, NetworkSettings, key_fingerprint
from edgetenant.render.kube import RenderSettings, render_all
from tests.cluster.test_operator import OPERATOR_ENV, tenant
from tests.lab import Lab, OperatorProcess, wait_for

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
KEY = uuid.uuid4().hex * 2


def restricted_namespace(lab: Lab, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    lab.kubectl("label", "namespace", name, RESTRICTED)
    # The ServiceAccount admission plugin refuses pods until the namespace's default account exists.
    wait_for(
        f"the default ServiceAccount of {name}",
        lambda: lab.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
    )
    return name


@pytest.fixture(scope="module")
def restricted(lab: Lab) -> Iterator[str]:
    name = restricted_namespace(lab, "psa")
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


def hostile_but_valid(namespace: str) -> InferenceTenant:
    """Every optional field that reaches the pod spec, at its limits."""
    return InferenceTenant.model_validate(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": "x" * 40, "namespace": namespace, "uid": str(uuid.uuid4())},
            "spec": {
                "model": {
                    "name": "M.o-d_e.l",
                    "format": "onnx",
                    "uri": "https://models.example/ünïcödé path/$(HOME);rm -rf /?q=\"'`\n",
                    "maxBatchSize": 1024,
                    "memoryHintMiB": 1048576,
                },
                "concurrency": {"mode": "Auto", "min": 1, "max": 64, "initial": 64},
                "placement": {
                    "tolerations": [{"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute"}]
                },
                "network": {
                    "allowFrom": [
                        {"namespaceSelector": {}},
                        {
                            "namespaceSelector": {"matchLabels": {"example.com/team": "a.b_c-d"}},
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "app.kubernetes.io/name", "operator": "NotIn", "values": ["x"]},
                                    {"key": "tier", "operator": "DoesNotExist"},
                                ]
                            },
                        },
                    ]
                },
            },
        }
    )


def renderings(lab: Lab, namespace: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """What the operator renders for a tenant on every installed class and every format it serves."""
    out = []
    classes = [AcceleratorClass.model_validate(c) for c in lab.get_json("acceleratorclasses")["items"]]
    assert len(classes) >= 5
    base = hostile_but_valid(namespace)
    for klass in classes:
        for fmt in klass.spec.formats:
            body = base.model_copy(
                update={
                    "spec": base.spec.model_copy(
                        update={"model": base.spec.model.model_copy(update={"format": fmt.format})}
                    )
                }
            )
            objects = render_all(body, klass, "edge-local", 3, RenderSettings(), admin_key=KEY)
            out.append((f"{klass.metadata.name}/{fmt.format}", objects))
    return out


def pod_from(deployment: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": f"psa-{uuid.uuid4().hex[:8]}", "namespace": namespace},
        "spec": template["spec"],
    }


def dry_run(lab: Lab, obj: dict[str, Any]) -> tuple[int, str]:
    """Create `obj` with the server's full admission chain, storing nothing: (exit code, stderr)."""
    result = lab.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(obj), check=False)
    return result.returncode, result.stderr


def test_every_rendered_pod_is_admitted_under_the_restricted_pod_security_level(
    lab: Lab, restricted: str
) -> None:
    checked = 0
    for what, objects in renderings(lab, restricted):
        deployment = objects[-1]
        code, err = dry_run(lab, pod_from(deployment, restricted))
        assert code == 0, f"{what}: the restricted level refused the rendered pod:\n{err}"
        # The Deployment itself: PodSecurity warns (but admits) workloads whose pods would be refused.
        code, err = dry_run(
            lab, {**deployment, "metadata": {**deployment["metadata"], "namespace": restricted}}
        )
        assert code == 0 and "PodSecurity" not in err, f"{what}: {err}"
        checked += 1
    assert checked >= 8


def test_the_restricted_level_really_refuses_a_pod_that_breaks_it(lab: Lab, restricted: str) -> None:
    """The control: without it, the test above could pass on a server that enforces nothing."""
    (_, objects), *_ = renderings(lab, restricted)
    pod = pod_from(objects[-1], restricted)
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    code, err = dry_run(lab, pod)
    assert code != 0 and "violates PodSecurity" in err and "allowPrivilegeEscalation" in err, err


def test_the_api_server_accepts_every_rendered_object(lab: Lab, restricted: str) -> None:
    """The NetworkPolicy (with every kind of peer), the Secret, and the rest, as the API server
    validates them; then stored, they read back as rendered."""
    (_, objects), *_ = renderings(lab, restricted)
    for rendered in objects:
        ownerless = {**rendered, "metadata": {**rendered["metadata"], "ownerReferences": []}}
        code, err = dry_run(lab, ownerless)
        assert code == 0, f"{rendered['kind']}: {err}"
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    policy = {**policy, "metadata": {**policy["metadata"], "ownerReferences": []}}
    lab.apply(policy)
    stored = lab.get_json("networkpolicy", policy["metadata"]["name"], "-n", restricted)
    assert stored["spec"]["ingress"] == policy["spec"]["ingress"]
    assert stored["spec"]["podSelector"] == policy["spec"]["podSelector"]


def test_a_peer_the_api_server_would_refuse_is_refused_by_the_schema_first(lab: Lab, restricted: str) -> None:
    """Label keys and values that a NetworkPolicy cannot hold are refused when the tenant is applied,
    with the field named, instead of failing later in the operator."""
    for selector, field in (
        ({"matchLabels": {"bad key": "x"}}, "matchLabels"),
        ({"matchLabels": {"app": "-x"}}, "matchLabels.app"),
        ({"matchExpressions": [{"key": "app", "operator": "In"}]}, "matchExpressions[0].values"),
        ({"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]}, "matchExpressions[0].key"),
    ):
        body = tenant("bad-peer", restricted, network={"allowFrom": [{"podSelector": selector}]})
        result = lab.kubectl("apply", "-f", "-", input_text=json.dumps(body), check=False)
        assert result.returncode != 0, selector
        assert f"spec.network.allowFrom[0].podSelector.{field}" in result.stderr, result.stderr
    body = tenant("bad-peer", restricted, network={"allowFrom": [{}]})
    result = lab.kubectl("apply", "-f", "-", input_text=json.dumps(body), check=False)
    assert "a peer needs a namespaceSelector, a podSelector or both" in result.stderr


@pytest.fixture(scope="module")
def operator(
    lab: Lab, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("security-operator") / "operator.log"
    env = {**OPERATOR_ENV, "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url}
    process = OperatorProcess(operator_kubeconfig, log, env).start()
    yield process
    process.kill()
    print(process.log_tail())


def test_the_operator_writes_the_key_and_the_policy_and_they_go_with_the_tenant(
    lab: Lab, operator: OperatorProcess, restricted: str
) -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}]
    lab.apply(tenant("guarded", restricted, acceleratorClasses=["x86-cpu"], network={"allowFrom": peers}))

    def children() -> dict[str, Any] | None:
        found = {}
        for kind, name in (
            ("secret", "guarded-triton-admin"),
            ("networkpolicy", "guarded-triton"),
            ("deployment", "guarded"),
        ):
            result = lab.kubectl("get", kind, name, "-n", restricted, "-o", "json", check=False)
            if result.returncode != 0:
                return None
            found[kind] = json.loads(result.stdout)
        return found

    found = wait_for("the tenant's Secret, NetworkPolicy and Deployment", children, timeout=90)
    uid = lab.get_json("itn", "guarded", "-n", restricted)["metadata"]["uid"]
    for obj in found.values():
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    key = base64.b64decode(found["secret"]["data"]["admin-key"]).decode()
    assert len(key) == 64
    template = found["deployment"]["spec"]["template"]
    assert key not in json.dumps(found["deployment"]), "the key is in the Deployment in clear"
    assert template["metadata"]["annotations"][KEY_HASH_ANNOTATION] == key_fingerprint(key)
    assert template["spec"]["automountServiceAccountToken"] is False
    clients = found["networkpolicy"]["spec"]["ingress"][0]["from"]
    assert clients == [{"podSelector": {}}, *peers]
    operator_peer = found["networkpolicy"]["spec"]["ingress"][1]["from"][0]
    assert operator_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": NetworkSettings().operator_namespace
    }

    # Deleted by hand, the policy comes back (the operator watches what it owns).
    lab.kubectl("delete", "networkpolicy", "guarded-triton", "-n", restricted)
    wait_for(
        "the NetworkPolicy to come back",
        lambda: (
            lab.kubectl("get", "networkpolicy", "guarded-triton", "-n", restricted, check=False).returncode
            == 0
        ),
        timeout=60,
    )

    # Created again under the same name, the tenant gets a new key; deleted, nothing is left.
    lab.kubectl("delete", "itn", "guarded", "-n", restricted)
    wait_for(
        "the garbage collector to remove the Secret and the NetworkPolicy",
        lambda: all(
            lab.kubectl("get", kind, name, "-n", restricted, check=False).returncode != 0
            for kind, name in (("secret", "guarded-triton-admin"), ("networkpolicy", "guarded-triton"))
        ),
        timeout=90,
    )
    lab.apply(tenant("guarded", restricted, acceleratorClasses=["x86-cpu"]))
    again = wait_for(
        "the new incarnation's Secret",
        lambda: (
            (
                r := lab.kubectl(
                    "get", "secret", "guarded-triton-admin", "-n", restricted, "-o", "json", check=False
                )
            ).returncode
            == 0
            and json.loads(r.stdout)
        ),
        timeout=90,
    )
    assert base64.b64decode(again["data"]["admin-key"]).decode() != key
    lab.kubectl("delete", "itn", "guarded", "-n", restricted, "--wait=false")
