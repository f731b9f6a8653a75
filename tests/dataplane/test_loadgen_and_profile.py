"""The load generator's bounds and modes, and `edgetenant profile` end to end on a real Triton."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import yaml
from dataplane_support import shim_spec

from edgetenant.api.models import ModelProfile
from edgetenant.dataplane import repository
from edgetenant.dataplane.local import TritonProcess
from edgetenant.profiling import cli as profile_cli
from edgetenant.profiling import loadgen
from edgetenant.profiling.loadgen import run_load
from edgetenant.profiling.sweep import sweep
from edgetenant.render.triton import TritonModelSpec

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(scope="module")
def light(serve: Callable[..., TritonModelSpec]) -> TritonModelSpec:
    return serve("load-mobilenet", "mobilenet_v2", instance_count=2)


def test_a_request_bound_is_exact(light: TritonModelSpec, triton: TritonProcess, run: Run) -> None:
    result = run(run_load(triton.url, light.name, concurrency=3, requests=10))
    assert (result.requests, result.errors) == (10, 0)
    assert result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms


def test_shared_memory_inputs_are_served_and_released(
    light: TritonModelSpec, triton: TritonProcess, run: Run
) -> None:
    result = run(run_load(triton.url, light.name, concurrency=3, requests=12, shared_memory=True))
    assert (result.requests, result.errors) == (12, 0)
    # The regions are unregistered from Triton and unlinked from /dev/shm when the run ends.
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        f"{triton.url}/v2/systemsharedmemory/status", timeout=10
    ) as response:
        assert json.loads(response.read()) == []
    assert not list(Path("/dev/shm").glob("edgetenant-load-*"))


def test_open_loop_sends_about_the_offered_rate(
    light: TritonModelSpec, triton: TritonProcess, run: Run
) -> None:
    # 4 req/s for 5 s is well under what two instances serve, so every arrival is answered;
    # the seeded Poisson schedule puts 20 +/- a few arrivals in the window.
    result = run(run_load(triton.url, light.name, rate=4.0, duration_s=5.0, seed=1))
    assert result.mode == "open"
    assert result.errors == 0
    assert 10 <= result.requests <= 30


def test_an_unknown_model_is_an_error_before_any_load(triton: TritonProcess, run: Run) -> None:
    with pytest.raises(Exception, match="no-such-model"):
        run(run_load(triton.url, "no-such-model", concurrency=1, requests=1))


def test_a_sweep_of_a_model_that_cannot_load_records_why(
    triton: TritonProcess, model_repository: Path, tmp_path: Path, run: Run
) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    spec = shim_spec("never-loads", max_batch_size=0)
    repository.write_model(model_repository, spec, garbage)
    result = run(sweep(triton.url, spec, max_instances=2, duration_s=1.0, warmup_s=0.0))
    assert result.points == ()
    assert result.ceiling == 1, "the lowest count that failed"
    assert "loading 1 instances failed" in result.ceiling_reason


def test_profile_cli_writes_a_valid_model_profile_and_a_plot(tmp_path: Path) -> None:
    code = profile_cli.main(
        ["--zoo", "efficientnet_b0", "--max-instances", "2", "--duration", "1.5", "--warmup", "0.5",
         "--accelerator-class", "x86-cpu", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    body = yaml.safe_load((tmp_path / "efficientnet-b0-x86-cpu-profile.yaml").read_text())
    profile = ModelProfile.model_validate(body)
    assert profile.spec.model == "efficientnet-b0"
    assert profile.spec.accelerator_class == "x86-cpu"
    assert [p.concurrency for p in profile.spec.points] == [1, 2]
    assert all(
        p.throughput > 0 and p.memory_mib is not None and p.memory_mib > 0 for p in profile.spec.points
    )
    assert (tmp_path / "efficientnet-b0-x86-cpu-profile.png").stat().st_size > 10_000


def test_load_cli_prints_json(
    light: TritonModelSpec, triton: TritonProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code = loadgen.main(
        ["--url", triton.url, "--model", light.name, "--concurrency", "2", "--requests", "6", "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (report["requests"], report["errors"], report["mode"]) == (6, 0, "closed")
