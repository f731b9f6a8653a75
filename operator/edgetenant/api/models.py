"""The edgetenant API (group edgetenant.io, version v1alpha1) as pydantic models.

These models are the single source of truth: `crdgen` turns them into the CRDs in `crds/`
(descriptions become `kubectl explain` text, defaults and bounds become schema, and the
`cel_rules` below become `x-kubernetes-validations`). Python code uses snake_case; the wire
uses camelCase. Parse a Kubernetes object dict with `Model.model_validate(obj)` (or
`parse_object`), write one with `obj.to_dict()`.

Models are frozen: derive changed copies with `model_copy(update=...)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

GROUP = "edgetenant.io"
VERSION = "v1alpha1"
API_VERSION: Final = "edgetenant.io/v1alpha1"

MAX_CONCURRENCY = 64
"""Upper bound on Triton model instances per tenant replica; beyond it edge devices only thrash."""


def wire_name(field_name: str) -> str:
    """snake_case field name -> camelCase wire name (`memory_hint_mib` -> `memoryHintMiB`)."""
    camel = to_camel(field_name.rstrip("_"))
    return re.sub(r"Mib$", "MiB", camel)


@dataclass(frozen=True)
class CelRule:
    """A CEL rule that becomes one `x-kubernetes-validations` entry of the generated CRD.

    `on` names the property (wire name) the rule sits on; None puts it on the model's own
    object. `field_path` and `reason` are passed to the API server so the error points at the
    offending field. The same rules are evaluated offline by `edgetenant.api.validation`.
    (No FieldValueDuplicate: the API server drops the message for that reason.)
    """

    rule: str
    message: str
    on: str | None = None
    field_path: str | None = None
    reason: Literal["FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden"] | None = None


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=wire_name,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, JSON types, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------------------------------------
# Enumerations
# ---------------------------------------------------------------------------------------------


class ModelFormat(StrEnum):
    """Serialized model formats a tenant can ship."""

    ONNX = "onnx"
    TENSORRT = "tensorrt"
    TFLITE = "tflite"
    OPENVINO = "openvino"


class ConcurrencyMode(StrEnum):
    AUTO = "Auto"
    FIXED = "Fixed"


class BatchingMode(StrEnum):
    # The wire value is "Disabled", not "Off": YAML 1.1 parsers (PyYAML, kubectl's) read an
    # unquoted Off as the boolean false, which the API server would refuse with a type error.
    AUTO = "Auto"
    OFF = "Disabled"
    FIXED = "Fixed"
    DISABLED = "Disabled"  # alias of OFF


class SharingMode(StrEnum):
    EXCLUSIVE = "Exclusive"
    TIME_SLICED = "TimeSliced"


class InstanceKind(StrEnum):
    """Triton `instance_group.kind` used for models on a class of device."""

    KIND_GPU = "KIND_GPU"
    KIND_CPU = "KIND_CPU"
    KIND_MODEL = "KIND_MODEL"


class ProfileSource(StrEnum):
    OFFLINE = "Offline"
    ONLINE = "Online"


class PlacementBasis(StrEnum):
    """What a placement decision rested on: a measured ModelProfile or an estimate."""

    PROFILE = "Profile"
    ESTIMATE = "Estimate"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Condition types the operator writes (kstatus: Ready, Reconciling, Stalled, plus our own)."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    PLACED = "Placed"
    MODEL_LOADED = "ModelLoaded"
    METRICS_AVAILABLE = "MetricsAvailable"
    SLO_MET = "SLOMet"


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------

_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ClassName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)]
LabelMap: TypeAlias = dict[str, Annotated[str, StringConstraints(max_length=63)]]


class ObjectMeta(BaseModel):
    """Kubernetes object metadata; the API server owns its schema, so unknown keys pass through."""

    model_config = ConfigDict(alias_generator=wire_name, populate_by_name=True, extra="allow", frozen=True)

    name: str | None = Field(default=None, description="Object name, unique in its namespace.")
    generate_name: str | None = Field(default=None, description="Prefix for a server-generated name.")
    namespace: str | None = Field(default=None, description="Namespace of namespaced objects.")
    uid: str | None = Field(default=None, description="Server-assigned unique id.")
    resource_version: str | None = Field(
        default=None, description="Opaque version for optimistic concurrency."
    )
    generation: int | None = Field(default=None, description="Incremented by the server on each spec change.")
    creation_timestamp: datetime | None = Field(default=None, description="When the object was created.")
    deletion_timestamp: datetime | None = Field(default=None, description="When deletion was requested.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    finalizers: list[str] = Field(default_factory=list, description="Finalizers.")
    owner_references: list[dict[str, Any]] = Field(default_factory=list, description="Owner references.")


# A label key (an optional DNS-subdomain prefix and a name) and a label value, as the API server checks
# them: the schema cannot constrain map keys, so a CEL rule checks every key. ('[.]', not a backslash:
# CEL string literals refuse unknown escapes.)
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY = rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$"
_LABEL_VALUE = rf"^{_LABEL_NAME}?$"


class Toleration(ApiModel):
    """A Kubernetes toleration, copied onto the pods that serve the tenant."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.operator != 'Exists' || !has(self.value) || self.value == ''",
            message="a toleration with operator Exists must not set a value",
            field_path=".value",
            reason="FieldValueForbidden",
        ),
        CelRule(
            rule="(has(self.key) && self.key != '') || self.operator == 'Exists'",
            message="a toleration without a key must use operator Exists",
            field_path=".operator",
        ),
        # The pod's own rules, which the API server applies to the Deployment the operator renders: a
        # tenant it accepted must not make every apply of its Deployment fail.
        CelRule(
            rule="!has(self.key) || self.key == '' || "
            f"(self.key.size() <= 316 && self.key.matches('{_LABEL_KEY}'))",
            message="a toleration's key must be a label key: an optional DNS prefix and '/', then a name "
            "of at most 63 alphanumerics, '-', '_' or '.'",
            field_path=".key",
        ),
        CelRule(
            rule="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="a toleration with tolerationSeconds must have effect NoExecute",
            field_path=".effect",
        ),
    )

    key: str | None = Field(
        default=None,
        max_length=316,
        description="Taint key to tolerate; empty with operator Exists matches all keys.",
    )
    operator: TolerationOperator = Field(
        default=TolerationOperator.EQUAL, description="Equal matches key and value; Exists matches any value."
    )
    value: str | None = Field(
        default=None,
        max_length=63,
        pattern=_LABEL_VALUE,
        description="Taint value to match when operator is Equal (a label value).",
    )
    effect: TaintEffect | None = Field(
        default=None,
        description="Taint effect to match (NoSchedule, PreferNoSchedule, NoExecute); empty = all.",
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="For NoExecute: how long the pod stays bound after the taint appears; unset = forever.",
    )


