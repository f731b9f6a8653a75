"""Operations tests: the Helm chart, the monitoring rules, the Argo CD and kstatus health rules, the
dashboard. The tools they run (helm, promtool, kstatus) are built from their Go modules by
hack/tools/build.sh into the cache outside the repository (instant once built)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tool() -> Callable[[str], Path]:
    """The path of a built tool: helm, promtool or kstatus (built now if the cache lacks it)."""
    found: dict[str, Path] = {}

    def path(name: str) -> Path:
        if name not in found:
            out = subprocess.run(
                [str(REPO / "hack" / "tools" / "build.sh"), "--print-bin", name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            found[name] = Path(out.strip().rsplit("=", 1)[1])
        return found[name]

    return path
