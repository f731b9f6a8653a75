"""Triton adapter: KServe v2 + Triton's model-control and statistics APIs, async.

Wraps ``tritonclient.http.aio`` (``TritonAdapter``) and, for model control while a model
serves traffic, ``tritonclient.grpc.aio`` (``TritonControl``). Foreign errors become the
project's own: a refused load is ``ModelLoadError`` carrying Triton's message; an unreachable
server, a timeout or any other server-side refusal is ``TransientError`` (worth retrying later).

Instance-count changes are live: ``load_model(name, config=...)`` on a loaded model makes
Triton build the new instances and swap them in while the old ones keep serving. Send such
changes through ``TritonControl`` (gRPC), never over HTTP: Triton 2.51's HTTP frontend runs a
load on the libevhtp worker thread that received it, and that thread answers none of its other
connections (inference included) until the load returns — seconds for a scale-up, and for a
scale-down as long as the removed instance takes to drain (under saturating load without
dynamic batching: minutes). The gRPC frontend runs each load on a thread of its own. See
docs/dataplane.md, "Live instance changes".

The operator's Tritons answer model control (load, unload, the repository index), logging, tracing
and shared memory only to a request that carries the tenant's admin key (``admin_key``: sent as the
header Triton's restricted-API options name, on every call of that client). A refusal for a missing or
wrong key is ``AccessDenied``, never a ``ModelLoadError``: it says nothing about the model's config.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import tritonclient.grpc.aio as triton_grpc
import tritonclient.http.aio as triton_http
from tritonclient.utils import InferenceServerException

from edgetenant.errors import ModelLoadError, PermanentError, TransientError
from edgetenant.render.access import ADMIN_HEADER, GRPC_ADMIN_HEADER
from edgetenant.render.triton import TritonModelSpec, model_config_json


class AccessDenied(PermanentError):
    """Triton refused a restricted API: the request had no admin key, or the wrong one."""


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str  # KServe v2 name: FP32, INT64, ...
    shape: tuple[int, ...]  # -1 = variable (the batch axis when the model batches)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


@dataclass(frozen=True, slots=True)
class ModelStatistics:
    """Cumulative counters since the model was loaded (summed over its versions)."""

    name: str
    inference_count: int  # images/samples inferred (a batch of 4 counts 4)
    execution_count: int  # model executions (a batch of 4 counts 1)
    success_count: int
    fail_count: int
    success_ns: int
    queue_ns: int
    compute_infer_ns: int


@dataclass(frozen=True, slots=True)
class RepositoryModel:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING, or "" when never loaded
    reason: str


GRPC_SCHEME = "grpc://"
# gRPC status codes (as tritonclient reports them) that say "not now", not "this config is bad".
_TRANSIENT_GRPC_STATUSES = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}
)
# How Triton 2.51 words a refusal of a restricted API: "This API is restricted, expecting header
# '<key>'" (HTTP 403) and "This protocol is restricted, expecting header '...'" (gRPC UNAVAILABLE).
_RESTRICTED_MARKER = "is restricted, expecting header"


def _strip_scheme(url: str) -> str:
    for scheme in ("http://", "https://", GRPC_SCHEME):
        if url.startswith(scheme):
            return url[len(scheme) :].rstrip("/")
    return url.rstrip("/")


@asynccontextmanager
async def _translated(action: str, url: str, *, load: bool = False) -> AsyncIterator[None]:
    try:
        yield
    except InferenceServerException as exc:
        message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
        if _RESTRICTED_MARKER in (message or ""):
            raise AccessDenied(
                f"{action}: Triton at {url} refused it: {message} (is the tenant's admin key current?)"
            ) from exc
        if exc.status() in _TRANSIENT_GRPC_STATUSES:
            raise TransientError(
                f"{action}: Triton at {url} did not answer ({exc.status()}): {message}"
            ) from exc
        if load:
            raise ModelLoadError(f"{action} on {url}: {message}") from exc
        raise TransientError(f"{action} on {url}: {message}") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise TransientError(f"{action}: Triton at {url} unreachable: {exc or type(exc).__name__}") from exc


class _Connection:
    """Owns one tritonclient client: ``async with``, or ``close()``."""

    _client: triton_http.InferenceServerClient | triton_grpc.InferenceServerClient

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class TritonAdapter(_Connection):
    """One Triton server (one pod). Use as ``async with TritonAdapter(url) as triton:``."""

    def __init__(self, url: str, *, timeout_s: float = 120.0, admin_key: str | None = None) -> None:
        self.url = url if url.startswith(("http://", "https://")) else f"http://{url}"
        self._client = triton_http.InferenceServerClient(_strip_scheme(url), conn_timeout=timeout_s)
        # Sent on restricted calls only: a key has no business in an inference request's headers.
        self._admin = {ADMIN_HEADER: admin_key} if admin_key else None

    async def server_ready(self) -> bool:
        """False while the server starts or drains; TransientError when it cannot be reached."""
        async with _translated("server ready", self.url):
            return bool(await self._client.is_server_ready())

    async def model_ready(self, name: str) -> bool:
        async with _translated(f"model {name!r} ready", self.url):
            return bool(await self._client.is_model_ready(name))

    async def load_model(self, name: str, *, config: str | None = None) -> None:
        """Load (or reload with ``config``, Triton's JSON model config). ModelLoadError on refusal.

        Over HTTP: fine before traffic arrives; for live changes use ``TritonControl``.
        """
        async with _translated(f"load model {name!r}", self.url, load=True):
            await self._client.load_model(name, config=config, headers=self._admin)

    async def apply_spec(self, spec: TritonModelSpec) -> None:
        """Load the model with the config rendered from ``spec`` (instance count changes in place)."""
        await self.load_model(spec.name, config=model_config_json(spec))

    async def unload_model(self, name: str) -> None:
        async with _translated(f"unload model {name!r}", self.url):
            await self._client.unload_model(name, headers=self._admin)

    async def model_config(self, name: str) -> dict[str, Any]:
        async with _translated(f"config of {name!r}", self.url):
            config: dict[str, Any] = await self._client.get_model_config(name)
            return config

    async def model_metadata(self, name: str) -> ModelMetadata:
        async with _translated(f"metadata of {name!r}", self.url):
            raw = await self._client.get_model_metadata(name)

        def tensors(key: str) -> tuple[TensorMetadata, ...]:
            return tuple(
                TensorMetadata(t["name"], t["datatype"], tuple(int(d) for d in t["shape"]))
                for t in raw.get(key, [])
            )

        return ModelMetadata(
            name=raw["name"],
            versions=tuple(raw.get("versions", ())),
            platform=raw.get("platform", ""),
            inputs=tensors("inputs"),
            outputs=tensors("outputs"),
        )

    async def model_statistics(self, name: str) -> ModelStatistics:
        async with _translated(f"statistics of {name!r}", self.url):
            raw = await self._client.get_inference_statistics(name)
        totals = dict.fromkeys(
            ("inference", "execution", "success", "fail", "success_ns", "queue", "infer"), 0
        )
        for stats in raw.get("model_stats", []):
            inference = stats.get("inference_stats", {})
            totals["inference"] += int(stats.get("inference_count", 0))
            totals["execution"] += int(stats.get("execution_count", 0))
            totals["success"] += int(inference.get("success", {}).get("count", 0))
            totals["fail"] += int(inference.get("fail", {}).get("count", 0))
            totals["success_ns"] += int(inference.get("success", {}).get("ns", 0))
            totals["queue"] += int(inference.get("queue", {}).get("ns", 0))
            totals["infer"] += int(inference.get("compute_infer", {}).get("ns", 0))
        return ModelStatistics(
            name=name,
            inference_count=totals["inference"],
            execution_count=totals["execution"],
            success_count=totals["success"],
            fail_count=totals["fail"],
            success_ns=totals["success_ns"],
            queue_ns=totals["queue"],
            compute_infer_ns=totals["infer"],
        )

    async def repository_index(self) -> list[RepositoryModel]:
        async with _translated("repository index", self.url):
            raw = await self._client.get_model_repository_index(headers=self._admin)
        return [
            RepositoryModel(
                name=entry["name"],
                version=str(entry.get("version", "")),
                state=entry.get("state", ""),
                reason=entry.get("reason", ""),
            )
            for entry in raw
        ]


class TritonControl(_Connection):
    """Model control over Triton's gRPC endpoint (``grpc://host:port``): loads that never stall
    inference. Use as ``async with TritonControl(url) as control:``.

    A load returns when Triton has finished it. Triton starts a new instance and stops a removed
    one with payloads that it serves only when none of the model's requests is waiting, so under
    a load above what the instances serve, without dynamic batching, a change can take minutes;
    ``timeout_s`` bounds the wait (Triton goes on with the change, and the caller sees
    ``TransientError``).
    """

    def __init__(self, url: str, *, timeout_s: float = 300.0, admin_key: str | None = None) -> None:
        if not url.startswith(GRPC_SCHEME):
            raise ValueError(f"{url!r}: a Triton gRPC endpoint is grpc://host:port")
        self.url = url
        self.timeout_s = timeout_s
        self._client = triton_grpc.InferenceServerClient(_strip_scheme(url))
        self._admin = {GRPC_ADMIN_HEADER: admin_key} if admin_key else None

    async def load_model(self, name: str, *, config: str | None = None) -> None:
        """Load (or change live with ``config``). ModelLoadError when Triton refuses the config."""
        async with _translated(f"load model {name!r}", self.url, load=True):
            await self._client.load_model(
                name, config=config, headers=self._admin, client_timeout=self.timeout_s
            )

    async def apply_spec(self, spec: TritonModelSpec) -> None:
        await self.load_model(spec.name, config=model_config_json(spec))

    async def unload_model(self, name: str) -> None:
        async with _translated(f"unload model {name!r}", self.url):
            await self._client.unload_model(name, headers=self._admin, client_timeout=self.timeout_s)


async def load_model_at(
    url: str, name: str, *, config: str | None = None, admin_key: str | None = None
) -> None:
    """Load ``name`` on the Triton at ``url``: ``grpc://host:port`` (live changes: never stalls
    inference) or ``http://host:port`` (stalls the HTTP connections sharing its worker thread)."""
    if url.startswith(GRPC_SCHEME):
        async with TritonControl(url, admin_key=admin_key) as control:
            await control.load_model(name, config=config)
    else:
        async with TritonAdapter(url, admin_key=admin_key) as triton:
            await triton.load_model(name, config=config)


