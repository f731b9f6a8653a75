"""The status a tenant gets from what the operator observed (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from edgetenant.placement import Placement
from edgetenant.status import Observation, PodView, Writer, desired_status, owned_patch, status_changed

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def placement(node: str = "jetson-tx2-1", klass: str = "jetson-tx2") -> Placement:
    return Placement("ns/t", node, klass, 0, 2, 30.0, 40.0, estimated=False)


def template_of(node: str, klass: str) -> str:
    """Stands in for the rendered pod template's hash: one per (class, node) in these tests."""
    return f"{klass}@{node}"


def pod(
    node: str, ready: bool, name: str = "t-1", fetch_failed: str = "", klass: str = "jetson-tx2"
) -> PodView:
    message = "" if ready else "not loaded"
    return PodView(
        name, node, "127.64.0.9", "Running", ready, message, fetch_failed, template_of(node, klass)
    )


def observe(
    placed: Placement | None = None,
    pods: tuple[PodView, ...] = (),
    *,
    unplaced: str | None = None,
    problem: str | None = None,
) -> Observation:
    return Observation(
        generation=3,
        placement=placed,
        unplaced_reason=unplaced,
        spec_problem=problem,
        pods=pods,
        instance_count=1,
        endpoint="http://t.ns.svc:8000/v2/models/t",
        resource="nvidia.com/gpu",
        selector="edgetenant.io/tenant=t",
        replicas=len(pods),
        template=template_of(placed.node, placed.accelerator_class) if placed else None,
    )


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_placed_but_not_yet_loaded_is_not_ready() -> None:
    obs = observe(placement(), (pod("jetson-tx2-1", ready=False),))
    status = desired_status({}, obs, NOW)
    c = conditions(status)
    assert c["Placed"] == ("True", "Placed")
    assert c["ModelLoaded"][0] == "False"
    assert c["Ready"][0] == "False"
    assert c["Reconciling"][0] == "True"
    assert status["targetPlacement"]["node"] == "jetson-tx2-1"
    assert status["activePlacement"] is None
    assert ("Normal", "Placed", "placed on jetson-tx2 device 0 on node jetson-tx2-1") in obs.events


def test_ready_only_when_triton_says_so_on_the_target() -> None:
    status = desired_status({}, observe(placement(), (pod("jetson-tx2-1", ready=True),)), NOW)
    c = conditions(status)
    assert c["Ready"] == ("True", "Serving")
    assert c["Reconciling"] == ("False", "Settled")
    assert status["activePlacement"]["node"] == "jetson-tx2-1"
    assert all(cond["observedGeneration"] == 3 for cond in status["conditions"])


def test_a_second_pass_changes_nothing() -> None:
    obs = observe(placement(), (pod("jetson-tx2-1", ready=True),))
    first = desired_status({}, obs, NOW)
    again = observe(placement(), (pod("jetson-tx2-1", ready=True),))
    second = desired_status(first, again, NOW + timedelta(minutes=5))
    assert not status_changed(first, second)
    assert again.events == []


def test_a_move_is_make_before_break() -> None:
    settled = desired_status({}, observe(placement(), (pod("jetson-tx2-1", ready=True),)), NOW)
    moving_obs = observe(
        placement("jetson-nano-1", "jetson-nano"),
        (
            pod("jetson-tx2-1", ready=True),
            pod("jetson-nano-1", ready=False, name="t-2", klass="jetson-nano"),
        ),
    )
    moving = desired_status(settled, moving_obs, NOW + timedelta(seconds=1))
    assert moving["targetPlacement"]["node"] == "jetson-nano-1"
    assert moving["activePlacement"]["node"] == "jetson-tx2-1", (
        "the old copy serves until the new one is ready"
    )
    assert conditions(moving)["Ready"][0] == "False"
    assert moving["movesInLastHour"] == 1
    assert any(e[1] == "MoveStarted" for e in moving_obs.events)
    done_obs = observe(
        placement("jetson-nano-1", "jetson-nano"),
        (pod("jetson-nano-1", ready=True, name="t-2", klass="jetson-nano"),),
    )
    done = desired_status(moving, done_obs, NOW + timedelta(seconds=20))
    assert done["activePlacement"]["node"] == "jetson-nano-1"
    assert conditions(done)["Ready"][0] == "True"
    assert any(e[1] == "MoveCompleted" for e in done_obs.events)


