"""The zoo's graphs match their published architectures and run in real ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgetenant import zoo

# Folding BN into the conv keeps one bias per channel where the trained model has a scale
# and a shift, so the zoo is a little under the published count (at most ~0.5%).
PARAMETER_TOLERANCE = 0.01
MAC_TOLERANCE = 0.02  # published MAC figures are rounded (e.g. "390 M", "300 M")


@pytest.fixture(scope="module", params=sorted(zoo.ZOO))
def built(request: pytest.FixtureRequest) -> tuple[onnx.ModelProto, zoo.ModelInfo]:
    return zoo.build_model(request.param)


def test_parameter_count_matches_the_published_figure(built: tuple[onnx.ModelProto, zoo.ModelInfo]) -> None:
    model, info = built
    published = zoo.ZOO[info.name].published_parameters
    assert info.parameters == pytest.approx(published, rel=PARAMETER_TOLERANCE)
    # The counter agrees with what is actually stored in the graph.
    stored = sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) > 0)
    assert stored == info.parameters


def test_macs_match_the_published_figure(built: tuple[onnx.ModelProto, zoo.ModelInfo]) -> None:
    _, info = built
    assert info.macs == pytest.approx(zoo.ZOO[info.name].published_macs, rel=MAC_TOLERANCE)
    assert info.flops == 2 * info.macs


def test_runs_in_onnx_runtime_with_a_dynamic_batch(built: tuple[onnx.ModelProto, zoo.ModelInfo]) -> None:
    model, info = built
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == zoo.INPUT_NAME
    assert inp.shape == ["batch", *info.input_shape]
    images = np.random.default_rng(1).standard_normal((2, *info.input_shape), dtype=np.float32)
    (logits,) = session.run([zoo.OUTPUT_NAME], {zoo.INPUT_NAME: images})
    assert logits.shape == (2, zoo.CLASSES)
    assert np.isfinite(logits).all()
    # Different images give different logits: the graph is wired through, not constant.
    assert not np.allclose(logits[0], logits[1])


def test_builds_are_deterministic_for_a_seed() -> None:
    one, _ = zoo.build_model("mobilenet_v2", seed=3)
    two, _ = zoo.build_model("mobilenet_v2", seed=3)
    other, _ = zoo.build_model("mobilenet_v2", seed=4)
    assert one.SerializeToString() == two.SerializeToString()
    assert one.SerializeToString() != other.SerializeToString()


def test_cache_writes_model_and_sidecar_and_reuses_them(tmp_path: Path) -> None:
    path = zoo.ensure_model("efficientnet_b0", cache_dir=tmp_path)
    assert path == tmp_path / "efficientnet_b0.onnx"
    first_mtime = path.stat().st_mtime_ns
    assert zoo.ensure_model("efficientnet_b0", cache_dir=tmp_path).stat().st_mtime_ns == first_mtime
    info = zoo.model_info("efficientnet_b0", cache_dir=tmp_path)
    assert info.input_shape == (3, 224, 224)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="resnet50"):
        zoo.build_model("vgg16")
