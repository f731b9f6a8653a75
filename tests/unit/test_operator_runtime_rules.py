"""Rules of the operator runtime that need no cluster: OOM back-off, ceilings that expire, tuning
state per UID, backoff between failed passes, and the one-way import graph."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edgetenant.adapters.prometheus import OOM_QUERY, SignalQuery
from edgetenant.api.models import InferenceTenant
from edgetenant.cache import ClusterCache
from edgetenant.reconcile import MAX_BACKOFF_S, backoff_s
from edgetenant.settings import Settings
from edgetenant.tuning import Action, TunerConfig, TunerState, step
from edgetenant.tuning.policy import ceiling_expires_at, out_of_memory
from edgetenant.tuning_driver import (
    TuningDriver,
    oom_kills,
    process_oom_kills,
    tenant_pod_regex,
    unready_running,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "edgetenant"


def test_an_oom_kill_goes_one_below_the_killed_count_and_records_it() -> None:
    state = TunerState(config=TunerConfig(min=1, max=6), current=4)
    decision = out_of_memory(state, 4, NOW, "killed")
    assert (decision.action, decision.target, decision.ceiling) == (Action.BACK_OFF, 3, 4)
    assert decision.state.ceiling_at == NOW
    floor = out_of_memory(TunerState(config=TunerConfig(min=2, max=6), current=2), 2, NOW, "killed")
    assert floor.target == 2 and "raise spec.model.memoryHintMiB" in floor.reason


def test_a_learned_ceiling_expires_after_its_ttl() -> None:
    config = TunerConfig(min=1, max=6, ceiling_ttl_s=600)
    state = out_of_memory(TunerState(config=config, current=4), 4, NOW, "killed").state
    assert ceiling_expires_at(state) == NOW + timedelta(seconds=600)
    held = step(state, None, NOW + timedelta(seconds=599))
    assert held.state.ceiling == 4
    forgotten = step(state, None, NOW + timedelta(seconds=601))
    assert forgotten.state.ceiling is None and forgotten.ceiling is None


def pod_with(reason: str, restarts: int, uid: str = "p1") -> dict[str, Any]:
    return {
        "metadata": {"name": "t-abc-1", "uid": uid},
        "status": {
            "containerStatuses": [
                {
                    "name": "triton",
                    "restartCount": restarts,
                    "lastState": {
                        "terminated": {"reason": reason, "exitCode": 137, "finishedAt": f"t{restarts}"}
                    },
                }
            ]
        },
    }


def test_each_oom_kill_has_its_own_identity() -> None:
    assert oom_kills([pod_with("Error", 1)]) == []
    first = oom_kills([pod_with("OOMKilled", 1)])
    second = oom_kills([pod_with("OOMKilled", 2)])
    assert len(first) == 1 and first[0][0] != second[0][0]
    assert "going over its memory limit" in first[0][1]


def test_a_process_oom_kill_counts_only_where_no_container_status_shows_one() -> None:
    # cgroup v1: the kernel killed a stub; the container runs on, its status knows nothing.
    living = {
        "metadata": {"name": "t-abc-1", "uid": "p1"},
        "status": {"containerStatuses": [{"name": "triton"}]},
    }
    first = process_oom_kills({"t-abc-1": 1}, [living])
    second = process_oom_kills({"t-abc-1": 2}, [living])
    assert [k[2] for k in first] == ["t-abc-1"] and first[0][0] != second[0][0]
    assert "OOM-killed a process in container triton" in first[0][1]
    # cgroup v2: the container itself was killed; oom_kills reports it, the counter would count it twice.
    assert process_oom_kills({"t-abc-1": 1}, [pod_with("OOMKilled", 1)]) == []
    # Counts of pods the tenant no longer has, and zero counts, are not kills.
    assert process_oom_kills({"t-old-9": 3, "t-abc-1": 0}, [living]) == []


def test_prometheus_is_asked_about_process_oom_kills_only_while_a_pod_runs_without_serving() -> None:
    def pod(phase: str, ready: bool) -> dict[str, Any]:
        conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
        return {
            "metadata": {"name": f"p-{phase}-{ready}"},
            "status": {"phase": phase, "conditions": conditions},
        }

    pods = [pod("Running", True), pod("Running", False), pod("Pending", False)]
    assert [p["metadata"]["name"] for p in unready_running(pods)] == ["p-Running-False"]
    query = SignalQuery(model="", labels={"namespace": "ns"}, label_regexes={"pod": tenant_pod_regex("t")})
    assert OOM_QUERY.format(sel=query.selector(with_model=False)) == (
        "max by (pod) (container_oom_events_total"
        '{namespace="ns",pod=~"t-[a-z0-9]+-[a-z0-9]+",container="triton"})'
    )


def tenant_body(uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": "t", "namespace": "ns", "uid": uid},
        "spec": {"model": {"format": "onnx", "uri": "http://127.0.0.1:1/m.onnx"}},
    }


def test_tuning_state_belongs_to_the_tenant_uid_not_its_name() -> None:
    cache = ClusterCache()
    driver = TuningDriver(
        settings=Settings(prometheus_url="http://127.0.0.1:1"),
        cache=cache,
        writer=None,  # type: ignore[arg-type]  # not used by these methods
        apply=None,  # type: ignore[arg-type]
        wake=lambda key: None,
        admin_key=None,  # type: ignore[arg-type]
    )
    old = InferenceTenant.model_validate(tenant_body("uid-1"))
    driver.states["uid-1"] = driver.state_for("uid-1", old, {}).model_copy(
        update={"ceiling": 2, "current": 1}
    )
    cache.tenants["ns/t"] = tenant_body("uid-2")  # deleted and created again under the same name
    driver.forget_gone()
    assert "uid-1" not in driver.states
    fresh = driver.state_for("uid-2", InferenceTenant.model_validate(tenant_body("uid-2")), {})
    assert fresh.ceiling is None


def test_failed_passes_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    for failures, top in ((1, 1.0), (2, 2.0), (3, 4.0), (10, MAX_BACKOFF_S)):
        waits = [backoff_s(failures) for _ in range(50)]
        assert all(0.5 * top <= w <= top for w in waits), (failures, min(waits), max(waits))
        assert len(set(waits)) > 1, "no jitter"


def imports_of(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgetenant"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("edgetenant"))
    return found


def test_the_operator_runtime_imports_flow_one_way() -> None:
    def deps(name: str) -> set[str]:
        return imports_of(PACKAGE / f"{name.replace('.', '/')}.py")

    assert deps("metrics") == set(), "metrics is a leaf"
    assert not any("reconcile" in d or "handlers" in d for d in deps("adapters.kube"))
    assert "edgetenant.reconcile" not in deps("tuning_driver"), (
        "the tuning driver meets the reconciler at the writer"
    )
    assert not {"edgetenant.reconcile", "edgetenant.tuning_driver", "edgetenant.handlers"} & deps(
        "status_writer"
    )
    assert not {"edgetenant.reconcile", "edgetenant.handlers"} & deps("cache")
