"""The OpenVINO shim's choice of compile properties (pure; the served behaviour is in
tests/dataplane/test_runtime_shims.py)."""

from __future__ import annotations

from edgetenant.dataplane.openvino_model import compile_properties, without_pinning

CPU_2026 = {"INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "ENABLE_CPU_PINNING", "NUM_STREAMS"}
CPU_2022_3 = {"CPU_THREADS_NUM", "INFERENCE_NUM_THREADS", "CPU_BIND_THREAD"}
MYRIAD = {"PERFORMANCE_HINT"}


def config(**parameters: str) -> dict[str, object]:
    return {"parameters": {key: {"string_value": value} for key, value in parameters.items()}}


def test_threads_are_left_unpinned_in_the_name_the_device_knows() -> None:
    assert without_pinning({"INFERENCE_NUM_THREADS": "1"}, CPU_2026) == {
        "INFERENCE_NUM_THREADS": "1",
        "ENABLE_CPU_PINNING": "False",
    }
    assert without_pinning({}, CPU_2022_3) == {"CPU_BIND_THREAD": "NO"}
    assert without_pinning({}, MYRIAD) == {}  # a stick has no CPU threads to pin


def test_a_config_that_chooses_pinning_keeps_its_choice() -> None:
    used, ignored = compile_properties(config(ENABLE_CPU_PINNING="True", openvino_device="CPU"), CPU_2026)
    assert (used, ignored) == ({"ENABLE_CPU_PINNING": "True"}, {})
    assert without_pinning(used, CPU_2026) == {"ENABLE_CPU_PINNING": "True"}
    assert without_pinning({"CPU_BIND_THREAD": "NUMA"}, CPU_2022_3) == {"CPU_BIND_THREAD": "NUMA"}


def test_the_input_is_not_changed() -> None:
    used = {"INFERENCE_NUM_THREADS": "2"}
    without_pinning(used, CPU_2026)
    assert used == {"INFERENCE_NUM_THREADS": "2"}
