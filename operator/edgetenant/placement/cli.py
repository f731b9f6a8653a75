"""`edgetenant plan`: place tenants from YAML files (or a live cluster) and print the plan.

    edgetenant plan -f hack/lab/edge-lab.yaml -f manifests/acceleratorclasses -f manifests/samples
    edgetenant plan -f cluster.yaml -o json
    edgetenant plan -f cluster.yaml --baseline spread
    edgetenant plan --kubeconfig ~/.kube/config --require-all

The only I/O of the placement package lives here: reading files, `read_cluster`, printing.
Everything heavy (the API models, numpy, rich, the Kubernetes client) is imported after the
arguments are parsed, so `--help` and a usage error answer at once.

Exit codes: 0 planned; 1 the input could not be read (one line naming the file, object or
cluster); 2 a usage error; 3 with `--require-all`, some tenant is left unplaced.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

    from edgetenant.placement.plan import Plan

PLACEMENT_KINDS = ("Node", "AcceleratorClass", "InferenceTenant", "ModelProfile")
BASELINE_NAMES = ("fastest", "first-fit", "random", "spread")  # placement.baselines.BASELINES
EXIT_UNREADABLE = 1
EXIT_USAGE = 2
EXIT_UNPLACED = 3
MAX_TIME_LIMIT_S = 3600.0
MAX_MOVE_COST = 1e9
CLUSTER_TIMEOUT_S = (5, 30)  # (connect, read) per request to the API server


def read_files(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Object dicts from YAML files and directories; ConfigError names the file that is wrong."""
    from pathlib import Path  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    from edgetenant import api  # noqa: PLC0415
    from edgetenant.errors import ConfigError  # noqa: PLC0415

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
            raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from exc
        for doc in docs:
            if doc.get("kind") in PLACEMENT_KINDS:
                doc.setdefault("metadata", {})
                objects.append(doc)
    if not objects:
        raise ConfigError(f"no {', '.join(PLACEMENT_KINDS)} objects in {', '.join(paths)}")
    return objects


def read_cluster(kubeconfig: str) -> list[dict[str, Any]]:
    """Nodes, AcceleratorClasses, and InferenceTenants and ModelProfiles of all namespaces."""
    # Only this command talks to a cluster, so the client is imported here, not at module load.
    # The client is untyped: it is handled as Any and its answers checked by the models.
    import kubernetes  # noqa: PLC0415
    import urllib3  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from edgetenant import api  # noqa: PLC0415
    from edgetenant.errors import ConfigError  # noqa: PLC0415

    kube: Any = kubernetes
    try:
        configuration = kube.client.Configuration()
        kube.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.retries = 1  # an unreachable server answers in seconds, not minutes
        api_client = kube.client.ApiClient(configuration)
        nodes = api_client.sanitize_for_serialization(
            kube.client.CoreV1Api(api_client).list_node(_request_timeout=CLUSTER_TIMEOUT_S).items
        )
        objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Node", **n} for n in nodes]
        custom = kube.client.CustomObjectsApi(api_client)
        for kind in ("AcceleratorClass", "InferenceTenant", "ModelProfile"):
            model = api.RESOURCE_KINDS[kind]
            listing = custom.list_cluster_custom_object(
                api.GROUP, api.VERSION, model.plural, _request_timeout=CLUSTER_TIMEOUT_S
            )
            objects.extend({"apiVersion": api.API_VERSION, "kind": kind, **item} for item in listing["items"])
        return objects
    except kube.client.exceptions.ApiException as exc:
        raise ConfigError(
            f"cannot read the cluster through {kubeconfig}: the API server answered {exc.status} {exc.reason}"
        ) from exc
    except (
        kube.config.ConfigException,
        urllib3.exceptions.HTTPError,
        OSError,
        yaml.YAMLError,
        ValueError,
        TypeError,
        KeyError,
    ) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"cannot read the cluster through {kubeconfig}: {detail}") from exc


def render_table(plan: Plan, console: Console) -> None:
    from rich.table import Table  # noqa: PLC0415

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


