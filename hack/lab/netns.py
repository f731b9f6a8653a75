"""The lab's own namespaces: one network namespace that everything the lab runs lives in, and a mount
namespace for the real node; one `sleep` process the lab starts holds both open.

Why a network namespace. The real node gives pods their own network namespaces and addresses from a
private range (LAB_SUBNET). Such addresses are safe only where nothing can route them anywhere else:
inside a namespace that has `lo`, the pod bridge and nothing more. So the whole lab (etcd, the API
server, KWOK, Prometheus, the model store, containerd, the kubelet and its pods) runs in this
namespace, and so must every client of pod IPs (the operator, load generators, the tests:
tests/lab.py joins it). It has no default route and no route out: a packet to any address outside
the lab fails there with "Network is unreachable" and never reaches a real interface. The host sees
the lab only through forward.py's listeners on 127.0.0.1.

Why a mount namespace for the node. containerd and the kubelet find their state under the standard
paths (/var/lib/kubelet, /var/lib/containerd, /run/containerd, /var/lib/cni), so the manifests that
name them (the device plugin's hostPath) are the ones a K3s node takes; here those paths are bind
mounts of this lab's directory, seen by the node alone. Every mount the node makes (overlay root file
systems, secret volumes) dies with the namespace.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import subprocess
import time
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

# K3s's defaults: the first node's pod range of cluster CIDR 10.42.0.0/16, Service CIDR 10.43.0.0/16.
LAB_SUBNET = "10.42.0.0/24"
# The bridge: the node's InternalIP, the pods' gateway to the lab's services, the kubelet's address.
NODE_IP = "10.42.0.1"
SERVICE_CIDR = "10.43.0.0/16"
# The `kubernetes` Service's ClusterIP (the first address of the range): an address of the lab
# namespace's `lo`, where forward.py hands connections to the API server, as kube-proxy would.
KUBERNETES_SERVICE_IP = "10.43.0.1"
# The cluster DNS (K3s's CoreDNS address): forward.py, on the lab namespace's `lo` too.
CLUSTER_DNS_IP = "10.43.0.10"
BRIDGE = "cni0"

# Every address the lab may ever use: loopback, its pod range and its Service range.
LAB_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", LAB_SUBNET, SERVICE_CIDR))


def is_lab_address(address: str) -> bool:
    network = ipaddress.ip_network(address, strict=False)
    return any(network.version == lab.version and network.subnet_of(lab) for lab in LAB_NETWORKS)  # type: ignore[arg-type]


def setup_commands() -> list[list[str]]:
    """What `up` runs inside the new network namespace: loopback, the Service address, the bridge.
    Nothing here adds a route beyond the bridge's own subnet."""
    return [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{KUBERNETES_SERVICE_IP}/32", "dev", "lo"],
        ["ip", "addr", "add", f"{CLUSTER_DNS_IP}/32", "dev", "lo"],
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", f"{NODE_IP}/{LAB_SUBNET.split('/')[1]}", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ]


# Written inside the namespace: no IPv6 (the lab uses none), so interfaces get no link-local address.
SYSCTLS = {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1"}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def enter(path: str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace at `path` (threads and processes it starts later
    follow it). Python 3.11 has no os.setns."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().setns(fd, nstype) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def same_namespace(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_ino == os.stat(b).st_ino
    except OSError:
        return False


def start_holder(log: Path) -> subprocess.Popen[bytes]:
    """A `sleep` in a new network and mount namespace: the namespaces live as long as it does."""
    with log.open("ab") as out:
        holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    # unshare execs sleep once the namespaces exist.
    while Path(f"/proc/{holder.pid}/comm").read_text().strip() != "sleep":
        if holder.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"could not create the lab's namespaces (unshare); see {log}")
        time.sleep(0.02)
    return holder


def netns_path(holder_pid: int) -> str:
    return f"/proc/{holder_pid}/ns/net"


def mntns_path(holder_pid: int) -> str:
    return f"/proc/{holder_pid}/ns/mnt"


def inside(holder_pid: int, *, mount: bool = False) -> list[str]:
    """The prefix that runs a command in the lab's network (and the node's mount) namespace.
    nsenter execs the command, so its PID is the command's."""
    prefix = ["nsenter", f"--net={netns_path(holder_pid)}"]
    if mount:
        prefix.append(f"--mount={mntns_path(holder_pid)}")
    return [*prefix, "--"]


def setup(holder_pid: int) -> None:
    for key, value in SYSCTLS.items():
        subprocess.run(
            [*inside(holder_pid), "sh", "-c", f"echo {value} > /proc/sys/{key}"],
            check=True,
            capture_output=True,
        )
    for cmd in setup_commands():
        subprocess.run([*inside(holder_pid), *cmd], check=True, capture_output=True)
