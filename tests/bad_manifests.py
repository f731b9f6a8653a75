"""Wrong manifests and what a person must be told about each.

One table, two judges: `tests/unit/test_api_bad_input.py` checks every case offline against the
generated CRD schemas and their CEL rules, and the cluster tests send the same manifests to a
real kube-apiserver (server-side dry run, strict field validation). Each `expect` entry is a
substring that both print: the CEL rule's message, or the field path plus the API server's own
words ("Required value", "Unsupported value", "must be of type integer", ...).

`api_server=False` marks a case that client tooling reports before anything reaches the server
(kubectl's REST mapping prints the `no matches for kind` text); a raw API client gets a 404 there.

Checked against kube-apiserver 1.36 with `kubectl create --dry-run=server -f` (strict field
validation is kubectl's default): every case's `expect` substrings appear in its output.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

API_VERSION = "edgetenant.io/v1alpha1"
NAMESPACE = "bad-input"


class _Delete:
    """Marks a key to remove from the base manifest."""


DELETE = _Delete()


@dataclass(frozen=True)
class BadCase:
    id: str
    manifest: dict[str, Any]
    expect: tuple[str, ...]
    api_server: bool = True


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, _Delete):
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def good_tenant(name: str = "mobilenet-v2") -> dict[str, Any]:
    """A valid InferenceTenant; each case breaks one thing in it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceTenant",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"format": "onnx", "uri": "file:///models/mobilenet_v2.onnx"},
            "acceleratorClasses": ["jetson-tx2", "x86-cpu"],
            "slo": {"latencyP95Ms": 40, "throughput": 60},
        },
    }


def good_class(name: str = "jetson-test") -> dict[str, Any]:
    """A valid AcceleratorClass."""
    return {
        "apiVersion": API_VERSION,
        "kind": "AcceleratorClass",
        "metadata": {"name": name},
        "spec": {
            "resourceName": "nvidia.com/gpu",
            "memoryPerDeviceMiB": 4096,
            "sharing": {"mode": "TimeSliced", "slots": 4},
            "instanceKind": "KIND_GPU",
            "formats": [
                {"format": "onnx", "backend": "onnxruntime", "image": "nvcr.io/nvidia/tritonserver:24.10-py3"}
            ],
        },
    }