# ---------------------------------------------------------------------------------------------
# InferenceTenant
# ---------------------------------------------------------------------------------------------

URI_SCHEMES = ("pvc", "http", "https", "file", "oci", "s3")
_PVC_URI = r"^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/.+"


class ModelSource(ApiModel):
    """The model a tenant serves and where to fetch it (docs/models.md: every scheme on K3s)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.matches('^(pvc|http|https|file|oci|s3)://.+')",
            message="model.uri must start with pvc://, http://, https://, file://, oci:// or s3://",
            on="uri",
        ),
        CelRule(
            rule="!self.matches('^[a-z0-9]+://[^/]*@')",
            message="model.uri must not hold credentials (user:password@): put them in a Secret "
            "and name it in model.credentialsSecret",
            on="uri",
        ),
        CelRule(
            rule=f"!self.startsWith('pvc://') || self.matches('{_PVC_URI}')",
            message="a pvc:// model.uri is pvc://<claim name>/<path inside the claim>",
            on="uri",
        ),
        CelRule(
            rule="!self.startsWith('file://') || self.matches('^file:///.+')",
            message="a file:// model.uri is an absolute path on the node: file:///<path>",
            on="uri",
        ),
        CelRule(
            # The pod's hostPath volume may not step back (the API server refuses the Deployment).
            rule="!self.startsWith('file://') || !self.matches('/[.][.](/|$)')",
            message="a file:// model.uri may not contain '..' segments",
            on="uri",
        ),
        CelRule(
            rule="!self.startsWith('s3://') || self.matches('^s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]/.+')",
            message="an s3:// model.uri is s3://<bucket>/<key>",
            on="uri",
        ),
        CelRule(
            rule="self.uri.startsWith('s3://') == has(self.s3Endpoint)",
            message="model.s3Endpoint is required with an s3:// model.uri, and only then",
            field_path=".s3Endpoint",
        ),
        CelRule(
            rule="!has(self.s3Region) || self.uri.startsWith('s3://')",
            message="model.s3Region is only used with an s3:// model.uri",
            field_path=".s3Region",
            reason="FieldValueForbidden",
        ),
    )

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
        description="Name the model is served under in Triton (the URL path /v2/models/<name>). "
        "Defaults to the tenant's metadata.name.",
    )
    format: ModelFormat = Field(
        description="Serialized format: onnx, tensorrt (a TensorRT plan), tflite or openvino (IR .xml/.bin). "
        "Only accelerator classes that list this format can serve the tenant."
    )
    uri: str = Field(
        max_length=2048,
        description="Where the model lives: pvc://<claim>/<path> (a PersistentVolumeClaim in the tenant's "
        "namespace, mounted read-only), file:///<path> (a path on the node: node-local, needs a "
        "namespace that allows hostPath volumes), http(s)://<url>, oci://<registry>/<repository>:<tag> "
        "(or @sha256:<digest>: an OCI artifact, e.g. pushed with oras) or s3://<bucket>/<key> (with "
        "s3Endpoint). A path ending in .tar.gz, .tgz, .tar or .zip is an archive of a multi-file model "
        "(ONNX with external data); a pvc:// or file:// path ending in / is a directory. OpenVINO IR: "
        "name the .xml; the .bin beside it is fetched too. No credentials in the URI: use "
        "credentialsSecret.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the model file (of the archive, for an archive), 64 lowercase hex digits. "
        "The fetcher checks it before Triton sees the file; a mismatch is ModelLoaded=False "
        "reason ModelDigestMismatch and the serving model stays.",
    )
    max_size_mib: int | None = Field(
        default=None,
        ge=1,
        le=1048576,
        description="Largest model the fetcher accepts, in MiB (an archive: unpacked). "
        "Default: the operator's EDGETENANT_MODEL_MAX_MIB (8192).",
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=_DNS_SUBDOMAIN,
        description="A Secret in the tenant's namespace with the credentials for the model's source, by key: "
        "username + password (HTTP Basic, OCI registries), token (a bearer token), accessKeyId + "
        "secretAccessKey [+ sessionToken] (S3), caBundle (PEM: a private CA to trust besides the "
        "system's). Only the fetcher sees it (as environment variables); it never appears in "
        "status, Events or logs.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^https?://[^/@?#]+/?$",
        description="The S3 endpoint for an s3:// uri, e.g. https://minio.storage.svc:9000 "
        "(path-style requests; https unless the endpoint says http).",
    )
    s3_region: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="The S3 region requests are signed for; default us-east-1.",
    )
    max_batch_size: int = Field(
        default=8,
        ge=0,
        le=1024,
        description="Largest batch Triton may form (Triton max_batch_size); "
        "0 = the model has no batch dimension.",
    )
    memory_hint_mib: int | None = Field(
        default=None,
        ge=1,
        le=1048576,
        description="Device memory one model instance needs, in MiB. Used for placement until a ModelProfile "
        "measures it; measured profiles win over hints.",
    )


class Slo(ApiModel):
    """The service level the tenant asks for; placement and tuning aim for it."""

    latency_p95_ms: float | None = Field(
        default=None,
        gt=0,
        le=600000,
        description="Target 95th-percentile request latency in milliseconds "
        "(queue + compute, as Triton reports).",
    )
    throughput: float | None = Field(
        default=None,
        ge=0,
        le=1000000,
        description="Expected demand in requests per second; placement reserves capacity for it.",
    )


class Concurrency(ApiModel):
    """How many model instances (Triton instance_group count) serve each replica."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.min <= self.max",
            message="concurrency.min must be less than or equal to concurrency.max",
            field_path=".min",
        ),
        CelRule(
            rule="self.min <= self.initial && self.initial <= self.max",
            message="concurrency.initial must lie between concurrency.min and concurrency.max",
            field_path=".initial",
        ),
        CelRule(
            rule="self.mode != 'Fixed' || has(self.value)",
            message="concurrency.value is required when concurrency.mode is Fixed",
            field_path=".value",
            reason="FieldValueRequired",
        ),
        CelRule(
            rule="!has(self.value) || self.mode == 'Fixed'",
            message="concurrency.value is only used when concurrency.mode is Fixed; "
            "remove it or set mode: Fixed",
            field_path=".value",
            reason="FieldValueForbidden",
        ),
    )

    mode: ConcurrencyMode = Field(
        default=ConcurrencyMode.AUTO,
        description="Auto: the operator tunes the instance count live from metrics within [min, max]. "
        "Fixed: always run `value` instances.",
    )
    min: int = Field(default=1, ge=1, le=MAX_CONCURRENCY, description="Fewest instances Auto mode may run.")
    max: int = Field(
        default=8,
        ge=1,
        le=MAX_CONCURRENCY,
        description="Most instances Auto mode may run; "
        "the operator also stops below a learned memory ceiling.",
    )
    initial: int = Field(
        default=1, ge=1, le=MAX_CONCURRENCY, description="Instances to start with in Auto mode."
    )
    value: int | None = Field(
        default=None, ge=1, le=MAX_CONCURRENCY, description="Instance count for Fixed mode (required there)."
    )


