"""Who may do what to a tenant's Triton: the restricted APIs' key, its Secret, the NetworkPolicy. Pure.

Triton serves inference, health and metadata to anyone who reaches it, and model control (load,
unload, the repository index), logging, tracing and shared-memory registration only to a request that
carries the tenant's admin key in a header (Triton's restricted-API options). A Python-backend model is
code, so whoever may load models may run code in the pod: only the operator holds the key.

Each tenant's key is HMAC-SHA256 of the operator's master key over the tenant's namespace, name and
UID, so the operator never reads a tenant's Secret back (its RBAC has no read access to Secrets beyond
its own master key) and a tenant deleted and created again gets a new key. The key reaches Triton
through an environment variable from the tenant's Secret, expanded by the kubelet into Triton's
arguments (`$(VAR)`), so the pod spec never holds it in clear.

The NetworkPolicy lets the tenant's own namespace (and whatever `spec.network.allowFrom` adds) reach
the inference ports, the operator reach them for readiness and tuning, and only the monitoring
namespace reach the metrics port. See docs/security.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Final

from edgetenant.api.models import InferenceTenant

# The header Triton checks (HTTP); over gRPC Triton expects it as `triton-grpc-protocol-<key>`.
ADMIN_HEADER: Final = "edgetenant-admin-key"
GRPC_ADMIN_HEADER: Final = f"triton-grpc-protocol-{ADMIN_HEADER}"
# Restricted behind the key. Left open: health, metadata and inference (the tenant's clients),
# model-config and statistics (read-only; the operator's resync reads the config, and the metrics port
# publishes the same counters).
RESTRICTED_APIS: Final = ("model-repository", "shared-memory", "trace", "logging")
ADMIN_KEY_ENV: Final = "EDGETENANT_ADMIN_KEY"
SECRET_KEY: Final = "admin-key"
# A hash of the key (never the key) in the pod template: a new key rolls the pods, which read their
# key from the environment only when they start.
KEY_HASH_ANNOTATION: Final = "edgetenant.io/admin-key-hash"
# Triton's restricted-API options are documented from Triton 2.37 (23.08); an older Triton refuses
# unknown flags and would never start.
RESTRICTED_API_SINCE: Final = (2, 37)
# The operator's own pods, as manifests/operator/deployment.yaml labels them.
OPERATOR_POD_LABELS: Final = {"app.kubernetes.io/name": "edgetenant-operator"}
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"  # set by the API server on every namespace


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """Where the operator and the monitoring stack run (the NetworkPolicy lets them in)."""

    operator_namespace: str = "edgetenant-system"
    monitoring_namespace: str = "monitoring"


def tenant_admin_key(master: bytes, *, namespace: str, name: str, uid: str) -> str:
    """The tenant's admin key: HMAC-SHA256(master, namespace/name/uid), hex."""
    message = f"edgetenant-admin-key/v1\n{namespace}\n{name}\n{uid}".encode()
    return hmac.new(master, message, hashlib.sha256).hexdigest()


def key_fingerprint(key: str) -> str:
    """A short one-way fingerprint of a key, safe to show (pod annotations, logs)."""
    return hashlib.sha256(f"edgetenant-key-fingerprint\n{key}".encode()).hexdigest()[:16]


def secret_name(tenant: InferenceTenant) -> str:
    return f"{tenant.metadata.name}-triton-admin"


def network_policy_name(tenant: InferenceTenant) -> str:
    return f"{tenant.metadata.name}-triton"


def triton_supports_restricted_apis(parameters: dict[str, str]) -> bool:
    """False when the class says its Triton predates the restricted-API options (`tritonVersion`)."""
    try:
        major_minor = tuple(int(part) for part in parameters.get("tritonVersion", "").split(".")[:2])
    except ValueError:
        return True
    return len(major_minor) != 2 or major_minor >= RESTRICTED_API_SINCE


def restricted_api_args(parameters: dict[str, str]) -> list[str]:
    """Triton's restricted-API options, with the key from the environment (the kubelet expands
    `$(VAR)` in args from the container's own env, so the pod spec holds only the variable's name)."""
    if not triton_supports_restricted_apis(parameters):
        return []
    group = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$({ADMIN_KEY_ENV})"
    return [f"--http-restricted-api={group}", f"--grpc-restricted-protocol={group}"]


def admin_key_env(tenant: InferenceTenant) -> dict[str, Any]:
    return {
        "name": ADMIN_KEY_ENV,
        "valueFrom": {"secretKeyRef": {"name": secret_name(tenant), "key": SECRET_KEY}},
    }


def render_secret(tenant: InferenceTenant, metadata: dict[str, Any], key: str) -> dict[str, Any]:
    """The tenant's admin key, for its Triton pods. Immutable would stop a new master key from
    reaching it; the operator rewrites it instead, and the key hash in the pod template rolls the pods."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**metadata, "name": secret_name(tenant)},
        "type": "Opaque",
        "data": {SECRET_KEY: base64.b64encode(key.encode()).decode()},
    }


def _peer(peer: Any) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    for field, wire in (("namespace_selector", "namespaceSelector"), ("pod_selector", "podSelector")):
        selector = getattr(peer, field)
        if selector is not None:  # as written: an empty selector matches everything
            rendered[wire] = {k: v for k, v in selector.to_dict().items() if v}
    return rendered


def render_network_policy(
    tenant: InferenceTenant,
    metadata: dict[str, Any],
    settings: NetworkSettings,
    *,
    selector: dict[str, str],
    client_ports: tuple[int, ...],
    metrics_port: int,
) -> dict[str, Any]:
    """Ingress to the tenant's Triton pods (`selector`): the inference ports from the tenant's namespace
    and `spec.network.allowFrom`, and from the operator; the metrics port from the monitoring namespace.
    Egress stays open: the model fetcher reaches wherever `spec.model.uri` points."""

    def ports(*numbers: int) -> list[dict[str, Any]]:
        return [{"protocol": "TCP", "port": number} for number in numbers]

    clients = [{"podSelector": {}}, *(_peer(p) for p in tenant.spec.network.allow_from)]
    operator = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: settings.operator_namespace}},
        "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)},
    }
    monitoring = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: settings.monitoring_namespace}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {**metadata, "name": network_policy_name(tenant)},
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": clients, "ports": ports(*client_ports)},
                {"from": [operator], "ports": ports(*client_ports)},
                {"from": [monitoring], "ports": ports(metrics_port)},
            ],
        },
    }
