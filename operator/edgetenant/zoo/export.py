"""The zoo in the other formats the shipped classes serve, converted from its ONNX by real converters.

- **OpenVINO IR** (``<name>.xml`` + ``<name>.bin``): ``openvino.convert_model``, what OpenVINO's
  ``ovc`` runs, in this process (``openvino`` is in the ``zoo`` extra). Weights stay FP32
  (``compress_to_fp16=False``), so served logits can be checked against ONNX Runtime; the NCS2
  computes in FP16 whatever the file holds. The IR reads in OpenVINO 2022.3 LTS too (the ops are
  all from opset 1-8).
- **TFLite** (``<name>.tflite``): onnx2tf 2.x, whose flatbuffer_direct backend writes TFLite
  straight from ONNX without TensorFlow, run from a virtualenv of its own
  (``hack/zoo/setup-tflite-converter.sh``): onnx2tf pins exact onnx, onnxruntime, numpy and
  protobuf versions that clash with the operator's lock, and needs Python >= 3.12. The input keeps
  the zoo's NCHW layout (``-kat input``: onnx2tf puts the transpose to NHWC inside the model), so
  every format takes the same tensor. Float32: an EdgeTPU needs a full-integer model compiled by
  Coral's ``edgetpu_compiler``, which no registry carries.

Each converted file has a sidecar ``<name>.<format>.json`` (the converter, its version, the ONNX's
sha256), written last: a file without it, or made from another ONNX, is converted again.

NB: OpenVINO's converter reports usage to Google Analytics by default (``openvino-telemetry``,
opt-out: on unless a consent file says no). Nothing here may send a packet off loopback, so
``import_openvino`` is the one way this package imports OpenVINO: it keeps the telemetry module
from loading and points the converter at OpenVINO's own no-op stub.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgetenant.errors import ConfigError

_REPO_ROOT = Path(__file__).resolve().parents[3]
TFLITE_SETUP = _REPO_ROOT / "hack" / "zoo" / "setup-tflite-converter.sh"
TFLITE_ENV_VARIABLE = "EDGETENANT_TFLITE_CONVERTER"
# The file a format is served from, and the files that travel with it.
SUFFIXES: dict[str, tuple[str, ...]] = {"openvino": (".xml", ".bin"), "tflite": (".tflite",)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(directory: Path, name: str, model_format: str) -> Path:
    return directory / f"{name}.{model_format}.json"


def ensure_converted(onnx_path: Path, model_format: str) -> Path:
    """The zoo model at ``onnx_path`` in ``model_format`` beside it, converting it first if needed."""
    if model_format not in SUFFIXES:
        raise ValueError(f"no zoo export for format {model_format!r}; known: onnx, {', '.join(SUFFIXES)}")
    directory, name = onnx_path.parent, onnx_path.stem
    files = [directory / f"{name}{suffix}" for suffix in SUFFIXES[model_format]]
    sidecar = sidecar_path(directory, name, model_format)
    source_sha256 = _sha256(onnx_path)
    if all(path.is_file() for path in files) and _converted_from(sidecar) == source_sha256:
        return files[0]
    sidecar.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=f".{name}-{model_format}-") as scratch:
        # NB: onnx2tf writes its simplified graph back over its input: it gets a copy, never the zoo's.
        source = Path(scratch) / onnx_path.name
        shutil.copyfile(onnx_path, source)
        staged = Path(scratch) / f"{name}{SUFFIXES[model_format][0]}"
        converter = (convert_openvino if model_format == "openvino" else convert_tflite)(source, staged)
        for path in reversed(files):  # the served file last: it never stands without its weights
            os.replace(staged.with_suffix(path.suffix), path)
    info = {**converter, "source": onnx_path.name, "source_sha256": source_sha256}
    sidecar.write_text(json.dumps(info, indent=2))
    return files[0]


def _converted_from(sidecar: Path) -> str | None:
    """The sha256 of the ONNX a sidecar says its export came from (None: no usable sidecar)."""
    try:
        recorded = json.loads(sidecar.read_text()).get("source_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) else None


class ConverterUnavailable(ConfigError):
    """The TFLite converter cannot be set up here (no Python >= 3.12, or its install failed)."""


# The converter's modules that bind the telemetry module as ``tm`` (OpenVINO 2023.0 to 2026.4).
_TELEMETRY_USERS = ("main", "convert_impl", "telemetry_utils", "utils")


def import_openvino() -> Any:
    """``openvino``, with its usage telemetry off whatever the consent file says.

    Raises ``ConfigError`` when it cannot make sure of that (a future layout), rather than convert.
    """
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import fails -> stub
    import openvino  # noqa: PLC0415  (the zoo extra; heavy, so only when asked for)
    from openvino.tools.ovc import telemetry_stub  # noqa: PLC0415

    for name in _TELEMETRY_USERS:
        module = sys.modules.get(f"openvino.tools.ovc.{name}")
        if module is not None and hasattr(module, "tm"):
            setattr(module, "tm", telemetry_stub)  # noqa: B010  (imported before us with the real one)
    real = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("openvino.tools.") and getattr(module, "tm", telemetry_stub) is not telemetry_stub
    ]
    if real:
        raise ConfigError(f"OpenVINO's telemetry is still wired into {real}: refusing to run its converter")
    return openvino


def convert_openvino(onnx_path: Path, xml_path: Path) -> dict[str, Any]:
    """ONNX -> OpenVINO IR (``xml_path`` and the ``.bin`` beside it) with OpenVINO's converter."""
    openvino = import_openvino()

    model = openvino.convert_model(str(onnx_path))
    openvino.save_model(model, str(xml_path), compress_to_fp16=False)
    return {"converter": "openvino.convert_model", "version": openvino.get_version().split("-")[0]}


