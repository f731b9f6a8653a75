"""The local edge lab: a real Kubernetes control plane with simulated edge nodes and real Prometheus.

    hack/lab/lab up       build what is missing, start everything, create the topology's nodes, wait
    hack/lab/lab down     stop exactly the processes `up` started (by PID) and remove the state
    hack/lab/lab status   what runs, with PIDs, health and log files
    hack/lab/lab env      shell lines to use the lab (`eval "$(hack/lab/lab env)"`); --json for programs
    hack/lab/lab stop NAME / start NAME   stop or start one component (fault tests: etcd, kubelet, ...)
    hack/lab/lab exec -- CMD   run CMD inside the lab's network namespace (to reach pod IPs)

The whole lab runs in a network namespace of its own (netns.py) with no route out: the control plane
and KWOK's simulated nodes on its loopback, the real node edge-local (realnode.py: kubelet, containerd,
runc, CNI) with its pods on a bridge. The host reaches the API server and Prometheus through
forward.py's doors on 127.0.0.1. State (PKI, etcd data, the node's files, logs, kubeconfig, PIDs)
lives in $EDGETENANT_LAB_DIR (default ~/.cache/edgetenant/lab), never in the repository.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import netns  # noqa: E402
import realnode  # noqa: E402

console = Console(stderr=True, highlight=False)

LOOPBACK = "127.0.0.1"
# KWOK's pod IPs for the simulated nodes: a loopback range (nothing runs behind them).
POD_CIDR = "127.64.0.1/16"
# The Service range: K3s's. ClusterIPs exist only inside the lab's namespace; the one that answers is
# the `kubernetes` Service's (forward.py, as kube-proxy would), for pods with in-cluster config.
SERVICE_CIDR = netns.SERVICE_CIDR
# Where pods find the lab's own services: the node's address, fixed ports (every lab has its own
# namespace, so these never collide). manifests/overlays/dev points the operator here.
POD_PROMETHEUS_PORT = 9090
POD_MODELSTORE_PORT = 8080
# The model stores for oci:// and s3:// URIs (TLS, signed by the lab's CA; credentials required),
# at the ports such servers usually have.
POD_REGISTRY_PORT = 5000
POD_S3_PORT = 9000
# How `up` seeds them from the zoo: the artifact type a user would push with oras, and the bucket.
MODEL_ARTIFACT_TYPE = "application/vnd.edgetenant.model.v1"
S3_BUCKET = "models"
REGISTRY_USER = "lab"
S3_ACCESS_KEY = "edgetenant-lab"
# How pods bound to the topology's real node run: on a real kubelet (containerd, runc, CNI), or not at
# all (KWOK keeps the node Ready and its pods never start: a control-plane-only lab).
NODE_MODES = ("kubelet", "none")
DEFAULT_NODE_MODE = os.environ.get("EDGETENANT_LAB_NODE", "kubelet")


# The lab's own processes; others (e.g. an operator the demo adopted) do not decide its health.
CORE = frozenset(
    {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "prometheus",
        "modelstore",
        "registry",
        "s3",
        "namespaces",
        "forward",
        "containerd",
        "kubelet",
    }
)


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 16443
    controller_manager: int = 20257
    scheduler: int = 20259
    kwok: int = 20247
    prometheus: int = 19090
    modelstore: int = 18080
    registry: int = 25000
    s3: int = 25070

    @classmethod
    def from_env(cls) -> Ports:
        base = int(os.environ.get("EDGETENANT_LAB_PORT_OFFSET", "0"))
        return cls(**{k: v + base for k, v in asdict(cls()).items()})


@dataclass
class LabState:
    """What `up` wrote down, so `down` and `status` act on exactly those processes."""

    dir: Path
    ports: Ports
    bin_dir: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    token: str = ""
    starts: dict[str, int] = field(default_factory=dict)
    node_token: str = ""
    node_mode: str = "none"
    # The model stores: their binaries' directories and the lab's credentials for them (stores_up).
    stores: dict[str, str] = field(default_factory=dict)

    @property
    def holder(self) -> int | None:
        """The process that holds the lab's namespaces (None for a lab started before they existed)."""
        return self.pids.get("namespaces")

    @property
    def netns(self) -> str:
        assert self.holder is not None
        return netns.netns_path(self.holder)

    def enter(self) -> None:
        """Move this process (its main thread, and so whatever it starts from now on) into the
        lab's network namespace, where the lab's addresses are."""
        if self.holder is not None and self.running("namespaces"):
            netns.enter(self.netns)

    @property
    def node(self) -> realnode.Node:
        return realnode.Node(self.dir, Path(self.bin_dir))

    def running(self, name: str) -> bool:
        return name in self.pids and alive(self.pids[name], self.starts.get(name))

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.ports.apiserver}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.prometheus}"

    @property
    def modelstore_url(self) -> str:
        """The model store as pods (and anything in the lab's namespace) reach it."""
        return f"http://{netns.NODE_IP}:{POD_MODELSTORE_PORT}"

    @property
    def registry_host(self) -> str:
        """The OCI registry as pods reach it (oci://<this>/models/mobilenet_v2:1)."""
        return f"{netns.NODE_IP}:{POD_REGISTRY_PORT}"

    @property
    def s3_endpoint(self) -> str:
        return f"https://{netns.NODE_IP}:{POD_S3_PORT}"

    def save(self) -> None:
        data = {
            "ports": asdict(self.ports),
            "bin_dir": self.bin_dir,
            "pids": self.pids,
            "starts": self.starts,
            "token": self.token,
            "node_token": self.node_token,
            "node_mode": self.node_mode,
            "stores": self.stores,
        }
        (self.dir / "state.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, lab_dir: Path) -> LabState | None:
        path = lab_dir / "state.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(
            lab_dir,
            Ports(**data["ports"]),
            data["bin_dir"],
            data["pids"],
            data["token"],
            data.get("starts", {}),
            data.get("node_token", ""),
            data.get("node_mode", "none"),
            data.get("stores", {}),
        )