def test_moves_age_out_of_the_hour_window() -> None:
    settled = desired_status({}, observe(placement(), (pod("jetson-tx2-1", ready=True),)), NOW)
    moved = desired_status(settled, observe(placement("jetson-nano-1", "jetson-nano")), NOW)
    later = desired_status(
        moved, observe(placement("jetson-nano-1", "jetson-nano")), NOW + timedelta(hours=2)
    )
    assert moved["movesInLastHour"] == 1
    assert later["movesInLastHour"] == 0


def test_unschedulable_is_stalled_with_the_planners_reason() -> None:
    reason = "needs 900 MiB, largest free on a compatible device is 512 MiB"
    obs = observe(unplaced=reason)
    status = desired_status({}, obs, NOW)
    c = conditions(status)
    assert c["Placed"] == ("False", "Unschedulable")
    assert c["Stalled"] == ("True", "Unschedulable")
    assert c["Reconciling"][0] == "False"
    assert ("Warning", "Unschedulable", reason) in obs.events


def test_invalid_spec_keeps_the_last_target_and_warns() -> None:
    settled = desired_status({}, observe(placement(), (pod("jetson-tx2-1", ready=True),)), NOW)
    obs = observe(None, (pod("jetson-tx2-1", ready=True),), problem="unknown AcceleratorClass gpu-x")
    status = desired_status(settled, obs, NOW)
    assert conditions(status)["Placed"] == ("False", "InvalidSpec")
    assert status["targetPlacement"] == settled["targetPlacement"]
    assert status["activePlacement"] == settled["activePlacement"]
    assert any(e[1] == "InvalidSpec" for e in obs.events)


def test_a_failed_model_fetch_is_reported_with_the_fetchers_words() -> None:
    failed = pod("jetson-tx2-1", ready=False, fetch_failed="fetch-model failed: HTTP 404 for http://x/m.onnx")
    status = desired_status({}, observe(placement(), (failed,)), NOW)
    c = conditions(status)
    assert c["ModelLoaded"] == ("False", "ModelFetchFailed")
    assert c["Stalled"] == ("True", "ModelFetchFailed")


def test_tuning_conditions_are_carried_over() -> None:
    old = {
        "conditions": [
            {
                "type": "MetricsAvailable",
                "status": "False",
                "reason": "MetricsUnavailable",
                "message": "",
                "lastTransitionTime": "2026-11-30T11:00:00Z",
            }
        ],
        "concurrency": {"current": 4, "target": 4, "ceiling": 7},
        "lastDecision": {
            "at": "2026-11-30T11:59:00Z",
            "action": "Hold",
            "reason": "at the knee",
            "signals": {},
        },
    }
    status = desired_status(old, observe(placement(), (pod("jetson-tx2-1", ready=True),)), NOW)
    assert conditions(status)["MetricsAvailable"] == ("False", "MetricsUnavailable")
    assert status["concurrency"] == {"current": 4, "target": 4, "ceiling": 7}


def test_current_concurrency_is_what_was_rendered_until_the_tuner_reports() -> None:
    loading = desired_status({}, observe(placement(), (pod("jetson-tx2-1", ready=False),)), NOW)
    assert loading["concurrency"]["current"] == 0, "nothing serves yet"
    serving = desired_status(loading, observe(placement(), (pod("jetson-tx2-1", ready=True),)), NOW)
    assert serving["concurrency"] == {"current": 1, "target": 1}


def test_a_class_change_on_the_same_node_is_not_ready_from_the_old_pod() -> None:
    settled = desired_status({}, observe(placement(), (pod("jetson-tx2-1", ready=True),)), NOW)
    # Same node, another class: the old pod (old template) still answers ready.
    obs = observe(placement("jetson-tx2-1", "x86-cpu"), (pod("jetson-tx2-1", ready=True),))
    changing = desired_status(settled, obs, NOW + timedelta(seconds=1))
    assert conditions(changing)["Ready"][0] == "False"
    assert changing["activePlacement"]["acceleratorClass"] == "jetson-tx2", "the old copy still serves"
    new_pod = pod("jetson-tx2-1", ready=True, name="t-2", klass="x86-cpu")
    done = desired_status(changing, observe(placement("jetson-tx2-1", "x86-cpu"), (new_pod,)), NOW)
    assert conditions(done)["Ready"][0] == "True"
    assert done["activePlacement"]["acceleratorClass"] == "x86-cpu"