class Batching(ApiModel):
    """Triton dynamic batching for the tenant's model."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.mode != 'Fixed' || has(self.maxQueueDelayMicroseconds)",
            message="batching.maxQueueDelayMicroseconds is required when batching.mode is Fixed",
            field_path=".maxQueueDelayMicroseconds",
            reason="FieldValueRequired",
        ),
        CelRule(
            rule="self.mode == 'Fixed' || "
            "(!has(self.maxQueueDelayMicroseconds) && !has(self.preferredBatchSizes))",
            message="batching.maxQueueDelayMicroseconds and batching.preferredBatchSizes are only used when "
            "batching.mode is Fixed",
            reason="FieldValueForbidden",
        ),
        CelRule(
            rule="self.all(b, self.exists_one(c, c == b))",
            message="batching.preferredBatchSizes must not repeat a size",
            on="preferredBatchSizes",
        ),
    )

    mode: BatchingMode = Field(
        default=BatchingMode.AUTO,
        description="Auto: the operator turns dynamic batching on and sets its delay from the SLO. "
        "Disabled: no dynamic batching. Fixed: use the parameters given here.",
    )
    max_queue_delay_microseconds: int | None = Field(
        default=None,
        ge=0,
        le=1000000,
        description="Fixed mode: how long Triton may hold a request to form a larger batch, in microseconds.",
    )
    preferred_batch_sizes: list[Annotated[int, Field(ge=1, le=1024)]] | None = Field(
        default=None,
        max_length=8,
        description="Fixed mode: batch sizes Triton should prefer to form (each <= model.maxBatchSize).",
    )


class PlacementHints(ApiModel):
    """Constraints and limits for where the tenant runs and how often it may move."""

    node_selector: LabelMap = Field(
        default_factory=dict,
        description="Only nodes with all these labels are considered "
        "(in addition to the class's own selector).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Extra tolerations for the serving pods."
    )
    allow_move: bool = Field(
        default=True,
        description="Whether the operator may move a placed tenant to a better device (make-before-break).",
    )
    max_moves_per_hour: int = Field(
        default=4,
        ge=0,
        le=60,
        description="Upper bound on voluntary moves in any sliding hour; 0 = never move.",
    )


SelectorLabels: TypeAlias = dict[str, Annotated[str, StringConstraints(max_length=63, pattern=_LABEL_VALUE)]]


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class SelectorRequirement(ApiModel):
    """One label requirement of a selector, as in a Kubernetes LabelSelector."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule=f"self.key.size() <= 316 && self.key.matches('{_LABEL_KEY}')",
            message="key must be a label key: an optional DNS prefix and '/', then a name of at most 63 "
            "alphanumerics, '-', '_' or '.'",
            field_path=".key",
        ),
        CelRule(
            rule="(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
            message="values are required with In and NotIn, and not allowed with Exists and DoesNotExist",
            field_path=".values",
        ),
    )

    key: str = Field(min_length=1, max_length=316, description="The label key the requirement applies to.")
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[Annotated[str, StringConstraints(max_length=63, pattern=_LABEL_VALUE)]] | None = Field(
        default=None, max_length=64, description="Label values for In and NotIn."
    )


