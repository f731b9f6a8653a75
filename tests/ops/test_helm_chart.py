"""The Helm chart, checked by real helm (built from its Go module): it lints, its values are checked by
its schema, it renders the same operator as the kustomize manifests, each monitoring object appears
when switched on and only then, and the files it shares with the manifests are current copies."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "edgetenant"
MONITORS_ON = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboard.enabled=true",
]


def helm(tool: Callable[[str], Path], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool("helm")), *args], capture_output=True, text=True, check=False)


def rendered(tool: Callable[[str], Path], *sets: str) -> list[dict[str, Any]]:
    args = ["template", "et", str(CHART), "--namespace", "edgetenant-system"]
    for value in sets:
        args += ["--set", value]
    result = helm(tool, *args)
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def template(tool: Callable[[str], Path], *sets: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered(tool, *sets)}


def manifests(*paths: str) -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for obj in yaml.safe_load_all((REPO / path).read_text()):
            if obj:
                objects[(obj["kind"], obj["metadata"]["name"])] = obj
    return objects


@pytest.mark.parametrize("sets", [[], [*MONITORS_ON, "watchNamespaces={shop,yard}", "replicas=0"]])
def test_the_chart_lints(tool: Callable[[str], Path], sets: list[str]) -> None:
    result = helm(tool, "lint", "--strict", str(CHART), *(a for s in sets for a in ("--set", s)))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicas=-1", "/replicas"),
        ("prometheus.url=prometheus:9090", "/prometheus/url"),
        ("env.PROMETHEUS_URL=x", "does not match pattern"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("monitoring.podMonitor.interval=often", "/monitoring/podMonitor/interval"),
    ],
)
def test_bad_values_are_refused_by_the_schema(
    tool: Callable[[str], Path], value: str, complaint: str
) -> None:
    result = helm(tool, "template", "et", str(CHART), "--set", value)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_the_chart_runs_the_operator_the_manifests_run(tool: Callable[[str], Path]) -> None:
    chart = template(tool)
    kustomize = manifests(
        "manifests/operator/rbac.yaml",
        "manifests/operator/leader-election.yaml",
        "manifests/operator/deployment.yaml",
    )
    # Same permissions, to the verb (the chart's RBAC is a copy of the manifests', re-addressed).
    for kind, name in kustomize:
        if kind in {"ClusterRole", "Role"}:
            assert chart[(kind, name)]["rules"] == kustomize[(kind, name)]["rules"], name
        if kind.endswith("Binding"):
            assert chart[(kind, name)]["roleRef"] == kustomize[(kind, name)]["roleRef"], name
    # Same container: image, arguments, ports, probes, security; the chart's env adds the values it sets.
    ours = chart[("Deployment", "edgetenant-operator")]["spec"]["template"]["spec"]
    theirs = kustomize[("Deployment", "edgetenant-operator")]["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "securityContext", "volumes"):
        assert ours[key] == theirs[key], key
    mine, shipped = ours["containers"][0], theirs["containers"][0]
    for key in ("image", "args", "ports", "livenessProbe", "resources", "securityContext", "volumeMounts"):
        assert mine[key] == shipped[key], key
    env = {e["name"]: e.get("value") for e in mine["env"]}
    assert {e["name"]: e.get("value") for e in shipped["env"]}.items() <= env.items()
    assert chart[("Deployment", "edgetenant-operator")]["spec"]["replicas"] == 2
    # Without a value for it, the chart installs the shipped classes; never a monitoring CRD's object.
    assert sum(kind == "AcceleratorClass" for kind, _ in chart) == len(
        [
            p
            for p in (REPO / "manifests" / "acceleratorclasses").glob("*.yaml")
            if p.name != "kustomization.yaml"
        ]
    )
    assert not {kind for kind, _ in chart} & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_values_reach_the_operator(tool: Callable[[str], Path]) -> None:
    values = (
        "replicas=0",
        "prometheus.url=http://kps-kube-prometheus-prometheus.monitoring:9090",
        "prometheus.scrapeIntervalSeconds=15",
        "tuneIntervalSeconds=20",
        "watchNamespaces={shop,yard}",
        "env.EDGETENANT_SOLVER_TIME_LIMIT_S=5",
        "image.tag=0.1.1",
        "acceleratorClasses.install=false",
        "resources.limits.memory=512Mi",
    )
    chart = template(tool, *values)
    deployment = chart[("Deployment", "edgetenant-operator")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert deployment["spec"]["replicas"] == 0
    assert env["EDGETENANT_PROMETHEUS_URL"] == "http://kps-kube-prometheus-prometheus.monitoring:9090"
    assert env["EDGETENANT_SCRAPE_INTERVAL_S"] == "15"
    assert env["EDGETENANT_TUNE_INTERVAL_S"] == "20"
    assert env["EDGETENANT_SOLVER_TIME_LIMIT_S"] == "5"
    assert container["args"][-2:] == ["--namespace=shop", "--namespace=yard"]
    assert container["image"] == "ghcr.io/edgetenant/operator:0.1.1"
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert not any(kind == "AcceleratorClass" for kind, _ in chart)
    # Serving two namespaces, the tenants' role is bound in each of them, not cluster-wide.
    assert ("ClusterRoleBinding", "edgetenant-operator-tenants") not in chart
    bindings = [o for o in rendered(tool, *values) if o["kind"] == "RoleBinding"]
    assert sorted(
        b["metadata"]["namespace"] for b in bindings if b["roleRef"]["name"] == "edgetenant-operator-tenants"
    ) == ["shop", "yard"]


def test_a_release_outside_edgetenant_system_names_its_cluster_objects_apart(
    tool: Callable[[str], Path],
) -> None:
    args = ["template", "et", str(CHART), "--namespace", "team-a", "--show-only", "templates/rbac.yaml"]
    result = helm(tool, *args)
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    for obj in objects:
        if obj["kind"].startswith("Cluster"):
            assert obj["metadata"]["name"].endswith("-team-a")
        for subject in obj.get("subjects", []):
            assert subject["namespace"] == "team-a"


def test_the_monitoring_objects_are_the_manifests(tool: Callable[[str], Path]) -> None:
    chart = template(tool, *MONITORS_ON, "monitoring.serviceMonitor.labels.release=kps")
    shipped = manifests(
        "manifests/monitoring/servicemonitor.yaml",
        "manifests/monitoring/podmonitor.yaml",
        "manifests/monitoring/prometheusrule.yaml",
    )
    assert (
        chart[("PrometheusRule", "edgetenant")]["spec"] == shipped[("PrometheusRule", "edgetenant")]["spec"]
    )
    pods = chart[("PodMonitor", "edgetenant-tenants")]["spec"]
    assert pods == shipped[("PodMonitor", "edgetenant-tenants")]["spec"]
    monitor = chart[("ServiceMonitor", "edgetenant-operator")]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert (
        monitor["spec"]["endpoints"]
        == shipped[("ServiceMonitor", "edgetenant-operator")]["spec"]["endpoints"]
    )
    service = chart[("Service", "edgetenant-operator-metrics")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    dashboard = chart[("ConfigMap", "edgetenant-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert (
        dashboard["data"]["edgetenant.json"]
        == (REPO / "manifests" / "dashboards" / "edgetenant.json").read_text()
    )


def test_the_chart_copies_and_the_dashboard_are_current() -> None:
    for script in ("sync_chart.py", "dashboard.py"):
        result = subprocess.run(
            [sys.executable, str(REPO / "hack" / "tools" / script), "--check"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
