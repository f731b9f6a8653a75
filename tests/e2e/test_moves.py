"""A class change on the same node, with real Triton on edge-local: make-before-break (some pod serves
the model at every moment) and Ready only once a pod of the NEW template serves it. Matching pods by
node alone called the tenant Ready on the new class from the old pod."""

from __future__ import annotations

import copy
import time
import urllib.request
from typing import Any

from tests.lab import InClusterOperator, Lab, lab_env, wait_for

MODEL = "moves-mobilenet"
TEMPLATE = "edgetenant.io/template-hash"


def status_of(lab: Lab, namespace: str) -> dict[str, Any]:
    return dict(lab.get_json("itn", MODEL, "-n", namespace).get("status") or {})


def ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def serves(ip: str) -> bool:
    """Triton on this pod answers that the model is ready (twice asked: a loaded 2-core machine can
    make one answer slow while the other pod loads its model)."""
    for _ in range(2):
        try:
            with urllib.request.urlopen(f"http://{ip}:8000/v2/models/{MODEL}/ready", timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
    return False


def test_a_class_change_on_the_same_node_is_ready_only_from_the_new_template(
    lab: Lab, operator: InClusterOperator, namespace: str
) -> None:
    env = lab_env()
    assert env is not None
    alt = copy.deepcopy(lab.get_json("acceleratorclass", "x86-cpu"))
    alt = {
        "apiVersion": alt["apiVersion"],
        "kind": alt["kind"],
        "metadata": {"name": "x86-cpu-alt"},
        "spec": alt["spec"],
    }
    lab.apply(alt)
    body = {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "model": {"format": "onnx", "uri": f"{env['EDGETENANT_MODELSTORE_URL']}/mobilenet_v2.onnx"},
            "acceleratorClasses": ["x86-cpu"],
            "slo": {"throughput": 5},
            "concurrency": {"mode": "Fixed", "value": 1},
            "placement": {"nodeSelector": {"kubernetes.io/hostname": "edge-local"}},
        },
    }
    try:
        lab.apply(body)
        wait_for("Ready on x86-cpu", lambda: ready(status_of(lab, namespace)), timeout=240, interval=2)
        body["spec"]["acceleratorClasses"] = ["x86-cpu-alt"]
        lab.apply(body)
        changed = time.monotonic()
        violations: list[str] = []
        gaps: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = status_of(lab, namespace)
            pods = [
                p
                for p in lab.get_json("pods", "-n", namespace, "-l", f"edgetenant.io/tenant={MODEL}")["items"]
                if not p["metadata"].get("deletionTimestamp")
            ]
            annotations = lab.get_json("deployment", MODEL, "-n", namespace)["spec"]["template"]["metadata"][
                "annotations"
            ]
            rendered = annotations["edgetenant.io/accelerator-class"] == "x86-cpu-alt"
            new_template = annotations[TEMPLATE] if rendered else None
            new_serving = [
                p for p in pods
                if p["metadata"]["annotations"].get(TEMPLATE) == new_template
                and p["status"].get("podIP") and serves(p["status"]["podIP"])
            ]  # fmt: skip
            if not any(p["status"].get("podIP") and serves(p["status"]["podIP"]) for p in pods):
                seen = ", ".join(
                    f"{p['metadata']['name']}:{p['status'].get('podIP')}:{_ready(p)}" for p in pods
                )
                gaps.append(
                    f"{time.monotonic() - changed:.1f}s {seen or 'no pods'} active={active_of(status)}"
                )
            active = (status.get("activePlacement") or {}).get("acceleratorClass")
            target = (status.get("targetPlacement") or {}).get("acceleratorClass")
            if target == "x86-cpu-alt" and (ready(status) or active == "x86-cpu-alt") and not new_serving:
                violations.append(
                    f"Ready={ready(status)} active={active} with no pod of the new template serving"
                )
            if ready(status) and active == "x86-cpu-alt" and new_serving:
                break
            time.sleep(0.3)
        final = status_of(lab, namespace)
        assert ready(final) and final["activePlacement"]["acceleratorClass"] == "x86-cpu-alt", final
        assert not violations, violations[:3]
        assert not gaps, f"no pod served the model at {len(gaps)} checks (pods then: {gaps[:3]})"
    finally:
        lab.kubectl("delete", "itn", MODEL, "-n", namespace, "--wait=false", check=False)
        lab.kubectl("delete", "acceleratorclass", "x86-cpu-alt", "--ignore-not-found", check=False)


def _ready(pod: dict[str, Any]) -> str:
    return next((c["status"] for c in pod["status"].get("conditions", []) if c["type"] == "Ready"), "?")


def _ready(pod: dict[str, Any]) -> str:
    return next((c["status"] for c in pod["status"].get("conditions", []) if c["type"] == "Ready"), "?")


def active_of(status: dict[str, Any]) -> str | None:
    return (status.get("activePlacement") or {}).get("acceleratorClass")