class LabelSelector(ApiModel):
    """A Kubernetes LabelSelector: every label and every requirement must match."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule=f"self.all(k, k.size() <= 316 && k.matches('{_LABEL_KEY}'))",
            message="every matchLabels key must be a label key: an optional DNS prefix and '/', then a name "
            "of at most 63 alphanumerics, '-', '_' or '.'",
            on="matchLabels",
        ),
    )

    match_labels: SelectorLabels = Field(
        default_factory=dict, max_length=32, description="Labels that must all be present with these values."
    )
    match_expressions: list[SelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Requirements that must all hold."
    )


class NetworkPeer(ApiModel):
    """Clients allowed to reach the inference ports, as a NetworkPolicy peer: pods matching `podSelector`
    in namespaces matching `namespaceSelector` (without it: in the tenant's namespace; without
    `podSelector`: every pod of those namespaces)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="has(self.namespaceSelector) || has(self.podSelector)",
            message="a peer needs a namespaceSelector, a podSelector or both",
        ),
    )

    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Namespaces whose pods may connect; an empty selector means every namespace.",
    )
    pod_selector: LabelSelector | None = Field(
        default=None, description="Pods that may connect; an empty selector means every pod."
    )


class NetworkAccess(ApiModel):
    """Who may reach the tenant's Triton over the network (a NetworkPolicy the operator owns)."""

    allow_from: list[NetworkPeer] = Field(
        default_factory=list,
        max_length=16,
        description="Clients allowed to reach the inference ports (HTTP 8000, gRPC 8001) besides the pods of "
        "the tenant's own namespace, which always may. Model control stays behind the tenant's admin key "
        "whoever connects (docs/security.md).",
    )


