"""Helpers of the e2e tests (plain functions)."""

from __future__ import annotations

from pathlib import Path


def triton_pids(pod_ip: str) -> list[int]:
    """PIDs of the tritonserver processes serving a pod IP, as the host's /proc shows them."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tritonserver") and any(pod_ip.encode() in a for a in argv):
            pids.append(int(entry.name))
    return pids
