"""A backend parameter in a shipped AcceleratorClass must be one its Python-backend shim reads: the
coral class once said `edgetpu_delegate`, which no code read, so the EdgeTPU switch stayed at auto."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgetenant.dataplane import fetch
from edgetenant.render.kube import EDGETENANT_PARAMETERS
from tests.unit.test_model_source import fetcher, pod_spec_for

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [
    *sorted((REPO / "manifests" / "acceleratorclasses").glob("*.yaml")),
    REPO / "manifests/overlays/dev/standin-classes.yaml",
]
SHIM_DIR = Path(fetch.__file__).parent


def shim_parameters(format_name: str) -> set[str]:
    source = (SHIM_DIR / fetch.SHIMS[format_name]).read_text()
    return set(re.findall(r'_parameter\(\s*(?:self\.)?config,\s*"([a-z_]+)"', source))


def python_backend_formats() -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for path in SHIPPED:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "AcceleratorClass":
                continue
            for entry in doc["spec"]["formats"]:
                if entry.get("backend") == "python":
                    found.append((doc["metadata"]["name"], entry["format"], entry.get("parameters") or {}))
    return found


def test_the_shims_read_parameters() -> None:
    assert {"edgetpu", "edgetpu_device"} <= shim_parameters("tflite")
    assert "openvino_device" in shim_parameters("openvino")


@pytest.mark.parametrize(("klass", "format_name", "parameters"), python_backend_formats())
def test_every_shipped_parameter_is_read_by_its_shim(
    klass: str, format_name: str, parameters: dict[str, str]
) -> None:
    shim = parameters.get("shim", format_name)
    assert shim in fetch.SHIMS, f"{klass}/{format_name}: no shim {shim!r}"
    unknown = set(parameters) - EDGETENANT_PARAMETERS - shim_parameters(shim)
    assert not unknown, f"{klass}/{format_name}: the {shim} shim reads no {sorted(unknown)}"


def test_onnx_on_the_ncs2_installs_openvinos_shim() -> None:
    """The fetcher gets --shim=openvino, and the model is fetched as model.onnx, which it reads."""
    init = fetcher(pod_spec_for("intel-ncs2", uri="http://store/m.onnx"))
    assert "--shim=openvino" in init["args"]
    assert any(a.startswith("--dest=") and a.endswith("/1/model.onnx") for a in init["args"])
