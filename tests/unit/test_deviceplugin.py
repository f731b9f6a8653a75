"""The device plugin's pure parts: what it advertises and allocates, and the kubelet's wire format.

The messages are built from a field table (edgetenant/deviceplugin/api.py), so their encodings are
checked here byte for byte against the device-plugin API's field numbers and types
(k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto). The plugin against a real kubelet is in
tests/node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgetenant.deviceplugin import api
from edgetenant.deviceplugin.slots import SlotError, Slots

REPO = Path(__file__).resolve().parents[2]


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2) with a one-byte length."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_slots_advertise_one_device_per_slot() -> None:
    slots = Slots("edgetenant.io/cpu-slot", 4)
    assert slots.device_ids == ["slot-0", "slot-1", "slot-2", "slot-3"]
    assert slots.socket_name == "edgetenant.io_cpu-slot.sock"


def test_a_container_learns_its_slots_in_numeric_order() -> None:
    slots = Slots("edgetenant.io/cpu-slot", 12)
    env = slots.container_env(["slot-10", "slot-2"])
    assert env == {
        "EDGETENANT_DEVICE_RESOURCE": "edgetenant.io/cpu-slot",
        "EDGETENANT_DEVICE_SLOTS": "slot-2,slot-10",
    }


def test_an_unknown_device_is_refused_by_name() -> None:
    with pytest.raises(SlotError, match="slot-4"):
        Slots("edgetenant.io/cpu-slot", 4).container_env(["slot-1", "slot-4"])


@pytest.mark.parametrize(
    ("resource", "count", "message"),
    [
        ("cpu-slot", 4, "expected <domain>/<name>"),
        ("kubernetes.io/cpu-slot", 4, "reserved"),
        ("node.k8s.io/slot", 4, "reserved"),
        ("Edgetenant.io/slot", 4, "expected <domain>/<name>"),
        ("edgetenant.io/cpu-slot", 0, "between 1 and 1024"),
    ],
)
def test_bad_plugin_settings_are_refused_with_the_reason(resource: str, count: int, message: str) -> None:
    with pytest.raises(SlotError, match=message):
        Slots(resource, count)


def test_register_request_encoding() -> None:
    request = api.RegisterRequest(
        version="v1beta1", endpoint="x.sock", resource_name="a.io/b", options=api.DevicePluginOptions()
    )
    expected = field(1, b"v1beta1") + field(2, b"x.sock") + field(3, b"a.io/b") + field(4, b"")
    assert request.SerializeToString() == expected


def test_list_and_watch_response_encoding() -> None:
    response = api.ListAndWatchResponse(devices=[api.Device(ID="slot-0", health=api.HEALTHY)])
    assert response.SerializeToString() == field(1, field(1, b"slot-0") + field(2, b"Healthy"))


def test_allocate_request_from_the_kubelet_decodes() -> None:
    # AllocateRequest{container_requests: [{devices_ids: ["slot-1", "slot-3"]}, {devices_ids: ["slot-0"]}]}
    wire = field(1, field(1, b"slot-1") + field(1, b"slot-3")) + field(1, field(1, b"slot-0"))
    request = api.AllocateRequest.FromString(wire)
    assert [list(c.devices_ids) for c in request.container_requests] == [["slot-1", "slot-3"], ["slot-0"]]


def test_allocate_response_encodes_envs_as_a_map() -> None:
    response = api.AllocateResponse(container_responses=[api.ContainerAllocateResponse(envs={"K": "V"})])
    entry = field(1, b"K") + field(2, b"V")  # map<string,string> entry: key = 1, value = 2
    assert response.SerializeToString() == field(1, field(1, entry))


def test_the_lab_requests_what_the_daemonset_advertises() -> None:
    """The dev overlay's x86-cpu class requests the plugin's resource, and the DaemonSet advertises as
    many slots as the class shares its device into; the lab topology's x86 nodes offer them."""
    daemonset = yaml.safe_load((REPO / "manifests/deviceplugin/daemonset.yaml").read_text())
    args = dict(
        a.removeprefix("--").split("=", 1)
        for a in daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    overlay = yaml.safe_load((REPO / "manifests/overlays/dev/kustomization.yaml").read_text())
    patch = next(
        p for p in overlay["patches"] if p["target"] == {"kind": "AcceleratorClass", "name": "x86-cpu"}
    )
    ops = {op["path"]: op.get("value") for op in yaml.safe_load(patch["patch"])}
    assert ops["/spec/resourceName"] == args["resource"]
    x86 = yaml.safe_load((REPO / "manifests/acceleratorclasses/x86-cpu.yaml").read_text())
    assert int(args["slots"]) == x86["spec"]["sharing"]["slots"]
    nodes = [
        d
        for d in yaml.safe_load_all((REPO / "hack/lab/edge-lab.yaml").read_text())
        if d and d["kind"] == "Node"
    ]
    amd64 = [n for n in nodes if n["metadata"]["labels"]["kubernetes.io/arch"] == "amd64"]
    assert amd64 and all(n["status"]["allocatable"][args["resource"]] == args["slots"] for n in amd64)
