"""The pure parts of the loop's edges: the PromQL it sends and the configs it loads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgetenant.adapters.prometheus import QUERIES, SignalQuery
from edgetenant.render.triton import DynamicBatching, TritonModelSpec
from edgetenant.tuning.loop import render_from_config, render_from_spec


def test_every_query_selects_the_model_and_the_tenants_pods() -> None:
    query = SignalQuery(
        model="resnet50",
        labels={"namespace": "shop"},
        label_regexes={"pod": "shop-resnet-[a-z0-9]+"},
        window_s=12.5,
    )
    promql = query.promql()
    assert set(QUERIES) <= set(promql)
    selector = 'model="resnet50",namespace="shop",pod=~"shop-resnet-[a-z0-9]+"'
    for name in QUERIES:
        assert selector in promql[name], name
    assert "[12500ms]" in promql["throughput"]
    assert promql["throughput"] == f"sum(rate(nv_inference_count{{{selector}}}[12500ms]))"
    assert 'quantile="0.95"' in promql["p95_us"]
    # Memory is per device, so it is selected by the pods only.
    assert (
        promql["memory_bytes"]
        == 'sum(nv_gpu_memory_used_bytes{namespace="shop",pod=~"shop-resnet-[a-z0-9]+"})'
    )


def test_label_values_are_escaped_and_label_names_checked() -> None:
    query = SignalQuery(model='we"ird\\name')
    assert query.selector() == 'model="we\\"ird\\\\name"'
    assert "memory_bytes" not in query.promql()  # no pod labels: no device to ask about
    with pytest.raises(ValueError, match="label name"):
        SignalQuery(model="m", labels={"bad-name": "x"}).selector()


def test_render_from_spec_changes_only_instances_and_batching() -> None:
    spec = TritonModelSpec(name="m", max_batch_size=8, instance_count=1, threads_per_instance=1)
    render = render_from_spec(spec)
    three = json.loads(render(3, False))
    assert three["instance_group"] == [{"count": 3, "kind": "KIND_CPU"}]
    assert "dynamic_batching" not in three
    assert three["parameters"]["intra_op_thread_count"] == {"string_value": "1"}
    assert json.loads(render(2, True))["dynamic_batching"] == {}
    fixed = render_from_spec(
        TritonModelSpec(
            name="m",
            max_batch_size=8,
            dynamic_batching=DynamicBatching(max_queue_delay_microseconds=500, preferred_batch_sizes=(4,)),
        )
    )
    assert json.loads(fixed(1, True))["dynamic_batching"] == {
        "max_queue_delay_microseconds": 500,
        "preferred_batch_size": [4],
    }


def test_render_from_config_keeps_everything_else_of_a_live_config() -> None:
    live: dict[str, Any] = {
        "name": "m",
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3, 224, 224]}],
        "instance_group": [{"name": "m_0", "kind": "KIND_GPU", "count": 1, "gpus": [0]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 100},
    }
    render = render_from_config(live)
    out = json.loads(render(4, False))
    assert out["instance_group"] == [{"name": "m_0", "kind": "KIND_GPU", "count": 4, "gpus": [0]}]
    assert "dynamic_batching" not in out
    assert out["input"] == live["input"]
    assert json.loads(render(4, True))["dynamic_batching"] == {"max_queue_delay_microseconds": 100}
    assert live["instance_group"][0]["count"] == 1  # the caller's dict is untouched
