"""Kubernetes objects for one tenant: Secret (its admin key), ConfigMap (Triton config), NetworkPolicy,
Service, Deployment. Pure.

Every object is owned by its InferenceTenant (garbage-collected with it) and carries the same labels,
so the operator finds a tenant's pods by `edgetenant.io/tenant=<name>`. The Triton config comes from the
same renderer the data plane and the tuning loop use (`edgetenant.render.triton`); who may reach and
control Triton comes from `edgetenant.render.access`.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final

from edgetenant.api.models import (
    GROUP,
    VERSION,
    AcceleratorClass,
    ConcurrencyMode,
    InferenceTenant,
    ModelSource,
)
from edgetenant.dataplane.fetch import CREDENTIAL_ENV_PREFIX
from edgetenant.render.access import (
    KEY_HASH_ANNOTATION,
    NetworkSettings,
    admin_key_env,
    key_fingerprint,
    render_network_policy,
    render_secret,
    restricted_api_args,
)
from edgetenant.render.triton import (
    DEFAULT_MODEL_FILENAMES,
    TritonModelSpec,
    build_dynamic_batching,
    render_model_config,
)

MANAGER: Final = "edgetenant"
TENANT_LABEL: Final = "edgetenant.io/tenant"
MODEL_REPOSITORY: Final = "/models"
HTTP_PORT: Final = 8000
GRPC_PORT: Final = 8001
METRICS_PORT: Final = 8002
# The API's batching modes (YAML-safe names) by member name → the renderer's words.
BATCHING_MODES: Final = {"AUTO": "Auto", "OFF": "Off", "FIXED": "Fixed"}
# The tenant's pods are restricted-PSS compliant; Triton's images run fine as this user.
RUN_AS_USER: Final = 1000
# Every pod carries a hash of the template it was made from: only pods of the template rendered for
# the target placement count as serving it (a class change on the same node keeps the node).
TEMPLATE_ANNOTATION: Final = "edgetenant.io/template-hash"


# Backend parameters edgetenant reads itself; the others go into the Triton model config.
EDGETENANT_PARAMETERS: Final = frozenset({"threadsPerInstance", "tritonVersion", "shim"})
# `--metrics-config` (summary latencies, hence p95) came with Triton 2.33 (23.04). A class whose image
# pins an older Triton (`tritonVersion`, e.g. 2.19.0 on JetPack 4) must not pass it: Triton refuses
# unknown flags and the pod would never start.
METRICS_CONFIG_SINCE: Final = (2, 33)


def metrics_config_args(parameters: dict[str, str]) -> list[str]:
    """The latency-summary flag, unless the class says its Triton predates it."""
    version = parameters.get("tritonVersion", "")
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    if len(major_minor) == 2 and major_minor < METRICS_CONFIG_SINCE:
        return []
    return ["--metrics-config=summary_latencies=true"]


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """Operator-wide knobs that shape every tenant's workload."""

    fetcher_image: str = "ghcr.io/edgetenant/model-fetcher:0.1.0"
    model_max_mib: int = 8192  # the fetcher's size limit when the tenant sets none
    cpu_request: str = "250m"
    default_memory_mib: int = 512  # per model instance, without a profile or a hint
    triton_overhead_mib: int = 256  # Triton itself, before any model instance
    network: NetworkSettings = field(default_factory=NetworkSettings)


# The tenant's name is its Service's name, an RFC 1035 label, and a label value on every child. The API
# server accepts any DNS subdomain for the tenant itself (dots, a leading digit, up to 253 characters),
# and a child it would then refuse must not be attempted on every pass.
SERVICE_NAME: Final = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def name_problem(name: str) -> str | None:
    """Why a tenant of this name cannot have children, or None when it can."""
    if SERVICE_NAME.fullmatch(name):
        return None
    shown = name if len(name) <= 70 else f"{name[:60]}... ({len(name)} characters)"
    return (
        f"the name {shown!r} cannot name the tenant's Service: use at most 63 lowercase letters, "
        "digits and '-', starting with a letter and ending with a letter or digit (an RFC 1035 label)"
    )


def uri_problem(uri: str) -> str | None:
    """Why the model's URI cannot be rendered into the fetcher's arguments and mounts, or None. The
    schema checks its scheme and shape; an authority with unbalanced brackets, or a bracketed host that
    is no IP address, gets past those rules but not past a URL parser."""
    try:
        urllib.parse.urlsplit(uri)
    except ValueError as error:
        shown = uri if len(uri) <= 70 else f"{uri[:60]}... ({len(uri)} characters)"
        return f"model.uri {shown!r} is not a URL: {error}"
    return None


