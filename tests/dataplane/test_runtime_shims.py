"""Every runtime the shipped classes name serves a zoo model in a real Triton, through its shim.

The zoo's MobileNet V2, exported by the real converters (``edgetenant.zoo.export``: OpenVINO's own
``convert_model`` for the IR, onnx2tf for TFLite), served by the OpenVINO and TFLite Python-backend
shims on this machine's CPU, the lab's stand-in for the NCS2 and the Coral, and checked against ONNX
Runtime on the zoo's ONNX. Tolerances, stated relative to the largest reference logit (about 8):

- OpenVINO IR, FP32 weights, ``INFERENCE_PRECISION_HINT=f32``: 1e-4 (measured: about 1e-5).
- TFLite float32 from onnx2tf: 1e-4 (measured: about 1e-5).

Both are far below what a wrong graph gives (a wrong layout or a dropped op moves logits by O(1)).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http.aio as triton_http
from dataplane_support import shim_spec

from edgetenant import zoo
from edgetenant.adapters import prometheus as prom
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.dataplane import local, openvino_model, repository
from edgetenant.errors import MetricsUnavailable, ModelLoadError
from edgetenant.profiling.loadgen import run_load
from edgetenant.tuning.loop import apply_setting, render_from_spec, target_for
from edgetenant.zoo import export

Run = Callable[[Coroutine[Any, Any, Any]], Any]
MODEL = "mobilenet_v2"
TOLERANCE = 1e-4  # x the largest reference logit (see the module docstring)


def reference_logits(images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(zoo.ensure_model(MODEL)), providers=["CPUExecutionProvider"])
    (logits,) = session.run([zoo.OUTPUT_NAME], {zoo.INPUT_NAME: images})
    return np.asarray(logits)


def images_for(model: str, batch: int = 2) -> np.ndarray:
    shape = zoo.model_info(model).input_shape
    return np.random.default_rng(7).standard_normal((batch, *shape), dtype=np.float32)


async def infer(triton: local.TritonProcess, name: str, images: np.ndarray) -> np.ndarray:
    async with triton_http.InferenceServerClient(triton.http_endpoint) as client:
        request = triton_http.InferInput(zoo.INPUT_NAME, list(images.shape), "FP32")
        request.set_data_from_numpy(images)
        response = await client.infer(name, [request])
    return np.asarray(response.as_numpy(zoo.OUTPUT_NAME))


def device_info(triton: local.TritonProcess, model: str) -> list[str]:
    """The ``edgetenant_shim_device_info`` series of ``model`` on Triton's metrics endpoint."""
    with urllib.request.urlopen(triton.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return [
        line
        for line in text.splitlines()
        if line.startswith(openvino_model.DEVICE_METRIC + "{") and f'model="{model}"' in line
    ]


def assert_close_to_reference(logits: np.ndarray, images: np.ndarray) -> None:
    expected = reference_logits(images)
    assert logits.shape == expected.shape == (len(images), zoo.CLASSES)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE * scale)


# -- OpenVINO: the NCS2's runtime, on the CPU device ----------------------------------------------


