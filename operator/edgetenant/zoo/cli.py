"""`edgetenant zoo list | build`: the model zoo from the command line."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgetenant import zoo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgetenant zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the zoo's models: input, parameters, FLOPs, size once built")
    build = sub.add_parser("build", help="build models as ONNX into the cache (or --out)")
    build.add_argument("--out", type=Path, help=f"directory (default: {zoo.zoo_cache_dir()})")
    build.add_argument("--models", nargs="+", choices=sorted(zoo.ZOO), help="default: all")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    if args.command == "list":
        table = Table("model", "input", "params", "GFLOPs", "published", "cached")
        for name, entry in zoo.ZOO.items():
            path = zoo.zoo_cache_dir() / f"{name}.onnx"
            built = path.is_file() and path.with_suffix(".json").is_file()
            info = zoo.model_info(name) if built else None
            table.add_row(
                name,
                f"{zoo.INPUT_NAME} 3x{entry.image_size}x{entry.image_size}",
                f"{info.parameters / 1e6:.2f} M" if info else "-",
                f"{info.flops / 1e9:.2f}" if info else "-",
                f"{entry.published_parameters / 1e6:.2f} M, {2 * entry.published_macs / 1e9:.2f} GFLOPs",
                f"{path.stat().st_size / 2**20:.0f} MiB" if built else "no",
            )
        console.print(table)
        console.print(f"cache: {zoo.zoo_cache_dir()}")
        return 0
    for name in args.models or list(zoo.ZOO):
        started = time.perf_counter()
        path = zoo.ensure_model(name, cache_dir=args.out)
        info = zoo.model_info(name, cache_dir=args.out)
        print(
            f"{name:<16} {info.parameters / 1e6:6.2f} M params  {info.flops / 1e9:5.2f} GFLOPs  "
            f"{path}  ({time.perf_counter() - started:.1f}s)"
        )
    return 0
