"""kill -9 the operator while it reconciles many tenants; a new one must converge with no duplicates."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.cluster.test_operator import OPERATOR_ENV, tenant, wait_placed
from tests.lab import Lab, OperatorProcess, wait_for


def test_kill_9_midway_then_restart_converges_without_duplicates(
    lab: Lab, operator_kubeconfig: Path, tmp_path: Path, namespace: str
) -> None:
    count = 24
    tenants = [
        tenant(f"burst-{i:02d}", namespace, acceleratorClasses=["x86-cpu", "arm64-cpu"]) for i in range(count)
    ]
    first = OperatorProcess(operator_kubeconfig, tmp_path / "first.log", OPERATOR_ENV).start()
    try:
        lab.apply(tenants)
        wait_for(
            "the operator to be halfway",
            lambda: len(lab.get_json("deployments", "-n", namespace)["items"]) >= 3,
            timeout=60,
            interval=0.2,
        )
    finally:
        first.kill(signal.SIGKILL)
    second = OperatorProcess(operator_kubeconfig, tmp_path / "second.log", OPERATOR_ENV).start()
    try:
        for body in tenants:
            wait_placed(lab, namespace, body["metadata"]["name"], timeout=120)
        uids = {t["metadata"]["uid"] for t in lab.get_json("itn", "-n", namespace)["items"]}
        for kind in ("deployments", "services", "configmaps"):
            items = list(
                lab.get_json(kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=edgetenant")["items"]
            )
            assert len(items) == count, f"{kind}: {len(items)} for {count} tenants"
            assert all(i["metadata"]["ownerReferences"][0]["uid"] in uids for i in items), f"orphaned {kind}"
    finally:
        second.kill()