def spec_render_problem(name: str, uri: str) -> str | None:
    """Why no children can be rendered for a tenant of this name and model URI, or None."""
    return name_problem(name) or uri_problem(uri)


def served_model_name(tenant: InferenceTenant) -> str:
    return tenant.spec.model.name or str(tenant.metadata.name)


def tenant_labels(tenant: InferenceTenant) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": str(tenant.metadata.name),
        "app.kubernetes.io/managed-by": MANAGER,
        "app.kubernetes.io/part-of": "edgetenant",
        TENANT_LABEL: str(tenant.metadata.name),
    }


def owner_reference(tenant: InferenceTenant) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceTenant",
        "name": tenant.metadata.name,
        "uid": tenant.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(tenant: InferenceTenant, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": tenant.metadata.namespace,
        "labels": tenant_labels(tenant),
        "ownerReferences": [owner_reference(tenant)],
    }


def config_map_name(tenant: InferenceTenant) -> str:
    return f"{tenant.metadata.name}-triton-config"


def triton_spec(tenant: InferenceTenant, klass: AcceleratorClass, instance_count: int) -> TritonModelSpec:
    """The Triton model config for this tenant on this class, at this instance count."""
    model = tenant.spec.model
    backend = klass.backend_for(model.format)
    if backend is None:
        raise ValueError(f"AcceleratorClass {klass.metadata.name} does not support format {model.format}")
    batching = tenant.spec.batching
    dynamic = build_dynamic_batching(
        BATCHING_MODES[batching.mode.name],
        max_queue_delay_microseconds=batching.max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(batching.preferred_batch_sizes or ()),
    )
    threads = backend.parameters.get("threadsPerInstance")
    extra = tuple(sorted((k, v) for k, v in backend.parameters.items() if k not in EDGETENANT_PARAMETERS))
    return TritonModelSpec(
        name=served_model_name(tenant),
        format=str(model.format),
        backend=backend.backend,
        max_batch_size=model.max_batch_size,
        instance_count=instance_count,
        instance_kind=str(klass.spec.instance_kind),
        threads_per_instance=int(threads) if threads else None,
        dynamic_batching=dynamic if model.max_batch_size > 0 else None,
        parameters=extra,
    )


def render_config_map(tenant: InferenceTenant, spec: TritonModelSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(tenant, config_map_name(tenant)),
        "data": {"config.pbtxt": render_model_config(spec)},
    }


def instance_memory_mib(tenant: InferenceTenant, settings: RenderSettings, measured: float | None) -> int:
    """Memory one model instance needs: measured (a ModelProfile) over the hint over the default."""
    if measured:
        return max(1, round(measured))
    return tenant.spec.model.memory_hint_mib or settings.default_memory_mib


def memory_resources(
    tenant: InferenceTenant, settings: RenderSettings, measured: float | None
) -> tuple[str, str]:
    """(request, limit) for the Triton container.

    The request holds Triton and the instances it starts with; the limit holds the most instances the
    tenant may ever run (concurrency max, or the Fixed value), so tuning within the spec never rolls
    the pod. Beyond it the kernel OOM-kills the container, and the tuning loop backs off.
    """
    per_instance = instance_memory_mib(tenant, settings, measured)
    conc = tenant.spec.concurrency
    fixed = conc.value if conc.mode == ConcurrencyMode.FIXED and conc.value else None
    most, start = (fixed, fixed) if fixed else (conc.max, conc.initial)
    request = settings.triton_overhead_mib + per_instance * start
    limit = settings.triton_overhead_mib + per_instance * most
    return f"{request}Mi", f"{limit}Mi"