def warning_lines(plan: Plan) -> list[str]:
    """Every warning as one line: `warning: <tenant>: <message>` or `warning: <message>`."""
    return [
        f"warning: {w.tenant}: {w.message}" if w.tenant else f"warning: {w.message}" for w in plan.warnings
    ]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line (argparse prints the whole usage first), exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _bounded(low: float, high: float, *, low_open: bool, unit: str) -> Any:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            lower = f"more than {low:g}" if low_open else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"must be {lower} and at most {high:g}{unit}, got {raw}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgetenant plan",
        description="Place InferenceTenants on accelerator devices (the reference model, docs/placement.md). "
        "Warnings (what was ignored or estimated, and why) go to stderr with the table output and into a "
        "`warnings` list with -o json/yaml.",
        epilog=f"exit codes: 0 planned, {EXIT_UNREADABLE} input unreadable, {EXIT_USAGE} usage error, "
        f"{EXIT_UNPLACED} a tenant is unplaced and --require-all was given",
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
    source.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="read the same kinds from a live cluster (Nodes, and the edgetenant kinds of all namespaces)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="table (default) for people; json or yaml in the documented shape for programs",
    )
    parser.add_argument(
        "--model",
        choices=("reference",),
        default="reference",
        help="the placement model; `reference` is the documented one (the only one so far)",
    )
    parser.add_argument(
        "--baseline",
        choices=BASELINE_NAMES,
        help="plan with a baseline instead of the solver, scored by the same objective",
    )
    parser.add_argument(
        "--time-limit",
        type=_bounded(0.0, MAX_TIME_LIMIT_S, low_open=True, unit=" s"),
        default=2.0,
        metavar="S",
        help="the search effort, in seconds (default 2): CP-SAT searches components of up to 250 options "
        "per second for a deterministic budget of a twentieth of this, so the same input gives the same "
        "plan on any machine; the full value is a wall-clock safety net",
    )
    parser.add_argument(
        "--move-cost",
        type=_bounded(0.0, MAX_MOVE_COST, low_open=False, unit=""),
        default=100.0,
        metavar="COST",
        help="objective cost of moving a placed tenant, in priority x req/s (default 100: one req/s at "
        "priority 100)",
    )
    parser.add_argument(
        "--require-all",
        action="store_true",
        help=f"exit {EXIT_UNPLACED} when any tenant is left unplaced (the plan is printed all the same)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))

    from edgetenant.errors import ConfigError  # noqa: PLC0415
    from edgetenant.placement.objects import snapshot_from_objects  # noqa: PLC0415
    from edgetenant.placement.solver import solve, solve_baseline  # noqa: PLC0415

    try:
        objects = read_cluster(args.kubeconfig) if args.kubeconfig else read_files(args.filename)
        snapshot = snapshot_from_objects(objects, strict=True)
    except ConfigError as exc:
        print(f"edgetenant plan: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.baseline:
        plan = solve_baseline(snapshot, args.baseline, move_cost=args.move_cost)
    else:
        plan = solve(snapshot, time_limit_s=args.time_limit, move_cost=args.move_cost)
    if args.output in {"json", "yaml"}:
        import json  # noqa: PLC0415

        import yaml  # noqa: PLC0415

        document = plan.to_json()
        if args.output == "json":
            print(json.dumps(document, indent=2))
        else:
            print(yaml.safe_dump(document, sort_keys=False), end="")
    else:
        from rich.console import Console  # noqa: PLC0415

        render_table(plan, Console(width=None if sys.stdout.isatty() else 160))
        for line in warning_lines(plan):
            print(line, file=sys.stderr)
    if args.require_all and plan.unplaced:
        total = len(plan.placements) + len(plan.unplaced)
        print(
            f"edgetenant plan: {len(plan.unplaced)} of {total} tenants unplaced (--require-all)",
            file=sys.stderr,
        )
        return EXIT_UNPLACED
    return 0


__all__ = ["build_parser", "main", "read_cluster", "read_files", "warning_lines"]