class InferenceTenantSpec(ApiModel):
    """What the tenant wants: a model, where it may run, and the service it needs."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(self.batching.preferredBatchSizes) || "
            "self.batching.preferredBatchSizes.all(b, b <= self.model.maxBatchSize)",
            message="batching.preferredBatchSizes must not exceed model.maxBatchSize",
            field_path=".batching.preferredBatchSizes",
        ),
        CelRule(
            rule="self.batching.mode != 'Fixed' || self.model.maxBatchSize >= 1",
            message="batching.mode Fixed needs model.maxBatchSize of at least 1",
            field_path=".batching.mode",
        ),
        CelRule(
            rule="self.all(c, self.exists_one(d, d == c))",
            message="acceleratorClasses must not list a class twice",
            on="acceleratorClasses",
        ),
    )

    model: ModelSource = Field(description="The model to serve.")
    accelerator_classes: list[ClassName] = Field(
        default_factory=list,
        max_length=16,
        description="AcceleratorClass names in order of preference. Empty: any class that supports the model "
        "format.",
    )
    slo: Slo = Field(default_factory=Slo, description="Latency target and expected demand.")
    concurrency: Concurrency = Field(
        default_factory=Concurrency, description="Instance count per replica (concurrent model execution)."
    )
    batching: Batching = Field(default_factory=Batching, description="Triton dynamic batching.")
    priority: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="Higher wins when devices are scarce: "
        "lower-priority tenants are placed later or displaced.",
    )
    placement: PlacementHints = Field(
        default_factory=PlacementHints, description="Placement constraints and move limits."
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Serving pods (each runs Triton with the model). Owned by the /scale subresource, so an "
        "HPA or KEDA may drive it.",
    )
    network: NetworkAccess = Field(
        default_factory=NetworkAccess,
        description="Who may reach the inference ports; the metrics port is open to the monitoring "
        "namespace only.",
    )


class DevicePlacement(ApiModel):
    """Where a tenant is (or is going to be) served."""

    node: str = Field(description="Node name.")
    accelerator_class: str = Field(description="AcceleratorClass of the device.")
    resource: str = Field(
        default="", description="Extended resource requested per pod; empty for CPU classes."
    )
    device: str | None = Field(default=None, description="Device id on the node, when known.")
    basis: PlacementBasis | None = Field(
        default=None,
        description="Profile: chosen from a measured ModelProfile. Estimate: no profile existed.",
    )


class Condition(ApiModel):
    """A kstatus-style condition (same shape as metav1.Condition)."""

    type: str = Field(
        min_length=1,
        max_length=316,
        description="Condition type: Ready, Reconciling, Stalled, Placed, ModelLoaded, "
        "MetricsAvailable, SLOMet.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase machine-readable reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


# Conditions are a map keyed by type, so server-side apply merges them per type.
_CONDITIONS_LIST: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class ConcurrencyStatus(ApiModel):
    """The instance count per replica now, the one being applied, and the learned limit."""

    current: int = Field(ge=0, description="Instances loaded now.")
    target: int = Field(ge=0, description="Instances the controller wants.")
    ceiling: int | None = Field(
        default=None,
        ge=1,
        description="Learned limit: the lowest count at which loading or running ran out of memory or "
        "failed requests. The controller stays below it, and so does placement.",
    )
    ceiling_expires_at: datetime | None = Field(
        default=None,
        description="When the learned ceiling is forgotten, so the controller may try that count again "
        "(EDGETENANT_CEILING_TTL_S after it was learned).",
    )


class BatchingStatus(ApiModel):
    """Dynamic batching as currently configured in Triton."""

    enabled: bool = Field(description="Whether dynamic batching is on.")
    max_queue_delay_microseconds: int | None = Field(default=None, ge=0, description="Queue delay in use.")
    preferred_batch_sizes: list[int] | None = Field(default=None, description="Preferred batch sizes in use.")


class ObservedSignals(ApiModel):
    """The last metrics the controller acted on (from Prometheus)."""

    throughput: float | None = Field(default=None, ge=0, description="Successful inferences per second.")
    latency_p95_ms: float | None = Field(
        default=None, ge=0, description="95th-percentile request latency, ms."
    )
    queue_ms: float | None = Field(
        default=None, ge=0, description="Mean time a request waited in Triton's queue, ms."
    )
    compute_ms: float | None = Field(default=None, ge=0, description="Mean compute time per request, ms.")
    runs_on: str | None = Field(
        default=None,
        max_length=1024,
        description="What the serving runtime reports it runs on, e.g. 'CPU (openvino 2026.4.1)' or "
        "'EdgeTPU (tflite-runtime 2.14.0)' (the OpenVINO and TFLite shims report it; a lab stand-in "
        "reads CPU here, never the device its class plays). Empty when the backend reports nothing.",
    )
    at: datetime | None = Field(default=None, description="When the signals were sampled.")


class Decision(ApiModel):
    """The controller's last decision and why."""

    at: datetime = Field(description="When the decision was made.")
    action: str = Field(description="What was decided, e.g. Place, Move, ScaleUp, ScaleDown, Hold.")
    reason: str = Field(description="Why, in plain words.")
    signals: dict[str, float] = Field(default_factory=dict, description="The numbers the decision rested on.")


class Failure(ApiModel):
    """The last failure seen while serving the tenant."""

    at: datetime = Field(description="When it happened.")
    reason: str = Field(description="CamelCase reason, e.g. ModelLoadFailed, OutOfMemory.")
    message: str = Field(default="", description="Details, e.g. Triton's own error text.")