def good_profile(name: str = "mobilenet-v2.jetson-tx2") -> dict[str, Any]:
    """A valid ModelProfile."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelProfile",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": "mobilenet_v2",
            "acceleratorClass": "jetson-tx2",
            "points": [
                {"concurrency": 1, "batchSize": 1, "throughput": 92, "latencyP95Ms": 13.5},
                {"concurrency": 2, "batchSize": 1, "throughput": 171, "latencyP95Ms": 14.8},
            ],
        },
    }


def tenant(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _merge(good_tenant(name), {"spec": spec})


def accel(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _merge(good_class(name), {"spec": spec})


def profile(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _merge(good_profile(name), {"spec": spec})


def _model(**fields: Any) -> dict[str, Any]:
    return {"model": fields}


CASES: list[BadCase] = [
    # --- InferenceTenant: the model --------------------------------------------------------
    BadCase("missing-spec", _merge(good_tenant("no-spec"), {"spec": DELETE}), ("spec: Required value",)),
    BadCase("missing-model", tenant("no-model", {"model": DELETE}), ("spec.model: Required value",)),
    BadCase(
        "unknown-format",
        tenant("pytorch-model", _model(format="pytorch")),
        ("spec.model.format: Unsupported value", '"pytorch"', '"onnx"'),
    ),
    BadCase("missing-uri", tenant("no-uri", _model(uri=DELETE)), ("spec.model.uri: Required value",)),
    BadCase(
        "bad-uri-scheme",
        tenant("ftp-uri", _model(uri="ftp://models.example.com/mobilenet_v2.onnx")),
        ("spec.model.uri", "model.uri must start with pvc://, http://, https://, file://, oci:// or s3://"),
    ),
    BadCase(
        "uri-without-scheme",
        tenant("bare-path", _model(uri="/models/mobilenet_v2.onnx")),
        ("model.uri must start with pvc://, http://, https://, file://, oci:// or s3://",),
    ),
    BadCase(
        "uri-with-credentials",
        tenant("inline-password", _model(uri="https://alice:hunter2@models.example.com/m.onnx")),
        ("spec.model.uri", "must not hold credentials", "model.credentialsSecret"),
    ),
    BadCase(
        "pvc-uri-without-path",
        tenant("pvc-no-path", _model(uri="pvc://models")),
        ("spec.model.uri", "pvc://<claim name>/<path inside the claim>"),
    ),
    BadCase(
        "file-uri-relative",
        tenant("file-relative", _model(uri="file://models/m.onnx")),
        ("spec.model.uri", "file:///<path>"),
    ),
    BadCase(
        "file-uri-with-backsteps",
        tenant("file-backsteps", _model(uri="file:///models/../etc/m.onnx")),
        ("spec.model.uri", "may not contain '..' segments"),
    ),
    BadCase(
        "s3-without-endpoint",
        tenant("s3-no-endpoint", _model(uri="s3://models/mobilenet_v2.onnx")),
        ("spec.model.s3Endpoint", "model.s3Endpoint is required with an s3:// model.uri"),
    ),
    BadCase(
        "s3-endpoint-without-s3",
        tenant("endpoint-no-s3", _model(s3Endpoint="https://minio.local:9000")),
        ("spec.model.s3Endpoint", "model.s3Endpoint is required with an s3:// model.uri, and only then"),
    ),
    BadCase(
        "digest-not-hex",
        tenant("short-digest", _model(sha256="abc123")),
        ("spec.model.sha256", "should match", "[0-9a-f]{64}"),
    ),
    BadCase(
        "digest-uppercase",
        tenant("upper-digest", _model(sha256="A" * 64)),
        ("spec.model.sha256", "should match"),
    ),
    BadCase(
        "max-size-zero",
        tenant("zero-size", _model(maxSizeMiB=0)),
        ("spec.model.maxSizeMiB", "should be greater than or equal to 1"),
    ),
    BadCase(
        "credentials-secret-not-a-name",
        tenant("bad-secret", _model(credentialsSecret="My_Secret")),
        ("spec.model.credentialsSecret", "should match"),
    ),
    BadCase(
        "model-name-with-space",
        tenant("spaced-name", _model(name="mobilenet v2")),
        ("spec.model.name", "should match"),
    ),
    BadCase(
        "max-batch-negative",
        tenant("neg-batch", _model(maxBatchSize=-1)),
        ("spec.model.maxBatchSize", "should be greater than or equal to 0"),
    ),
    BadCase(
        "memory-hint-string",
        tenant("mem-string", _model(memoryHintMiB="350Mi")),
        ("spec.model.memoryHintMiB", "must be of type integer"),
    ),
    # --- accelerator classes ---------------------------------------------------------------
    BadCase(
        "duplicate-classes",
        tenant("dup-classes", {"acceleratorClasses": ["jetson-tx2", "x86-cpu", "jetson-tx2"]}),
        ("spec.acceleratorClasses", "acceleratorClasses must not list a class twice"),
    ),
    BadCase(
        "class-name-uppercase",
        tenant("upper-class", {"acceleratorClasses": ["Jetson_TX2"]}),
        ("spec.acceleratorClasses[0]", "should match"),
    ),
    BadCase(
        "classes-not-a-list",
        tenant("classes-string", {"acceleratorClasses": "jetson-tx2"}),
        ("spec.acceleratorClasses", "must be of type array"),
    ),
    # --- SLO -----------------------------------------------------------------------------
    BadCase(
        "negative-latency-slo",
        tenant("neg-latency", {"slo": {"latencyP95Ms": -5}}),
        ("spec.slo.latencyP95Ms", "should be greater than 0"),
    ),
    BadCase(
        "zero-latency-slo",
        tenant("zero-latency", {"slo": {"latencyP95Ms": 0}}),
        ("spec.slo.latencyP95Ms", "should be greater than 0"),
    ),
    BadCase(
        "negative-throughput-slo",
        tenant("neg-throughput", {"slo": {"throughput": -1}}),
        ("spec.slo.throughput", "should be greater than or equal to 0"),
    ),
    BadCase(
        "slo-as-string",
        tenant("slo-string", {"slo": {"latencyP95Ms": "40ms"}}),
        ("spec.slo.latencyP95Ms", "must be of type number"),
    ),
    # --- concurrency ---------------------------------------------------------------------
    BadCase(
        "concurrency-min-above-max",
        tenant("min-above-max", {"concurrency": {"min": 4, "max": 2, "initial": 2}}),
        ("spec.concurrency.min", "concurrency.min must be less than or equal to concurrency.max"),
    ),
    BadCase(
        "concurrency-initial-above-max",
        tenant("initial-high", {"concurrency": {"min": 1, "max": 4, "initial": 6}}),
        (
            "spec.concurrency.initial",
            "concurrency.initial must lie between concurrency.min and concurrency.max",
        ),
    ),
    BadCase(
        "concurrency-initial-below-min",
        tenant("initial-low", {"concurrency": {"min": 2, "max": 4}}),
        ("concurrency.initial must lie between concurrency.min and concurrency.max",),
    ),
    BadCase(
        "fixed-concurrency-without-value",
        tenant("fixed-no-value", {"concurrency": {"mode": "Fixed"}}),
        (
            "spec.concurrency.value: Required value",
            "concurrency.value is required when concurrency.mode is Fixed",
        ),
    ),
    BadCase(
        "auto-concurrency-with-value",
        tenant("auto-value", {"concurrency": {"mode": "Auto", "value": 3}}),
        (
            "spec.concurrency.value: Forbidden",
            "concurrency.value is only used when concurrency.mode is Fixed",
        ),
    ),
    BadCase(
        "concurrency-mode-unknown",
        tenant("mode-dynamic", {"concurrency": {"mode": "Dynamic"}}),
        ("spec.concurrency.mode: Unsupported value", '"Dynamic"'),
    ),
    BadCase(
        "concurrency-max-too-high",
        tenant("max-100", {"concurrency": {"max": 100}}),
        ("spec.concurrency.max", "should be less than or equal to 64"),
    ),
    BadCase(
        "concurrency-min-zero",
        tenant("min-zero", {"concurrency": {"min": 0}}),
        ("spec.concurrency.min", "should be greater than or equal to 1"),
    ),
    BadCase(
        "concurrency-min-as-string",
        tenant("min-string", {"concurrency": {"min": "2"}}),
        ("spec.concurrency.min", "must be of type integer"),
    ),
    # --- batching ------------------------------------------------------------------------
    BadCase(
        "fixed-batching-without-delay",
        tenant("fixed-batch", {"batching": {"mode": "Fixed", "preferredBatchSizes": [4]}}),
        (
            "spec.batching.maxQueueDelayMicroseconds: Required value",
            "batching.maxQueueDelayMicroseconds is required when batching.mode is Fixed",
        ),
    ),
    BadCase(
        "batching-parameters-in-auto",
        tenant("auto-batch-params", {"batching": {"mode": "Auto", "maxQueueDelayMicroseconds": 500}}),
        ("spec.batching: Forbidden", "only used when batching.mode is Fixed"),
    ),
    BadCase(
        "preferred-batch-above-max-batch",
        tenant(
            "batch-too-big",
            {
                "model": {"maxBatchSize": 8},
                "batching": {
                    "mode": "Fixed",
                    "maxQueueDelayMicroseconds": 1000,
                    "preferredBatchSizes": [4, 16],
                },
            },
        ),
        (
            "spec.batching.preferredBatchSizes",
            "batching.preferredBatchSizes must not exceed model.maxBatchSize",
        ),
    ),
    BadCase(
        "fixed-batching-without-batch-dimension",
        tenant(
            "no-batch-dim",
            {"model": {"maxBatchSize": 0}, "batching": {"mode": "Fixed", "maxQueueDelayMicroseconds": 100}},
        ),
        ("batching.mode Fixed needs model.maxBatchSize of at least 1",),
    ),
    BadCase(
        # `mode: Off` unquoted is the boolean false in YAML 1.1 (PyYAML and kubectl alike).
        "batching-mode-yaml-boolean",
        tenant("batch-off", {"batching": {"mode": False}}),
        ("spec.batching.mode", "must be of type string"),
    ),
    # --- priority, replicas, placement ------------------------------------------------------
    BadCase(
        "priority-out-of-range",
        tenant("priority-high", {"priority": 5000}),
        ("spec.priority", "should be less than or equal to 1000"),
    ),
    BadCase(
        "priority-as-word",
        tenant("priority-word", {"priority": "high"}),
        ("spec.priority", "must be of type integer"),
    ),
    BadCase(
        "negative-replicas",
        tenant("neg-replicas", {"replicas": -1}),
        ("spec.replicas", "should be greater than or equal to 0"),
    ),
    BadCase(
        "max-moves-out-of-range",
        tenant("moves-100", {"placement": {"maxMovesPerHour": 100}}),
        ("spec.placement.maxMovesPerHour", "should be less than or equal to 60"),
    ),
    BadCase(
        "allow-move-as-string",
        tenant("allow-move-yes", {"placement": {"allowMove": "sometimes"}}),
        ("spec.placement.allowMove", "must be of type boolean"),
    ),
    BadCase(
        "toleration-exists-with-value",
        tenant(
            "tol-exists-value",
            {"placement": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}},
        ),
        (
            "spec.placement.tolerations[0].value: Forbidden",
            "a toleration with operator Exists must not set a value",
        ),
    ),
    BadCase(
        "toleration-equal-without-key",
        tenant("tol-no-key", {"placement": {"tolerations": [{"value": "x", "effect": "NoSchedule"}]}}),
        ("a toleration without a key must use operator Exists",),
    ),
    BadCase(
        "toleration-bad-effect",
        tenant("tol-effect", {"placement": {"tolerations": [{"key": "gpu", "effect": "NoRun"}]}}),
        ("spec.placement.tolerations[0].effect: Unsupported value", '"NoRun"'),
    ),
    # The pod's own toleration rules: the API server would refuse the Deployment rendered from these.
    BadCase(
        "toleration-seconds-without-no-execute",
        tenant(
            "tol-seconds",
            {"placement": {"tolerations": [{"key": "gpu", "value": "x", "tolerationSeconds": 30}]}},
        ),
        (
            "spec.placement.tolerations[0].effect",
            "a toleration with tolerationSeconds must have effect NoExecute",
        ),
    ),
    BadCase(
        "toleration-key-not-a-label-key",
        tenant("tol-key", {"placement": {"tolerations": [{"key": "gpu type", "operator": "Exists"}]}}),
        ("spec.placement.tolerations[0].key", "a toleration's key must be a label key"),
    ),
    BadCase(
        "toleration-value-not-a-label-value",
        tenant("tol-value", {"placement": {"tolerations": [{"key": "gpu", "value": "jetson nano"}]}}),
        ("spec.placement.tolerations[0].value", "should match"),
    ),
    # --- unknown fields and structure -------------------------------------------------------
    BadCase(
        "unknown-spec-field",
        tenant("extra-field", {"gpu": 1}),
        ('unknown field "spec.gpu"',),
    ),
    BadCase(
        "misspelled-nested-field",
        tenant("typo-field", {"concurrency": {"maximum": 8}}),
        ('unknown field "spec.concurrency.maximum"',),
    ),
    BadCase(
        "snake-case-field",
        tenant("snake-field", _model(max_batch_size=4)),
        ('unknown field "spec.model.max_batch_size"',),
    ),
    BadCase(
        "missing-name",
        _merge(good_tenant(), {"metadata": {"name": DELETE}}),
        ("metadata.name: Required value",),
    ),
    BadCase(
        "wrong-api-version",
        _merge(good_tenant("old-version"), {"apiVersion": "edgetenant.io/v1"}),
        ('no matches for kind "InferenceTenant" in version "edgetenant.io/v1"',),
        api_server=False,
    ),
    # --- AcceleratorClass ---------------------------------------------------------------------
    BadCase(
        "time-sliced-without-slots",
        accel("ts-no-slots", {"sharing": {"mode": "TimeSliced", "slots": DELETE}}),
        ("spec.sharing.slots", "sharing.slots must be at least 2 when sharing.mode is TimeSliced"),
    ),
    BadCase(
        "exclusive-with-slots",
        accel("excl-slots", {"sharing": {"mode": "Exclusive", "slots": 4}}),
        ("sharing.slots must be 1 when sharing.mode is Exclusive",),
    ),
    BadCase(
        "sharing-mode-unknown",
        accel("mig-sharing", {"sharing": {"mode": "MIG"}}),
        ("spec.sharing.mode: Unsupported value", '"MIG"'),
    ),
    BadCase(
        "class-without-formats",
        accel("no-formats", {"formats": []}),
        ("spec.formats", "should have at least 1 items"),
    ),
    BadCase(
        "class-duplicate-formats",
        accel(
            "dup-formats",
            {
                "formats": [
                    {
                        "format": "onnx",
                        "backend": "onnxruntime",
                        "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
                    },
                    {
                        "format": "onnx",
                        "backend": "python",
                        "image": "ghcr.io/edgetenant/tritonserver-shim:24.10",
                    },
                ]
            },
        ),
        ("spec.formats", "formats must list each model format once"),
    ),
    BadCase(
        "class-without-memory",
        accel("no-memory", {"memoryPerDeviceMiB": DELETE}),
        ("spec.memoryPerDeviceMiB: Required value",),
    ),
    BadCase(
        "gpu-kind-on-cpu-class",
        accel("cpu-gpu-kind", {"resourceName": "", "sharing": {"mode": "Exclusive", "slots": 1}}),
        ("spec.instanceKind", "instanceKind KIND_GPU needs a device resourceName"),
    ),
    BadCase(
        "bad-resource-name",
        accel("space-resource", {"resourceName": "nvidia gpu"}),
        (
            "spec.resourceName",
            "resourceName must be empty (CPU) or an extended resource name such as nvidia.com/gpu",
        ),
    ),
    BadCase(
        "unknown-instance-kind",
        accel("tpu-kind", {"instanceKind": "KIND_TPU"}),
        ("spec.instanceKind: Unsupported value", '"KIND_TPU"'),
    ),
    BadCase(
        "format-backend-missing-image",
        accel("no-image", {"formats": [{"format": "onnx", "backend": "onnxruntime"}]}),
        ("spec.formats[0].image: Required value",),
    ),
    # --- ModelProfile -------------------------------------------------------------------------
    BadCase(
        "profile-duplicate-points",
        profile(
            "dup-points",
            {
                "points": [
                    {"concurrency": 2, "batchSize": 1, "throughput": 171, "latencyP95Ms": 14.8},
                    {"concurrency": 2, "throughput": 160, "latencyP95Ms": 15.1},
                ]
            },
        ),
        ("spec.points", "points must not repeat a (concurrency, batchSize) pair"),
    ),
    BadCase(
        "profile-negative-throughput",
        profile("neg-point", {"points": [{"concurrency": 1, "throughput": -3, "latencyP95Ms": 10}]}),
        ("spec.points[0].throughput", "should be greater than or equal to 0"),
    ),
    BadCase(
        "profile-unknown-source",
        profile(
            "bad-source",
            {"points": [{"concurrency": 1, "throughput": 3, "latencyP95Ms": 10, "source": "Guess"}]},
        ),
        ("spec.points[0].source: Unsupported value", '"Guess"'),
    ),
    BadCase(
        "profile-without-class",
        profile("no-class", {"acceleratorClass": DELETE}),
        ("spec.acceleratorClass: Required value",),
    ),
]

GOOD: list[dict[str, Any]] = [good_tenant(), good_class(), good_profile()]
