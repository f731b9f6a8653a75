"""The monitoring manifests: the PrometheusRule's groups pass real `promtool check rules` and its unit
tests (`promtool test rules`, tests/ops/rules_test.yaml); the monitors select what the operator and
the rendered tenant pods actually carry."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from edgetenant.render.kube import MANAGER, TENANT_LABEL

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((MONITORING / name).read_text())
    return document


def rules_file(directory: Path) -> Path:
    """The PrometheusRule's groups as the plain rules file Prometheus and promtool read."""
    path = directory / "edgetenant.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": load("prometheusrule.yaml")["spec"]["groups"]}))
    return path


def test_the_rules_pass_promtool_check(tool: Callable[[str], Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(rules_file(tmp_path))],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_when_they_should_and_only_then(tool: Callable[[str], Path], tmp_path: Path) -> None:
    rules_file(tmp_path)
    shutil.copy(Path(__file__).with_name("rules_test.yaml"), tmp_path / "rules_test.yaml")
    result = subprocess.run(
        [str(tool("promtool")), "test", "rules", "rules_test.yaml"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_the_issue_names_exists_with_a_runbook() -> None:
    alerts = {
        rule["alert"]: rule
        for group in load("prometheusrule.yaml")["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for name in (
        "EdgeTenantTenantsNotReady",
        "EdgeTenantSLOViolated",
        "EdgeTenantTuningBlind",
        "EdgeTenantUnschedulable",
        "EdgeTenantOperatorDown",
        "EdgeTenantNoLeader",
    ):
        assert name in alerts
        anchor = alerts[name]["annotations"]["runbook_url"].rsplit("#", 1)[1]
        headings = [
            line.lstrip("# ").strip()
            for line in (REPO / "docs" / "troubleshooting.md").read_text().splitlines()
            if line.startswith("## ")
        ]
        assert anchor in {_anchor(h) for h in headings}, f"{name}: no heading #{anchor} in troubleshooting.md"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def test_the_monitors_select_the_operator_and_the_tenant_pods() -> None:
    deployment = yaml.safe_load((REPO / "manifests" / "operator" / "deployment.yaml").read_text())
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service = load("service.yaml")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ports
    monitor = load("servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    pods = load("podmonitor.yaml")
    selector = pods["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/managed-by": MANAGER, "app.kubernetes.io/name": "triton"}
    relabelled = {
        r["targetLabel"]: r["sourceLabels"][0] for r in pods["spec"]["podMetricsEndpoints"][0]["relabelings"]
    }
    assert relabelled["tenant"] == "__meta_kubernetes_pod_label_" + TENANT_LABEL.replace(".", "_").replace(
        "/", "_"
    )
