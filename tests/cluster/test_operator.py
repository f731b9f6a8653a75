"""The operator against the real lab, running with its own ServiceAccount's RBAC (not admin)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab import Lab, OperatorProcess, wait_for

REPO = Path(__file__).resolve().parents[2]
OPERATOR_ENV = {
    "EDGETENANT_RESYNC_S": "2",
    "EDGETENANT_TUNE_INTERVAL_S": "5",
    "EDGETENANT_SOLVER_TIME_LIMIT_S": "1",
}


@pytest.fixture(scope="module")
def operator(
    lab: Lab, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator-log") / "operator.log"
    env = {**OPERATOR_ENV, "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url}
    process = OperatorProcess(operator_kubeconfig, log, env).start()
    yield process
    process.kill()
    print(process.log_tail())


def tenant(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"format": "onnx", "uri": f"http://127.0.0.1:1/{name}.onnx", "memoryHintMiB": 300},
        "slo": {"throughput": 20},
        # Off the real local node: these tests are about placement, not about running Triton.
        "placement": {"nodeSelector": {"edgetenant.io/lab-simulated": "true"}},
    }
    body.update(spec)
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def condition(lab: Lab, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
    item = lab.get_json("inferencetenant", name, "-n", namespace)
    return next((c for c in (item.get("status") or {}).get("conditions", []) if c["type"] == kind), None)


def wait_placed(
    lab: Lab, namespace: str, name: str, status: str = "True", timeout: float = 60
) -> dict[str, Any]:
    seen: list[Any] = [None]

    def placed() -> Any:
        seen[0] = condition(lab, namespace, name, "Placed")
        return seen[0] and seen[0]["status"] == status and seen[0]

    try:
        return wait_for(f"{namespace}/{name} Placed={status}", placed, timeout=timeout)
    except AssertionError as timed_out:  # say why it is not placed, not just that it is not
        raise AssertionError(f"{timed_out}; the Placed condition: {seen[0]}") from None


def written(obj: dict[str, Any]) -> tuple[Any, Any]:
    """What the operator writes (its generation and spec); status belongs to the controllers."""
    return obj["metadata"]["generation"], obj["spec"]


def deployment_node(deployment: dict[str, Any]) -> str:
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    term = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    return str(term["matchFields"][0]["values"][0])


def events(lab: Lab, namespace: str, name: str) -> list[dict[str, Any]]:
    items = lab.get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")[
        "items"
    ]
    return list(items)


def test_samples_are_placed_on_the_right_nodes_with_the_right_resources(
    lab: Lab, operator: OperatorProcess
) -> None:
    lab.kubectl("apply", "-k", str(REPO / "manifests" / "samples"))
    samples = [
        doc
        for path in sorted((REPO / "manifests" / "samples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "InferenceTenant"
    ]
    assert len(samples) >= 5
    classes = {c["metadata"]["name"]: c for c in lab.get_json("acceleratorclasses")["items"]}
    nodes = {n["metadata"]["name"]: n for n in lab.get_json("nodes")["items"]}
    placed = 0
    for sample in samples:
        ns, name = sample["metadata"]["namespace"], sample["metadata"]["name"]
        wait_for(f"{name} decided", lambda ns=ns, name=name: condition(lab, ns, name, "Placed"), timeout=90)
        if condition(lab, ns, name, "Placed")["status"] != "True":  # type: ignore[index]
            continue
        placed += 1
        item = lab.get_json("inferencetenant", name, "-n", ns)
        target = item["status"]["targetPlacement"]
        klass = classes[target["acceleratorClass"]]
        allowed = sample["spec"].get("acceleratorClasses") or list(classes)
        assert target["acceleratorClass"] in allowed
        node = nodes[target["node"]]
        selector = klass["spec"].get("nodeSelector", {})
        assert all(node["metadata"]["labels"].get(k) == v for k, v in selector.items())
        deployment = wait_for(
            f"{name} Deployment",
            lambda ns=ns, name=name: json.loads(
                lab.kubectl("get", "deployment", name, "-n", ns, "-o", "json", check=False).stdout or "null"
            ),
        )
        assert deployment_node(deployment) == target["node"]
        limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"].get("limits", {})
        resource = klass["spec"].get("resourceName", "")
        if resource:
            assert limits[resource] == "1"
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == item["metadata"]["uid"]
    assert placed >= len(samples) - 1, "the sample set is meant to fit the lab"
    table = lab.kubectl("get", "itn", "-A").stdout
    for column in ("MODEL", "CLASS", "NODE", "CONCURRENCY", "READY"):
        assert column in table
    # The samples hold devices; later tests need them free.
    lab.kubectl("delete", "itn", "--all", "-n", "edge-vision", "--wait=false")


def test_a_tenant_that_fits_nowhere_gets_a_reason_and_disturbs_nothing(
    lab: Lab, operator: OperatorProcess, namespace: str
) -> None:
    lab.apply(tenant("fits", namespace, acceleratorClasses=["x86-cpu"]))
    wait_placed(lab, namespace, "fits")
    before = written(lab.get_json("deployment", "fits", "-n", namespace))
    huge = tenant("huge", namespace, acceleratorClasses=["jetson-nano"])
    huge["spec"]["model"]["memoryHintMiB"] = 60000
    lab.apply(huge)
    placed = wait_placed(lab, namespace, "huge", status="False")
    assert placed["reason"] == "Unschedulable"
    assert "MiB" in placed["message"]
    stalled = condition(lab, namespace, "huge", "Stalled")
    assert stalled is not None and stalled["status"] == "True"
    wait_for(
        "an Unschedulable Event",
        lambda: any(e["reason"] == "Unschedulable" for e in events(lab, namespace, "huge")),
    )
    assert lab.kubectl("get", "deployment", "huge", "-n", namespace, check=False).returncode != 0
    assert written(lab.get_json("deployment", "fits", "-n", namespace)) == before


def test_an_unknown_class_keeps_the_previous_workload(
    lab: Lab, operator: OperatorProcess, namespace: str
) -> None:
    lab.apply(tenant("steady", namespace, acceleratorClasses=["x86-cpu"]))
    wait_placed(lab, namespace, "steady")
    deployment = lab.get_json("deployment", "steady", "-n", namespace)
    lab.kubectl(
        "patch",
        "itn",
        "steady",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"acceleratorClasses":["no-such-class"]}}',
    )
    placed = wait_placed(lab, namespace, "steady", status="False")
    assert placed["reason"] == "InvalidSpec"
    assert "no-such-class" in placed["message"]
    wait_for(
        "an InvalidSpec Event",
        lambda: any(e["reason"] == "InvalidSpec" for e in events(lab, namespace, "steady")),
    )
    after = lab.get_json("deployment", "steady", "-n", namespace)
    assert written(after) == written(deployment)


def test_deleting_a_tenant_removes_its_children(lab: Lab, operator: OperatorProcess, namespace: str) -> None:
    lab.apply(tenant("shortlived", namespace, acceleratorClasses=["x86-cpu"]))
    wait_placed(lab, namespace, "shortlived")
    wait_for(
        "children",
        lambda: lab.kubectl("get", "deployment", "shortlived", "-n", namespace, check=False).returncode == 0,
    )
    lab.kubectl("delete", "itn", "shortlived", "-n", namespace)
    for kind in ("deployment", "service", "configmap"):
        name = "shortlived-triton-config" if kind == "configmap" else "shortlived"
        wait_for(
            f"{kind} garbage-collected",
            lambda kind=kind, name=name: (
                lab.kubectl("get", kind, name, "-n", namespace, check=False).returncode != 0
            ),
        )


def test_deleting_a_node_moves_its_tenants(lab: Lab, operator: OperatorProcess, namespace: str) -> None:
    site = f"site-{uuid.uuid4().hex[:4]}"
    names = [f"{site}-a", f"{site}-b"]
    for name in names:
        labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "edgetenant.io/site": site}
        # The lab's x86-cpu class counts its device plugin's slots (edgetenant.io/cpu-slot), like edge-local.
        capacity = {"cpu": "4", "memory": "8Gi", "pods": "110", "edgetenant.io/cpu-slot": "4"}
        lab.add_node(name, labels, capacity)
    try:
        lab.apply(
            tenant(
                "mover",
                namespace,
                acceleratorClasses=["x86-cpu"],
                placement={"nodeSelector": {"edgetenant.io/site": site}},
            )
        )
        wait_placed(lab, namespace, "mover")
        first = lab.get_json("itn", "mover", "-n", namespace)["status"]["targetPlacement"]["node"]
        assert first in names
        lab.kubectl("delete", "node", first)
        other = next(n for n in names if n != first)

        def moved() -> bool:
            status = lab.get_json("itn", "mover", "-n", namespace)["status"]
            deployment = lab.get_json("deployment", "mover", "-n", namespace)
            return status["targetPlacement"]["node"] == other and deployment_node(deployment) == other

        wait_for("the tenant to move to the remaining node", moved)
        wait_for(
            "a MoveStarted Event",
            lambda: any(e["reason"] == "MoveStarted" for e in events(lab, namespace, "mover")),
        )
    finally:
        for name in names:
            lab.kubectl("delete", "node", name, "--ignore-not-found", check=False)


def test_reconciling_twice_changes_nothing(lab: Lab, operator: OperatorProcess, namespace: str) -> None:
    lab.apply(tenant("idem", namespace, acceleratorClasses=["x86-cpu"]))
    wait_placed(lab, namespace, "idem")

    def versions() -> dict[str, str]:
        out = {}
        for kind, name in (
            ("itn", "idem"),
            ("deployment", "idem"),
            ("service", "idem"),
            ("configmap", "idem-triton-config"),
        ):
            out[kind] = lab.get_json(kind, name, "-n", namespace)["metadata"]["resourceVersion"]
        return out

    settled = wait_for(
        "a settled tenant", lambda: (v := versions()) == versions() and v, timeout=30, interval=3
    )
    # Several resync periods (2 s each) pass: no write may happen.
    time.sleep(8)
    assert versions() == settled