def lab_dir() -> Path:
    default = Path(os.environ.get("EDGETENANT_CACHE", Path.home() / ".cache" / "edgetenant")) / "lab"
    return Path(os.environ.get("EDGETENANT_LAB_DIR", default))


def bin_dir() -> Path:
    """Build the binaries if missing (instant when cached) and return their directory."""
    out = subprocess.run(
        [str(HERE / "build.sh"), "--print-bin"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def process_start(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot): with the PID, its identity."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])  # a zombie is not alive


def alive(pid: int, started: int | None = None) -> bool:
    """Whether `pid` runs — and, given its recorded start time, is still the process we started
    (after a reboot or a long time a PID can belong to someone else; that one is never signalled)."""
    now = process_start(pid)
    return now is not None and (started is None or now == started)


@contextmanager
def step(message: str) -> Iterator[None]:
    start = time.monotonic()
    with console.status(f"[bold]{message}…"):
        yield
    console.print(f"[green]✓[/] {message} [dim]({time.monotonic() - start:.1f} s)[/]")


def wait_until(what: str, check: Callable[[], bool], timeout: float, proc_pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc_pid is not None and not alive(proc_pid):
            raise RuntimeError(f"{what}: the process exited; see its log in {lab_dir() / 'logs'}")
        time.sleep(0.25)
    raise RuntimeError(
        f"timed out after {timeout:.0f} s waiting for {what}; logs are in {lab_dir() / 'logs'}"
    )


def http_ok(url: str, token: str | None = None, ca: Path | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def run_quiet(cmd: list[str], **kwargs: Any) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)


def make_pki(pki: Path) -> None:
    """A CA; the API server's serving certificate (loopback, and the `kubernetes` Service's
    ClusterIP and names for pods); its client certificate for the kubelet; the service-account key."""
    pki.mkdir(parents=True, exist_ok=True)
    names = "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    ext = pki / "san.ext"
    ext.write_text(
        f"subjectAltName=IP:127.0.0.1,IP:{netns.KUBERNETES_SERVICE_IP},{names},"
        "DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    # The model stores' (registry, S3): on the lab's loopback and, for pods, the node's address.
    (pki / "stores.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:{netns.NODE_IP}\nextendedKeyUsage=serverAuth\n"
    )
    run_quiet(["openssl", "genrsa", "-out", str(pki / "ca.key"), "2048"])
    ca = ["-key", str(pki / "ca.key"), "-days", "3650", "-subj", "/CN=edgetenant-lab-ca"]
    run_quiet(["openssl", "req", "-x509", "-new", *ca, "-out", str(pki / "ca.crt")])
    signer = ["-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650"]
    for name, subject, extensions in (
        ("apiserver", "/CN=kube-apiserver", ext),
        # The API server's identity towards the kubelet (logs, exec): the kubelet trusts the lab's CA.
        (
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            pki / "client.ext",
        ),
        ("stores", "/CN=edgetenant-lab-model-stores", pki / "stores.ext"),
    ):
        key, csr = pki / f"{name}.key", pki / f"{name}.csr"
        run_quiet(["openssl", "genrsa", "-out", str(key), "2048"])
        run_quiet(["openssl", "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)])
        x509 = ["openssl", "x509", "-req", "-in", str(csr), *signer, "-extfile", str(extensions)]
        run_quiet([*x509, "-out", str(pki / f"{name}.crt")])
    run_quiet(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])


def write_kubeconfig(state: LabState, path: Path, token: str, user: str = "lab-admin") -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "edge-lab",
                "cluster": {"server": state.server, "certificate-authority": str(state.dir / "pki/ca.crt")},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "edge-lab", "context": {"cluster": "edge-lab", "user": user}}],
        "current-context": "edge-lab",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def start(
    state: LabState,
    name: str,
    cmd: list[str],
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> int:
    state.logs.mkdir(parents=True, exist_ok=True)
    log = (state.logs / f"{name}.log").open("ab")
    # A new session, so a Ctrl-C in the terminal that ran `up` does not take the lab down with it.
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=state.dir,
        preexec_fn=preexec,  # noqa: PLW1509 - only the node's cgroup join, before exec
    )
    state.pids[name] = proc.pid
    state.starts[name] = process_start(proc.pid) or 0
    state.save()
    return proc.pid


SCRAPE_KEEP = "(127\\.|10\\.42\\.0\\.)[0-9.]+:[0-9]+"


def prometheus_config(state: LabState) -> dict[str, Any]:
    """Pods are discovered through the lab's API server, exactly as in a production cluster."""
    sd = {
        "role": "pod",
        "api_server": state.server,
        "tls_config": {"ca_file": str(state.dir / "pki/ca.crt")},
        "authorization": {"credentials_file": str(state.dir / "prometheus.token")},
    }
    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                "kubernetes_sd_configs": [sd],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "action": "keep",
                        "regex": "true",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_phase"],
                        "action": "keep",
                        "regex": "Running",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "action": "replace",
                        "target_label": "__metrics_path__",
                        "regex": "(.+)",
                    },
                    {
                        "source_labels": [
                            "__meta_kubernetes_pod_ip",
                            "__meta_kubernetes_pod_annotation_prometheus_io_port",
                        ],
                        "action": "replace",
                        "regex": "(.+);(\\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    # Only the lab's own pod IPs are ever scraped (the real node's and KWOK's loopback
                    # ones): a guard against a misconfigured lab.
                    {"source_labels": ["__address__"], "action": "keep", "regex": SCRAPE_KEEP},
                    {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
                ],
            },
            {
                # The kubelets' cAdvisor (as kube-prometheus scrapes it): per-container memory and the
                # kernel's OOM kills, including those of one process in a container that lives on.
                "job_name": "kubelet-cadvisor",
                "scheme": "https",
                "metrics_path": "/metrics/cadvisor",
                "kubernetes_sd_configs": [{**sd, "role": "node"}],
                # The kubelet's serving certificate is self-signed (no certificate bootstrap in the lab).
                "tls_config": {"insecure_skip_verify": True},
                "authorization": sd["authorization"],
                "relabel_configs": [
                    # KWOK's nodes (127.0.0.1) have no kubelet: only the real node's address.
                    {
                        "source_labels": ["__address__"],
                        "action": "keep",
                        "regex": "10\\.42\\.0\\.[0-9]+:[0-9]+",
                    },
                    {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
                ],
                "metric_relabel_configs": [
                    {"source_labels": ["__name__"], "action": "keep", "regex": CADVISOR_KEEP},
                    {"source_labels": ["container"], "action": "drop", "regex": ""},
                ],
            },
        ],
    }


# What the lab keeps of cAdvisor's many series: what a person or the operator might ask.
CADVISOR_KEEP = (
    "container_oom_events_total|container_memory_working_set_bytes|container_cpu_usage_seconds_total"
)


def component_commands(state: LabState, bins: Path) -> dict[str, list[str]]:
    """Every lab component's command line, each run inside the lab's network namespace (the node's
    also in its mount namespace). Every address in here is a loopback or a lab address."""
    p, d = state.ports, state.dir
    kubeconfig = str(state.kubeconfig)
    commands = {
        "etcd": [
            str(bins / "etcd"),
            "--name=lab",
            f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls=http://{LOOPBACK}:{p.etcd_client}",
            f"--advertise-client-urls=http://{LOOPBACK}:{p.etcd_client}",
            f"--listen-peer-urls=http://{LOOPBACK}:{p.etcd_peer}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{p.etcd_peer}",
            f"--initial-cluster=lab=http://{LOOPBACK}:{p.etcd_peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://{LOOPBACK}:{p.etcd_client}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={p.apiserver}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={d / 'pki/apiserver.crt'}",
            f"--tls-private-key-file={d / 'pki/apiserver.key'}",
            f"--client-ca-file={d / 'pki/ca.crt'}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,LimitRanger,ResourceQuota,"
            "DefaultStorageClass,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
            "ValidatingAdmissionPolicy,PodSecurity",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'pki/sa.key'}",
            f"--service-account-signing-key-file={d / 'pki/sa.key'}",
            # The loopback advertise address makes the default endpoint reconciler complain forever.
            "--endpoint-reconciler-type=none",
            # logs/exec/port-forward: the kubelet by its InternalIP (a lab address), as the lab's CA's
            # system:masters client; the kubelet's own certificate is self-signed.
            f"--kubelet-client-certificate={d / 'pki/apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'pki/apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={p.controller_manager}",
            f"--root-ca-file={d / 'pki/ca.crt'}",
            f"--service-account-private-key-file={d / 'pki/sa.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            # Endpoints and EndpointSlices refuse loopback addresses, and every lab pod IP is one:
            # those controllers could only fail, forever, so they are off.
            "--controllers=*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller",
            # Notice a lost edge node quickly (an edge box that loses power should be re-planned fast).
            "--node-monitor-grace-period=20s",
            "--node-monitor-period=2s",
            "--v=1",
        ],
        "kube-scheduler": [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={p.scheduler}",
            "--leader-elect=false",
            "--v=1",
        ],
        "kwok": [
            str(bins / "kwok"),
            f"--kubeconfig={kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={POD_CIDR}",
            f"--node-ip={LOOPBACK}",
            f"--node-port={p.kwok}",
            f"--server-address={LOOPBACK}:{p.kwok}",
            f"--config={HERE / 'kwok.yaml'}",
            "--node-lease-duration-seconds=40",
        ],
        "prometheus": [
            str(bins / "prometheus"),
            f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={d / 'prometheus'}",
            "--storage.tsdb.retention.time=6h",
            f"--web.listen-address={LOOPBACK}:{p.prometheus}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        "modelstore": [
            sys.executable,
            "-m",
            "http.server",
            str(p.modelstore),
            "--bind",
            LOOPBACK,
            "--directory",
            str(d / "models"),  # a link to the zoo's cache (build_zoo)
        ],
        **store_commands(state),
        "forward": [
            sys.executable,
            str(HERE / "forward.py"),
            f"--netns={state.netns if state.holder is not None else ''}",
            # The host's kubectl and browsers.
            f"--host={LOOPBACK}:{p.apiserver}={LOOPBACK}:{p.apiserver}",
            f"--host={LOOPBACK}:{p.prometheus}={LOOPBACK}:{p.prometheus}",
            # Pods: the API server as the `kubernetes` Service, and the lab's services on the node.
            f"--lab={netns.KUBERNETES_SERVICE_IP}:443={LOOPBACK}:{p.apiserver}",
            f"--lab={netns.NODE_IP}:{POD_PROMETHEUS_PORT}={LOOPBACK}:{p.prometheus}",
            f"--lab={netns.NODE_IP}:{POD_MODELSTORE_PORT}={LOOPBACK}:{p.modelstore}",
            f"--lab={netns.NODE_IP}:{POD_REGISTRY_PORT}={LOOPBACK}:{p.registry}",
            f"--lab={netns.NODE_IP}:{POD_S3_PORT}={LOOPBACK}:{p.s3}",
            f"--dns={netns.CLUSTER_DNS_IP}:53",
        ],
    }
    if state.holder is None:
        return commands
    node = realnode.commands(state.node, state.holder)
    inside = netns.inside(state.holder)
    # The doors start on the host (where `lab` runs) and move themselves into the lab.
    return {**{n: cmd if n == "forward" else [*inside, *cmd] for n, cmd in commands.items()}, **node}


