"""The Triton config renderer: one spec, deterministic text, native and shim differ only in the backend."""

from __future__ import annotations

import json

import pytest

from edgetenant.render import triton
from edgetenant.render.triton import DynamicBatching, TritonModelSpec


def test_full_spec_renders_exact_pbtxt() -> None:
    spec = TritonModelSpec(
        name="mobilenet-v2",
        format="onnx",
        backend="onnxruntime",
        max_batch_size=8,
        instance_count=3,
        instance_kind="KIND_CPU",
        threads_per_instance=1,
        dynamic_batching=DynamicBatching(max_queue_delay_microseconds=500, preferred_batch_sizes=(4, 8)),
    )
    assert triton.render_model_config(spec) == (
        'name: "mobilenet-v2"\n'
        'backend: "onnxruntime"\n'
        "max_batch_size: 8\n"
        "instance_group [\n"
        "  {\n"
        "    count: 3\n"
        "    kind: KIND_CPU\n"
        "  }\n"
        "]\n"
        "dynamic_batching {\n"
        "  preferred_batch_size: [ 4, 8 ]\n"
        "  max_queue_delay_microseconds: 500\n"
        "}\n"
        "parameters {\n"
        '  key: "inter_op_thread_count"\n'
        '  value: { string_value: "1" }\n'
        "}\n"
        "parameters {\n"
        '  key: "intra_op_thread_count"\n'
        '  value: { string_value: "1" }\n'
        "}\n"
    )


def test_minimal_spec_has_no_batching_or_parameters() -> None:
    text = triton.render_model_config(TritonModelSpec(name="m", max_batch_size=0))
    assert "dynamic_batching" not in text
    assert "parameters" not in text
    assert "max_batch_size: 0\n" in text


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "openvino"])
def test_native_and_shim_differ_only_in_the_backend_line(fmt: str) -> None:
    base = TritonModelSpec(
        name="m", format=fmt, threads_per_instance=2, instance_count=2, dynamic_batching=DynamicBatching()
    )
    native = triton.render_model_config(triton.native_spec_for(base)).splitlines()
    shim = triton.render_model_config(triton.shim_spec_for(base)).splitlines()
    differing = [(a, b) for a, b in zip(native, shim, strict=True) if a != b]
    assert differing == [(f'backend: "{triton.NATIVE_BACKENDS[fmt]}"', 'backend: "python"')]


def test_custom_model_file_is_default_model_filename_natively_and_a_parameter_for_the_shim() -> None:
    spec = TritonModelSpec(name="m", model_filename="resnet50.onnx")
    native = triton.model_config_dict(spec)
    shim = triton.model_config_dict(triton.shim_spec_for(spec))
    assert native["default_model_filename"] == "resnet50.onnx"
    assert "default_model_filename" not in shim
    assert shim["parameters"] == {"model_filename": {"string_value": "resnet50.onnx"}}


def test_json_matches_the_pbtxt_fields() -> None:
    spec = TritonModelSpec(
        name="r",
        instance_count=4,
        instance_kind="KIND_GPU",
        gpus=(0, 1),
        threads_per_instance=2,
        dynamic_batching=DynamicBatching(max_queue_delay_microseconds=100),
    )
    config = json.loads(triton.model_config_json(spec))
    assert config == {
        "name": "r",
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "instance_group": [{"count": 4, "kind": "KIND_GPU", "gpus": [0, 1]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 100},
        "parameters": {
            "inter_op_thread_count": {"string_value": "1"},
            "intra_op_thread_count": {"string_value": "2"},
        },
    }
    assert "gpus: [ 0, 1 ]" in triton.render_model_config(spec)


def test_rendering_is_deterministic_regardless_of_extra_parameter_order() -> None:
    one = TritonModelSpec(name="m", parameters=(("b", "2"), ("a", "1")))
    two = TritonModelSpec(name="m", parameters=(("a", "1"), ("b", "2")))
    assert triton.render_model_config(one) == triton.render_model_config(two)
    assert triton.model_config_json(one) == triton.model_config_json(two)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"instance_count": 0}, "instance count"),
        ({"instance_kind": "KIND_TPU"}, "instance kind"),
        ({"format": "pytorch"}, "format"),
        ({"max_batch_size": 0, "dynamic_batching": DynamicBatching()}, "dynamic batching needs"),
        ({"dynamic_batching": DynamicBatching(preferred_batch_sizes=(16,))}, "preferred batch sizes"),
        ({"gpus": (0,)}, "gpus"),
        ({"name": "a/b"}, "name"),
        ({"threads_per_instance": 0}, "threads"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(overrides: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        TritonModelSpec(name=str(overrides.pop("name", "m")), **overrides)  # type: ignore[arg-type]


def test_tensorrt_has_no_thread_parameter() -> None:
    spec = TritonModelSpec(name="t", format="tensorrt", backend="tensorrt", threads_per_instance=4)
    assert "parameters" not in triton.render_model_config(spec)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("Disabled", None),
        ("Off", None),
        ("Auto", DynamicBatching()),
        ("Fixed", DynamicBatching(max_queue_delay_microseconds=200, preferred_batch_sizes=(2, 4))),
    ],
)
def test_batching_modes(mode: str, expected: DynamicBatching | None) -> None:
    assert (
        triton.build_dynamic_batching(mode, max_queue_delay_microseconds=200, preferred_batch_sizes=(2, 4))
        == expected
    )
    with pytest.raises(ValueError, match="batching mode"):
        triton.build_dynamic_batching("Sometimes")