def template_hash(template: dict[str, Any]) -> str:
    """A short, stable hash of a pod template (its own hash annotation left out)."""
    meta = dict(template.get("metadata") or {})
    meta["annotations"] = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != TEMPLATE_ANNOTATION
    }
    body = json.dumps({"metadata": meta, "spec": template.get("spec")}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


PVC_ROOT: Final = "/pvc"  # a pvc:// model's claim is mounted read-only at /pvc/<claim>
HOST_ROOT: Final = "/host"  # a file:// model's directory on the node, read-only under /host
SOURCE_VOLUME: Final = "model-source"


def model_source_volumes(model: ModelSource) -> list[dict[str, Any]]:
    """The volume a pvc:// or file:// model is read from (none for remote schemes)."""
    parsed = urllib.parse.urlsplit(model.uri)
    if parsed.scheme == "pvc":
        return [
            {"name": SOURCE_VOLUME, "persistentVolumeClaim": {"claimName": parsed.netloc, "readOnly": True}}
        ]
    if parsed.scheme == "file":
        return [
            {"name": SOURCE_VOLUME, "hostPath": {"path": _node_directory(parsed.path), "type": "Directory"}}
        ]
    return []


def _node_directory(path: str) -> str:
    """The node directory a file:// model lives in: the path itself when it names a directory (ends
    with /), else its parent, so an IR's .bin or an archive's siblings are there too."""
    path = urllib.parse.unquote(path)
    return path.rstrip("/") or "/" if path.endswith("/") else str(PurePosixPath(path).parent)


def fetcher_container(
    tenant: InferenceTenant,
    settings: RenderSettings,
    model_file: str,
    backend: str,
    *,
    security: dict[str, Any],
    shim: str | None = None,
) -> dict[str, Any]:
    """The init container that puts the model into the repository (`edgetenant.dataplane.fetch`);
    `shim`: the Python-backend shim to install when not the format's own (the class's `shim`
    parameter: ONNX on an NCS2 runs in OpenVINO's)."""
    model = tenant.spec.model
    max_mib = model.max_size_mib or settings.model_max_mib
    args = [
        f"--uri={model.uri}",
        f"--dest={model_file}",
        f"--format={model.format}",
        f"--backend={backend}",
        f"--max-bytes={max_mib << 20}",
    ]
    if backend == "python" and shim:
        args.append(f"--shim={shim}")
    mounts: list[dict[str, Any]] = [{"name": "model-repository", "mountPath": MODEL_REPOSITORY}]
    parsed = urllib.parse.urlsplit(model.uri)
    if model.sha256:
        args.append(f"--sha256={model.sha256}")
    if model.s3_endpoint:
        args += [f"--s3-endpoint={model.s3_endpoint}", f"--s3-region={model.s3_region or 'us-east-1'}"]
    if parsed.scheme == "pvc":
        args.append(f"--pvc-root={PVC_ROOT}")
        mounts.append({"name": SOURCE_VOLUME, "mountPath": f"{PVC_ROOT}/{parsed.netloc}", "readOnly": True})
    elif parsed.scheme == "file":
        args.append(f"--host-root={HOST_ROOT}")
        directory = _node_directory(parsed.path)
        mounts.append(
            {"name": SOURCE_VOLUME, "mountPath": f"{HOST_ROOT}{directory}".rstrip("/"), "readOnly": True}
        )
    container: dict[str, Any] = {
        "name": "fetch-model",
        "image": settings.fetcher_image,
        "command": ["python", "-m", "edgetenant.dataplane.fetch"],
        "args": args,
        "securityContext": security,
        "volumeMounts": mounts,
        # The fetcher writes its one-line error to /dev/termination-log; should it die before
        # (a crash), the kubelet takes the log's tail instead, so the status still says why.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if model.credentials_secret:
        # Not optional: a missing Secret stops the pod at CreateContainerConfigError, which the
        # operator reports as ModelCredentialsNotFound; only this container sees the keys.
        container["envFrom"] = [
            {"prefix": CREDENTIAL_ENV_PREFIX, "secretRef": {"name": model.credentials_secret}}
        ]
    return container


def render_deployment(
    tenant: InferenceTenant,
    klass: AcceleratorClass,
    node: str,
    spec: TritonModelSpec,
    settings: RenderSettings,
    *,
    admin_key: str,
    surge: bool = True,
    measured_instance_mib: float | None = None,
) -> dict[str, Any]:
    """Triton on the planned node, with the model fetched by an init container.

    `surge`: a rollout starts the new pod before the old one goes (make-before-break). Without a
    spare device on the target node the new pod could never be scheduled while the old one holds the
    device, so the rollout replaces it instead (`rollout.can_surge` decides).

    Neither container gets a ServiceAccount token (neither talks to the API server); Triton's model
    control, logging, tracing and shared memory answer only to `admin_key` (`render.access`).
    """
    name = str(tenant.metadata.name)
    model = served_model_name(tenant)
    backend = klass.backend_for(tenant.spec.model.format)
    assert backend is not None  # triton_spec already refused an unsupported format
    labels = tenant_labels(tenant)
    model_dir = f"{MODEL_REPOSITORY}/{model}"
    model_file = f"{model_dir}/1/{DEFAULT_MODEL_FILENAMES[str(tenant.spec.model.format)]}"
    container_security = {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    memory_request, memory_limit = memory_resources(tenant, settings, measured_instance_mib)
    resources: dict[str, Any] = {
        "requests": {"cpu": settings.cpu_request, "memory": memory_request},
        "limits": {"memory": memory_limit},
    }
    if klass.spec.resource_name:
        # Extended resources are requested through limits (requests default to them).
        resources["limits"][klass.spec.resource_name] = "1"
    tolerations = [
        t.model_dump(by_alias=True, exclude_none=True, mode="json")
        for t in [*klass.spec.tolerations, *tenant.spec.placement.tolerations]
    ]
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}
    pod_spec: dict[str, Any] = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                    ]
                }
            }
        },
        "tolerations": tolerations,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
        "initContainers": [
            fetcher_container(
                tenant,
                settings,
                model_file,
                backend.backend,
                security=container_security,
                shim=backend.parameters.get("shim"),
            )
        ],
        "containers": [
            {
                "name": "triton",
                "image": backend.image,
                "command": ["tritonserver"],
                "args": [
                    f"--model-repository={MODEL_REPOSITORY}",
                    "--model-control-mode=explicit",
                    f"--load-model={model}",
                    "--strict-model-config=false",
                    f"--http-port={HTTP_PORT}",
                    f"--grpc-port={GRPC_PORT}",
                    f"--metrics-port={METRICS_PORT}",
                    "--allow-metrics=true",
                    *metrics_config_args(backend.parameters),
                    *restricted_api_args(backend.parameters),
                    "--exit-on-error=false",
                ],
                "env": [admin_key_env(tenant)],
                "ports": [
                    {"name": "http", "containerPort": HTTP_PORT},
                    {"name": "grpc", "containerPort": GRPC_PORT},
                    {"name": "metrics", "containerPort": METRICS_PORT},
                ],
                "resources": resources,
                "readinessProbe": probe,
                "startupProbe": {**probe, "failureThreshold": 60},
                "livenessProbe": {
                    "httpGet": {"path": "/v2/health/live", "port": "http"},
                    "periodSeconds": 10,
                },
                "securityContext": container_security,
                "volumeMounts": [
                    {"name": "model-repository", "mountPath": MODEL_REPOSITORY},
                    # The one writable path on the read-only root: Triton's Python backend makes its
                    # environments' directory there.
                    {"name": "tmp", "mountPath": "/tmp"},
                    # A subPath mount so the tuned instance count in the ConfigMap is what a restarted
                    # container starts with; live changes go through Triton's model-control API.
                    {
                        "name": "model-config",
                        "mountPath": f"{model_dir}/config.pbtxt",
                        "subPath": "config.pbtxt",
                    },
                ],
            }
        ],
        "volumes": [
            {"name": "model-repository", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "model-config", "configMap": {"name": config_map_name(tenant)}},
            *model_source_volumes(tenant.spec.model),
        ],
    }
    if klass.spec.runtime_class_name:
        pod_spec["runtimeClassName"] = klass.spec.runtime_class_name
    template: dict[str, Any] = {
        "metadata": {
            "labels": labels,
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
                "edgetenant.io/accelerator-class": str(klass.metadata.name),
                KEY_HASH_ANNOTATION: key_fingerprint(admin_key),
            },
        },
        "spec": pod_spec,
    }
    template["metadata"]["annotations"][TEMPLATE_ANNOTATION] = template_hash(template)
    rolling = {"maxSurge": 1, "maxUnavailable": 0} if surge else {"maxSurge": 0, "maxUnavailable": 1}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(tenant, name),
        "spec": {
            "replicas": tenant.spec.replicas,
            "selector": {"matchLabels": {TENANT_LABEL: name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": template,
        },
    }


def render_service(tenant: InferenceTenant) -> dict[str, Any]:
    name = str(tenant.metadata.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(tenant, name),
        "spec": {
            "selector": {TENANT_LABEL: name},
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def endpoint(tenant: InferenceTenant) -> str:
    return f"http://{tenant.metadata.name}.{tenant.metadata.namespace}.svc:{HTTP_PORT}/v2/models/{served_model_name(tenant)}"


def render_all(
    tenant: InferenceTenant,
    klass: AcceleratorClass,
    node: str,
    instance_count: int,
    settings: RenderSettings,
    *,
    admin_key: str,
    surge: bool = True,
    measured_instance_mib: float | None = None,
) -> list[dict[str, Any]]:
    """Every object the tenant needs, in apply order: the Deployment last, after the key, the config and
    the NetworkPolicy its pods need from their first moment."""
    spec = triton_spec(tenant, klass, instance_count)
    name = str(tenant.metadata.name)
    return [
        render_secret(tenant, _metadata(tenant, name), admin_key),
        render_config_map(tenant, spec),
        render_network_policy(
            tenant,
            _metadata(tenant, name),
            settings.network,
            selector={TENANT_LABEL: name},
            client_ports=(HTTP_PORT, GRPC_PORT),
            metrics_port=METRICS_PORT,
        ),
        render_service(tenant),
        render_deployment(
            tenant,
            klass,
            node,
            spec,
            settings,
            admin_key=admin_key,
            surge=surge,
            measured_instance_mib=measured_instance_mib,
        ),
    ]


def deployment_template_hash(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][TEMPLATE_ANNOTATION])