def test_each_writer_writes_only_its_own_fields() -> None:
    latest = {
        "concurrency": {"current": 3, "target": 3},
        "lastDecision": {"action": "ScaleUp"},
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "MetricsAvailable", "status": "True"},
        ],
    }
    # A reconciler computed from an older status: its stale instance count must not be written.
    stale = {
        "concurrency": {"current": 2, "target": 2},
        "targetPlacement": {"node": "n"},
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "MetricsAvailable", "status": "False"}],
    }
    patch = owned_patch(latest, stale, Writer.RECONCILER)
    assert "concurrency" not in patch
    assert patch["targetPlacement"] == {"node": "n"}
    assert patch["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "MetricsAvailable", "status": "True"},
    ], "the tuning loop's condition is kept as it is"
    tuning = owned_patch(
        latest, {"concurrency": {"current": 4, "target": 4}, "targetPlacement": None}, Writer.TUNING
    )
    assert tuning == {"concurrency": {"current": 4, "target": 4}}
    assert owned_patch(latest, latest, Writer.TUNING) == {}


def test_the_reconciler_seeds_concurrency_until_the_tuner_decides() -> None:
    proposed = {"concurrency": {"current": 1, "target": 1}}
    assert owned_patch({}, proposed, Writer.RECONCILER) == proposed
    decided = {"lastDecision": {"action": "Hold"}, "concurrency": {"current": 2, "target": 2}}
    assert owned_patch(decided, proposed, Writer.RECONCILER) == {}


def test_a_planning_error_is_stalled_with_its_own_reason() -> None:
    obs = Observation(
        generation=1,
        placement=None,
        unplaced_reason="internal planning error: ZeroDivisionError",
        spec_problem=None,
        pods=(),
        instance_count=1,
        endpoint=None,
        resource="",
        selector="edgetenant.io/tenant=t",
        replicas=0,
        unplaced_kind="PlanningError",
    )
    c = conditions(desired_status({}, obs, NOW))
    assert c["Placed"] == ("False", "PlanningError")
    assert c["Stalled"] == ("True", "PlanningError")
    assert ("Warning", "PlanningError", "internal planning error: ZeroDivisionError") in obs.events


def test_what_the_planner_ignored_is_a_condition_and_an_event() -> None:
    obs = observe(placement(), (pod("jetson-tx2-1", ready=True),))
    quiet = desired_status({}, obs, NOW)
    assert conditions(quiet)["PlanWarnings"] == ("False", "None")
    message = "ModelProfile p: 2 points with zero throughput were dropped"
    noisy = dataclasses.replace(obs, events=[], plan_warnings=(message,))
    warned = desired_status(quiet, noisy, NOW)
    assert conditions(warned)["PlanWarnings"] == ("True", "InputsIgnored")
    assert ("Warning", "PlanWarnings", message) in noisy.events


def test_a_class_status_counts_devices_and_says_why_there_are_none() -> None:
    from edgetenant.placement import AcceleratorClass, Node, SharingMode  # noqa: PLC0415
    from edgetenant.status import class_status  # noqa: PLC0415

    gpu = AcceleratorClass(
        "tx2", "nvidia.com/gpu", 8192, ("onnx",), node_selector={"kind": "tx2"},
        sharing=SharingMode.TIME_SLICED, slots=4,
    )  # fmt: skip
    nodes = [
        Node("a", labels={"kind": "tx2"}, allocatable={"nvidia.com/gpu": 8}),
        Node("b", labels={"kind": "tx2"}, allocatable={}),
        Node("c", labels={"kind": "pi"}, allocatable={"nvidia.com/gpu": 4}),
    ]
    status = class_status(gpu, nodes, {}, generation=2, now=NOW)
    assert status["devices"] == 2 and status["nodes"] == [{"name": "a", "devices": 2}]
    none = class_status(gpu, nodes[1:2], status, generation=2, now=NOW)
    assert none["conditions"][0]["reason"] == "NoDevices"
    assert "device plugin" in none["conditions"][0]["message"]
