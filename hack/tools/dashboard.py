"""Build edgetenant's Grafana dashboard with the Grafana Foundation SDK (not hand-written JSON).

    python hack/tools/dashboard.py            # writes manifests/dashboards/edgetenant.json (`make chart`)
    python hack/tools/dashboard.py --check    # exit 1 when the file is not what this builds

Per tenant: throughput, p95 latency, Triton instances, tuning decisions; per device (node): tenants
served and how busy it is; the operator: leader, tenants by condition, reconcile latency, failures.
Every query is run against the lab's real Prometheus during a real run (operator and a serving tenant)
by tests/cluster/test_dashboard_queries.py, which fails on an empty or invalid one.
Operator series (edgetenant_*) are grouped by `tenant` only: their `namespace` label is the tenant's
where the ServiceMonitor honours it, the operator pod's where it does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "manifests" / "dashboards" / "edgetenant.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
# Triton's series of the chosen namespaces (a Grafana variable).
TRITON = 'namespace=~"$namespace"'
P95 = f'{TRITON},quantile="0.95"'

# (row, title, unit, [(PromQL, legend)], description)
Panel = tuple[str, str, str, list[tuple[str, str]], str]
PANELS: list[Panel] = [
    (
        "Tenants",
        "Throughput per tenant",
        "reqps",
        [
            (
                f"sum by (namespace, model) (rate(nv_inference_count{{{TRITON}}}[{RATE}]))",
                "{{namespace}}/{{model}}",
            )
        ],
        "Inferences per second Triton served, summed over the tenant's pods (model = served name).",
    ),
    (
        "Tenants",
        "p95 latency per tenant",
        "ms",
        [
            (
                f"max by (namespace, model) (nv_inference_request_summary_us{{{P95}}}) / 1000",
                "{{namespace}}/{{model}}",
            )
        ],
        "Triton's request latency summary (not on Jetson TX2/Nano: Triton 2.19 lacks it).",
    ),
    (
        "Tenants",
        "Triton instances per tenant",
        "short",
        [('max by (tenant) (edgetenant_tenant_concurrency{kind="current"})', "{{tenant}}")],
        "Model instances each replica runs, as tuned (status.concurrency.current).",
    ),
    (
        "Tenants",
        "Tuning decisions",
        "short",
        [
            (
                "sum by (tenant, action) (increase(edgetenant_tuning_decisions_total[10m]))",
                "{{tenant}} {{action}}",
            )
        ],
        "Decisions in the last 10 minutes, by action (ScaleUp, StepBack, Hold, BackOff, ...).",
    ),
    (
        "Devices",
        "Tenants served per node",
        "short",
        [
            (
                f"count by (node) (count by (node, namespace, model) (nv_inference_count{{{TRITON}}}))",
                "{{node}}",
            )
        ],
        "Tenants whose Triton pods run on each node (from Triton's own series).",
    ),
    (
        "Devices",
        "Device busy (instance-seconds per second)",
        "short",
        [
            (
                f"sum by (node) (rate(nv_inference_compute_infer_duration_us{{{TRITON}}}[{RATE}])) / 1e6",
                "{{node}}",
            )
        ],
        "Seconds of model compute per second on each node: 1 is one instance busy all the time; above the "
        "node's instance count, requests queue. On GPU nodes nv_gpu_utilization adds the device's own view.",
    ),
    (
        "Operator",
        "Leader",
        "short",
        [("sum(edgetenant_leader)", "replicas leading")],
        "1 in steady state; 0 for longer than ~17 s means no replica can take the Lease.",
    ),
    (
        "Operator",
        "Tenants by condition",
        "short",
        [
            (
                "max by (condition) (edgetenant_tenants and on (instance) (edgetenant_leader == 1))",
                "{{condition}}",
            )
        ],
        "From the leader: total, ready, placed, unplaced, slo_violated, metrics_unavailable, stalled.",
    ),
    (
        "Operator",
        "Reconcile p95",
        "s",
        [
            (
                f"histogram_quantile(0.95, sum by (le) (rate(edgetenant_reconcile_seconds_bucket[{RATE}])))",
                "p95",
            )
        ],
        "Time to reconcile one tenant (apply, readiness, status).",
    ),
    (
        "Operator",
        "Failures",
        "short",
        [
            (
                f"sum(rate(edgetenant_reconcile_errors_total[{RATE}])) or vector(0)",
                "tenant reconciles failed/s",
            ),
            (f"sum(rate(edgetenant_pass_failures_total[{RATE}]))", "whole passes failed/s"),
        ],
        "A failed tenant is retried with the next pass; a failed pass with backoff.",
    ),
]


def build() -> dict[str, Any]:
    board = (
        dashboard.Dashboard("edgetenant")
        .uid("edgetenant")
        .description("Tenants, devices and the edgetenant operator (built by hack/tools/dashboard.py).")
        .tags(["edgetenant", "triton", "edge"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("namespace")
            .label("Namespace")
            .datasource(DATASOURCE)
            .query("label_values(nv_inference_count, namespace)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    row, panel_id = "", 0
    for section, title, unit, queries, description in PANELS:
        if section != row:
            panel_id += 1
            board = board.with_row(dashboard.Row(section).id(panel_id))
            row = section
        builder = stat.Panel() if title == "Leader" else timeseries.Panel()
        panel = builder.title(title).description(description).unit(unit).datasource(DATASOURCE)
        panel_id += 1
        panel = panel.id(panel_id).height(8).span(6 if title == "Leader" else 12)
        for index, (expr, legend) in enumerate(queries):
            panel = panel.with_target(
                prometheus.Dataquery().expr(expr).legend_format(legend).ref_id("ABCDEFGH"[index])
            )
        board = board.with_panel(panel)
    encoded: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))
    return encoded


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel of a built dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is not what this builds")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)}: not current; run `make chart`", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
