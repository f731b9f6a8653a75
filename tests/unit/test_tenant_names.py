"""A tenant's name must be able to name its children: the API server accepts any DNS subdomain for the
tenant, but its Service needs an RFC 1035 label (and every child carries the name as a label value)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgetenant.api.models import AcceleratorClass, InferenceTenant
from edgetenant.render.kube import RenderSettings, name_problem, render_all, spec_render_problem, uri_problem

REPO = Path(__file__).resolve().parents[2]
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@pytest.mark.parametrize("name", ["a", "t00", "mobilenet-v2", "a" + "-" * 61 + "z", "x" * 63])
def test_a_name_that_fits_every_child(name: str) -> None:
    assert name_problem(name) is None
    tenant = InferenceTenant.model_validate(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": name, "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {"model": {"format": "onnx", "uri": "http://m/model.onnx"}},
        }
    )
    doc = yaml.safe_load((REPO / "manifests" / "acceleratorclasses" / "x86-cpu.yaml").read_text())
    klass = AcceleratorClass.model_validate(doc)
    for obj in render_all(tenant, klass, "node-1", 1, RenderSettings(), admin_key="k"):
        meta = obj["metadata"]
        assert len(meta["name"]) <= 253 and DNS_SUBDOMAIN.fullmatch(meta["name"]), (obj["kind"], meta["name"])
        for value in meta["labels"].values():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), (obj["kind"], value)


@pytest.mark.parametrize(
    "name",
    ["dots.in.the.name", "0-leading-digit", "trailing-", "y" * 64, "z" * 253, "UPPER", ""],
)
def test_a_name_the_api_server_accepts_but_no_service_can_have_is_a_spec_problem(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None and "RFC 1035 label" in problem
    assert len(problem) < 300  # a 253-character name is shortened in the message


@pytest.mark.parametrize(
    "uri", ["http://[::1/model.onnx", "https://host]/m.onnx", "oci://[registry]/m:1", "http://[" + "x" * 2040]
)
def test_a_uri_the_schema_lets_through_but_no_url_parser_reads_is_a_spec_problem(uri: str) -> None:
    # The schema's rules check the scheme and each scheme's shape; brackets in the authority get past them.
    problem = spec_render_problem("fine-name", uri)
    assert problem is not None and "is not a URL" in problem, problem
    assert len(problem) < 300


@pytest.mark.parametrize("uri", ["http://[::1]:8080/m.onnx", "file:///models/[1]/m.onnx", "pvc://claim/a[b"])
def test_brackets_where_a_url_may_have_them_are_fine(uri: str) -> None:
    assert uri_problem(uri) is None
