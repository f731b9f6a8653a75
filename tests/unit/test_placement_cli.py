"""`edgetenant plan` and the Kubernetes-objects -> Snapshot conversion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgetenant import api
from edgetenant.errors import ConfigError
from edgetenant.placement import snapshot_from_objects
from edgetenant.placement.cli import BASELINE_NAMES, build_parser, main

REPO = Path(__file__).resolve().parents[2]

CLUSTER = """
apiVersion: v1
kind: Node
metadata:
  name: jetson-1
  labels: {accel: jetson}
spec:
  taints: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]
status:
  allocatable: {cpu: "4", memory: 4Gi, nvidia.com/gpu: "4"}
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Node
metadata: {name: x86-1, labels: {kubernetes.io/arch: amd64}}
status:
  allocatable: {cpu: "8"}
---
apiVersion: v1
kind: Node
metadata: {name: x86-down, labels: {kubernetes.io/arch: amd64}}
status:
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: edgetenant.io/v1alpha1
kind: AcceleratorClass
metadata: {name: jetson-gpu}
spec:
  resourceName: nvidia.com/gpu
  nodeSelector: {accel: jetson}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  memoryPerDeviceMiB: 2048
  sharing: {mode: TimeSliced, slots: 4}
  instanceKind: KIND_GPU
  formats: [{format: onnx, backend: onnxruntime, image: "triton:1"}]
  relativeSpeed: 4
---
apiVersion: edgetenant.io/v1alpha1
kind: AcceleratorClass
metadata: {name: x86-cpu}
spec:
  resourceName: ""
  nodeSelector: {kubernetes.io/arch: amd64}
  memoryPerDeviceMiB: 4096
  instanceKind: KIND_CPU
  formats: [{format: onnx, backend: onnxruntime, image: "triton:1"}]
  relativeSpeed: 1
"""

TENANTS = """
apiVersion: edgetenant.io/v1alpha1
kind: InferenceTenant
metadata: {name: cam, namespace: vision}
spec:
  model: {name: mobilenet, format: onnx, uri: "file:///m.onnx", memoryHintMiB: 200}
  acceleratorClasses: [jetson-gpu, x86-cpu]
  slo: {throughput: 50}
  concurrency: {mode: Fixed, value: 2}
status:
  activePlacement: {node: jetson-1, acceleratorClass: jetson-gpu, resource: nvidia.com/gpu, device: "0"}
  movesInLastHour: 1
---
apiVersion: edgetenant.io/v1alpha1
kind: InferenceTenant
metadata: {name: lidar, namespace: vision}
spec:
  model: {format: tflite, uri: "file:///l.tflite"}
---
apiVersion: edgetenant.io/v1alpha1
kind: ModelProfile
metadata: {name: mobilenet.jetson-gpu, namespace: vision}
spec:
  model: mobilenet
  acceleratorClass: jetson-gpu
  points:
    - {concurrency: 1, throughput: 90, latencyP95Ms: 12, memoryMiB: 300}
    - {concurrency: 2, throughput: 160, latencyP95Ms: 14, memoryMiB: 500}
