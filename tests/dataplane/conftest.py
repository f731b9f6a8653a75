"""Session fixtures for the data-plane tier: a real tritonserver, a real Prometheus, the zoo.

Reusable by any data-plane test (the tuning tests use them too):

- ``dataplane_env``: the prepared data-plane venv (``make dataplane-env``).
- ``zoo_models``: zoo name -> cached ONNX path.
- ``model_repository``: an empty Triton model repository in a session tmp dir.
- ``triton``: a ``TritonProcess`` on 127.0.0.1 serving ``model_repository`` (explicit model control).
- ``prometheus``: a ``PrometheusProcess`` scraping ``triton``'s metrics every second.
- ``serve``: ``serve(name, zoo_model, **spec_fields) -> TritonModelSpec`` writes the model
  (through the rendered config, on the Python-backend shim) and loads it.
- ``run``: runs a coroutine to completion (the suite has no asyncio plugin).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dataplane_support import SCRAPE_INTERVAL_S, run_sync, shim_spec

from edgetenant import zoo
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.dataplane import local, repository
from edgetenant.render.triton import TritonModelSpec

T = TypeVar("T")


@pytest.fixture(scope="session")
def run() -> Callable[[Coroutine[Any, Any, T]], T]:
    return run_sync


@pytest.fixture(scope="session")
def dataplane_env() -> local.DataplaneEnv:
    return local.find_dataplane_env()


@pytest.fixture(scope="session")
def zoo_models() -> dict[str, Path]:
    return {name: zoo.ensure_model(name) for name in zoo.ZOO}


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("triton") / "models"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def triton(dataplane_env: local.DataplaneEnv, model_repository: Path) -> Iterator[local.TritonProcess]:
    process = local.start_triton(
        model_repository, log_path=model_repository.parent / "tritonserver.log", dataplane=dataplane_env
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def prometheus(
    triton: local.TritonProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[local.PrometheusProcess]:
    config = local.render_static_scrape_config([triton.metrics_target], interval=f"{SCRAPE_INTERVAL_S:g}s")
    process = local.start_prometheus(config, data_dir=tmp_path_factory.mktemp("prometheus"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def serve(
    triton: local.TritonProcess, model_repository: Path, zoo_models: dict[str, Path]
) -> Callable[..., TritonModelSpec]:
    def _serve(name: str, zoo_model: str, **fields: Any) -> TritonModelSpec:
        spec = shim_spec(name, **fields)
        repository.write_model(model_repository, spec, zoo_models[zoo_model])

        async def load() -> None:
            async with TritonAdapter(triton.url) as client:
                await client.load_model(name)

        run_sync(load())
        return spec

    return _serve