@functools.cache
def find_tflite_converter() -> Path:
    """onnx2tf's virtualenv: ``$EDGETENANT_TFLITE_CONVERTER``, else what the setup script builds."""
    explicit = os.environ.get(TFLITE_ENV_VARIABLE)
    if explicit:
        if not (Path(explicit) / ".ready").is_file():
            raise ConverterUnavailable(f"{TFLITE_ENV_VARIABLE}={explicit} is not a finished converter env")
        return Path(explicit)
    result = subprocess.run(
        ["bash", str(TFLITE_SETUP)], capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        reason = " ".join(
            line.removeprefix("[tflite-converter] ") for line in result.stderr.splitlines()[-3:]
        )
        raise ConverterUnavailable(f"{TFLITE_SETUP.name} failed ({result.returncode}): {reason}")
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(f"{TFLITE_ENV_VARIABLE}="):
            return Path(line.split("=", 1)[1])
    raise ConfigError(f"{TFLITE_SETUP} did not print {TFLITE_ENV_VARIABLE}=...")


def convert_tflite(onnx_path: Path, tflite_path: Path) -> dict[str, Any]:
    """ONNX -> float32 TFLite with onnx2tf (flatbuffer_direct), input layout kept as in the ONNX."""
    env_dir = find_tflite_converter()
    out_dir = tflite_path.parent / "onnx2tf"
    env = os.environ | {"PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    command = [
        str(env_dir / "bin" / "onnx2tf"),
        "-i", str(onnx_path),
        "-o", str(out_dir),
        "-tb", "flatbuffer_direct",
        "-kat", *_input_names(onnx_path),
        "-v", "error",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, timeout=1800)
    produced = out_dir / f"{onnx_path.stem}_float32.tflite"
    if result.returncode != 0 or not produced.is_file():
        output = (result.stderr or result.stdout)[-2000:]
        raise ConfigError(f"onnx2tf could not convert {onnx_path} ({result.returncode}):\n{output}")
    shutil.move(produced, tflite_path)
    probe = "import importlib.metadata as m; print(m.version('onnx2tf'))"
    version = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    return {"converter": "onnx2tf (flatbuffer_direct)", "version": version}


def _input_names(onnx_path: Path) -> list[str]:
    import onnx  # noqa: PLC0415

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    return [tensor.name for tensor in graph.input if tensor.name not in initializers]