def test_openvino_ir_serves_the_onnx_runtime_logits_and_takes_a_live_instance_change(
    triton: local.TritonProcess, model_repository: Path, run: Run
) -> None:
    spec = shim_spec(
        "ov-mobilenet",
        format="openvino",
        max_batch_size=4,
        # Pinned: CPUs with BF16 units otherwise default to bf16, which this tolerance is not for.
        parameters=(("openvino_device", "CPU"), ("INFERENCE_PRECISION_HINT", "f32")),
    )
    repository.write_model(model_repository, spec, zoo.ensure_model(MODEL, format="openvino"))
    assert (model_repository / spec.name / "1" / "model.bin").is_file()
    images = images_for(MODEL)
    target = target_for(
        model=spec.name,
        endpoints=[triton.control_url],
        prometheus_url="http://127.0.0.1:9",  # not contacted: nothing here reads signals
        render_config=render_from_spec(spec),
    )

    async def scenario() -> tuple[dict[str, Any], np.ndarray, list[str], int, np.ndarray, list[str]]:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(spec.name)
            config = await admin.model_config(spec.name)
            logits = await infer(triton, spec.name, images)
            before = device_info(triton, spec.name)
            await apply_setting(target, 2, True)  # what a tuning tick sends: 2 instances, batching on
            count = int((await admin.model_config(spec.name))["instance_group"][0]["count"])
            after_change = await infer(triton, spec.name, images)
            after = device_info(triton, spec.name)
            await admin.unload_model(spec.name)
        return config, logits, before, count, after_change, after

    config, logits, before, count, after_change, after = run(scenario())
    assert [(t["name"], t["dims"]) for t in config["input"]] == [
        (zoo.INPUT_NAME, list(zoo.model_info(MODEL).input_shape))
    ]
    assert [(t["name"], t["dims"]) for t in config["output"]] == [(zoo.OUTPUT_NAME, [zoo.CLASSES])]
    assert_close_to_reference(logits, images)
    assert_close_to_reference(after_change, images)
    assert count == 2
    assert len(before) == 1 and len(after) == 2, (before, after)
    assert all('device="CPU"' in line and 'runtime="openvino ' in line for line in after), after
    log = triton.process.log_tail(400_000)
    assert re.search(r"edgetenant openvino shim: ov-mobilenet instance \S+ runs on CPU \(OpenVINO 20", log)


def test_openvino_names_the_devices_it_sees_when_the_stick_is_not_there(
    triton: local.TritonProcess, model_repository: Path, run: Run
) -> None:
    spec = shim_spec("ov-on-myriad", format="openvino", parameters=(("openvino_device", "MYRIAD"),))
    repository.write_model(model_repository, spec, zoo.ensure_model(MODEL, format="openvino"))

    async def load() -> None:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(spec.name)

    with pytest.raises(ModelLoadError, match=r"OpenVINO device 'MYRIAD' is not available .* sees \['CPU'"):
        run(load())


def stub_threads_allowed(model: str) -> dict[int, set[int]]:
    """For every thread of ``model``'s Python-backend stubs, the cores it may run on now."""
    allowed = {}
    for proc in Path("/proc").iterdir():
        try:
            if f"/{model}/" not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                continue
            for task in (proc / "task").iterdir():
                allowed[int(task.name)] = os.sched_getaffinity(int(task.name))
        except (OSError, ValueError):  # not a process, or it (or a thread) just ended
            continue
    return allowed


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning to one core shows only with two")
def test_openvino_instances_are_not_pinned_to_one_core(
    triton: local.TritonProcess, model_repository: Path, run: Run
) -> None:
    # Each instance is a stub process, and OpenVINO's CPU plugin pins the threads that run an
    # inference, from core 0 in every process: two instances of one thread then share core 0. The
    # pin holds only while an inference runs, so the stubs are looked at under load.
    spec = shim_spec(
        "ov-unpinned",
        format="openvino",
        max_batch_size=0,
        instance_count=2,
        parameters=(("openvino_device", "CPU"), ("INFERENCE_PRECISION_HINT", "f32")),
    )
    repository.write_model(model_repository, spec, zoo.ensure_model(MODEL, format="openvino"))
    cores = os.sched_getaffinity(triton.pid)

    async def scenario() -> tuple[list[dict[int, set[int]]], int]:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(spec.name)
            load = asyncio.create_task(run_load(triton.url, spec.name, concurrency=4, duration_s=3))
            samples = []
            while not load.done():
                samples.append(stub_threads_allowed(spec.name))
                await asyncio.sleep(0.05)
            result = await load
            await admin.unload_model(spec.name)
        return samples, result.requests

    samples, requests = run(scenario())
    assert requests > 0 and len(samples) > 10, (requests, len(samples))
    assert all(len(sample) >= 2 for sample in samples), samples[:3]  # both stubs' threads were seen
    pinned = {
        tid: sorted(allowed) for sample in samples for tid, allowed in sample.items() if allowed != cores
    }
    assert not pinned, f"stub threads held to fewer than Triton's cores {sorted(cores)}: {pinned}"
    log = triton.process.log_tail(400_000)
    assert re.search(r"ov-unpinned instance \S+ runs on CPU .*'ENABLE_CPU_PINNING': 'False'", log)


