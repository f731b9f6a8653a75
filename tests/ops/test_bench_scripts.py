"""Every benchmark script still starts: its imports resolve and its arguments parse.

BENCHMARKS.md gives each table's reproducing command; a script that rots between the runs of its
benchmark (hack/bench/runtimes/runtimes.py imported a helper that hack/bench/cme/cme.py had moved
to hack/bench/noise.py) makes that command fail when someone needs it. ``--help`` runs every
import at module level and nothing else, so this stays fast and measures nothing.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench_scripts() -> list[Path]:
    scripts = (REPO / "hack" / "bench").rglob("*.py")
    return sorted(path for path in scripts if 'if __name__ == "__main__"' in path.read_text())


def test_every_benchmark_script_answers_help() -> None:
    scripts = bench_scripts()
    assert len(scripts) >= 10, scripts  # the glob still finds them

    def run(script: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), "--help"],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = dict(zip(scripts, pool.map(run, scripts), strict=True))
    failed = {
        str(script.relative_to(REPO)): (answer.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        for script, answer in answers.items()
        if answer.returncode != 0 or "usage:" not in answer.stdout
    }
    assert not failed, failed
