"""The zoo's exports: cached beside the ONNX they came from, converters that cannot run say why."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgetenant import zoo
from edgetenant.zoo import export


def fake_openvino(calls: list[Path]) -> Any:
    def convert(onnx_path: Path, xml_path: Path) -> dict[str, Any]:
        calls.append(onnx_path)
        xml_path.write_text(f"<net from={onnx_path.read_bytes()!r}/>")
        xml_path.with_suffix(".bin").write_bytes(b"weights")
        return {"converter": "fake", "version": "0"}

    return convert


def test_an_export_is_made_once_per_source_and_never_from_the_zoos_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(export, "convert_openvino", fake_openvino(calls))
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(b"graph 1")

    first = export.ensure_converted(onnx_path, "openvino")
    again = export.ensure_converted(onnx_path, "openvino")
    assert first == again == tmp_path / "tiny.xml"
    assert len(calls) == 1
    # onnx2tf rewrites its input: a converter gets a copy, so the zoo's ONNX stays as built.
    assert calls[0] != onnx_path and calls[0].name == onnx_path.name
    assert (tmp_path / "tiny.bin").read_bytes() == b"weights"
    sidecar = json.loads((tmp_path / "tiny.openvino.json").read_text())
    assert sidecar["converter"] == "fake" and sidecar["source"] == "tiny.onnx"

    onnx_path.write_bytes(b"graph 2")  # rebuilt: the export follows
    export.ensure_converted(onnx_path, "openvino")
    assert len(calls) == 2 and "graph 2" in first.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny.bin", "tiny.onnx", "tiny.openvino.json", "tiny.xml"
    ]  # fmt: skip


def test_unknown_formats_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: onnx, openvino, tflite"):
        zoo.ensure_model("mobilenet_v2", cache_dir=tmp_path, format="coreml")


def test_no_python_312_makes_the_tflite_converter_unavailable_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PATH with the script's tools and no python at all; HOME without pyenv.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "dirname", "ls", "sort"):
        found = shutil.which(tool)
        assert found, tool
        os.symlink(found, tools / tool)
    for variable in ("EDGETENANT_CONVERTER_PYTHON", export.TFLITE_ENV_VARIABLE, "PYENV_ROOT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EDGETENANT_CACHE", str(tmp_path / "cache"))
    export.find_tflite_converter.cache_clear()
    try:
        with pytest.raises(export.ConverterUnavailable, match=r"onnx2tf 2\.x needs Python >= 3\.12"):
            export.find_tflite_converter()
    finally:
        export.find_tflite_converter.cache_clear()
    assert not (tmp_path / "cache").exists()