def test_the_shim_loads_openvino_without_its_telemetry(dataplane_env: local.DataplaneEnv) -> None:
    # NB: `import openvino` sends a usage event to Google Analytics unless told not to; the shim and
    # the zoo's converter must never load the module that does it.
    probe = (
        "import sys, openvino_model; openvino_model._core();"
        "assert sys.modules['openvino_telemetry'] is None, sys.modules['openvino_telemetry'];"
        "from openvino.tools.ovc import telemetry_utils, telemetry_stub;"
        "assert telemetry_utils.tm is telemetry_stub; print(openvino_model.openvino_version())"
    )
    shim_dir = Path(openvino_model.__file__).parent
    result = subprocess.run(
        [str(dataplane_env.python), "-c", probe],
        cwd=shim_dir,
        env=dataplane_env.process_env() | {"PYTHONPATH": str(shim_dir)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith("20")
    ov = export.import_openvino()
    from openvino.tools.ovc import telemetry_stub, telemetry_utils  # noqa: PLC0415

    assert ov is not None and telemetry_utils.tm is telemetry_stub


# -- TFLite: the Coral's runtime, on the CPU (no EdgeTPU here) ------------------------------------


@pytest.fixture(scope="module")
def tflite_zoo_model() -> Path:
    try:
        return zoo.ensure_model(MODEL, format="tflite")
    except export.ConverterUnavailable as exc:
        pytest.skip(f"no TFLite converter on this machine: {exc}")


def test_tflite_from_the_zoo_serves_the_onnx_runtime_logits_on_cpu(
    triton: local.TritonProcess, model_repository: Path, tflite_zoo_model: Path, run: Run
) -> None:
    spec = shim_spec("tflite-mobilenet", format="tflite", max_batch_size=4)
    repository.write_model(model_repository, spec, tflite_zoo_model)
    images = images_for(MODEL)

    async def scenario() -> tuple[dict[str, Any], np.ndarray, list[str]]:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(spec.name)
            config = await admin.model_config(spec.name)
            logits = await infer(triton, spec.name, images)
            info = device_info(triton, spec.name)
            await admin.unload_model(spec.name)
        return config, logits, info

    config, logits, info = run(scenario())
    # onnx2tf kept the zoo's NCHW input (-kat): every format takes the same tensor.
    assert [(t["name"], t["dims"]) for t in config["input"]] == [
        (zoo.INPUT_NAME, list(zoo.model_info(MODEL).input_shape))
    ]
    assert_close_to_reference(logits, images)
    assert len(info) == 1 and 'device="CPU"' in info[0] and 'runtime="tflite-runtime ' in info[0], info
    log = triton.process.log_tail(400_000)
    assert "tflite-mobilenet: EdgeTPU not available: libedgetpu.so.1 did not load" in log


# -- What the operator reads: the device a stand-in really runs on ---------------------------------


def test_the_signals_say_what_the_runtime_runs_on(
    triton: local.TritonProcess, prometheus: local.PrometheusProcess, model_repository: Path, run: Run
) -> None:
    """The tuning loop's reading (and so `status.observed.runsOn`) names the device the shim reports, so
    the NCS2 stand-in shows "CPU", never the stick its class plays."""
    spec = shim_spec("ov-runs-on", format="openvino", parameters=(("openvino_device", "CPU"),))
    repository.write_model(model_repository, spec, zoo.ensure_model(MODEL, format="openvino"))
    images = images_for(MODEL, batch=1)
    client = prom.connect(prometheus.url)
    query = prom.SignalQuery(model=spec.name, window_s=3.0, read_memory=False)

    async def scenario() -> str | None:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(spec.name)
            try:
                for _ in range(30):  # until Prometheus has scraped both series (every second)
                    await infer(triton, spec.name, images)
                    with contextlib.suppress(MetricsUnavailable):
                        runs_on = (await prom.read_signals(client, query)).runs_on
                        if runs_on:
                            return runs_on
                    await asyncio.sleep(0.5)
                return None
            finally:
                await admin.unload_model(spec.name)

    runs_on = run(scenario())
    assert runs_on is not None and re.fullmatch(r"CPU \(openvino 20\d\d\.\S+\)", runs_on), runs_on
