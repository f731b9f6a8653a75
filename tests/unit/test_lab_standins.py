"""The lab's stand-in devices are declared as such everywhere: classes of their own that only edge-local
offers, resources of their own on edge-local alone, and a description a person reads as "stand-in"."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgetenant.api.models import AcceleratorClass

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "manifests" / "overlays" / "dev" / "standin-classes.yaml"
SHIPPED = REPO / "manifests" / "acceleratorclasses"


def standin_classes() -> list[AcceleratorClass]:
    return [AcceleratorClass.model_validate(d) for d in yaml.safe_load_all(STANDINS.read_text()) if d]


def test_standins_are_their_own_classes_on_edge_local_only() -> None:
    nodes = [
        d
        for d in yaml.safe_load_all((REPO / "hack/lab/edge-lab.yaml").read_text())
        if d and d["kind"] == "Node"
    ]
    shipped_docs = [yaml.safe_load(p.read_text()) for p in SHIPPED.glob("*.yaml")]
    shipped_classes = [d for d in shipped_docs if d.get("kind") == "AcceleratorClass"]
    shipped = {d["metadata"]["name"] for d in shipped_classes}
    shipped_resources = {d["spec"].get("resourceName") for d in shipped_classes}
    assert shipped
    classes = standin_classes()
    assert {c.name for c in classes} == {"ncs2-standin", "edgetpu-standin"}
    for cls in classes:
        assert cls.name not in shipped
        assert cls.spec.resource_name not in shipped_resources  # never counted as a real device
        assert cls.spec.description.startswith("LAB STAND-IN")
        offering = [
            n["metadata"]["name"] for n in nodes if cls.spec.resource_name in n["status"]["allocatable"]
        ]
        assert offering == ["edge-local"]
        assert cls.matches_labels(
            next(n for n in nodes if n["metadata"]["name"] == "edge-local")["metadata"]["labels"]
        )


def test_the_dev_overlay_installs_them() -> None:
    kustomization = yaml.safe_load((STANDINS.parent / "kustomization.yaml").read_text())
    assert STANDINS.name in kustomization["resources"]
