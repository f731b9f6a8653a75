"""Test helpers for the local edge lab: bring it up once per session, talk to it with kubectl.

Shared by tests/cluster and tests/e2e (their conftest.py files expose these as fixtures).

The lab lives in a network namespace of its own (hack/lab/netns.py): pod IPs, and the API server
and Prometheus at their lab addresses, are reachable only from inside it. `Lab.from_env()` moves
this process into that namespace, so the tests, the operator they start and their load generators
talk to pods from inside the lab, as in-cluster clients do; `hack/lab/lab` itself always runs from
the namespace this process started in (the host), where it belongs.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "hack" / "lab" / "lab.py"
CLONE_NEWNET = 0x40000000
# The namespace this process started in, kept open: the lab's own commands run there.
HOST_NETNS = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def lab_command(*args: str) -> list[str]:
    """`hack/lab/lab.py ARGS` as run from the host's network namespace, wherever this process is."""
    return ["nsenter", f"--net=/proc/{os.getpid()}/fd/{HOST_NETNS}", "--", sys.executable, str(LAB), *args]


def enter_lab_netns(path: str) -> None:
    """Move this process (its main thread, and whatever it starts from now on) into the lab's
    network namespace. Python 3.11 has no os.setns."""
    if not path:
        return  # a lab from before the namespaces: its addresses are the host's loopback
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"cannot enter the lab's network namespace {path}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Lab:
    kubeconfig: Path
    bin_dir: Path
    prometheus_url: str
    dir: Path
    node_mode: str = "kubelet"  # how edge-local runs pods: a real kubelet, or none (KWOK only)

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    @classmethod
    def from_env(cls) -> Lab | None:
        """The running lab, from `hack/lab/lab env` (None when it is down); this process joins its
        network namespace."""
        env = lab_env()
        if env is None:
            return None
        enter_lab_netns(env.get("EDGETENANT_LAB_NETNS", ""))
        return cls(
            kubeconfig=Path(env["KUBECONFIG"]),
            bin_dir=Path(env["EDGETENANT_LAB_BIN"]),
            prometheus_url=env["EDGETENANT_PROMETHEUS_URL"],
            dir=Path(env["EDGETENANT_LAB_DIR"]),
            node_mode=env.get("EDGETENANT_LAB_NODE", "kubelet"),
        )

    def add_node(self, name: str, labels: dict[str, str], capacity: dict[str, str]) -> None:
        """A simulated node (KWOK keeps it Ready) with this capacity, set like a kubelet would."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": labels},
        }
        self.apply(node)
        status = {"status": {"capacity": capacity, "allocatable": capacity}}
        self.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(
        self, manifest: dict[str, Any] | list[dict[str, Any]], *extra: str
    ) -> subprocess.CompletedProcess[str]:
        items = manifest if isinstance(manifest, list) else [manifest]
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self.kubectl("apply", "-f", "-", *extra, input_text=body)

    def container_pids(self, pod: dict[str, Any], container: str) -> list[int]:
        """The processes of one container of a pod on the real node, from the kubelet's cgroup of it
        (the pod's `pod<uid>` cgroup, the container's ID below it) in the pids hierarchy."""
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        cid = next(s["containerID"] for s in statuses if s["name"] == container).split("://", 1)[1]
        found = Path("/sys/fs/cgroup/pids").glob(
            f"*/kubepods/**/pod{pod['metadata']['uid']}/{cid}/cgroup.procs"
        )
        return sorted(int(p) for procs in found for p in procs.read_text().split())

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount (its RBAC, not admin)."""
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration=4h").stdout.strip()
        config = json.loads(self.kubectl("config", "view", "--raw", "-o", "json").stdout)
        config["users"] = [{"name": name, "user": {"token": token}}]
        config["contexts"] = [
            {"name": "sa", "context": {"cluster": config["clusters"][0]["name"], "user": name}}
        ]
        config["current-context"] = "sa"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path


def lab_env() -> dict[str, str] | None:
    result = subprocess.run(lab_command("env", "--json"), capture_output=True, text=True, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def lab_processes_alive() -> bool:
    result = subprocess.run(lab_command("status"), capture_output=True, text=True, check=False)
    return result.returncode == 0


def lab_session() -> Iterator[Lab]:
    """Bring the lab up unless it already runs; take it down afterwards only if this session started it."""
    started_here = False
    if not lab_processes_alive():
        subprocess.run(lab_command("up"), check=True)
        started_here = True
    lab = Lab.from_env()
    assert lab is not None, "the lab did not report its environment"
    # A lab that was already up may have lost topology nodes (the demo deletes one): restore them.
    subprocess.run(lab_command("nodes"), check=True)
    install(lab)
    try:
        yield lab
    finally:
        if started_here and os.environ.get("EDGETENANT_KEEP_LAB") != "1":
            subprocess.run(lab_command("down"), check=False)


def install(lab: Lab) -> None:
    """The project's CRDs, then the classes and the operator's ServiceAccount/RBAC (the dev overlay).
    CRDs go first: objects of a kind can only be applied once the API server serves that kind."""
    lab.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "crds"))
    lab.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    lab.kubectl(
        "apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests" / "overlays" / "dev")
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll until check() returns something truthy; fail with `what` otherwise. Not a timing assertion:
    the timeout only bounds how long a broken build waits."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


