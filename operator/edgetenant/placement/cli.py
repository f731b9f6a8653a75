"""`edgetenant plan`: place tenants from YAML files (or a live cluster) and print the plan.

    edgetenant plan -f hack/lab/edge-lab.yaml -f manifests/acceleratorclasses -f manifests/samples
    edgetenant plan -f cluster.yaml -o json
    edgetenant plan -f cluster.yaml --baseline spread
    edgetenant plan --kubeconfig ~/.kube/config

The only I/O of the placement package lives here: reading files, `read_cluster`, printing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from edgetenant import api
from edgetenant.errors import ConfigError
from edgetenant.placement.baselines import BASELINES
from edgetenant.placement.objects import describe, snapshot_from_objects
from edgetenant.placement.plan import Plan
from edgetenant.placement.problem import DEFAULT_MOVE_COST
from edgetenant.placement.solver import solve, solve_baseline

PLACEMENT_KINDS = ("Node", "AcceleratorClass", "InferenceTenant", "ModelProfile")


def read_files(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Object dicts from YAML files and directories; ConfigError names the file that is wrong."""
    objects: list[dict[str, Any]] = []
    for raw in paths:
        if not Path(raw).exists():
            raise ConfigError(f"{raw}: no such file or directory")
    files = api.manifest_files(paths)
    if not files:
        raise ConfigError(f"no YAML files in {', '.join(paths)}")
    for path in files:
        try:
            docs = api.iter_documents(path.read_text())
        except (yaml.YAMLError, ValueError, OSError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for doc in docs:
            if doc.get("kind") in PLACEMENT_KINDS:
                doc.setdefault("metadata", {})
                objects.append(doc)
    return objects


def read_cluster(kubeconfig: str) -> list[dict[str, Any]]:
    """Nodes, AcceleratorClasses, and InferenceTenants and ModelProfiles of all namespaces."""
    # Only this command talks to a cluster, so the client is imported here, not at module load.
    # The client is untyped: it is handled as Any and its answers checked by the models.
    import kubernetes  # noqa: PLC0415

    kube: Any = kubernetes
    try:
        kube.config.load_kube_config(config_file=kubeconfig)
        api_client = kube.client.ApiClient()
        nodes = api_client.sanitize_for_serialization(kube.client.CoreV1Api(api_client).list_node().items)
        objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Node", **n} for n in nodes]
        custom = kube.client.CustomObjectsApi(api_client)
        for kind in ("AcceleratorClass", "InferenceTenant", "ModelProfile"):
            model = api.RESOURCE_KINDS[kind]
            listing = custom.list_cluster_custom_object(api.GROUP, api.VERSION, model.plural)
            objects.extend({"apiVersion": api.API_VERSION, "kind": kind, **item} for item in listing["items"])
        return objects
    except (kube.client.exceptions.ApiException, kube.config.ConfigException, OSError) as exc:
        raise ConfigError(f"cannot read the cluster through {kubeconfig}: {exc}") from exc


def render_table(plan: Plan, console: Console) -> None:
    devices = Table(title="Devices", title_justify="left")
    for column in ("node", "class", "dev", "tenants (concurrency)", "memory MiB", "slots", "utilisation"):
        devices.add_column(column, justify="right" if column in {"dev", "slots", "utilisation"} else "left")
    concurrency = {p.tenant: p for p in plan.placements}
    for d in plan.devices:
        tenants = ", ".join(
            f"{key} ({concurrency[key].concurrency}{'*' if concurrency[key].estimated else ''})"
            for key in d.tenants
        )
        devices.add_row(
            d.node,
            d.accelerator_class,
            str(d.device),
            tenants or "[dim]-[/dim]",
            f"{d.memory_used_mib:.0f} / {d.memory_mib:.0f}",
            f"{d.slots_used}/{d.slots}",
            f"{d.utilisation:.0%}" if d.tenants else "",
        )
    console.print(devices)
    placements = Table(title="Placements", title_justify="left")
    for column in ("tenant", "node", "class", "dev", "conc", "served req/s", "p95 ms", "basis"):
        placements.add_column(column)
    for p in plan.placements:
        placements.add_row(
            p.tenant,
            p.node,
            p.accelerator_class,
            str(p.device),
            str(p.concurrency),
            f"{p.predicted_throughput:.1f}",
            f"{p.predicted_p95_ms:.1f}",
            ("estimate" if p.estimated else "profile") + (" (moved)" if p.moved else ""),
        )
    console.print(placements)
    if plan.unplaced:
        unplaced = Table(title="Unplaced", title_justify="left")
        unplaced.add_column("tenant")
        unplaced.add_column("reason", overflow="fold")
        for u in plan.unplaced:
            unplaced.add_row(u.tenant, u.reason)
        console.print(unplaced)
    verdict = "optimal" if plan.optimal else "best found"
    console.print(
        f"objective {plan.objective:.1f} ({verdict}) · solver {plan.solver} · {plan.solve_ms:.0f} ms · "
        f"{plan.moves} moves · * = estimated numbers (no ModelProfile)"
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="edgetenant plan",
        description="Place InferenceTenants on accelerator devices (the reference model, docs/placement.md).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-f",
        "--filename",
        action="append",
        metavar="PATH",
        help="YAML file or directory with Nodes, AcceleratorClasses, InferenceTenants, ModelProfiles "
        "(repeatable)",
    )
    source.add_argument("--kubeconfig", metavar="PATH", help="read the same kinds from a live cluster")
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    parser.add_argument(
        "--model",
        choices=("reference",),
        default="reference",
        help="the placement model; `reference` is the documented one (the only one so far)",
    )
    parser.add_argument("--baseline", choices=sorted(BASELINES), help="plan with a baseline instead")
    parser.add_argument("--time-limit", type=float, default=2.0, metavar="S", help="CP-SAT time limit")
    parser.add_argument(
        "--move-cost", type=float, default=DEFAULT_MOVE_COST, help="objective cost of moving a tenant"
    )
    args = parser.parse_args(list(argv))

    try:
        objects = read_cluster(args.kubeconfig) if args.kubeconfig else read_files(args.filename)
        snapshot = snapshot_from_objects(objects)
    except ConfigError as exc:
        print(f"edgetenant plan: {exc}", file=sys.stderr)
        return 1
    if args.baseline:
        plan = solve_baseline(snapshot, args.baseline, move_cost=args.move_cost)
    else:
        plan = solve(snapshot, time_limit_s=args.time_limit, move_cost=args.move_cost)
    if args.output == "json":
        print(json.dumps(plan.to_json(), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(plan.to_json(), sort_keys=False), end="")
    else:
        render_table(plan, Console(width=None if sys.stdout.isatty() else 160))
    return 0


__all__ = ["describe", "main", "read_cluster", "read_files"]
