"""The API models, the generated CRDs, the shipped objects and `edgetenant validate`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edgetenant.api import (
    AcceleratorClass,
    BatchingMode,
    ConditionStatus,
    ConditionType,
    InferenceTenant,
    ModelFormat,
    ModelProfile,
    load_objects,
    make_condition,
    parse_objects,
    set_condition,
)
from edgetenant.api.cli import main as validate_main
from edgetenant.api.crdgen import all_crds, differences
from edgetenant.api.crdgen import main as crdgen_main
from edgetenant.api.validation import cel_rules, evaluate_rule, load_validated, validate_manifest
from edgetenant.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
CLASSES = REPO / "manifests" / "acceleratorclasses"


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind, crd in all_crds().items():
        yield kind, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _resolved(path: Path) -> list[dict[str, Any]]:
    docs = [
        d for d in yaml.safe_load_all(path.read_text()) if d and d["apiVersion"].startswith("edgetenant.io/")
    ]
    return docs


# --- the generated CRDs -----------------------------------------------------------------------


def test_committed_crds_match_the_models() -> None:
    diffs = differences(REPO / "crds")
    assert diffs == [], "crds/ is out of date: run `make crds`\n" + "".join(diffs)


def test_crdgen_check_fails_on_a_stale_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen_main([str(tmp_path)]) == 0
    assert crdgen_main([str(tmp_path), "--check"]) == 0
    crd = tmp_path / "inferencetenants.edgetenant.io.yaml"
    crd.write_text(crd.read_text().replace("itn", "it"))
    capsys.readouterr()
    assert crdgen_main([str(tmp_path), "--check"]) == 1
    assert "make crds" in capsys.readouterr().err


def test_every_field_has_a_description() -> None:
    missing = [
        f"{kind}{path}"
        for kind, schema in _schemas()
        for path, node in _walk(schema, "")
        if not path.endswith(("[]", "{}", ".metadata")) and not node.get("description")
    ]
    assert missing == []


def test_schemas_are_structural() -> None:
    # Kubernetes' structural-schema rules: every node typed, no references or union combinators,
    # no properties next to additionalProperties, defaults that satisfy their own schema.
    for kind, schema in _schemas():
        assert schema["properties"]["metadata"] == {"type": "object"}, kind
        for path, node in _walk(schema, ""):
            where = f"{kind}{path}"
            assert "type" in node, where
            assert not {"$ref", "anyOf", "oneOf", "allOf", "not", "nullable"} & node.keys(), where
            assert not ("properties" in node and "additionalProperties" in node), where
            if "default" in node:
                plain = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
                jsonschema.Draft4Validator(plain).validate(node["default"])


def test_cel_rules_compile_and_bound_their_lists() -> None:
    for kind, schema in _schemas():
        for path, node in _walk(schema, ""):
            for rule in node.get("x-kubernetes-validations", []):
                assert rule["message"], f"{kind}{path}"
                # A list the rule iterates must be bounded, or the API server rejects the CRD's cost.
                if node["type"] == "array":
                    assert "maxItems" in node, f"{kind}{path}"
                # Evaluating on an empty value must not crash the evaluator with a syntax error.
                outcome = evaluate_rule(rule["rule"], [] if node["type"] == "array" else "")
                assert outcome is not None
        assert list(cel_rules(schema)), kind


def test_crd_names_columns_and_subresources() -> None:
    crds = all_crds()
    tenant = crds["InferenceTenant"]["spec"]
    assert tenant["names"]["shortNames"] == ["itn"]
    assert "edgetenant" in tenant["names"]["categories"]
    version = tenant["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert version["subresources"]["scale"]["statusReplicasPath"] == ".status.replicas"
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Model", "Class", "Node", "Concurrency", "Throughput", "P95", "Ready", "Age"]
    assert crds["AcceleratorClass"]["spec"]["scope"] == "Cluster"
    assert crds["ModelProfile"]["spec"]["scope"] == "Namespaced"


# --- shipped objects ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.yaml")) + sorted(CLASSES.glob("*.yaml")), ids=str)
def test_shipped_manifests_validate(path: Path) -> None:
    if path.name == "kustomization.yaml":
        listed = yaml.safe_load(path.read_text())["resources"]
        assert sorted(listed) == sorted(p.name for p in path.parent.glob("*.yaml") if p != path)
        return
    for doc in _resolved(path):
        result = validate_manifest(doc)
        assert result.ok, [str(e) for e in result.errors]


def test_schema_defaults_equal_model_defaults() -> None:
    # What the API server stores (schema defaults) is what the operator's models assume.
    for doc in _resolved(SAMPLES / "mobilenet-v1.yaml") + _resolved(CLASSES / "x86-cpu.yaml"):
        result = validate_manifest(doc)
        assert result.resource is not None
        assert result.obj == result.resource.to_dict()


def test_defaults_are_applied() -> None:
    result = validate_manifest(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": "resnet-18", "namespace": "edge-vision"},
            "spec": {"model": {"format": "onnx", "uri": "file:///models/resnet18.onnx"}},
        }
    )
    spec = result.obj["spec"]
    assert spec["model"]["maxBatchSize"] == 8
    assert spec["concurrency"] == {"mode": "Auto", "min": 1, "max": 8, "initial": 1}
    assert spec["batching"] == {"mode": "Auto"}
    assert spec["priority"] == 100
    assert spec["replicas"] == 1
    assert spec["placement"]["allowMove"] is True
    assert spec["placement"]["maxMovesPerHour"] == 4
    assert isinstance(result.resource, InferenceTenant)
    assert result.resource.served_model_name == "resnet-18"


def test_every_lab_accelerator_has_a_shipped_class() -> None:
    lab = REPO / "hack" / "lab" / "edge-lab.yaml"
    if not lab.exists():
        pytest.skip("no lab topology in this checkout")
    classes = [obj for obj in load_objects(CLASSES) if isinstance(obj, AcceleratorClass)]
    nodes = [d for d in yaml.safe_load_all(lab.read_text()) if d and d.get("kind") == "Node"]
    assert nodes
    for node in nodes:
        allocatable = node.get("status", {}).get("allocatable", {})
        # edgetenant.io/cpu-slot is the lab's own device plugin, which only the dev overlay's x86-cpu
        # requests (tests/unit/test_deviceplugin.py checks that pairing).
        extended = {r for r in allocatable if "/" in r and not r.startswith("edgetenant.io/")}
        for resource in extended:
            offering = [
                c.name
                for c in classes
                if c.spec.resource_name == resource
                and c.matches_labels(node["metadata"]["labels"])
                and c.devices_from_allocatable(allocatable) > 0
            ]
            assert offering, f"{node['metadata']['name']}: no class offers {resource}"


def test_samples_cover_the_research_scenario() -> None:
    objects = load_objects(SAMPLES)
    tenants = [o for o in objects if isinstance(o, InferenceTenant)]
    uris = {t.spec.model.uri.rsplit("/", 1)[-1] for t in tenants}
    for model in ("mobilenet_v1", "mobilenet_v2", "resnet18", "resnet50", "inception_v3", "efficientnet_b0"):
        assert f"{model}.onnx" in uris
    assert len({t.spec.priority for t in tenants}) >= 3
    assert len({tuple(t.spec.accelerator_classes) for t in tenants}) >= 5
    class_names = {o.name for o in load_objects(CLASSES) if isinstance(o, AcceleratorClass)}
    for t in tenants:
        assert set(t.spec.accelerator_classes) <= class_names, t.name
    assert any(isinstance(o, ModelProfile) for o in objects)


# --- models and helpers -----------------------------------------------------------------------


def test_parse_objects_dispatches_on_kind_and_keeps_other_objects() -> None:
    text = (SAMPLES / "namespace.yaml").read_text() + "---\n" + (CLASSES / "jetson-tx2.yaml").read_text()
    namespace, jetson = parse_objects(text)
    assert isinstance(namespace, dict)
    assert namespace["kind"] == "Namespace"
    assert isinstance(jetson, AcceleratorClass)
    backend = jetson.backend_for(ModelFormat.TENSORRT)
    assert backend is not None
    assert backend.backend == "tensorrt"
    assert jetson.backend_for("tflite") is None
    assert jetson.devices_from_allocatable({"nvidia.com/gpu": "4"}) == 1  # 4 time-sliced replicas, 1 GPU
    assert jetson.key == "jetson-tx2"


def test_wire_names_round_trip() -> None:
    (tenant,) = [o for o in load_objects(SAMPLES / "resnet-50.yaml") if isinstance(o, InferenceTenant)]
    wire = tenant.to_dict()
    assert wire["spec"]["model"]["memoryHintMiB"] == 600
    assert wire["spec"]["batching"]["maxQueueDelayMicroseconds"] == 2000
    assert InferenceTenant.model_validate(wire) == tenant
    assert tenant.key == "edge-vision/resnet-50"


def test_batching_disabled_is_not_a_yaml_boolean() -> None:
    assert BatchingMode.OFF.value == "Disabled"
    assert yaml.safe_load(f"mode: {BatchingMode.OFF.value}")["mode"] == "Disabled"


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    t0, t1 = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
    ready = make_condition(ConditionType.READY, True, "Serving", "ok", now=t0)
    placed = make_condition(ConditionType.PLACED, True, "Placed", now=t0)
    again = set_condition([ready, placed], make_condition(ConditionType.READY, True, "StillServing", now=t1))
    assert [c.type for c in again] == ["Ready", "Placed"]
    assert again[0].last_transition_time == t0
    assert again[0].reason == "StillServing"
    flipped = set_condition(again, make_condition(ConditionType.READY, False, "ModelLoadFailed", now=t1))
    assert flipped[0].status is ConditionStatus.FALSE
    assert flipped[0].last_transition_time == t1


def test_unknown_fields_are_refused_by_the_models() -> None:
    with pytest.raises(ValueError, match="gpu"):
        InferenceTenant.model_validate(
            {
                "metadata": {"name": "x"},
                "spec": {"model": {"format": "onnx", "uri": "file:///m.onnx"}, "gpu": 1},
            }
        )


# --- the validate command -------------------------------------------------------------------


def test_validate_prints_resolved_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_main(["-f", str(SAMPLES), "-f", str(CLASSES)]) == 0
    out, err = capsys.readouterr()
    docs = [d for d in yaml.safe_load_all(out) if d]
    tenants = [d for d in docs if d["kind"] == "InferenceTenant"]
    assert len(tenants) == 7
    assert all(t["spec"]["concurrency"]["mode"] in {"Auto", "Fixed"} for t in tenants)
    assert any(d["kind"] == "Namespace" for d in docs)
    assert "all valid" in err


def test_validate_json_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_main(["-f", str(SAMPLES / "resnet-18.yaml"), "-o", "json"]) == 0
    assert '"kind": "List"' in capsys.readouterr().out
    assert validate_main(["-f", str(tmp_path / "nope.yaml")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_load_validated_applies_defaults_and_collects_every_problem(tmp_path: Path) -> None:
    objects = load_validated([SAMPLES, CLASSES])
    tenants = [o for o in objects if isinstance(o, InferenceTenant)]
    assert len(tenants) == 7
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SAMPLES / "resnet-18.yaml").read_text().replace("priority: 100", "priority: 5000")
        + "---\n"
        + (SAMPLES / "mobilenet-v1.yaml").read_text().replace("format: onnx", "format: pytorch")
    )
    with pytest.raises(ConfigError) as info:
        load_validated(bad)
    message = str(info.value)
    assert "InferenceTenant edge-vision/resnet-18: spec.priority" in message
    assert "InferenceTenant edge-vision/mobilenet-v1: spec.model.format: Unsupported value" in message
