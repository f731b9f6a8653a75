"""`make demo` then `make test` on one machine: the tests run in a lab of their own (directory and
ports), so the demo's lab, its operator and the devices its tenants hold are never adopted by them,
nor taken down; a lab the user names is used as named."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_TARGETS = ["test", "test-cluster", "test-dataplane", "test-e2e", "test-images"]


def dry_run(target: str, **env: str) -> dict[str, str]:
    """The environment the target's pytest line sets (from `make -n`)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGETENANT_LAB_")}
    out = subprocess.run(
        ["make", "-n", target], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if "-m pytest" in line)
    words = shlex.split(line)
    return dict(w.split("=", 1) for w in words[: words.index(next(w for w in words if "=" not in w))])


@pytest.mark.parametrize("target", TEST_TARGETS)
def test_the_tests_never_use_the_lab_the_demo_and_the_user_get_by_default(target: str) -> None:
    cache = os.environ.get("EDGETENANT_CACHE", str(Path.home() / ".cache" / "edgetenant"))
    env = dry_run(target)
    # hack/lab/lab's default, which `make demo` and a plain `hack/lab/lab up` use.
    assert Path(env["EDGETENANT_LAB_DIR"]) != Path(cache) / "lab"
    assert int(env["EDGETENANT_LAB_PORT_OFFSET"]) != 0


def test_a_lab_the_user_names_is_the_one_tested() -> None:
    env = dry_run("test-e2e", EDGETENANT_LAB_DIR="/tmp/my-lab", EDGETENANT_LAB_PORT_OFFSET="300")
    assert env == {"EDGETENANT_LAB_DIR": "/tmp/my-lab", "EDGETENANT_LAB_PORT_OFFSET": "300"}


def test_the_demo_uses_the_default_lab_and_says_what_it_leaves_running() -> None:
    out = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not re.search(r"EDGETENANT_LAB_(DIR|PORT_OFFSET)=", out)
    demo = (REPO / "hack" / "demo.py").read_text()
    assert "still running" in demo and "hack/lab/lab down" in demo