class MoveRecord(ApiModel):
    """One move of the tenant from one device to another."""

    at: datetime = Field(description="When the move started.")
    from_: DevicePlacement | None = Field(default=None, description="Where it was served before.")
    to: DevicePlacement = Field(description="Where it moved to.")
    reason: str = Field(default="", description="Why it moved.")


class InferenceTenantStatus(ApiModel):
    """What the operator observed and did. Written by the operator only."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation last acted upon."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        description="Ready, Reconciling, Stalled, Placed, ModelLoaded, MetricsAvailable, SLOMet.",
        json_schema_extra=_CONDITIONS_LIST,
    )
    model_name: str | None = Field(default=None, description="Name the model is served under.")
    active_placement: DevicePlacement | None = Field(
        default=None, description="Where the tenant is served now."
    )
    target_placement: DevicePlacement | None = Field(
        default=None, description="Where the tenant should be; differs from activePlacement while moving."
    )
    concurrency: ConcurrencyStatus | None = Field(default=None, description="Instance count per replica.")
    batching: BatchingStatus | None = Field(default=None, description="Dynamic batching in effect.")
    observed: ObservedSignals | None = Field(default=None, description="Last metrics acted on.")
    last_decision: Decision | None = Field(default=None, description="The controller's last decision.")
    last_failure: Failure | None = Field(default=None, description="The last failure.")
    endpoint: str | None = Field(
        default=None, description="In-cluster inference URL (KServe v2 HTTP), e.g. http://<svc>.<ns>:8000."
    )
    replicas: int | None = Field(default=None, ge=0, description="Serving pods that exist (for /scale).")
    selector: str | None = Field(
        default=None, description="Label selector of the serving pods (for /scale and HPA)."
    )
    moves_in_last_hour: int | None = Field(
        default=None, ge=0, description="Voluntary moves in the last hour."
    )
    move_history: list[MoveRecord] = Field(
        default_factory=list, max_length=20, description="Most recent moves, newest last."
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of this type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)


class _Resource(ApiModel):
    """Fields and helpers shared by the three top-level kinds."""

    plural: ClassVar[str]
    namespaced: ClassVar[bool]
    metadata: ObjectMeta

    def to_dict(self) -> dict[str, Any]:
        """The wire form, without the empty metadata collections the model fills in."""
        wire = super().to_dict()
        wire["metadata"] = {k: v for k, v in wire["metadata"].items() if v not in ({}, [])}
        return wire

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def key(self) -> str:
        """`namespace/name` for namespaced objects, `name` for cluster-scoped ones."""
        return f"{self.metadata.namespace}/{self.name}" if self.namespaced else self.name


class InferenceTenant(_Resource):
    """An inference service: a model the operator places on an edge device and serves with Triton."""

    plural: ClassVar[str] = "inferencetenants"
    namespaced: ClassVar[bool] = True

    api_version: Literal["edgetenant.io/v1alpha1"] = Field(
        default=API_VERSION, description="edgetenant.io/v1alpha1"
    )
    kind: Literal["InferenceTenant"] = Field(default="InferenceTenant", description="InferenceTenant")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: InferenceTenantSpec = Field(description="What the tenant wants.")
    status: InferenceTenantStatus | None = Field(
        default=None, description="What the operator observed and did."
    )

    @property
    def served_model_name(self) -> str:
        """The name Triton serves the model under: spec.model.name, else metadata.name."""
        return self.spec.model.name or self.name


# ---------------------------------------------------------------------------------------------
# AcceleratorClass
# ---------------------------------------------------------------------------------------------

_RESOURCE_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


class Sharing(ApiModel):
    """How tenants share one physical device."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.mode != 'TimeSliced' || self.slots >= 2",
            message="sharing.slots must be at least 2 when sharing.mode is TimeSliced",
            field_path=".slots",
        ),
        CelRule(
            rule="self.mode != 'Exclusive' || self.slots == 1",
            message="sharing.slots must be 1 when sharing.mode is Exclusive",
            field_path=".slots",
        ),
    )

    mode: SharingMode = Field(
        default=SharingMode.EXCLUSIVE,
        description="Exclusive: one tenant pod per device. TimeSliced: the device plugin advertises `slots` "
        "replicas of each device (as NVIDIA GPU time-slicing does) and each tenant pod takes one.",
    )
    slots: int = Field(
        default=1, ge=1, le=64, description="Replicas the device plugin advertises per physical device."
    )


class FormatBackend(ApiModel):
    """How a model of one format is served on this class: Triton backend and image."""

    format: ModelFormat = Field(description="Model format: onnx, tensorrt, tflite or openvino.")
    backend: str = Field(
        min_length=1,
        max_length=63,
        description="Triton backend: onnxruntime, tensorrt, openvino, or python (edgetenant's Python-backend "
        "shim, used where no native backend drives the device).",
    )
    image: str = Field(min_length=1, max_length=512, description="Triton container image for this format.")
    parameters: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Triton model-config parameters for this backend "
        "(e.g. the shim's runtime and device).",
    )


