"""The kubelet's device-plugin API (`k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto`).

The messages are built at import time from a field table that mirrors the .proto file field for
field, with the protobuf runtime the image already has: no generated code, and so no protoc
version that must match the runtime. Field numbers and types are the wire contract with the
kubelet; tests/unit/test_deviceplugin.py checks encodings byte for byte.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]

VERSION = "v1beta1"
PACKAGE = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
DEFAULT_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _T.TYPE_STRING, "bool": _T.TYPE_BOOL, "int32": _T.TYPE_INT32, "int64": _T.TYPE_INT64}

# message -> [(field, number, type, repeated)]; a type that is not a scalar names a message, and
# "map" is map<string, string>.
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "DevicePluginOptions": [
        ("pre_start_required", 1, "bool", False),
        ("get_preferred_allocation_available", 2, "bool", False),
    ],
    "RegisterRequest": [
        ("version", 1, "string", False),
        ("endpoint", 2, "string", False),
        ("resource_name", 3, "string", False),
        ("options", 4, "DevicePluginOptions", False),
    ],
    "Empty": [],
    "ListAndWatchResponse": [("devices", 1, "Device", True)],
    "TopologyInfo": [("nodes", 1, "NUMANode", True)],
    "NUMANode": [("ID", 1, "int64", False)],
    "Device": [
        ("ID", 1, "string", False),
        ("health", 2, "string", False),
        ("topology", 3, "TopologyInfo", False),
    ],
    "PreStartContainerRequest": [("devices_ids", 1, "string", True)],
    "PreStartContainerResponse": [],
    "PreferredAllocationRequest": [("container_requests", 1, "ContainerPreferredAllocationRequest", True)],
    "ContainerPreferredAllocationRequest": [
        ("available_deviceIDs", 1, "string", True),
        ("must_include_deviceIDs", 2, "string", True),
        ("allocation_size", 3, "int32", False),
    ],
    "PreferredAllocationResponse": [("container_responses", 1, "ContainerPreferredAllocationResponse", True)],
    "ContainerPreferredAllocationResponse": [("deviceIDs", 1, "string", True)],
    "AllocateRequest": [("container_requests", 1, "ContainerAllocateRequest", True)],
    "ContainerAllocateRequest": [("devices_ids", 1, "string", True)],
    "CDIDevice": [("name", 1, "string", False)],
    "AllocateResponse": [("container_responses", 1, "ContainerAllocateResponse", True)],
    "ContainerAllocateResponse": [
        ("envs", 1, "map", False),
        ("mounts", 2, "Mount", True),
        ("devices", 3, "DeviceSpec", True),
        ("annotations", 4, "map", False),
        ("cdi_devices", 5, "CDIDevice", True),
    ],
    "Mount": [
        ("container_path", 1, "string", False),
        ("host_path", 2, "string", False),
        ("read_only", 3, "bool", False),
    ],
    "DeviceSpec": [
        ("container_path", 1, "string", False),
        ("host_path", 2, "string", False),
        ("permissions", 3, "string", False),
    ],
}


def _entry_name(field: str) -> str:
    """protoc's name for a map field's entry type: `envs` -> `EnvsEntry`."""
    return "".join(part.capitalize() for part in field.split("_")) + "Entry"


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field, number, kind, repeated in fields:
            label = _T.LABEL_REPEATED if repeated or kind == "map" else _T.LABEL_OPTIONAL
            spec = message.field.add(name=field, number=number, label=label)
            if kind == "map":
                entry = message.nested_type.add(name=_entry_name(field))
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=_T.LABEL_OPTIONAL, type=_T.TYPE_STRING)
                entry.field.add(name="value", number=2, label=_T.LABEL_OPTIONAL, type=_T.TYPE_STRING)
                spec.type = _T.TYPE_MESSAGE
                spec.type_name = f".{PACKAGE}.{name}.{entry.name}"
            elif kind in _SCALARS:
                spec.type = _SCALARS[kind]
            else:
                spec.type = _T.TYPE_MESSAGE
                spec.type_name = f".{PACKAGE}.{kind}"
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def message(name: str) -> Any:
    """The message class for `name` (e.g. "RegisterRequest")."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


DevicePluginOptions = message("DevicePluginOptions")
RegisterRequest = message("RegisterRequest")
Empty = message("Empty")
ListAndWatchResponse = message("ListAndWatchResponse")
Device = message("Device")
PreStartContainerRequest = message("PreStartContainerRequest")
PreStartContainerResponse = message("PreStartContainerResponse")
PreferredAllocationRequest = message("PreferredAllocationRequest")
PreferredAllocationResponse = message("PreferredAllocationResponse")
AllocateRequest = message("AllocateRequest")
AllocateResponse = message("AllocateResponse")
ContainerAllocateResponse = message("ContainerAllocateResponse")

# gRPC method paths, as protoc would name them.
REGISTER = f"/{PACKAGE}.Registration/Register"
DEVICE_PLUGIN_SERVICE = f"{PACKAGE}.DevicePlugin"
