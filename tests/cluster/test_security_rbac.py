"""RBAC exactly as used: `kubectl auth can-i --list` for the operator's ServiceAccount on the real API
server equals the table below, row for row; every row names the code that needs it, and the test checks
that code is still there. A grant the code does not use, or a row whose code went away, fails.

Also the namespaced install (manifests/overlays/namespaced, the component manifests/components/namespaced):
the tenant rules reach only the listed namespaces, and `edgetenant run --namespace NS` serves a tenant
there with nothing else granted.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.test_operator import OPERATOR_ENV, condition, tenant
from tests.lab import Lab, OperatorProcess, wait_for

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "operator" / "edgetenant"
OPERATOR_NS = "edgetenant-system"

Row = tuple[str, str, frozenset[str]]  # (resource as can-i prints it, resource names, verbs)
WATCHED = "watched by a kopf handler"  # the evidence for list + watch: handlers.py's decorators


def row(resource: str, verbs: str, names: str = "") -> Row:
    return (resource, names, frozenset(verbs.split()))


# Cluster-scoped, from ClusterRole edgetenant-operator: visible in every namespace.
CLUSTER: dict[Row, list[tuple[str, str]]] = {
    row("acceleratorclasses.edgetenant.io", "list watch"): [(WATCHED, "acceleratorclasses")],
    row("acceleratorclasses.edgetenant.io/status", "patch"): [
        ("adapters/kube.py", "patch_cluster_custom_object_status")
    ],
    row("nodes", "list watch"): [(WATCHED, "nodes")],
}
# ClusterRole edgetenant-operator-tenants: in every namespace the operator serves.
TENANTS: dict[Row, list[tuple[str, str]]] = {
    row("inferencetenants.edgetenant.io", "get list watch"): [
        (WATCHED, "inferencetenants"),
        ("adapters/kube.py", "get_namespaced_custom_object"),  # read again after a status conflict
    ],
    row("inferencetenants.edgetenant.io/status", "patch"): [
        ("adapters/kube.py", "patch_namespaced_custom_object_status")
    ],
    row("modelprofiles.edgetenant.io", "list watch create patch"): [
        (WATCHED, "modelprofiles"),
        ("tuning_driver.py", '"kind": "ModelProfile"'),  # learned profiles, server-side applied
    ],
    row("pods", "list watch"): [(WATCHED, "pods")],
    row("configmaps", "list watch create patch"): [
        (WATCHED, "configmaps"),
        ("render/kube.py", '"kind": "ConfigMap"'),
    ],
    row("services", "list watch create patch"): [
        (WATCHED, "services"),
        ("render/kube.py", '"kind": "Service"'),
    ],
    row("deployments.apps", "list watch create patch"): [
        (WATCHED, "deployments"),
        ("render/kube.py", '"kind": "Deployment"'),
    ],
    row("networkpolicies.networking.k8s.io", "list watch create patch"): [
        (WATCHED, "networkpolicies"),
        ("render/access.py", '"kind": "NetworkPolicy"'),
    ],
    # Written, never read: the key derives from the master key.
    row("secrets", "create patch"): [("render/access.py", '"kind": "Secret"')],
    row("events", "create"): [("adapters/kube.py", "create_namespaced_event")],
}
# Role edgetenant-operator-leader-election: the operator's own namespace only.
OWN: dict[Row, list[tuple[str, str]]] = {
    row("leases.coordination.k8s.io", "create"): [("adapters/kube.py", "create_namespaced_lease")],
    row("leases.coordination.k8s.io", "get update", "edgetenant-operator"): [
        ("adapters/kube.py", "read_namespaced_lease"),
        ("adapters/kube.py", "replace_namespaced_lease"),
    ],
    row("secrets", "create"): [("adapters/kube.py", "create_namespaced_secret")],
    row("secrets", "get", "edgetenant-operator-key"): [
        ("adapters/kube.py", "read_namespaced_secret"),
        ("admin_keys.py", '"edgetenant-operator-key"'),
    ],
}
# Every change, create or patch of the children goes through one call.
SERVER_SIDE_APPLY = ("adapters/kube.py", "server_side_apply")

ROW_LINE = re.compile(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


def can_i_list(lab: Lab, kubeconfig: Path, namespace: str) -> set[Row]:
    """`kubectl auth can-i --list` as the ServiceAccount itself (its token, so its real groups)."""
    out = lab.kubectl("auth", "can-i", "--list", "-n", namespace, kubeconfig=kubeconfig).stdout
    rows: set[Row] = set()
    for line in out.splitlines()[1:]:
        match = ROW_LINE.match(line)
        assert match, f"cannot read this line of can-i --list: {line!r}"
        resource, urls, names, verbs = match.groups()
        if urls:
            continue  # non-resource URLs (discovery, health): every authenticated client has them
        rows.add((resource, names, frozenset(verbs.split())))
    return rows


def merged(rows: set[Row]) -> dict[tuple[str, str], frozenset[str]]:
    """(resource, names) -> every verb granted: can-i prints a resource once per rule that grants it."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for resource, names, verbs in rows:
        out[(resource, names)] = out.get((resource, names), frozenset()) | verbs
    return out