class AcceleratorClassSpec(ApiModel):
    """How one kind of device is found on nodes and used to serve models."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self == '' || self.matches('" + _RESOURCE_NAME.replace("\\", "\\\\") + "')",
            message="resourceName must be empty (CPU) or an extended resource name such as nvidia.com/gpu",
            on="resourceName",
        ),
        CelRule(
            rule="self.instanceKind != 'KIND_GPU' || self.resourceName != ''",
            message="instanceKind KIND_GPU needs a device resourceName",
            field_path=".instanceKind",
        ),
        CelRule(
            rule="self.all(f, self.exists_one(g, g.format == f.format))",
            message="formats must list each model format once",
            on="formats",
        ),
    )

    description: str | None = Field(
        default=None, max_length=1024, description="What this class of device is."
    )
    resource_name: str = Field(
        default="",
        max_length=253,
        description="Extended resource the device plugin advertises (e.g. nvidia.com/gpu); "
        "empty for CPU, where "
        "each matching node offers one device.",
    )
    node_selector: LabelMap = Field(
        default_factory=dict, description="Labels a node must have to offer this class."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Tolerations serving pods need on such nodes."
    )
    runtime_class_name: str | None = Field(
        default=None, max_length=253, description="RuntimeClass for serving pods (e.g. nvidia on Jetson/K3s)."
    )
    memory_per_device_mib: int = Field(
        ge=1,
        le=16777216,
        description="Memory one device offers to models, in MiB; the operator budgets tenants against it "
        "(time-slicing isolates nothing).",
    )
    sharing: Sharing = Field(default_factory=Sharing, description="How tenants share one device.")
    formats: list[FormatBackend] = Field(
        min_length=1,
        max_length=8,
        description="Model formats this class serves, with backend and image for each.",
    )
    instance_kind: InstanceKind = Field(
        description="Triton instance_group kind: KIND_GPU for CUDA devices, "
        "KIND_CPU for CPUs and devices driven "
        "from CPU code (EdgeTPU, NCS2), KIND_MODEL when the backend places instances itself."
    )
    relative_speed: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Throughput relative to one x86 CPU device (=1.0); "
        "used only when no ModelProfile exists.",
    )

    def backend_for(self, format_: ModelFormat | str) -> FormatBackend | None:
        """The backend entry serving `format_` on this class, or None if the class cannot serve it."""
        return next((f for f in self.formats if f.format == format_), None)


class AcceleratorClassNodeStatus(ApiModel):
    """One node offering this class."""

    name: str = Field(description="Node name.")
    devices: int = Field(ge=0, description="Devices of this class the node offers.")


class AcceleratorClassStatus(ApiModel):
    """Where the operator found devices of this class."""

    observed_generation: int | None = Field(default=None, ge=0, description="metadata.generation last seen.")
    nodes: list[AcceleratorClassNodeStatus] = Field(
        default_factory=list, description="Nodes offering this class."
    )
    devices: int | None = Field(default=None, ge=0, description="Devices of this class in the cluster.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=32, description="Conditions.", json_schema_extra=_CONDITIONS_LIST
    )


class AcceleratorClass(_Resource):
    """A kind of device (GPU, EdgeTPU, VPU, CPU) and how to serve models on it. Cluster-scoped."""

    plural: ClassVar[str] = "acceleratorclasses"
    namespaced: ClassVar[bool] = False

    api_version: Literal["edgetenant.io/v1alpha1"] = Field(
        default=API_VERSION, description="edgetenant.io/v1alpha1"
    )
    kind: Literal["AcceleratorClass"] = Field(default="AcceleratorClass", description="AcceleratorClass")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: AcceleratorClassSpec = Field(description="How the device is found and used.")
    status: AcceleratorClassStatus | None = Field(default=None, description="Where devices were found.")

    def backend_for(self, format_: ModelFormat | str) -> FormatBackend | None:
        """Shortcut for `spec.backend_for`."""
        return self.spec.backend_for(format_)

    def supports(self, format_: ModelFormat | str) -> bool:
        return self.spec.backend_for(format_) is not None

    def matches_labels(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with these labels satisfies the class's nodeSelector."""
        return all(labels.get(k) == v for k, v in self.spec.node_selector.items())

    def devices_from_allocatable(self, allocatable: Mapping[str, str | int]) -> int:
        """Devices a node offers given its status.allocatable (see the API contract)."""
        if not self.spec.resource_name:
            return 1
        raw = allocatable.get(self.spec.resource_name, 0)
        try:
            advertised = int(raw)
        except ValueError:
            return 0
        return advertised // self.spec.sharing.slots


# ---------------------------------------------------------------------------------------------
# ModelProfile
# ---------------------------------------------------------------------------------------------


