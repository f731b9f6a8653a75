"""The Kubernetes edge: server-side apply, status patches, Events, the leader Lease.

The `kubernetes` client is synchronous, so every call runs in a worker thread and never blocks kopf's
event loop, and every call has a timeout, so a hung API server cannot hold a pass for ever. Foreign
errors become the project's own: ConflictError (409: read again), TransientError (retry later) or
PermanentError.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

from edgetenant.api.models import GROUP, VERSION
from edgetenant.errors import ConflictError, PermanentError, TransientError
from edgetenant.metrics import API_REQUESTS

FIELD_MANAGER: Final = "edgetenant"
# (connect, read) seconds for every API call: long enough for a busy API server on a Raspberry Pi,
# short enough that a dead one is noticed within a pass.
REQUEST_TIMEOUT: Final = (5.0, 30.0)
log = logging.getLogger(__name__)
T = TypeVar("T")

# NB: the API server reads a server-side apply body as YAML. json.dumps writes a character beyond the
# BMP (an emoji in a tenant's model URI, which the fetcher's argument carries into the Deployment) as a
# UTF-16 surrogate pair, "\ud83d\ude00", which YAML refuses ("invalid Unicode character escape code"):
# that tenant's Deployment could never be applied. YAML's escape for it is "\U0001f600". The first
# alternative consumes escaped backslashes, so a literal "\\ud83d" in the data is left alone.
_JSON_ESCAPES: Final = re.compile(r"\\\\|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def apply_body(obj: dict[str, Any]) -> str:
    """`obj` as JSON that a YAML parser reads back unchanged: all ASCII, and every character beyond
    the BMP as YAML's 8-digit escape instead of JSON's surrogate pair."""

    def escape(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)
        high, low = int(match.group(1), 16), int(match.group(2), 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _JSON_ESCAPES.sub(escape, json.dumps(obj))


def load_config(kubeconfig: str | None = None) -> None:
    """In-cluster config when running in a pod, else the kubeconfig (or $KUBECONFIG)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]


def _translate(error: Exception, what: str) -> Exception:
    status = getattr(error, "status", None)
    if isinstance(error, (ApiException, DynamicApiError)) and status is not None:
        if status == 409:
            return ConflictError(f"{what}: HTTP 409 {getattr(error, 'reason', '')}")
        if status == 429 or status >= 500:
            return TransientError(f"{what}: HTTP {status} {getattr(error, 'reason', '')}")
        body = getattr(error, "body", "") or getattr(error, "summary", lambda: "")()
        return PermanentError(f"{what}: HTTP {status}: {body}")
    return TransientError(f"{what}: {error}")


class _InMemoryDiscoverer(LazyDiscoverer):
    """API discovery kept in memory, never in a file.

    The client's default cache file sits under tempfile.gettempdir(), which raises when no directory is
    writable, as in the operator's image (read-only root file system); a restarted operator re-discovers
    anyway, in a few requests.
    """

    # Never opened: it does not exist, so nothing is read, and writing is a no-op.
    UNUSED_CACHE_FILE: Final = "/nonexistent/edgetenant-discovery-cache.json"

    def __init__(self, client: Any, cache_file: str | None = None) -> None:
        super().__init__(client, self.UNUSED_CACHE_FILE)  # type: ignore[no-untyped-call]

    def _write_cache(self) -> None:
        return


def _plain(api_client: client.ApiClient, obj: Any) -> dict[str, Any]:
    """A client model object as the plain JSON-shaped dict the API server sent."""
    plain: dict[str, Any] = api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return plain