def expected(*tables: dict[Row, list[tuple[str, str]]]) -> dict[tuple[str, str], frozenset[str]]:
    return merged({r for table in tables for r in table})


def watched_plurals() -> set[str]:
    source = (PKG / "handlers.py").read_text()
    return set(re.findall(r'@kopf\.on\.event\([^)]*?"([a-z]+)"(?:,\s*labels=\w+)?\)', source))


@pytest.fixture(scope="module")
def baseline(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What a ServiceAccount with no binding at all may do (self-reviews): not the operator's doing."""
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "serviceaccount", name, "-n", OPERATOR_NS)
    kubeconfig = lab.service_account_kubeconfig(OPERATOR_NS, name, tmp_path_factory.mktemp("nobody") / "kc")
    yield kubeconfig
    lab.kubectl("delete", "serviceaccount", name, "-n", OPERATOR_NS, check=False)


def granted(
    lab: Lab, kubeconfig: Path, baseline: Path, namespace: str
) -> dict[tuple[str, str], frozenset[str]]:
    return merged(can_i_list(lab, kubeconfig, namespace) - can_i_list(lab, baseline, namespace))


def test_every_row_of_the_table_names_code_that_is_still_there() -> None:
    watched = watched_plurals()
    assert {"nodes", "pods", "inferencetenants", "networkpolicies"} <= watched, watched
    for table in (CLUSTER, TENANTS, OWN):
        for (resource, _names, verbs), evidence in table.items():
            for path, snippet in evidence:
                if path == WATCHED:
                    assert snippet in watched, f"{resource}: nothing watches {snippet} any more"
                    assert {"list", "watch"} <= verbs
                else:
                    assert snippet in (PKG / path).read_text(), (
                        f"{resource} {sorted(verbs)}: {path} no longer has {snippet}"
                    )
            if {"create", "patch"} <= verbs:
                assert SERVER_SIDE_APPLY[1] in (PKG / SERVER_SIDE_APPLY[0]).read_text()
    # Every watch has its row: a new handler without RBAC would fail in the cluster, quietly.
    rows = {resource.split(".")[0] for table in (CLUSTER, TENANTS) for resource, _, _ in table}
    assert watched <= rows, watched - rows


def test_the_operator_may_do_exactly_what_its_code_does_in_a_tenant_namespace(
    lab: Lab, operator_kubeconfig: Path, baseline: Path, namespace: str
) -> None:
    assert granted(lab, operator_kubeconfig, baseline, namespace) == expected(CLUSTER, TENANTS)


def test_in_its_own_namespace_it_may_also_lead_and_read_its_one_secret(
    lab: Lab, operator_kubeconfig: Path, baseline: Path
) -> None:
    assert granted(lab, operator_kubeconfig, baseline, OPERATOR_NS) == expected(CLUSTER, TENANTS, OWN)


def test_it_cannot_read_anyones_secrets_or_delete_anything(
    lab: Lab, operator_kubeconfig: Path, namespace: str
) -> None:
    for verb, what in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "secret/another-tenant-triton-admin"),
        ("delete", "pods"),
        ("delete", "deployments"),
        ("delete", "inferencetenants"),
        ("update", "inferencetenants"),
        ("patch", "inferencetenants"),
        ("create", "pods"),
        ("create", "pods/exec"),
        ("escalate", "roles"),
    ):
        answer = lab.kubectl(
            "auth", "can-i", verb, what, "-n", namespace, kubeconfig=operator_kubeconfig, check=False
        )
        assert answer.stdout.strip() == "no", f"{verb} {what}: {answer.stdout}"


