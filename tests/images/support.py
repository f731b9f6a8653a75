"""Run the built images the way a kubelet would run the rendered manifests, with podman + runc.

`Podman` keeps its own image store under the test session's temporary directory (nothing touches the
machine's podman storage), loads the OCI archives `make images` wrote, and runs containers with
runc and cgroupfs (crun refuses this machine's hybrid cgroups). `container_options` turns a rendered
container (and its pod) into podman options: the user, a read-only root file system, dropped
capabilities, and exactly the volumes the pod spec declares.

Networking: a container gets either the host's network namespace (only to reach loopback servers:
the lab's API server, a test's HTTP server; anything it binds is moved from 0.0.0.0 to 127.0.0.1) or
`none`, a namespace podman creates with nothing but loopback and no route out.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.images import build

REPO = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The `kubernetes` Service as a pod sees it: its cluster IP (here a loopback address of its own) and
# its DNS name, which kopf's in-cluster login dials.
SERVICE_IP = "127.77.0.1"
SERVICE_NAME = "kubernetes.default.svc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def archive_reference(archive: Path) -> str:
    """The image name an OCI archive carries (what podman, ctr and K3s name it on import)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    (manifest,) = index["manifests"]
    return str(manifest["annotations"]["io.containerd.image.name"])


class Podman:
    def __init__(self, root: Path) -> None:
        if not shutil.which("podman") or not shutil.which("runc"):
            raise AssertionError("podman and runc are missing: `make images` installs them (Debian packages)")
        self.root = root
        self.loaded: dict[str, str] = {}

    def command(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            *args,
        ]

    def podman(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result

    def load(self, archive: Path) -> str:
        """Load an archive (once); returns the image reference it carries."""
        reference = archive_reference(archive)
        if reference not in self.loaded:
            output = self.podman("load", "--input", str(archive)).stdout
            assert f"Loaded image: {reference}" in output, output
            self.loaded[reference] = str(archive)
        return reference

    def run(
        self, options: list[str], image: str, args: list[str], *, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.podman("run", "--rm", *options, image, *args, timeout=timeout, check=False)

    def start(self, name: str, options: list[str], image: str, args: list[str]) -> None:
        self.podman("run", "--detach", "--name", name, *options, image, *args)

    def exec(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", name, *args, timeout=timeout, check=False)

    def logs(self, name: str) -> str:
        result = self.podman("logs", name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def remove(self, name: str) -> None:
        self.podman("rm", "--force", "--time", "5", name, check=False)


@dataclass
class Volumes:
    """Host directories standing in for a pod's volumes, as a kubelet would prepare them."""

    root: Path
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> data
    service_account: dict[str, str] | None = None  # token, ca.crt, namespace
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> decoded data (env refs)

    def source(self, volume: dict[str, Any]) -> Path:
        path = self.root / volume["name"]
        if path.exists():
            return path
        path.mkdir(parents=True)
        if "emptyDir" in volume:
            path.chmod(0o1777)  # the kubelet's emptyDir is world-writable
        elif "configMap" in volume:
            for key, value in self.config_maps[volume["configMap"]["name"]].items():
                (path / key).write_text(value)
        else:
            raise AssertionError(f"the test cannot stand in for volume {volume}")
        return path


def default_field_refs() -> dict[str, str]:
    """What the downward API gives a pod here (env valueFrom.fieldRef)."""
    return {
        "metadata.name": f"images-test-{uuid.uuid4().hex[:5]}",
        "metadata.namespace": "edgetenant-system",
        "spec.nodeName": "edge-local",
        "status.podIP": "127.0.0.1",
    }


def container_options(
    pod_spec: dict[str, Any],
    container: dict[str, Any],
    volumes: Volumes,
    *,
    network: str,
    env_overrides: dict[str, str] | None = None,
    field_refs: dict[str, str] | None = None,
) -> list[str]:
    """podman options that run `container` as the pod spec says, on a read-only root file system."""
    pod_security = pod_spec.get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    uid = security.get("runAsUser")
    assert uid not in (None, 0), f"{container['name']}: the manifest must run it as a non-root UID"
    gid = security.get("runAsGroup", uid)
    options = [
        f"--network={network}",
        f"--user={uid}:{gid}",
        "--read-only",
        "--read-only-tmpfs=false",
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=1024:1024",
        "--pull=never",
    ]
    if network == "host":
        # Names resolve from /etc/hosts or from nothing: a stray lookup must not leave the machine.
        options += ["--dns=127.0.0.1", f"--add-host={SERVICE_NAME}:{SERVICE_IP}"]
    if "fsGroup" in pod_security:
        options.append(f"--group-add={pod_security['fsGroup']}")
    if "ALL" in security.get("capabilities", {}).get("drop", []):
        options.append("--cap-drop=all")
    if security.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    if container.get("command"):
        options.append(f"--entrypoint={json.dumps(container['command'])}")
    declared = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        source = volumes.source(declared[mount["name"]])
        if "subPath" in mount:
            source = source / mount["subPath"]
        mode = "ro" if mount.get("readOnly") or "configMap" in declared[mount["name"]] else "rw"
        options.append(f"--volume={source}:{mount['mountPath']}:{mode}")
    if volumes.service_account is not None:  # what the ServiceAccount admission controller adds
        token_dir = volumes.root / "serviceaccount"
        token_dir.mkdir(exist_ok=True)
        for key, value in volumes.service_account.items():
            (token_dir / key).write_text(value)
            (token_dir / key).chmod(0o644)
        options.append(f"--volume={token_dir}:{SERVICE_ACCOUNT_DIR}:ro")
    env = {**container_env(container, volumes, field_refs), **(env_overrides or {})}
    options += [f"--env={name}={value}" for name, value in env.items()]
    return options


def container_env(
    container: dict[str, Any], volumes: Volumes, field_refs: dict[str, str] | None = None
) -> dict[str, str]:
    """The container's environment as the kubelet resolves it (values, Secret keys, the downward API)."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = volumes.secrets[ref["name"]][ref["key"]]
        else:
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]
            env[entry["name"]] = (field_refs or default_field_refs())[path]
    return env


def kubelet_args(container: dict[str, Any], volumes: Volumes) -> list[str]:
    """The container's args with `$(VAR)` expanded from its env, as the kubelet does."""
    env = container_env(container, volumes)
    args: list[str] = container.get("args", [])
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg) for arg in args]


def loopback_only(values: list[str]) -> list[str]:
    """On the host network a container must not listen on every interface: 0.0.0.0 -> 127.0.0.1."""
    return [value.replace("0.0.0.0", "127.0.0.1") for value in values]


def kubeconfig_server(kubeconfig: dict[str, Any]) -> tuple[str, int, str]:
    """(host, port, CA PEM) of the first cluster in a kubeconfig."""
    cluster = kubeconfig["clusters"][0]["cluster"]
    host, port = cluster["server"].removeprefix("https://").rsplit(":", 1)
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    else:
        ca = Path(cluster["certificate-authority"]).read_text()
    return host, int(port), ca


def built_archive(name: str, arch: str = "amd64") -> Path:
    definition = build.load_definition()
    spec = definition.image(name)
    path = build.DIST / spec.archive_name(arch)
    if not path.is_file():
        raise AssertionError(f"{path.relative_to(REPO)} is missing: run `make images` first")
    return path


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        writer.close()


@contextmanager
def kubernetes_service(upstream: tuple[str, int], upstream_ca: str, work: Path) -> Iterator[str]:
    """The `kubernetes` Service in front of the lab's API server: https://kubernetes.default.svc:443.

    A pod reaches the API server through the Service's cluster IP and DNS name, with a serving
    certificate valid for both. The lab's API server listens elsewhere and its certificate names only
    127.0.0.1/localhost, so this stands in for the Service: TLS for SERVICE_NAME and SERVICE_IP (from a
    CA of its own) on SERVICE_IP:443, re-encrypted to the API server; the bearer token passes through.
    Yields the CA a pod must trust (its ServiceAccount ca.crt).
    """
    key, cert, ca_key, ca_cert = (work / n for n in ("svc.key", "svc.crt", "ca.key", "ca.crt"))
    csr, extensions = work / "svc.csr", work / "san.ext"
    extensions.write_text(f"subjectAltName=DNS:{SERVICE_NAME},DNS:kubernetes,IP:{SERVICE_IP}\n")
    new_key = ["-newkey", "rsa:2048", "-nodes", "-days", "1"]
    for command in (
        ["req", "-x509", *new_key, "-keyout", ca_key, "-out", ca_cert, "-subj", "/CN=images-test-ca"],
        ["req", *new_key, "-keyout", key, "-out", csr, "-subj", f"/CN={SERVICE_NAME}"],
        ["x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
         "-extfile", extensions, "-out", cert],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    (work / "upstream-ca.crt").write_text(upstream_ca)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(work / "upstream-ca.crt"))

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream, ssl=client_context)
        except (OSError, ssl.SSLError):
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    # asyncio's TLS runs in one thread (memory BIOs): no SSL object is read and written at once.
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(relay, SERVICE_IP, 443, ssl=server_context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield ca_cert.read_text()
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
