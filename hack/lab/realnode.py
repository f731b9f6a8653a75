"""The lab's real node, edge-local: a kubelet with containerd, runc and CNI, as a K3s agent is.

Everything here runs in the lab's namespaces (netns.py): the node's network namespace is the lab's,
where pods get addresses from LAB_SUBNET on the bridge `cni0`; its mount namespace shows the
standard node paths, bind-mounted from this lab's directory. The settings this machine needs are in
`kubelet_config` and `containerd_config`, each with the reason.

Images come from `make images` (dist/images/*-<arch>.oci.tar), imported into containerd's `k8s.io`
namespace as K3s's air-gap import does; nothing is ever pulled (no registry is reachable, and the lab
namespace has no route to one). The pod sandbox image is the lab's own `pause`, built by build.sh.

Processes: containerd and the kubelet are started by PID like the other components; both are put in
this lab's cgroup (CGROUP_PARENT/<id>/node in the pids hierarchy), and the kubelet puts the pods under
the same parent, so `down` finds every process of the node, including containers and their shims,
in that one cgroup subtree.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netns import BRIDGE, CLUSTER_DNS_IP, LAB_SUBNET, NODE_IP, SERVICE_CIDR, inside

NODE_NAME = "edge-local"
# The device plugin's resource (manifests/deviceplugin): the x86-cpu class's time-sliced slots.
DEVICE_RESOURCE = "edgetenant.io/cpu-slot"
CGROUP_FS = Path("/sys/fs/cgroup")
TRACKING_HIERARCHY = "pids"  # one v1 hierarchy is enough to find every process of the node
PAUSE_IMAGE = "edgetenant.local/lab/pause:1"
RUNC = "/usr/sbin/runc"  # Debian's runc: runs containers with the cgroupfs driver on this machine
KUBELET_PORT = 10250

# The kubelet sets these host-wide sysctls (container_manager_linux.go, setupKernelTunables) or, with
# protectKernelDefaults, refuses to start unless they already have these values. A lab must not
# change a shared machine's kernel.panic or vm.overcommit_memory, so inside the node's own mount
# namespace each of these /proc/sys files is a bind mount of a lab file that holds the value.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Standard node paths -> the directory under the lab's node/ that backs them.
NODE_PATHS = {
    "/var/lib/kubelet": "kubelet",
    "/var/lib/containerd": "containerd",
    "/run/containerd": "run-containerd",
    "/var/lib/cni": "cni-state",
}
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


@dataclass(frozen=True)
class Node:
    """Where one lab's node keeps its files, and the cgroup it owns."""

    lab_dir: Path
    bin_dir: Path  # the lab's bin/ (kubelet); node binaries are in bin/node/

    @property
    def dir(self) -> Path:
        return self.lab_dir / "node"

    @property
    def node_bin(self) -> Path:
        return self.bin_dir / "node"

    @property
    def cni_dir(self) -> Path:
        return self.dir / "cni"

    @property
    def cgroup_root(self) -> str:
        """This lab's cgroup parent (kubelet's cgroupRoot): apart from other labs on the machine."""
        return f"/edgetenant-lab-{hashlib.sha256(str(self.lab_dir.resolve()).encode()).hexdigest()[:8]}"

    @property
    def cgroup(self) -> Path:
        """Where containerd and the kubelet run, in the tracking hierarchy."""
        return CGROUP_FS / TRACKING_HIERARCHY / self.cgroup_root.lstrip("/") / "node"


def kubelet_config(node: Node, ca: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine mounts cgroup v1 controllers beside a cgroup2 mount (hybrid mode), and
        # Kubernetes 1.35+ kubelets refuse cgroup v1 unless told otherwise.
        "failCgroupV1": False,
        # cgroupfs: runc's driver here (there is no systemd); containerd reports the same.
        "cgroupDriver": "cgroupfs",
        # Pods under this lab's own parent: several labs share the machine.
        "cgroupRoot": node.cgroup_root,
        # Check the kernel settings instead of writing them; the node's mount namespace shows the
        # expected values (KUBELET_SYSCTLS), so the machine's own settings stay as they are.
        "protectKernelDefaults": True,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        # The cluster DNS (forward.py) answers the `kubernetes` Service's name and nothing else; the
        # node's own resolv.conf (a nameserver outside the lab) is never given to pods.
        "resolvConf": "",
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": "cluster.local",
        "podLogsDir": str(node.dir / "pod-logs"),
        # The disk is shared with other work: evict only when it is really full, never collect the
        # imported images (they cannot be pulled back).
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "failSwapOn": False,
        "serializeImagePulls": False,
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
    }