class OperatorProcess:
    """The operator, run from this checkout as its own process: for the tiers that watch its
    internals (profiles, debug endpoints, several replicas on one machine). The e2e tier and the demo
    run it from its image instead (InClusterOperator)."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        *,
        standalone: bool = True,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = env or {}
        self.standalone = standalone  # False: it campaigns for the leader Lease like a replica
        self.popen: subprocess.Popen[bytes] | None = None
        # EDGETENANT_PROFILE=<file> runs the operator under cProfile (for the benchmarks).
        profile = os.environ.get("EDGETENANT_PROFILE")
        self.python = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [
                *self.python,
                "-m",
                "edgetenant",
                "--kubeconfig",
                str(self.kubeconfig),
                *(["--standalone"] if self.standalone else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "EDGETENANT_METRICS_PORT": "0", **self.env},
            cwd=REPO,
            start_new_session=True,
        )
        return self

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def container_init(pids: list[int]) -> int:
    """Which of a container's processes is its PID 1 (the container's own command)."""
    for pid in pids:
        with suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            if next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1] == "1":
                return pid
    raise AssertionError(f"no PID 1 among the container's processes {pids}")


class InClusterOperator:
    """The operator as a cluster runs it: the dev overlay's Deployment scaled up on the lab's real
    node, from the image `make images` built, as its ServiceAccount, with in-cluster config (the
    `kubernetes` Service), Prometheus at the node's address. Needs a lab whose edge-local is a kubelet.

    `env` is set on the Deployment (e.g. a shorter tuning interval for tests). `kill()` scales it to
    zero; `crash()` SIGKILLs the running container's process, so the kubelet restarts it."""

    NAMESPACE = "edgetenant-system"
    NAME = "edgetenant-operator"
    SELECTOR = "app.kubernetes.io/name=edgetenant-operator"

    def __init__(self, lab: Lab, env: dict[str, str] | None = None, *, replicas: int = 1) -> None:
        self.lab = lab
        self.env = env or {}
        self.replicas = replicas

    def deployment(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.kubectl(*args, "-n", self.NAMESPACE, check=check)

    def start(self) -> InClusterOperator:
        if self.env:
            self.deployment(
                "set", "env", f"deployment/{self.NAME}", *(f"{k}={v}" for k, v in self.env.items())
            )
        self.deployment("scale", f"deployment/{self.NAME}", f"--replicas={self.replicas}")
        self.deployment("rollout", "status", f"deployment/{self.NAME}", "--timeout=180s")
        return self

    def pods(self) -> list[dict[str, Any]]:
        pods = self.lab.get_json("pods", "-n", self.NAMESPACE, "-l", self.SELECTOR)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def alive(self) -> bool:
        """At least one replica running and ready."""
        return any(
            c.get("ready")
            for p in self.pods()
            for c in (p.get("status") or {}).get("containerStatuses") or []
        )

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Scale to zero (SIGKILL: without a grace period) and wait until no replica is left."""
        self.deployment("scale", f"deployment/{self.NAME}", "--replicas=0")
        if sig == signal.SIGKILL:
            self.deployment("delete", "pods", "-l", self.SELECTOR, "--grace-period=0", "--force", check=False)
        wait_for("the operator's pods to go", lambda: not self.pods(), timeout=120)

    def crash(self) -> int:
        """SIGKILL the operator's process in its container (as a crash would); returns the PID."""
        pod = next(p for p in self.pods() if p["status"].get("phase") == "Running")
        init = container_init(self.lab.container_pids(pod, "operator"))
        os.kill(init, signal.SIGKILL)
        return init

    def restarts(self) -> int:
        """How often the kubelet restarted the operator's containers (a crash, a failed probe)."""
        return sum(
            int(c.get("restartCount", 0))
            for p in self.pods()
            for c in (p.get("status") or {}).get("containerStatuses") or []
        )

    def log_tail(self, chars: int = 3000) -> str:
        """The running replica's log (all of it when `chars` asks for more than 200 lines' worth)."""
        lines = "-1" if chars > 50_000 else "200"
        logs = self.deployment("logs", f"deployment/{self.NAME}", f"--tail={lines}", check=False)
        return (logs.stdout + logs.stderr)[-chars:]
