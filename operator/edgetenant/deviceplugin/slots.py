"""What the plugin advertises and allocates (pure: no gRPC, no files)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# An extended resource: a domain-prefixed name outside the kubernetes.io domains.
_RESOURCE = re.compile(
    r"^(?P<domain>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


class SlotError(ValueError):
    """A bad resource name, slot count or device ID; the message says which."""


@dataclass(frozen=True)
class Slots:
    """`count` interchangeable slots of one time-sliced device, advertised as `resource`."""

    resource: str
    count: int

    def __post_init__(self) -> None:
        match = _RESOURCE.match(self.resource)
        if match is None:
            raise SlotError(f"{self.resource!r} is not an extended resource name (expected <domain>/<name>)")
        domain = match["domain"]
        if domain in {"kubernetes.io", "k8s.io"} or domain.endswith((".kubernetes.io", ".k8s.io")):
            raise SlotError(f"{self.resource!r}: the kubernetes.io and k8s.io domains are reserved")
        if not 1 <= self.count <= 1024:
            raise SlotError(f"slots must be between 1 and 1024, not {self.count}")

    @property
    def device_ids(self) -> list[str]:
        return [f"slot-{i}" for i in range(self.count)]

    @property
    def socket_name(self) -> str:
        """The plugin's socket in the kubelet's device-plugin directory (one per resource)."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.resource) + ".sock"

    def container_env(self, ids: Iterable[str]) -> dict[str, str]:
        """What a container gets for its slots: which ones (like NVIDIA_VISIBLE_DEVICES), so a
        workload or a person can see its share. Nothing else is isolated: time-slicing shares."""
        wanted = list(ids)
        unknown = sorted(set(wanted) - set(self.device_ids))
        if unknown:
            raise SlotError(f"unknown device IDs for {self.resource}: {', '.join(unknown)}")
        return {
            "EDGETENANT_DEVICE_RESOURCE": self.resource,
            "EDGETENANT_DEVICE_SLOTS": ",".join(sorted(wanted, key=lambda i: int(i.split("-")[1]))),
        }