class TritonClient:
    """Talks to many Triton servers (one per pod), each call naming its URL.

    Stateless: every call opens and closes its own connection, so a pod that moved or died
    leaves nothing behind. The operator calls each pod by IP, never the Service.
    """

    def __init__(self, *, timeout_s: float = 30.0, admin_key: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.admin_key = admin_key

    def _at(self, url: str) -> TritonAdapter:
        return TritonAdapter(url, timeout_s=self.timeout_s, admin_key=self.admin_key)

    async def model_ready(self, url: str, model: str) -> tuple[bool, str]:
        """(ready, why not): the reason is Triton's own (e.g. a failed load's message)."""
        async with self._at(url) as triton:
            if await triton.model_ready(model):
                return True, ""
            for entry in await triton.repository_index():
                if entry.name == model:
                    state = entry.state or "not loaded"
                    return False, f"{state}: {entry.reason}" if entry.reason else state
            return False, f"model {model!r} is not in the repository"

    async def load_model(self, url: str, model: str, *, config: str | None = None) -> None:
        async with self._at(url) as triton:
            await triton.load_model(model, config=config)

    async def apply_spec(self, url: str, spec: TritonModelSpec) -> None:
        async with self._at(url) as triton:
            await triton.apply_spec(spec)

    async def unload_model(self, url: str, model: str) -> None:
        async with self._at(url) as triton:
            await triton.unload_model(model)

    async def model_config(self, url: str, model: str) -> dict[str, Any]:
        async with self._at(url) as triton:
            return await triton.model_config(model)

    async def model_statistics(self, url: str, model: str) -> ModelStatistics:
        async with self._at(url) as triton:
            return await triton.model_statistics(model)


def describe_config(config: dict[str, Any]) -> str:
    """One line for logs: instance groups and batching of a model config."""
    groups = ", ".join(f"{g.get('count', 1)}x{g.get('kind', '?')}" for g in config.get("instance_group", []))
    batching = "dynamic batching" if "dynamic_batching" in config else "no batching"
    return (
        f"{config.get('name')}: {groups}; max batch {config.get('max_batch_size', 0)}; {batching}; "
        + json.dumps(config.get("parameters", {}), sort_keys=True)
    )