def containerd_config(node: Node) -> str:
    cni = node.cni_dir
    return f"""\
# The lab node's containerd (hack/lab/node.py). Standard paths; in the node's mount namespace they are
# this lab's directories.
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
# Snapshotters that need cgo or absent kernel features, and plugins the lab does not use.
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    # No registry is reachable: the sandbox image is the lab's own, imported at start.
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # Pod network namespaces are mounted under /run/containerd, inside the node's mount namespace.
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  # This machine withholds CAP_SYS_RESOURCE even from root, so no process may lower its OOM score
  # below its parent's: runc failed every pod sandbox (oom_score_adj -998) with "failed to update
  # /proc/self/oom_score_adj: Permission denied". Scores are clamped to containerd's own instead
  # (what rootless K3s does); the kernel's memory-cgroup OOM kills are unaffected.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{node.node_bin}"]
    conf_dir = "{cni}"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        # cgroupfs: crun refuses this machine's hybrid cgroups; Debian's runc runs them with cgroupfs.
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  # exec/attach/port-forward streams, for the kubelet only (inside the lab's namespace).
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_config() -> dict[str, Any]:
    """One bridge, addresses from LAB_SUBNET, and no default route: a pod reaches the other pods and
    the node's address (where forward.py offers the lab's services) and, through the node, the
    Service range; nothing else has a route."""
    return {
        "cniVersion": "1.0.0",
        "name": "edge-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": LAB_SUBNET, "gateway": NODE_IP}]],
                    "routes": [{"dst": SERVICE_CIDR}],
                },
            }
        ],
    }


def mount_script(node: Node) -> str:
    """Run once in the node's mount namespace: the standard paths and the kubelet's sysctls."""
    lines = ["set -eu"]
    for path, sub in NODE_PATHS.items():
        lines.append(f"mkdir -p {node.dir / sub} && mount --bind {node.dir / sub} {path}")
    for key in KUBELET_SYSCTLS:
        lines.append(f"mount --bind {node.dir / 'sysctl' / key.replace('/', '.')} /proc/sys/{key}")
    return "\n".join(lines) + "\n"


def prepare(node: Node, *, ca: Path, server: str, token: str, holder_pid: int) -> None:
    """Files, mounts and cgroups for the node (before containerd starts)."""
    node.dir.mkdir(parents=True, exist_ok=True)
    node.cni_dir.mkdir(exist_ok=True)
    (node.cni_dir / "10-edge-lab.conflist").write_text(json.dumps(cni_config(), indent=2))
    (node.dir / "containerd.toml").write_text(containerd_config(node))
    (node.dir / "kubelet.yaml").write_text(json.dumps(kubelet_config(node, ca), indent=2))
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "edge-lab", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": f"system:node:{NODE_NAME}", "user": {"token": token}}],
        "contexts": [
            {"name": "node", "context": {"cluster": "edge-lab", "user": f"system:node:{NODE_NAME}"}}
        ],
        "current-context": "node",
    }
    (node.dir / "kubelet.kubeconfig").write_text(json.dumps(kubeconfig))
    (node.dir / "kubelet.kubeconfig").chmod(0o600)
    sysctls = node.dir / "sysctl"
    sysctls.mkdir(exist_ok=True)
    for key, value in KUBELET_SYSCTLS.items():
        (sysctls / key.replace("/", ".")).write_text(value + "\n")
    # The mount points on the host: empty directories (the node's files live in the lab directory).
    for path in NODE_PATHS:
        Path(path).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*inside(holder_pid, mount=True), "sh", "-c", mount_script(node)],
        check=True,
        capture_output=True,
        text=True,
    )
    make_cgroups(node)


def make_cgroups(node: Node) -> None:
    """The kubelet wants its cgroupRoot to exist in every v1 hierarchy ("cgroup [...] has some
    missing paths"); a new cpuset cgroup has no CPUs or memory nodes until given its parent's."""
    for hierarchy in sorted(CGROUP_FS.iterdir()):
        if not (hierarchy / "cgroup.procs").exists() or (hierarchy / "cgroup.controllers").exists():
            continue  # not a mounted v1 hierarchy (the cgroup2 mount has cgroup.controllers)
        root = hierarchy / node.cgroup_root.lstrip("/")
        root.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for key in ("cpuset.cpus", "cpuset.mems"):
                (root / key).write_text((hierarchy / key).read_text())
    node.cgroup.mkdir(parents=True, exist_ok=True)


def commands(node: Node, holder_pid: int) -> dict[str, list[str]]:
    enter = inside(holder_pid, mount=True)
    return {
        "containerd": [*enter, str(node.node_bin / "containerd"), f"--config={node.dir / 'containerd.toml'}"],
        "kubelet": [
            *enter,
            str(node.bin_dir / "kubelet"),
            f"--config={node.dir / 'kubelet.yaml'}",
            f"--kubeconfig={node.dir / 'kubelet.kubeconfig'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ],
    }


def environment(node: Node) -> dict[str, str]:
    # containerd finds its runc shim on PATH.
    return {"PATH": f"{node.node_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def joiner(node: Node) -> Callable[[], None]:
    """For Popen's preexec_fn: the child joins the node's cgroup before it execs."""
    procs = str(node.cgroup / "cgroup.procs")

    def join() -> None:  # runs in the child between fork and exec: plain system calls only
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    return join


def ctr(node: Node, holder_pid: int, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [
            *inside(holder_pid, mount=True),
            str(node.node_bin / "ctr"),
            f"--address={CONTAINERD_SOCKET}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def ctr_ok(node: Node, holder_pid: int) -> bool:
    try:
        ctr(node, holder_pid, "version", timeout=5)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def image_archives(dist: Path) -> list[Path]:
    return sorted(dist.glob(f"*-{arch()}.oci.tar"))


def pause_archive(node: Node) -> Path:
    """A one-layer OCI archive of the lab's pause binary (deterministic)."""
    out = node.dir / "pause.oci.tar"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = (node.node_bin / "pause").read_bytes()
        info = tarfile.TarInfo("pause")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    layer_digest = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": arch(),
            "os": "linux",
            "config": {"Entrypoint": ["/pause"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer_bytes),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
                    "size": len(manifest),
                    "platform": {"architecture": arch(), "os": "linux"},
                    "annotations": {"io.containerd.image.name": PAUSE_IMAGE},
                }
            ],
        }
    ).encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *((f"blobs/sha256/{hashlib.sha256(b).hexdigest()}", b) for b in (layer_bytes, config, manifest)),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(blob), 0o644
            tar.addfile(info, io.BytesIO(blob))
    return out


def import_images(node: Node, holder_pid: int, archives: list[Path]) -> None:
    for archive in [pause_archive(node), *archives]:
        ctr(
            node,
            holder_pid,
            "--namespace=k8s.io",
            "images",
            "import",
            f"--platform=linux/{arch()}",
            str(archive),
        )


def _cgroup_dirs(root: Path) -> Iterator[Path]:
    """Every cgroup under root, children before parents."""
    if not root.is_dir():
        return
    for directory, _, _ in sorted(os.walk(root), key=lambda entry: -entry[0].count("/")):
        yield Path(directory)


def node_pids(node: Node) -> set[int]:
    """Every process in this lab's cgroup subtree: containerd, the kubelet, shims, containers."""
    pids: set[int] = set()
    for directory in _cgroup_dirs(CGROUP_FS / TRACKING_HIERARCHY / node.cgroup_root.lstrip("/")):
        with suppress(OSError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def kill_all(node: Node, timeout: float = 20) -> int:
    """SIGKILL every process in the node's cgroup subtree until it is empty; returns how many."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while (pids := node_pids(node)) and time.monotonic() < deadline:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.2)
    return len(killed)


def remove_cgroups(node: Node) -> None:
    """The lab's cgroup subtree in every hierarchy (the kubelet made it in all of them)."""
    for hierarchy in sorted(CGROUP_FS.iterdir()):
        for directory in _cgroup_dirs(hierarchy / node.cgroup_root.lstrip("/")):
            with suppress(OSError):
                directory.rmdir()
