"""The CRDs on the real API server: install, explain, samples, and the bad-manifest table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.bad_manifests import CASES, GOOD, NAMESPACE, BadCase
from tests.lab import Lab, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bad_input_namespace(lab: Lab) -> str:
    lab.kubectl("create", "namespace", NAMESPACE, check=False)
    return NAMESPACE


def test_crds_are_established_with_printer_columns(lab: Lab) -> None:
    crd = lab.get_json("crd", "inferencetenants.edgetenant.io")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    wanted = ["Model", "Class", "Node", "Concurrency", "Throughput", "P95", "Ready", "Age"]
    assert [c for c in columns if c in wanted] == wanted, columns
    assert "itn" in crd["spec"]["names"]["shortNames"]


def explain(lab: Lab, path: str) -> str:
    """`kubectl explain PATH`, once the API server publishes the schema: after a CRD is created or
    changed, its OpenAPI document is rebuilt in the background and explain fails until then."""
    result = wait_for(
        f"kubectl explain {path}",
        lambda: (r := lab.kubectl("explain", path, check=False)).returncode == 0 and r,
        timeout=60,
    )
    return str(result.stdout)


def test_kubectl_explain_shows_the_field_docs(lab: Lab) -> None:
    out = explain(lab, "inferencetenant.spec")
    for field in ("acceleratorClasses", "concurrency", "slo", "model", "placement"):
        assert field in out
    assert "onnx" in explain(lab, "inferencetenant.spec.model.format")


def test_shipped_classes_and_samples_apply(lab: Lab) -> None:
    lab.kubectl("apply", "-k", str(REPO / "manifests" / "samples"))
    assert len(lab.get_json("itn", "-n", "edge-vision")["items"]) >= 6
    lab.kubectl("delete", "itn", "--all", "-n", "edge-vision", "--wait=false")
    classes = lab.get_json("acceleratorclasses")["items"]
    assert {"jetson-tx2", "jetson-nano", "coral-edgetpu", "intel-ncs2", "x86-cpu", "arm64-cpu"} <= {
        c["metadata"]["name"] for c in classes
    }


def test_good_manifests_pass_server_side_dry_run(lab: Lab, bad_input_namespace: str) -> None:
    for manifest in GOOD:
        lab.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(manifest))


@pytest.mark.parametrize("case", [c for c in CASES if c.api_server], ids=lambda c: c.id)
def test_bad_manifest_is_refused_with_its_message(lab: Lab, bad_input_namespace: str, case: BadCase) -> None:
    result = lab.kubectl(
        "create", "--dry-run=server", "-f", "-", input_text=yaml.safe_dump(case.manifest), check=False
    )
    assert result.returncode != 0, f"{case.id} was accepted"
    for expected in case.expect:
        assert expected in result.stderr, f"{case.id}: {expected!r} not in:\n{result.stderr}"