"""


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "tenants").mkdir()
    (tmp_path / "tenants" / "tenants.yaml").write_text(TENANTS)
    return tmp_path


def test_objects_become_a_snapshot(cluster_dir: Path) -> None:
    objects = [*yaml.safe_load_all(CLUSTER), *yaml.safe_load_all(TENANTS)]
    snap = snapshot_from_objects(objects)
    nodes = {n.name: n for n in snap.nodes}
    assert nodes["jetson-1"].allocatable["nvidia.com/gpu"] == 4
    assert not nodes["x86-down"].ready
    assert nodes["x86-1"].ready  # no conditions: a hand-written topology counts as Ready
    cam = next(t for t in snap.tenants if t.key == "vision/cam")
    assert (cam.model, cam.demand, cam.min_concurrency, cam.max_concurrency) == ("mobilenet", 50.0, 2, 2)
    assert cam.current is not None and (cam.current.node, cam.current.device) == ("jetson-1", 0)
    assert cam.moves_in_last_hour == 1
    lidar = next(t for t in snap.tenants if t.key == "vision/lidar")
    assert (lidar.model, lidar.format, lidar.accelerator_classes) == ("lidar", "tflite", ())
    (profile,) = snap.profiles
    assert (profile.model, profile.namespace, len(profile.points)) == ("mobilenet", "vision", 2)


def test_plan_json_has_the_documented_shape(cluster_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["-f", str(cluster_dir / "cluster.yaml"), "-f", str(cluster_dir / "tenants"), "-o", "json"]) == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert set(plan) == {
        "placements",
        "unplaced",
        "warnings",
        "objective",
        "optimal",
        "moves",
        "solver",
        "solveMs",
    }
    (placement,) = plan["placements"]
    assert placement == {
        "tenant": "vision/cam",
        "node": "jetson-1",
        "acceleratorClass": "jetson-gpu",
        "device": 0,
        "concurrency": 2,
        "predictedThroughput": 50.0,
        "predictedP95Ms": 14.0,
        "estimated": False,
    }
    assert plan["unplaced"] == [
        {
            "tenant": "vision/lidar",
            "kind": "Unschedulable",
            "reason": "no AcceleratorClass supports format tflite",
        }
    ]
    assert plan["warnings"] == []
    assert plan["objective"] == pytest.approx(100 * 50.0)
    assert (plan["optimal"], plan["moves"]) == (True, 0)
    assert plan["solver"] in {"greedy", "cp-sat"}


def test_plan_yaml_and_table(cluster_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", str(cluster_dir), "-o", "yaml", "--baseline", "first-fit"]) == 0
    plan = yaml.safe_load(capsys.readouterr().out)
    assert plan["solver"] == "first-fit"
    assert main(["-f", str(cluster_dir)]) == 0
    table = capsys.readouterr().out
    assert "jetson-1" in table
    assert "500 / 2048" in table  # the device's memory: concurrency 2 of the profiled model
    assert "Unplaced" in table
    assert "no AcceleratorClass supports format tflite" in table


def test_a_bad_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Node\nmetadata: [unclosed\n")
    assert main(["-f", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err
    assert main(["-f", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: no such file or directory" in capsys.readouterr().err


def test_a_bad_object_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = TENANTS.replace("format: onnx", "format: caffe")
    (tmp_path / "t.yaml").write_text(broken)
    assert main(["-f", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "InferenceTenant vision/cam" in err
    assert "spec.model.format" in err
    with pytest.raises(ConfigError, match="Node <no name>"):
        snapshot_from_objects([{"kind": "Node", "metadata": {}}], strict=True)
    # The operator's mode: the bad object is left out and said so; the others still plan.
    lenient = snapshot_from_objects([{"kind": "Node", "metadata": {}}, *yaml.safe_load_all(CLUSTER)])
    assert len(lenient.nodes) == 3
    assert any("Node <no name>: not a valid Node" in w.message for w in lenient.warnings)


def test_the_lab_topology_and_samples_plan(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [
        REPO / "hack/lab/edge-lab.yaml",
        REPO / "manifests/acceleratorclasses",
        REPO / "manifests/samples",
    ]
    if not all(p.exists() for p in paths):
        pytest.skip("lab topology or samples not in this checkout")
    assert main([arg for p in paths for arg in ("-f", str(p))] + ["-o", "json", "--time-limit", "1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    tenants = {p["tenant"] for p in plan["placements"]} | {u["tenant"] for u in plan["unplaced"]}
    samples = {
        f"{d['metadata']['namespace']}/{d['metadata']['name']}"
        for f in (REPO / "manifests/samples").glob("*.yaml")
        for d in yaml.safe_load_all(f.read_text())
        if d and d.get("kind") == "InferenceTenant"
    }
    assert tenants == samples
    assert plan["placements"]


def test_parsed_api_models_are_accepted_too() -> None:
    docs = [*yaml.safe_load_all(CLUSTER), *yaml.safe_load_all(TENANTS)]
    parsed = [api.parse_object(d) for d in docs]
    assert snapshot_from_objects(parsed) == snapshot_from_objects(docs)


# --- #16: exit codes, bounds, help, one-line errors; #18: warnings ------------------------------


def test_require_all_exits_3_when_a_tenant_is_unplaced(
    cluster_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-f", str(cluster_dir), "-o", "json", "--require-all"]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unplaced"]  # the plan is printed all the same
    assert captured.err.strip() == "edgetenant plan: 1 of 2 tenants unplaced (--require-all)"
    (cluster_dir / "tenants" / "tenants.yaml").write_text(TENANTS.split("---\n", 2)[0])  # cam only
    assert main(["-f", str(cluster_dir), "-o", "json", "--require-all"]) == 0


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--time-limit", "-1", "argument --time-limit: must be more than 0 and at most 3600 s, got -1"),
        ("--time-limit", "0", "argument --time-limit: must be more than 0 and at most 3600 s, got 0"),
        ("--time-limit", "nan", "argument --time-limit: must be more than 0 and at most 3600 s, got nan"),
        ("--time-limit", "soon", "argument --time-limit: 'soon' is not a number"),
        ("--move-cost", "-5", "argument --move-cost: must be at least 0 and at most 1e+09, got -5"),
        ("--move-cost", "inf", "argument --move-cost: must be at least 0 and at most 1e+09, got inf"),
    ],
)
def test_numeric_options_are_bounded(
    cluster_dir: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["-f", str(cluster_dir), option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == f"edgetenant plan: error: {message} (see --help)\n"  # one line, no usage dump


def test_every_option_has_help() -> None:
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("kind: Node\nmetadata: [unclosed\n", "bad.yaml: while parsing a flow sequence"),
        ("- just\n- a list\n", "bad.yaml: expected a mapping (a Kubernetes object), got list"),
        (
            "kind: Deployment\nmetadata: {name: x}\n",
            "no Node, AcceleratorClass, InferenceTenant, ModelProfile objects",
        ),
    ],
)
def test_unreadable_input_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    (tmp_path / "bad.yaml").write_text(content)
    assert main(["-f", str(tmp_path / "bad.yaml")]) == 1
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_kubeconfig_or_an_unreachable_server_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [unclosed\n")
    unreachable = tmp_path / "unreachable"
    unreachable.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    for path in (missing, garbage, unreachable):
        assert main(["--kubeconfig", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"edgetenant plan: cannot read the cluster through {path}: "), err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_warnings_go_to_stderr_with_the_table_and_into_json(
    cluster_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = CLUSTER.split("---\n")[3].replace("edgetenant.io/v1alpha1", "edgetenant.io/v1beta1")
    (cluster_dir / "cluster.yaml").write_text(CLUSTER + "---\n" + wrong.replace("jetson-gpu", "old-gpu"))
    zero = "    - {concurrency: 4, throughput: 0, latencyP95Ms: 30, memoryMiB: 900}\n"
    (cluster_dir / "tenants" / "tenants.yaml").write_text(TENANTS + zero)
    assert main(["-f", str(cluster_dir)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert (
        "warning: AcceleratorClass old-gpu ignored: apiVersion 'edgetenant.io/v1beta1' is not "
        "edgetenant.io/v1alpha1"
    ) in err
    assert any(
        line.startswith(
            "warning: vision/cam: ModelProfile vision/mobilenet.jetson-gpu: 1 point(s) with throughput 0"
        )
        for line in err
    ), err
    assert main(["-f", str(cluster_dir), "-o", "json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert {"message": err[0].removeprefix("warning: ")} in warnings
    assert any(w.get("tenant") == "vision/cam" for w in warnings)


def test_baseline_names_match_the_baselines() -> None:
    from edgetenant.placement.baselines import BASELINES  # noqa: PLC0415

    assert sorted(BASELINES) == sorted(BASELINE_NAMES)
