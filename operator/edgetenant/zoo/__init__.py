"""The model zoo: image classifiers from the CME research, as ONNX with seeded random weights.

Graphs follow the published architectures (see ``models.py``); weights are random because
none can be downloaded here and throughput does not depend on their values. Every model
takes ``input`` (NCHW float32, batch axis dynamic) and returns ``logits`` (batch x 1000).
Built models are cached under ``$EDGETENANT_CACHE/zoo/v<ZOO_VERSION>/<name>.onnx``
(default ``~/.cache/edgetenant``) with a ``<name>.json`` sidecar of ``ModelInfo``; the OpenVINO IR
(``<name>.xml`` + ``.bin``) and TFLite (``<name>.tflite``) exports sit beside them (``export.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from edgetenant.zoo import models
from edgetenant.zoo.graph import GraphBuilder, Tensor

ZOO_VERSION = 1
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
CLASSES = 1000
# The formats the zoo serves: its own ONNX and what export.py converts it to.
FORMATS = ("onnx", "openvino", "tflite")


@dataclass(frozen=True, slots=True)
class ZooEntry:
    """A zoo architecture and the published figures it is checked against."""

    name: str
    title: str
    build: Callable[[GraphBuilder, Tensor], Tensor]
    image_size: int
    published_parameters: int
    published_macs: int  # multiply-accumulates per image, as papers quote "FLOPs"
    reference: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a built zoo model is: tensor names, shapes, size and cost per inference."""

    name: str
    input_name: str
    input_shape: tuple[int, int, int]  # C, H, W (the batch axis is dynamic)
    output_name: str
    classes: int
    parameters: int
    macs: int
    flops: int  # 2 x MACs: one multiply and one add each
    zoo_version: int


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry(
            "mobilenet_v1", "MobileNet V1 1.0", models.mobilenet_v1, 224, 4_231_976, 569_000_000,
            "Howard et al. 2017, arXiv:1704.04861 (4.2 M params, 569 M mult-adds)",
        ),
        ZooEntry(
            "mobilenet_v2", "MobileNet V2 1.0", models.mobilenet_v2, 224, 3_504_872, 300_000_000,
            "Sandler et al. 2018, arXiv:1801.04381; torchvision 3,504,872 params, 300 M MACs",
        ),
        ZooEntry(
            "resnet18", "ResNet-18", models.resnet18, 224, 11_689_512, 1_814_000_000,
            "He et al. 2016, arXiv:1512.03385; torchvision 11,689,512 params, 1.81 GMACs",
        ),
        ZooEntry(
            "resnet50", "ResNet-50 v1.5", models.resnet50, 224, 25_557_032, 4_089_000_000,
            "He et al. 2016; torchvision 25,557,032 params, 4.09 GMACs",
        ),
        ZooEntry(
            "inception_v3", "Inception V3", models.inception_v3, 299, 23_834_568, 5_713_000_000,
            "Szegedy et al. 2016, arXiv:1512.00567; torchvision 27,161,264 params with the aux head, "
            "23,834,568 without; 5.71 GMACs",
        ),
        ZooEntry(
            "efficientnet_b0", "EfficientNet-B0", models.efficientnet_b0, 224, 5_288_548, 390_000_000,
            "Tan & Le 2019, arXiv:1905.11946; torchvision 5,288,548 params, 0.39 GMACs",
        ),
    ]
}  # fmt: skip


def _entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}") from None


def build_model(name: str, *, seed: int = 0) -> tuple[onnx.ModelProto, ModelInfo]:
    """Build the ONNX model in memory (seconds; no cache)."""
    entry = _entry(name)
    builder = GraphBuilder(seed=seed)
    shape = (3, entry.image_size, entry.image_size)
    features = entry.build(builder, Tensor(INPUT_NAME, *shape))
    builder.classifier(features, CLASSES, OUTPUT_NAME)
    model = builder.finish(
        name=name, input_name=INPUT_NAME, input_shape=shape, output_name=OUTPUT_NAME, classes=CLASSES
    )
    info = ModelInfo(
        name=name,
        input_name=INPUT_NAME,
        input_shape=shape,
        output_name=OUTPUT_NAME,
        classes=CLASSES,
        parameters=builder.parameters,
        macs=builder.macs,
        flops=2 * builder.macs,
        zoo_version=ZOO_VERSION,
    )
    return model, info


def zoo_cache_dir() -> Path:
    """``$EDGETENANT_CACHE/zoo/v<ZOO_VERSION>`` (default cache root ``~/.cache/edgetenant``)."""
    root = os.environ.get("EDGETENANT_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgetenant"
    )
    return Path(root) / "zoo" / f"v{ZOO_VERSION}"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


def ensure_model(name: str, *, cache_dir: Path | None = None, format: str = "onnx") -> Path:
    """Path to the model in the cache (``<name>.onnx``, ``.xml`` or ``.tflite``), building it first
    if it is not there. The IR's weights are the ``.bin`` beside its ``.xml``."""
    if format not in FORMATS:
        raise ValueError(f"unknown zoo format {format!r}; known: {', '.join(FORMATS)}")
    directory = cache_dir or zoo_cache_dir()
    path = directory / f"{name}.onnx"
    sidecar = directory / f"{name}.json"
    if format != "onnx":
        from edgetenant.zoo import export  # noqa: PLC0415  (converters load only when asked for)

        return export.ensure_converted(ensure_model(name, cache_dir=directory), format)
    if path.is_file() and sidecar.is_file():
        return path
    model, info = build_model(name)
    # Sidecar first: a model file without its sidecar is rebuilt, never trusted.
    _atomic_write(sidecar, json.dumps(asdict(info), indent=2).encode())
    _atomic_write(path, model.SerializeToString())
    return path


def model_info(name: str, *, cache_dir: Path | None = None) -> ModelInfo:
    """The cached model's info (builds the model if needed)."""
    path = ensure_model(name, cache_dir=cache_dir)
    raw = json.loads(path.with_suffix(".json").read_text())
    raw["input_shape"] = tuple(raw["input_shape"])
    return ModelInfo(**raw)