class ProfilePoint(ApiModel):
    """One measurement: the model at one concurrency and batch size."""

    concurrency: int = Field(ge=1, le=MAX_CONCURRENCY, description="Model instances loaded.")
    batch_size: int = Field(default=1, ge=1, le=1024, description="Batch size per request.")
    throughput: float = Field(ge=0, description="Inferences per second sustained.")
    latency_p95_ms: float = Field(ge=0, description="95th-percentile request latency, ms.")
    memory_mib: int | None = Field(default=None, ge=0, description="Device memory in use, MiB.")
    source: ProfileSource = Field(
        default=ProfileSource.OFFLINE,
        description="Offline: from the profiler. Online: learned by the operator.",
    )
    measured_at: datetime | None = Field(default=None, description="When it was measured.")


class ModelProfileSpec(ApiModel):
    """Measured behaviour of one model on one accelerator class."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.all(p, self.exists_one(q, "
            "q.concurrency == p.concurrency && q.batchSize == p.batchSize))",
            message="points must not repeat a (concurrency, batchSize) pair",
            on="points",
        ),
    )

    model: str = Field(min_length=1, max_length=63, description="Served model name the profile describes.")
    format: ModelFormat | None = Field(default=None, description="Format of the model that was measured.")
    accelerator_class: ClassName = Field(description="AcceleratorClass it was measured on.")
    node: str | None = Field(default=None, max_length=253, description="Node it was measured on.")
    points: list[ProfilePoint] = Field(
        default_factory=list, max_length=128, description="Measurements, one per (concurrency, batchSize)."
    )
    ceiling: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENCY,
        description="The lowest concurrency that failed on this class (ran out of memory or failed "
        "requests); placement and tuning stay below it.",
    )


class ModelProfile(_Resource):
    """Measured throughput, latency and memory of a model on an accelerator class."""

    plural: ClassVar[str] = "modelprofiles"
    namespaced: ClassVar[bool] = True

    api_version: Literal["edgetenant.io/v1alpha1"] = Field(
        default=API_VERSION, description="edgetenant.io/v1alpha1"
    )
    kind: Literal["ModelProfile"] = Field(default="ModelProfile", description="ModelProfile")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: ModelProfileSpec = Field(description="The measurements.")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

Resource: TypeAlias = InferenceTenant | AcceleratorClass | ModelProfile
RESOURCE_KINDS: dict[str, type[InferenceTenant] | type[AcceleratorClass] | type[ModelProfile]] = {
    "InferenceTenant": InferenceTenant,
    "AcceleratorClass": AcceleratorClass,
    "ModelProfile": ModelProfile,
}


def parse_object(obj: Mapping[str, Any]) -> Resource | dict[str, Any]:
    """Parse one Kubernetes object: our kinds become models, anything else (Node, ...) stays a dict.

    Raises pydantic.ValidationError when one of our kinds is malformed.
    """
    model = RESOURCE_KINDS.get(str(obj.get("kind", ""))) if obj.get("apiVersion") == API_VERSION else None
    if model is None:
        return dict(obj)
    return model.model_validate(obj)


def iter_documents(yaml_text: str) -> list[dict[str, Any]]:
    """The object dicts in a (multi-document) YAML text; `kind: List` is flattened, empty docs dropped."""
    objects: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(yaml_text):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"expected a mapping (a Kubernetes object), got {type(doc).__name__}")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            objects.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            objects.append(doc)
    return objects


def parse_objects(yaml_text: str) -> list[Resource | dict[str, Any]]:
    """Parse every object in a YAML text (see `parse_object`)."""
    return [parse_object(doc) for doc in iter_documents(yaml_text)]


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """YAML files named by `paths`; directories are walked (sorted), kustomization files skipped."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.suffix in {".yaml", ".yml"} and p.stem != "kustomization" and p.is_file()
            )
        else:
            files.append(path)
    return files


def load_objects(paths: str | Path | Sequence[str | Path]) -> list[Resource | dict[str, Any]]:
    """Parse every object in the given files and directories (see `manifest_files`)."""
    path_list: Sequence[str | Path] = [paths] if isinstance(paths, str | Path) else paths
    objects: list[Resource | dict[str, Any]] = []
    for path in manifest_files(path_list):
        objects.extend(parse_objects(path.read_text()))
    return objects


def set_condition(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """Conditions with `new` replacing the one of its type.

    kstatus semantics: lastTransitionTime only moves when status changes, so a condition that
    is re-asserted with the same status keeps its old transition time.
    """
    result: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            result.append(old)
            continue
        replaced = True
        if old.status == new.status:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
        result.append(new)
    if not replaced:
        result.append(new)
    return result


def make_condition(
    type_: ConditionType | str,
    status: bool | ConditionStatus,
    reason: str,
    message: str = "",
    *,
    now: datetime,
    generation: int | None = None,
) -> Condition:
    """Build a condition; `status` may be a bool for True/False."""
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    return Condition(
        type=str(type_),
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now,
        observed_generation=generation,
    )
