#!/usr/bin/env python3
"""Sizes of the archives in dist/images/ and what dominates each (BENCHMARKS.md, "Images").

    python3 hack/images/sizes.py [--top N]

For each archive: its size (what travels to a node), the unpacked size (what the node stores), and
the largest contributors to the unpacked size: a Python distribution (by its top-level directory in
dist-packages) or a directory of Debian's files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist" / "images"
SITE = "usr/local/lib/python3.11/dist-packages/"


def contributor(name: str) -> str:
    if name.startswith(SITE):
        top = name[len(SITE) :].split("/", 1)[0]
        return f"pip:{top.removesuffix('.libs')}"
    if name.startswith("usr/lib/python3.11/"):
        return "debian:python3.11 stdlib"
    parts = name.split("/")
    return "debian:" + "/".join(parts[:3])


def measure(archive: Path) -> tuple[int, Counter[str]]:
    sizes: Counter[str] = Counter()
    unpacked = 0
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.load(outer.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
        for layer in manifest["layers"]:
            blob = outer.extractfile(f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}")
            with tarfile.open(fileobj=blob, mode="r|gz") as files:
                for info in files:
                    if info.isreg():
                        unpacked += info.size
                        sizes[contributor(info.name)] += info.size
    return unpacked, sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    archives = sorted(DIST.glob("*.oci.tar"))
    if not archives:
        print("no archives in dist/images/: run `make images`", file=sys.stderr)
        return 1
    mib = 2**20
    print("| archive | archive MiB | unpacked MiB | largest parts (unpacked MiB) |")
    print("| --- | ---: | ---: | --- |")
    for archive in archives:
        unpacked, sizes = measure(archive)
        top = ", ".join(f"{name} {size / mib:.0f}" for name, size in sizes.most_common(args.top))
        print(f"| {archive.name} | {archive.stat().st_size / mib:.0f} | {unpacked / mib:.0f} | {top} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
