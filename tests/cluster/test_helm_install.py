"""`helm install` of charts/edgetenant on the lab's real API server, by real helm.

The operator's Deployment is installed with `replicas=0` (the test asserts on the objects the release
creates and on what its ServiceAccount may do, not on a running operator: the operator itself runs in
the other cluster tests); the shipped AcceleratorClasses are left out (the lab's dev overlay already
owns them, and Helm refuses to adopt objects another tool applied). The CRDs are already installed, so
Helm skips its crds/ as it does on any upgrade.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab import Lab

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "edgetenant"


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    out = subprocess.run(
        [str(REPO / "hack" / "tools" / "build.sh"), "--print-bin", "helm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(out.strip().rsplit("=", 1)[1])


@pytest.fixture
def helm(lab: Lab, helm_bin: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(helm_bin), f"--kubeconfig={lab.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def release(lab: Lab, helm: Callable[..., subprocess.CompletedProcess[str]]) -> Iterator[tuple[str, str]]:
    namespace, watched = f"helm-{uuid.uuid4().hex[:6]}", f"shop-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", watched)
    try:
        yield namespace, watched
    finally:
        helm("uninstall", "et", "-n", namespace, "--wait", check=False)
        for name in (namespace, watched):
            lab.kubectl("delete", "namespace", name, "--wait=false", check=False)


def can(lab: Lab, namespace: str, verb: str, resource: str, where: str, *extra: str) -> bool:
    who = f"--as=system:serviceaccount:{namespace}:edgetenant-operator"
    result = lab.kubectl("auth", "can-i", verb, resource, who, "-n", where, *extra, check=False)
    return result.stdout.strip() == "yes"


def test_helm_installs_upgrades_and_uninstalls_on_the_lab(
    lab: Lab, helm: Callable[..., subprocess.CompletedProcess[str]], release: tuple[str, str]
) -> None:
    namespace, watched = release
    values = ["--set", "replicas=0", "--set", "acceleratorClasses.install=false"]
    helm(
        "install", "et", str(CHART), "-n", namespace, "--create-namespace", "--wait", "--timeout=2m", *values
    )
    assert '"status":"deployed"' in helm("status", "et", "-n", namespace, "-o", "json").stdout.replace(
        " ", ""
    )

    deployment = lab.get_json("deployment", "edgetenant-operator", "-n", namespace)
    assert deployment["spec"]["replicas"] == 0
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/edgetenant/operator:0.1.0"
    assert (
        lab.get_json("service", "edgetenant-operator-metrics", "-n", namespace)["spec"]["ports"][0]["port"]
        == 8080
    )
    assert lab.get_json("clusterrole", f"edgetenant-operator-tenants-{namespace}")["rules"]

    # What the release's ServiceAccount may do is exactly what the operator needs, cluster-wide.
    assert can(lab, namespace, "patch", "inferencetenants.edgetenant.io", "default", "--subresource=status")
    assert can(lab, namespace, "watch", "nodes", "default")
    assert can(lab, namespace, "update", "leases.coordination.k8s.io/edgetenant-operator", namespace)
    assert not can(lab, namespace, "update", "inferencetenants.edgetenant.io", "default")
    assert not can(lab, namespace, "delete", "deployments.apps", "default")
    assert not can(lab, namespace, "get", "secrets", "default")

    # Serving one namespace: the tenants' role is bound there only.
    helm(
        "upgrade", "et", str(CHART), "-n", namespace, "--wait", "--timeout=2m", *values,
        "--set", f"watchNamespaces={{{watched}}}",
    )  # fmt: skip
    deployment = lab.get_json("deployment", "edgetenant-operator", "-n", namespace)
    assert f"--namespace={watched}" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert can(lab, namespace, "create", "deployments.apps", watched)
    assert not can(lab, namespace, "create", "deployments.apps", "default")

    helm("uninstall", "et", "-n", namespace, "--wait")
    gone = lab.kubectl("get", "clusterrole", f"edgetenant-operator-tenants-{namespace}", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    # Helm never deletes CRDs: the tenants survive an uninstall.
    assert lab.kubectl("get", "crd", "inferencetenants.edgetenant.io", check=False).returncode == 0
