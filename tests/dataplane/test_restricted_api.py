"""Triton's restricted APIs as the operator renders them, against the real tritonserver.

One Triton (module fixture) started with exactly the flags `render.access` puts into a tenant's pod,
`$(EDGETENANT_ADMIN_KEY)` expanded as the kubelet does. A client without the key (another tenant, a
compromised client of this one) can infer, check health and read metadata, and is refused on load,
unload, the repository index, log and trace settings and shared-memory registration, over HTTP and
gRPC; the operator's path (TritonControl and the tuning loop's apply, with the key) changes the live
instance count as before. A refusal is `AccessDenied`, never a `ModelLoadError`: the tuning loop must
not learn a memory ceiling from a missing key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc.aio as triton_grpc
import tritonclient.http.aio as triton_http
from dataplane_support import shim_spec
from tritonclient.utils import InferenceServerException

from edgetenant.adapters.triton import AccessDenied, TritonAdapter, TritonClient, TritonControl, load_model_at
from edgetenant.dataplane import local, repository
from edgetenant.profiling.loadgen import run_load
from edgetenant.render.access import ADMIN_KEY_ENV, GRPC_ADMIN_HEADER, restricted_api_args
from edgetenant.render.triton import TritonModelSpec
from edgetenant.tuning.loop import apply_setting, render_from_spec, target_for

Run = Callable[[Coroutine[Any, Any, Any]], Any]
KEY = "b4c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1"
MODEL = "guarded"


@pytest.fixture(scope="module")
def spec() -> TritonModelSpec:
    return shim_spec(MODEL, instance_count=1)


@pytest.fixture(scope="module")
def guarded(
    dataplane_env: local.DataplaneEnv,
    zoo_models: dict[str, Path],
    spec: TritonModelSpec,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[local.TritonProcess]:
    models = tmp_path_factory.mktemp("restricted") / "models"
    models.mkdir()
    repository.write_model(models, spec, zoo_models["mobilenet_v2"])
    # What the kubelet does with the rendered args: $(VAR) from the container's env (the Secret).
    args = [a.replace(f"$({ADMIN_KEY_ENV})", KEY) for a in restricted_api_args({})]
    assert len(args) == 2
    process = local.start_triton(
        models,
        log_path=models.parent / "tritonserver.log",
        dataplane=dataplane_env,
        load_models=[MODEL],
        extra_args=args,
    )
    try:
        yield process
    finally:
        process.stop()


async def refused(call: Coroutine[Any, Any, Any]) -> str:
    """Triton's refusal of a call, as its client reports it (fails the test when it is answered)."""
    try:
        await call
    except InferenceServerException as error:
        return f"{error.status()}: {error.message()}"
    raise AssertionError("answered without the key")


def test_a_client_without_the_key_infers_but_cannot_control_the_server(
    guarded: local.TritonProcess, run: Run
) -> None:
    async def scenario() -> tuple[int, list[str]]:
        result = await run_load(guarded.url, MODEL, concurrency=2, requests=10)
        assert result.errors == 0, result.error_samples
        http = triton_http.InferenceServerClient(guarded.http_endpoint)
        grpc = triton_grpc.InferenceServerClient(guarded.grpc_url)
        try:
            assert await http.is_server_ready() and await grpc.is_server_ready()
            assert await http.is_model_ready(MODEL)
            assert (await http.get_model_metadata(MODEL))["name"] == MODEL
            assert (await grpc.get_model_metadata(MODEL, as_json=True))["name"] == MODEL
            refusals = [
                await refused(http.load_model(MODEL, config='{"instance_group":[{"count":4}]}')),
                await refused(http.unload_model(MODEL)),
                await refused(http.get_model_repository_index()),
                await refused(http.get_log_settings()),
                await refused(http.update_log_settings({"log_verbose_level": 1})),
                await refused(http.get_trace_settings()),
                await refused(http.get_system_shared_memory_status()),
                await refused(grpc.load_model(MODEL)),
                await refused(grpc.unload_model(MODEL)),
                await refused(grpc.get_model_repository_index()),
                await refused(grpc.get_log_settings()),
                await refused(grpc.get_system_shared_memory_status()),
                # The wrong key is no key.
                await refused(grpc.unload_model(MODEL, headers={GRPC_ADMIN_HEADER: KEY[::-1]})),
            ]
            # Still loaded, still one instance: nothing the refused calls asked for happened.
            assert await http.is_model_ready(MODEL)
            config = await http.get_model_config(MODEL)
            return int(config["instance_group"][0]["count"]), refusals
        finally:
            await http.close()
            await grpc.close()

    count, refusals = run(scenario())
    assert count == 1
    for refusal in refusals:
        assert "is restricted, expecting header" in refusal, refusal


def test_the_operators_path_with_the_key_changes_instances_live(
    guarded: local.TritonProcess, spec: TritonModelSpec, run: Run
) -> None:
    async def count() -> int:
        async with TritonAdapter(guarded.url) as triton:  # model-config stays open: resync reads it
            return int((await triton.model_config(MODEL))["instance_group"][0]["count"])

    async def keyed_load(url: str, model: str, config: str) -> None:
        await load_model_at(url, model, config=config, admin_key=KEY)

    # The tuning loop's apply, as the operator's tuning driver wires it (gRPC, with the key).
    target = target_for(
        model=MODEL,
        endpoints=[guarded.control_url],
        prometheus_url="http://127.0.0.1:9",  # not contacted: nothing here reads signals
        render_config=render_from_spec(spec),
        load_model=keyed_load,
    )

    async def scenario() -> list[int]:
        load = asyncio.create_task(run_load(guarded.url, MODEL, concurrency=2, duration_s=6.0))
        seen = []
        for instances in (3, 2):
            await asyncio.sleep(1.0)
            await apply_setting(target, instances, False)
            seen.append(await count())
        async with TritonControl(guarded.control_url, admin_key=KEY) as control:
            await control.apply_spec(spec)  # back to the spec's one instance
        seen.append(await count())
        index = await TritonAdapter(guarded.url, admin_key=KEY).repository_index()
        assert [(m.name, m.state) for m in index] == [(MODEL, "READY")]
        result = await load
        assert result.errors == 0, result.error_samples
        return seen

    assert run(scenario()) == [3, 2, 1]


def test_a_refusal_is_access_denied_not_a_failed_load(guarded: local.TritonProcess, run: Run) -> None:
    """A ModelLoadError would make the tuning loop back off and record a ceiling (a config Triton
    cannot run); a missing or stale key says nothing about the config."""
    config = '{"instance_group":[{"count":2,"kind":"KIND_CPU"}]}'
    for url in (guarded.control_url, guarded.url):
        for key in (None, "not-the-key"):
            with pytest.raises(AccessDenied, match="admin key"):
                run(load_model_at(url, MODEL, config=config, admin_key=key))
    with pytest.raises(AccessDenied):
        run(TritonClient(admin_key="stale").model_ready(guarded.url, "absent-model"))