class Kube:
    """The few API calls the operator makes, each in a thread, each with translated errors."""

    def __init__(self, api_client: client.ApiClient | None = None, *, identity: str = "edgetenant") -> None:
        self.identity = identity  # this replica, as Events report it
        self.api_client = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)
        self._dynamic: DynamicClient | None = None

    async def _call(self, what: str, fn: Callable[[], T], *, verb: str = "write") -> T:
        API_REQUESTS.labels(verb).inc()
        try:
            return await asyncio.to_thread(fn)
        except (ApiException, DynamicApiError, HTTPError, OSError) as error:
            raise _translate(error, what) from error

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            self._dynamic = DynamicClient(  # type: ignore[no-untyped-call]
                self.api_client, discoverer=_InMemoryDiscoverer
            )
        return self._dynamic

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with the operator's one field manager (forcing: we own these fields)."""
        meta = obj["metadata"]
        what = f"apply {obj['kind']} {meta.get('namespace', '')}/{meta['name']}"

        def run() -> dict[str, Any]:
            resource = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            # What resource.server_side_apply does, with the body serialised by apply_body.
            result = self.dynamic.request(
                "patch",
                resource.path(name=meta["name"], namespace=meta.get("namespace")),
                body=apply_body(obj),
                content_type="application/apply-patch+yaml",
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
            applied: dict[str, Any] = result.to_dict()
            return applied

        return await self._call(what, run)

    async def patch_tenant_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """A merge patch of the status subresource (the operator never writes spec); returns the object.

        With `resource_version` the API server refuses the patch (ConflictError) if the tenant changed
        since that version: the caller recomputes from the newer one.
        """
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        updated: Any = await self._call(
            f"patch status of InferenceTenant {namespace}/{name}",
            lambda: self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "inferencetenants", name, body, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        return dict(updated)

    async def patch_class_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of an AcceleratorClass's status (what the operator found of it)."""
        updated: Any = await self._call(
            f"patch status of AcceleratorClass {name}",
            lambda: self.custom.patch_cluster_custom_object_status(
                GROUP,
                VERSION,
                "acceleratorclasses",
                name,
                {"status": status},
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )
        return dict(updated)

    async def get_tenant(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The tenant as the API server has it now (None when it is gone)."""

        def run() -> dict[str, Any] | None:
            try:
                found: Any = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "inferencetenants", name, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            return dict(found)

        return await self._call(f"get InferenceTenant {namespace}/{name}", run, verb="read")

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """One Secret's data, decoded (None when it does not exist). The operator reads exactly one
        Secret, its own master key (docs/security.md)."""

        def run() -> dict[str, bytes] | None:
            try:
                secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}

        return await self._call(f"get Secret {namespace}/{name}", run, verb="read")

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        """Create a Secret; ConflictError when it exists already (someone else created it first)."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, labels={"app.kubernetes.io/part-of": "edgetenant"}
            ),
            type="Opaque",
            data={key: base64.b64encode(value).decode() for key, value in data.items()},
        )
        await self._call(
            f"create Secret {namespace}/{name}",
            lambda: self.core.create_namespaced_secret(namespace, body, _request_timeout=REQUEST_TIMEOUT),
        )

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease as a plain dict (None when it does not exist)."""

        def run() -> dict[str, Any] | None:
            try:
                lease = self.coordination.read_namespaced_lease(
                    name, namespace, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            return _plain(self.api_client, lease)

        return await self._call(f"get Lease {namespace}/{name}", run, verb="lease")

    async def write_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease, or replace it at the resourceVersion it carries (ConflictError if someone
        else wrote it first: exactly one candidate wins a contended acquire)."""

        def run() -> dict[str, Any]:
            if lease["metadata"].get("resourceVersion"):
                written = self.coordination.replace_namespaced_lease(
                    name, namespace, cast(Any, lease), _request_timeout=REQUEST_TIMEOUT
                )
            else:
                written = self.coordination.create_namespaced_lease(
                    namespace, cast(Any, lease), _request_timeout=REQUEST_TIMEOUT
                )
            return _plain(self.api_client, written)

        return await self._call(f"write Lease {namespace}/{name}", run, verb="lease")

    async def post_event(
        self,
        involved: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
    ) -> None:
        meta = involved["metadata"]
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=involved["apiVersion"],
                kind=involved["kind"],
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            type=event_type,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="edgetenant"),
            reporting_component="edgetenant.io/operator",
            reporting_instance=self.identity,
        )
        await self._call(
            f"post Event {reason} for {meta['namespace']}/{meta['name']}",
            lambda: self.core.create_namespaced_event(
                meta["namespace"], body, _request_timeout=REQUEST_TIMEOUT
            ),
        )