# --- one namespace or a few ------------------------------------------------------------------------


class NamespacedOperator(OperatorProcess):
    """The operator from this checkout with `--namespace` for each of `namespaces`."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: dict[str, str], namespaces: list[str]) -> None:
        super().__init__(kubeconfig, log_path, env)
        self.namespaces = namespaces

    def start(self) -> NamespacedOperator:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [
                *self.python,
                "-m",
                "edgetenant",
                f"--kubeconfig={self.kubeconfig}",
                "--standalone",
                *(f"--namespace={ns}" for ns in self.namespaces),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "EDGETENANT_METRICS_PORT": "0", **self.env},
            cwd=REPO,
            start_new_session=True,
        )
        return self


@pytest.fixture(scope="module")
def namespaced(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The overlay's RBAC for a ServiceAccount of its own, serving one namespace (`served`) of two."""
    suffix = uuid.uuid4().hex[:6]
    account, served, other = f"et-ns-{suffix}", f"served-{suffix}", f"other-{suffix}"
    for ns in (served, other):
        lab.kubectl("create", "namespace", ns)
    lab.kubectl("create", "serviceaccount", account, "-n", OPERATOR_NS)
    rendered = yaml.safe_load_all(
        lab.kubectl("kustomize", str(REPO / "manifests" / "overlays" / "namespaced")).stdout
    )
    bindings = [d for d in rendered if d and d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert "edgetenant-operator-tenants" not in {
        d["metadata"]["name"] for d in bindings if d["kind"] == "ClusterRoleBinding"
    }, "the component leaves the tenant rules cluster-wide"
    objects = []
    for binding in bindings:
        binding["metadata"]["name"] += f"-{suffix}"
        if binding["metadata"].get("namespace") == "edge-vision":
            binding["metadata"]["namespace"] = served
        binding["subjects"] = [{"kind": "ServiceAccount", "name": account, "namespace": OPERATOR_NS}]
        objects.append(binding)
    lab.apply(objects)
    kubeconfig = lab.service_account_kubeconfig(OPERATOR_NS, account, tmp_path_factory.mktemp("ns-op") / "kc")
    yield {"kubeconfig": kubeconfig, "served": served, "other": other}
    for binding in objects:
        lab.kubectl(
            "delete",
            binding["kind"],
            binding["metadata"]["name"],
            "-n",
            binding["metadata"].get("namespace", OPERATOR_NS),
            check=False,
        )
    lab.kubectl("delete", "serviceaccount", account, "-n", OPERATOR_NS, check=False)
    for ns in (served, other):
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_namespaced_install_grants_the_tenant_rules_only_where_listed(
    lab: Lab, namespaced: dict[str, Any], baseline: Path
) -> None:
    kubeconfig = namespaced["kubeconfig"]
    assert granted(lab, kubeconfig, baseline, namespaced["served"]) == expected(CLUSTER, TENANTS)
    assert granted(lab, kubeconfig, baseline, namespaced["other"]) == expected(CLUSTER)
    assert granted(lab, kubeconfig, baseline, OPERATOR_NS) == expected(CLUSTER, OWN)


def test_a_namespaced_operator_serves_its_namespace_and_leaves_the_rest_alone(
    lab: Lab, namespaced: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    served, other = namespaced["served"], namespaced["other"]
    log = tmp_path_factory.mktemp("ns-operator") / "operator.log"
    env = {**OPERATOR_ENV, "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url}
    process = NamespacedOperator(namespaced["kubeconfig"], log, env, [served]).start()
    try:
        lab.apply([tenant("mine", served, acceleratorClasses=["x86-cpu"]), tenant("theirs", other)])
        wait_for(
            "the served namespace's tenant to be placed",
            lambda: (c := condition(lab, served, "mine", "Placed")) and c["status"] == "True",
            timeout=90,
        )
        for kind in ("secret/mine-triton-admin", "networkpolicy/mine-triton", "deployment/mine"):
            assert lab.kubectl("get", kind, "-n", served, check=False).returncode == 0, kind
        assert (lab.get_json("itn", "theirs", "-n", other).get("status") or {}) == {}, (
            "it touched another namespace"
        )
        assert process.popen is not None and process.popen.poll() is None, process.log_tail()
    finally:
        process.kill()
    text = log.read_text(errors="replace")
    assert "403" not in text and "Forbidden" not in text, text[-3000:]
