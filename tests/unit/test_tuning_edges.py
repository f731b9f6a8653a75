"""The loop's edges without servers: the PromQL it sends, the configs it loads, and how a tick
reacts to refused loads, unreachable pods and missing metrics (fakes stand in for the servers;
tests/dataplane runs the same against real ones)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from edgetenant.adapters.prometheus import QUERIES, SignalQuery
from edgetenant.errors import MetricsUnavailable, ModelLoadError, TransientError
from edgetenant.render.triton import DynamicBatching, TritonModelSpec
from edgetenant.tuning import Action, Signals, TunerConfig, initial_state
from edgetenant.tuning.loop import (
    TuningTarget,
    render_from_config,
    render_from_spec,
    tune_tick,
    tune_tick_detailed,
)


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


class FakeTritons:
    """Records every load per endpoint; refuses configs as told (a real ModelLoadError path)."""

    def __init__(self, refuse_from: int | None = None, unreachable: set[str] | None = None) -> None:
        self.refuse_from = refuse_from
        self.unreachable = unreachable or set()
        self.loads: list[tuple[str, int]] = []

    async def load(self, endpoint: str, model: str, config_json: str) -> None:
        count = json.loads(config_json)["instance_group"][0]["count"]
        if endpoint in self.unreachable:
            raise TransientError(f"{endpoint} unreachable")
        if self.refuse_from is not None and count >= self.refuse_from:
            raise ModelLoadError(f"{model}: out of memory for {count} instances")
        self.loads.append((endpoint, count))


def make_target(tritons: FakeTritons, signals: Signals | None, endpoints: tuple[str, ...]) -> TuningTarget:
    async def read(query: SignalQuery, at: datetime) -> Signals:
        if signals is None:
            raise MetricsUnavailable("Prometheus at http://127.0.0.1:9 did not answer")
        return signals.model_copy(update={"at": at})

    return TuningTarget(
        model="m",
        endpoints=endpoints,
        render_config=render_from_spec(TritonModelSpec(name="m")),
        query=SignalQuery(model="m", window_s=5.0),
        load_model=tritons.load,
        read_signals=read,
    )


BUSY = Signals(
    at=datetime(2025, 1, 1, tzinfo=UTC), window_s=5.0, throughput=50.0, queue_ms=100.0, compute_ms=40.0
)
NOW = datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
PODS = ("http://127.0.0.1:1", "http://127.0.0.1:2")


def test_a_change_goes_to_every_pod() -> None:
    tritons = FakeTritons()
    state = initial_state(TunerConfig(initial=2, max=4))
    decision = asyncio.run(tune_tick(state, make_target(tritons, BUSY, PODS), now=NOW))
    assert decision.action is Action.SCALE_UP
    assert tritons.loads == [(PODS[0], 3), (PODS[1], 3)]
    assert decision.state.last_change_at == NOW


def test_a_refused_load_backs_off_everywhere_and_records_the_ceiling() -> None:
    tritons = FakeTritons(refuse_from=3)
    state = initial_state(TunerConfig(initial=2, max=4))
    result = asyncio.run(tune_tick_detailed(state, make_target(tritons, BUSY, PODS), now=NOW))
    assert result.decision.action is Action.BACK_OFF
    assert result.decision.target == 2
    assert result.decision.state.ceiling == 3
    assert "out of memory" in result.decision.reason
    assert tritons.loads == [(PODS[0], 2), (PODS[1], 2)]  # every pod back on the old config
    assert len(result.errors) == 2


def test_an_unreachable_pod_holds_without_learning_a_ceiling() -> None:
    tritons = FakeTritons(unreachable={PODS[1]})
    state = initial_state(TunerConfig(initial=2, max=4))
    decision = asyncio.run(tune_tick(state, make_target(tritons, BUSY, PODS), now=NOW))
    assert decision.action is Action.HOLD
    assert decision.target == 2
    assert decision.state.current == 2
    assert decision.state.ceiling is None
    assert "could not apply" in decision.reason


def test_unavailable_metrics_hold_and_say_why() -> None:
    tritons = FakeTritons()
    state = initial_state(TunerConfig(initial=3, max=4))
    decision = asyncio.run(tune_tick(state, make_target(tritons, None, PODS), now=NOW))
    assert decision.action is Action.HOLD
    assert not decision.metrics_available
    assert "did not answer" in decision.reason
    assert tritons.loads == []


def test_tune_command_line_parses_the_documented_options() -> None:
    from edgetenant.tuning.cli import build_parser  # noqa: PLC0415

    args = build_parser().parse_args(
        [
            "--triton", "http://127.0.0.1:8000", "--triton", "http://127.0.0.1:8001",
            "--prometheus", "http://127.0.0.1:9090", "--model", "resnet18",
            "--interval", "5", "--min", "1", "--max", "4", "--slo-p95-ms", "200",
            "--max-intervals", "10", "--label", "namespace=shop",
        ]
    )  # fmt: skip
    assert args.triton == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    assert args.max == 4
    assert args.slo_p95_ms == 200.0
    assert args.max_intervals == 10
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "m", "--prometheus", "p", "--triton", "t", "--duration", "5",
                                   "--max-intervals", "3"])  # fmt: skip