def store_commands(state: LabState) -> dict[str, list[str]]:
    """The model stores' command lines (empty before stores_up found their binaries): both serve TLS
    with the lab's certificate and refuse requests without the lab's credentials."""
    p, d, bins = state.ports, state.dir, state.stores
    if "registry_bin" not in bins:
        return {}
    return {
        "registry": [str(Path(bins["registry_bin"]) / "registry"), "serve", str(d / "registry.yml")],
        "s3": [
            str(Path(bins["versitygw_bin"]) / "versitygw"),
            "--port",
            f"{LOOPBACK}:{p.s3}",
            "--cert",
            str(d / "pki/stores.crt"),
            "--key",
            str(d / "pki/stores.key"),
            "posix",
            str(d / "s3"),
        ],
    }


def registry_config(state: LabState) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(state.dir / "registry")}},
        "http": {
            "addr": f"{LOOPBACK}:{state.ports.registry}",
            # Signs upload state; stable for the lab's life (derived), never the admin token itself.
            "secret": hashlib.sha256(f"registry:{state.token}".encode()).hexdigest(),
            "tls": {
                "certificate": str(state.dir / "pki/stores.crt"),
                "key": str(state.dir / "pki/stores.key"),
            },
        },
        # Basic auth against an htpasswd file (bcrypt): the registry answers 401 without it.
        "auth": {"htpasswd": {"realm": "edgetenant-lab", "path": str(state.dir / "registry.htpasswd")}},
    }


