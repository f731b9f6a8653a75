"""Lay out a Triton model repository: ``<repo>/<name>/config.pbtxt`` and ``<repo>/<name>/<version>/``.

Used by the model fetcher (init container), the tests, the profiler and the local lab. A
spec on the Python backend (``render.triton.SHIM_BACKEND``) gets the shim for its format
copied in as ``<version>/model.py``: the shims are self-contained files, so the Triton
image needs no edgetenant package, only its runtime (ONNX Runtime, OpenVINO or tflite-runtime)
and numpy<2. OpenVINO IR's weights (the ``.bin`` beside the ``.xml``) travel with the model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgetenant.render import triton

SHIM_SOURCES: dict[str, Path] = {
    "onnx": Path(__file__).with_name("onnx_model.py"),
    "tflite": Path(__file__).with_name("tflite_model.py"),
    "openvino": Path(__file__).with_name("openvino_model.py"),
}
# Files a format keeps beside its model file, named like it.
COMPANION_SUFFIXES: dict[str, tuple[str, ...]] = {"openvino": (".bin",)}


def model_filename(spec: triton.TritonModelSpec) -> str:
    return spec.model_filename or triton.DEFAULT_MODEL_FILENAMES[spec.format]


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def place_file(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy across file systems), replacing atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging")
    staging.unlink(missing_ok=True)
    try:
        os.link(source, staging)
    except OSError:
        shutil.copyfile(source, staging)
    os.replace(staging, target)


def install_shim(spec: triton.TritonModelSpec, version_dir: Path) -> Path | None:
    """Copy the shim for the spec's format as ``model.py`` when the spec uses the Python backend."""
    if spec.backend != triton.SHIM_BACKEND:
        return None
    try:
        source = SHIM_SOURCES[spec.format]
    except KeyError:
        raise ValueError(f"no edgetenant shim for format {spec.format!r}; use its native backend") from None
    target = version_dir / "model.py"
    write_text_atomic(target, source.read_text())
    return target


def write_model(
    repository: Path, spec: triton.TritonModelSpec, model_file: Path | None, *, version: int = 1
) -> Path:
    """Write config, model file (if given) and shim; returns the model's directory.

    ``model_file`` may be None when the file is already in place (e.g. fetched earlier).
    """
    model_dir = repository / spec.name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    if model_file is not None:
        target = version_dir / model_filename(spec)
        for suffix in COMPANION_SUFFIXES.get(spec.format, ()):
            place_file(model_file.with_suffix(suffix), target.with_suffix(suffix))
        place_file(model_file, target)
    install_shim(spec, version_dir)
    write_text_atomic(model_dir / "config.pbtxt", triton.render_model_config(spec))
    return model_dir