def https_answers(url: str, ca: Path) -> bool:
    """Whether a TLS server (verified with the lab's CA) answers HTTP at all: a 401/403 counts."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=ssl.create_default_context(cafile=str(ca))):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def store_binaries() -> dict[str, str]:
    """build-stores.sh's directories (instant when cached): NAME=DIR lines."""
    out = subprocess.run(
        [str(HERE / "build-stores.sh"), "--print"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return {f"{name}_bin": path for name, _, path in (line.partition("=") for line in out.split()) if path}


def stores_up(state: LabState) -> None:
    """The OCI registry and the S3 server, started like the model store, then seeded from the zoo."""
    d, ca = state.dir, state.dir / "pki/ca.crt"
    with step("the model stores' binaries (the registry, oras, versitygw; cold build: about 4 min)"):
        bins = store_binaries()
    state.stores = {
        **bins,
        "registry_user": REGISTRY_USER,
        "registry_password": secrets.token_hex(16),
        "s3_access_key": S3_ACCESS_KEY,
        "s3_secret_key": secrets.token_hex(20),
    }
    state.save()
    commands = component_commands(state, Path(state.bin_dir))
    with step("the OCI registry (distribution, TLS, htpasswd auth), for oci:// model URIs"):
        htpasswd = subprocess.run(
            [str(Path(bins["lab-htpasswd_bin"]) / "htpasswd"), REGISTRY_USER],
            input=state.stores["registry_password"] + "\n",
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (d / "registry.htpasswd").write_text(htpasswd)
        (d / "registry.yml").write_text(yaml.safe_dump(registry_config(state), sort_keys=False))
        # No telemetry exporter: it would dial an OTLP collector that is not there.
        pid = start(state, "registry", commands["registry"], {"OTEL_TRACES_EXPORTER": "none"})
        url = f"https://{LOOPBACK}:{state.ports.registry}/v2/"
        wait_until("the registry", lambda: https_answers(url, ca), 30, pid)
    with step("the S3 server (versitygw, TLS, SigV4 verified), for s3:// model URIs"):
        (d / "s3").mkdir(exist_ok=True)
        keys = {
            "ROOT_ACCESS_KEY": state.stores["s3_access_key"],
            "ROOT_SECRET_KEY": state.stores["s3_secret_key"],
        }
        pid = start(state, "s3", commands["s3"], keys)
        wait_until(
            "the S3 server", lambda: https_answers(f"https://{LOOPBACK}:{state.ports.s3}/", ca), 30, pid
        )
    with step("the model stores seeded from the zoo (oras push; S3 PUT)"):
        seed_stores(state, (d / "models").resolve())  # the zoo (build_zoo)


def seed_stores(state: LabState, zoo_dir: Path) -> None:
    """mobilenet_v2 as ONNX and as OpenVINO IR (when the zoo has it), pushed as a user would:
    oci://<registry>/models/mobilenet_v2:onnx and :openvino; s3://models/mobilenet_v2.{onnx,xml,bin}.
    Idempotent (a second push of the same files uploads nothing new)."""
    ca, s = state.dir / "pki/ca.crt", state.stores
    artifacts = {"onnx": ["mobilenet_v2.onnx"], "openvino": ["mobilenet_v2.xml", "mobilenet_v2.bin"]}
    s3_put(state, S3_BUCKET, b"")  # the bucket (409 when a second seeding finds it: fine)
    for tag, files in artifacts.items():
        if not all((zoo_dir / f).exists() for f in files):
            console.print(f"  [dim]the zoo has no {' + '.join(files)}: not seeded[/]")
            continue
        target = f"{LOOPBACK}:{state.ports.registry}/models/mobilenet_v2:{tag}"
        subprocess.run(
            [
                str(Path(s["oras_bin"]) / "oras"),
                "push",
                "--ca-file",
                str(ca),
                "--username",
                s["registry_user"],
                "--password-stdin",
                "--artifact-type",
                MODEL_ARTIFACT_TYPE,
                "--no-tty",
                target,
                *files,  # relative names: oras annotates each with its title, the file's name
            ],
            input=s["registry_password"],
            cwd=zoo_dir,
            env={**os.environ, "HOME": str(state.dir)},  # oras's config, if any, stays in the lab
            check=True,
            capture_output=True,
            text=True,
        )
        console.print(f"  pushed oci://{state.registry_host}/models/mobilenet_v2:{tag} ({', '.join(files)})")
        for name in files:
            s3_put(state, f"{S3_BUCKET}/{name}", (zoo_dir / name).read_bytes())
        console.print(f"  uploaded {', '.join(f's3://{S3_BUCKET}/{f}' for f in files)}")


def s3_put(state: LabState, path: str, body: bytes) -> None:
    """A PUT of a bucket (``path`` without ``/``) or an object, signed: the server checks the signature."""
    if str(REPO / "operator") not in sys.path:
        sys.path.insert(0, str(REPO / "operator"))
    from edgetenant.dataplane.fetch_s3 import sign  # noqa: PLC0415 - the fetcher's own signer

    ca = ssl.create_default_context(cafile=str(state.dir / "pki/ca.crt"))
    url = f"https://{LOOPBACK}:{state.ports.s3}/{path}"
    headers = sign(
        "PUT",
        url,
        {},
        access_key_id=state.stores["s3_access_key"],
        secret_access_key=state.stores["s3_secret_key"],
        region="us-east-1",
        now=datetime.datetime.now(datetime.UTC),
        payload_sha256=hashlib.sha256(body).hexdigest(),
    )
    headers.pop("host")  # urllib sends it, the same value
    request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=30, context=ca):
            pass
    except urllib.error.HTTPError as error:
        if not (error.code == 409 and "/" not in path):
            raise RuntimeError(f"S3 PUT {url}: HTTP {error.code} {error.read()[:300]!r}") from None


def kubectl(state: LabState, *args: str, input_text: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        [str(Path(state.bin_dir) / "kubectl"), f"--kubeconfig={state.kubeconfig}", *args],
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


REAL_NODE = "edgetenant.io/lab-real-node"
KWOK_NODE = "kwok.x-k8s.io/node"


def is_real_node(node: dict[str, Any]) -> bool:
    return bool(node["metadata"].get("annotations", {}).get(REAL_NODE) == "true")


def topology_nodes(path: Path, node_mode: str = "kubelet") -> list[dict[str, Any]]:
    """The topology's Nodes as the lab creates them. With a real kubelet, the real node is the
    kubelet's own (it registers itself; only the topology's labels and annotations are added); in
    the other modes KWOK keeps it alive with this machine's CPU count and memory."""
    nodes = [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "Node"]
    cpus = str(os.cpu_count() or 1)
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    for node in nodes:
        if is_real_node(node):
            node["metadata"]["labels"]["kubernetes.io/arch"] = realnode.arch()
            if node_mode == "kubelet":
                node.pop("status", None)
                continue
            node["metadata"]["annotations"][KWOK_NODE] = "fake"
            status = node.setdefault("status", {})
            status["capacity"] = {**status.get("capacity", {}), "cpu": cpus, "memory": f"{mem_kib}Ki"}
            status["allocatable"] = {
                **status.get("allocatable", {}),
                "cpu": cpus,
                "memory": f"{mem_kib - 1024 * 1024}Ki",
            }
    return nodes


def topology_others(path: Path) -> list[dict[str, Any]]:
    """Cluster objects in the topology besides Nodes (e.g. the RuntimeClass K3s registers)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") != "Node"]


def apply_object(state: LabState, obj: dict[str, Any]) -> None:
    # The topology decides what it names: e.g. a node's taints, which the node lifecycle controller
    # edits while a node is unreachable (a fault test), and would otherwise conflict.
    kubectl(
        state,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=edge-lab",
        "-f",
        "-",
        input_text=json.dumps(obj),
    )


def create_nodes(state: LabState, nodes: list[dict[str, Any]]) -> None:
    for node in nodes:
        status = node.get("status")
        apply_object(state, {k: v for k, v in node.items() if k != "status"})
        if status is None:  # the kubelet's node: it reports its own capacity
            continue
        # Capacity lives in the status subresource; set it like a kubelet would.
        patch = {
            "status": {"capacity": status.get("capacity", {}), "allocatable": status.get("allocatable", {})}
        }
        kubectl(
            state,
            "patch",
            "node",
            node["metadata"]["name"],
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )


def nodes_ready(state: LabState, names: list[str]) -> bool:
    out = kubectl(state, "get", "nodes", "-o", "json", check=False)
    if not out:
        return False
    ready = {
        item["metadata"]["name"]
        for item in json.loads(out)["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in item["status"].get("conditions", []))
    }
    return set(names) <= ready


def allocatable(state: LabState, node: str, resource: str) -> int:
    out = kubectl(state, "get", "node", node, "-o", "json", check=False)
    return int(json.loads(out)["status"].get("allocatable", {}).get(resource, "0")) if out else 0


def ensure_images() -> list[Path]:
    """This machine's archives from `make images` (built here if missing; instant when cached)."""
    archives = realnode.image_archives(DIST_IMAGES)
    names = {a.name.rsplit("-", 2)[0] for a in archives}
    if not set(NODE_IMAGES) <= names:
        subprocess.run(
            [sys.executable, str(REPO / "hack/images/build.py"), "build", f"--arch={realnode.arch()}"]
            + [f"--image={name}" for name in NODE_IMAGES],
            check=True,
        )
        archives = realnode.image_archives(DIST_IMAGES)
    return archives


DIST_IMAGES = REPO / "dist" / "images"
# What the real node runs: tenants (Triton, the fetcher), the operator, the device plugin; the
# stand-in classes' Triton images (OpenVINO and tflite-runtime on this CPU).
NODE_IMAGES = (
    "tritonserver-cpu-shim",
    "tritonserver-openvino-cpu",
    "tritonserver-tflite",
    "model-fetcher",
    "operator",
    "device-plugin",
)
# The stand-in devices' plugin (one device each) and the resources it advertises on edge-local.
STANDIN_PLUGIN = REPO / "hack/lab/standin-deviceplugin.yaml"
STANDIN_RESOURCES = ("edgetenant.io/standin-ncs2", "edgetenant.io/standin-edgetpu")


class ImageImport(threading.Thread):
    """containerd and the image import run while the control plane starts (the import is the
    slowest step of `up`)."""

    def __init__(self, state: LabState, commands: dict[str, list[str]]) -> None:
        super().__init__(name="image-import", daemon=True)
        self.state, self.commands = state, commands
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            realnode.import_images(self.state.node, self.state.holder or 0, ensure_images())
        except BaseException as error:  # reported by the thread that waits for it
            self.error = error
        self.seconds = time.monotonic() - started


def start_containerd(state: LabState, commands: dict[str, list[str]]) -> ImageImport:
    assert state.holder is not None
    node = state.node
    server = f"https://{LOOPBACK}:{state.ports.apiserver}"
    realnode.prepare(
        node, ca=state.dir / "pki/ca.crt", server=server, token=state.node_token, holder_pid=state.holder
    )
    pid = start(
        state, "containerd", commands["containerd"], realnode.environment(node), realnode.joiner(node)
    )
    wait_until("containerd", lambda: realnode.ctr_ok(node, state.holder or 0), 30, pid)
    importer = ImageImport(state, commands)
    importer.start()
    return importer


def start_kubelet(
    state: LabState, commands: dict[str, list[str]], topology: Path, importer: ImageImport
) -> None:
    """The kubelet once the images are in; its Node gets the topology's labels, and the device
    plugin's DaemonSets make its slots and the stand-in devices allocatable."""
    node = state.node
    with step("the real node: images from make images imported into containerd"):
        importer.join()
        if importer.error is not None:
            raise RuntimeError(f"importing the images failed: {importer.error}")
    console.print(f"  [dim](the import took {importer.seconds:.0f} s, beside the control plane)[/]")
    with step(f"the real node: the kubelet registers {realnode.NODE_NAME}"):
        pid = start(state, "kubelet", commands["kubelet"], realnode.environment(node), realnode.joiner(node))
        wait_until(f"{realnode.NODE_NAME} Ready", lambda: nodes_ready(state, [realnode.NODE_NAME]), 120, pid)
        for item in topology_nodes(topology, "kubelet"):
            if is_real_node(item):
                apply_object(state, item)
    with step("the real node: the device plugin's slots"):
        kubectl(
            state,
            "apply",
            "--server-side",
            "--field-manager=edge-lab",
            "-k",
            str(REPO / "manifests/deviceplugin"),
        )
        wait_until(
            f"{realnode.DEVICE_RESOURCE} allocatable on {realnode.NODE_NAME}",
            lambda: allocatable(state, realnode.NODE_NAME, realnode.DEVICE_RESOURCE) > 0,
            120,
            pid,
        )
    with step("the real node: the stand-in devices (one NCS2 and one EdgeTPU stand-in, lab only)"):
        kubectl(state, "apply", "--server-side", "--field-manager=edge-lab", "-f", str(STANDIN_PLUGIN))
        for resource in STANDIN_RESOURCES:
            wait_until(
                f"{resource} allocatable on {realnode.NODE_NAME}",
                lambda resource=resource: allocatable(state, realnode.NODE_NAME, resource) > 0,
                120,
                pid,
            )


def up(topology: Path, node_mode: str = DEFAULT_NODE_MODE) -> LabState:
    d = lab_dir()
    existing = LabState.load(d)
    if existing and existing.pids and all(existing.running(name) for name in existing.pids if name in CORE):
        console.print(f"[green]✓[/] the lab is already up ({d})")
        return existing
    if existing:
        console.print("[yellow]![/] a previous lab is partly running; taking it down first")
        down()
    started = time.monotonic()
    with step("Kubernetes binaries ready (a cold build takes about 25 min; later runs are instant)"):
        bins = bin_dir()
    d.mkdir(parents=True, exist_ok=True)
    state = LabState(
        d,
        Ports.from_env(),
        str(bins),
        {},
        secrets.token_hex(16),
        node_token=secrets.token_hex(16),
        node_mode=node_mode,
    )
    state.save()
    try:
        with step("the lab's network namespace (no route out) and the node's mount namespace"):
            state.logs.mkdir(parents=True, exist_ok=True)
            holder = netns.start_holder(state.logs / "namespaces.log")
            state.pids["namespaces"] = holder.pid
            state.starts["namespaces"] = process_start(holder.pid) or 0
            state.save()
            netns.setup(holder.pid)
        with step("the doors: the API server and Prometheus on the host's 127.0.0.1; lab services for pods"):
            # Started before this process enters the lab: its host side listens on the host.
            pid = start(state, "forward", component_commands(state, bins)["forward"])
            wait_until("the doors", lambda: port_open(LOOPBACK, state.ports.apiserver), 30, pid)
            state.enter()
        with step("PKI and tokens"):
            make_pki(d / "pki")
            node_user = f"system:node:{realnode.NODE_NAME}"
            (d / "tokens.csv").write_text(
                f'{state.token},lab-admin,lab-admin,"system:masters"\n'
                f'{state.node_token},{node_user},{node_user},"system:nodes"\n'
            )
            write_kubeconfig(state, state.kubeconfig, state.token)
        with step("the model zoo (ONNX; mobilenet_v2 as OpenVINO IR and TFLite for the stand-ins)"):
            (d / "models").symlink_to(build_zoo())
        commands = component_commands(state, bins)
        importer = None
        if node_mode == "kubelet":
            with step("the real node: containerd and runc (images are imported meanwhile)"):
                importer = start_containerd(state, commands)
        with step("etcd"):
            pid = start(state, "etcd", commands["etcd"])
            wait_until(
                "etcd", lambda: http_ok(f"http://{LOOPBACK}:{state.ports.etcd_client}/health"), 30, pid
            )
        with step("kube-apiserver"):
            pid = start(state, "kube-apiserver", commands["kube-apiserver"])
            ca = d / "pki/ca.crt"
            wait_until(
                "kube-apiserver /readyz", lambda: http_ok(f"{state.server}/readyz", state.token, ca), 90, pid
            )
        with step("kube-controller-manager and kube-scheduler"):
            for name in ("kube-controller-manager", "kube-scheduler"):
                start(state, name, commands[name])
            wait_until(
                "the default ServiceAccount (controller manager at work)",
                lambda: bool(kubectl(state, "get", "serviceaccount", "default", "-o", "name", check=False)),
                60,
                state.pids["kube-controller-manager"],
            )
        with step("KWOK and the simulated edge nodes"):
            start(state, "kwok", commands["kwok"])
            nodes = [n for n in topology_nodes(topology, node_mode) if "status" in n]
            create_nodes(state, nodes)
            for other in topology_others(topology):
                apply_object(state, other)
            names = [n["metadata"]["name"] for n in nodes]
            wait_until("all nodes Ready", lambda: nodes_ready(state, names), 60, state.pids["kwok"])
        with step("Prometheus (pods discovered through the API server)"):
            kubectl(
                state,
                "apply",
                "--server-side",
                "--field-manager=edge-lab",
                "-f",
                str(HERE / "prometheus-rbac.yaml"),
            )
            token = kubectl(
                state, "create", "token", "prometheus", "-n", "kube-system", "--duration=8760h"
            ).strip()
            (d / "prometheus.token").write_text(token)
            (d / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(state), sort_keys=False))
            pid = start(state, "prometheus", commands["prometheus"])
            wait_until("prometheus ready", lambda: http_ok(f"{state.prometheus_url}/-/ready"), 60, pid)
        with step("the model store (the zoo's ONNX models over HTTP, for http:// model URIs)"):
            pid = start(state, "modelstore", commands["modelstore"])
            wait_until("model store", lambda: http_ok(f"{state.modelstore_url}/"), 30, pid)
        stores_up(state)
        if importer is not None:
            start_kubelet(state, commands, topology, importer)
    except Exception:
        if os.environ.get("EDGETENANT_LAB_KEEP_FAILED") == "1":
            console.print("[red]✗[/] the lab did not come up; left as it is for inspection (lab down)")
            raise
        console.print("[red]✗[/] the lab did not come up; stopping what was started")
        down(remove_state=False)
        raise
    console.print(f"[bold green]The edge lab is up[/] in {time.monotonic() - started:.0f} s.")
    console.print(f'  export KUBECONFIG={state.kubeconfig}   (or: eval "$(hack/lab/lab env)")')
    console.print("  kubectl get nodes -o wide")
    console.print(f"  Prometheus: {state.prometheus_url}   logs: {state.logs}")
    console.print(
        "  pod IPs are reachable inside the lab only:  hack/lab/lab exec -- curl http://<pod IP>:8000/..."
    )
    console.print("  hack/lab/lab down   stops everything it started")
    return state


# mobilenet_v2 in the stand-ins' formats, exported beside the ONNX so `up` seeds the stores with them.
STANDIN_FORMATS = ("openvino", "tflite")
ZOO_CODE = f"""
import sys
from edgetenant import zoo
from edgetenant.zoo.export import ConverterUnavailable
for model in zoo.ZOO:
    zoo.ensure_model(model)
for model_format in {STANDIN_FORMATS!r}:
    try:
        zoo.ensure_model("mobilenet_v2", format=model_format)
    except ConverterUnavailable as why:
        print(f"no {{model_format}} export: its stand-in cannot serve ({{why}})", file=sys.stderr)
print(zoo.zoo_cache_dir())
"""


def build_zoo() -> Path:
    """The zoo's models in their cache, and mobilenet_v2 as OpenVINO IR (in-process, seconds) and TFLite
    (onnx2tf, whose own env needs Python >= 3.12 and is built the first time: a minute or two); built
    once. Returns the directory."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator"), "ORT_DISABLE_TELEMETRY": "1"}
    out = subprocess.run(
        [sys.executable, "-c", ZOO_CODE], env=env, check=True, capture_output=True, text=True
    )
    for line in out.stderr.splitlines():
        if line.startswith("no "):
            console.print(f"  [yellow]{line}[/]")
    return Path(out.stdout.strip().splitlines()[-1])


def stop_pid(state: LabState, name: str, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only the recorded process (PID and start time)."""
    pid = state.pids[name]
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while state.running(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    if state.running(name):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    console.print(f"[green]✓[/] stopped {name} (pid {pid})")


def stop_real_node(state: LabState) -> None:
    """The kubelet, then every process in the node's cgroup subtree (containerd, the shims, the
    containers: all started by this lab's node), then the subtree itself."""
    if state.node_mode != "kubelet":
        return
    if state.running("kubelet"):
        stop_pid(state, "kubelet")
    killed = realnode.kill_all(state.node)
    realnode.remove_cgroups(state.node)
    console.print(f"[green]✓[/] stopped the real node's containers and containerd ({killed} processes)")


def down(remove_state: bool = True) -> None:
    d = lab_dir()
    state = LabState.load(d)
    if state is None:
        console.print("[dim]no lab state; nothing to stop[/]")
        return
    stop_real_node(state)
    # Reverse start order: the node first, etcd and then the namespaces' holder last.
    for name in reversed(list(state.pids)):
        if state.running(name):
            stop_pid(state, name)
    if remove_state:
        shutil.rmtree(d, ignore_errors=True)
        console.print(f"[green]✓[/] removed {d}")


RESTARTABLE = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
    "forward",
    "containerd",
    "kubelet",
)


def stop_component(state: LabState, name: str) -> None:
    """Stop one component by its recorded PID (SIGTERM, then SIGKILL); its state stays. Stopping
    the kubelet or containerd leaves the pods running, as on a real node."""
    if not state.running(name):
        console.print(f"[dim]{name} is not running[/]")
        return
    stop_pid(state, name, grace=15)


def start_component(state: LabState, name: str) -> None:
    """Start one component again with the command line `up` gave it, and wait until it is healthy."""
    if state.running(name):
        console.print(f"[dim]{name} is already running[/]")
        return
    node = state.node
    env, preexec = (
        (realnode.environment(node), realnode.joiner(node))
        if name in {"containerd", "kubelet"}
        else (None, None)
    )
    pid = start(state, name, component_commands(state, Path(state.bin_dir))[name], env, preexec)
    ca = state.dir / "pki/ca.crt"
    checks: dict[str, Callable[[], bool]] = {
        "etcd": lambda: http_ok(f"http://{LOOPBACK}:{state.ports.etcd_client}/health"),
        "kube-apiserver": lambda: http_ok(f"{state.server}/readyz", state.token, ca),
        "prometheus": lambda: http_ok(f"{state.prometheus_url}/-/ready"),
        "containerd": lambda: realnode.ctr_ok(node, state.holder or 0),
        "kubelet": lambda: http_ok(f"http://{LOOPBACK}:10248/healthz"),
    }
    if name in checks:
        wait_until(name, checks[name], 90, pid)
    console.print(f"[green]✓[/] started {name} (pid {pid})")


def status() -> int:
    state = LabState.load(lab_dir())
    if state is None:
        console.print("the lab is down")
        return 1
    ok = True
    for name, pid in state.pids.items():
        running = state.running(name)
        ok &= running or name not in CORE
        mark = "[green]running[/]" if running else "[red]stopped[/]"
        console.print(f"  {name:<24} pid {pid:<8} {mark}  log: {state.logs / (name + '.log')}")
    if ok:
        state.enter()
        console.print(kubectl(state, "get", "nodes", "-o", "wide", check=False))
    return 0 if ok else 1


def env(as_json: bool) -> int:
    state = LabState.load(lab_dir())
    if state is None:
        console.print("the lab is down: run hack/lab/lab up")
        return 1
    info = {
        "KUBECONFIG": str(state.kubeconfig),
        "EDGETENANT_LAB_BIN": state.bin_dir,
        "EDGETENANT_PROMETHEUS_URL": state.prometheus_url,
        # Pod-facing (pods fetch models from it); reachable inside the lab's namespace only.
        "EDGETENANT_MODELSTORE_URL": state.modelstore_url,
        # The oci:// and s3:// stores (pod-facing too), their CA and the lab's credentials for them.
        "EDGETENANT_LAB_REGISTRY": state.registry_host,
        "EDGETENANT_LAB_S3_ENDPOINT": state.s3_endpoint,
        "EDGETENANT_LAB_CA": str(state.dir / "pki/ca.crt"),
        **{f"EDGETENANT_LAB_{k.upper()}": v for k, v in state.stores.items() if not k.endswith("_bin")},
        "EDGETENANT_LAB_DIR": str(state.dir),
        "EDGETENANT_LAB_NODE": state.node_mode,
        # Enter it (setns, or `hack/lab/lab exec`) to reach pod IPs.
        "EDGETENANT_LAB_NETNS": state.netns if state.holder is not None else "",
    }
    if as_json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"export {key}={value}")
        print(f"export PATH={state.bin_dir}:$PATH")
    return 0


def exec_inside(command: list[str]) -> int:
    state = LabState.load(lab_dir())
    if state is None or state.holder is None or not state.running("namespaces"):
        console.print("the lab is down: run hack/lab/lab up")
        return 1
    argv = [*netns.inside(state.holder), *(command or [os.environ.get("SHELL", "/bin/sh")])]
    os.execvp(argv[0], argv)
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/lab/lab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the lab")
    p_up.add_argument("--topology", type=Path, default=HERE / "edge-lab.yaml")
    p_up.add_argument(
        "--node",
        choices=NODE_MODES,
        default=DEFAULT_NODE_MODE,
        help="how pods on edge-local run: a real kubelet (default; $EDGETENANT_LAB_NODE) "
        "or not at all (KWOK keeps the node; its pods never start)",
    )
    p_up.add_argument("--no-local-node", action="store_true", help="the same as --node=none")
    sub.add_parser("down", help="stop the lab and remove its state")
    p_nodes = sub.add_parser("nodes", help="(re-)create the topology's nodes, e.g. after a test deleted one")
    p_nodes.add_argument("--topology", type=Path, default=HERE / "edge-lab.yaml")
    p_adopt = sub.add_parser("adopt", help="record a process (e.g. the operator) for `down` to stop")
    p_adopt.add_argument("name")
    p_adopt.add_argument("pid", type=int)
    sub.add_parser("status", help="show the lab's processes")
    p_env = sub.add_parser("env", help="print how to use the lab")
    p_env.add_argument("--json", action="store_true")
    p_exec = sub.add_parser("exec", help="run a command (default: a shell) in the lab's network namespace")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER)
    for verb in ("stop", "start"):
        p_one = sub.add_parser(verb, help=f"{verb} one component (for fault tests)")
        p_one.add_argument("name", choices=RESTARTABLE)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.topology, "none" if args.no_local_node else args.node)
            return 0
        if args.command == "down":
            down()
            return 0
        if args.command == "status":
            return status()
        if args.command == "exec":
            return exec_inside(args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd)
        if args.command in {"nodes", "adopt", "stop", "start"}:
            state = LabState.load(lab_dir())
            if state is None:
                console.print("the lab is down: run hack/lab/lab up")
                return 1
            if getattr(args, "name", "") != "forward":  # the doors start on the host
                state.enter()
            if args.command == "nodes":
                create_nodes(state, topology_nodes(args.topology, state.node_mode))
            elif args.command == "stop":
                stop_component(state, args.name)
            elif args.command == "start":
                start_component(state, args.name)
            else:
                state.pids[args.name] = args.pid
                state.starts[args.name] = process_start(args.pid) or 0
                state.save()
            return 0
        return env(args.json)
    except (RuntimeError, subprocess.CalledProcessError) as error:
        console.print(f"[red]error:[/] {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
