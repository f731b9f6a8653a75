"""The real local node: a test harness that runs the Triton containers of pods bound to `edge-local`.

KWOK keeps every lab node alive and marks scheduled pods Running with a loopback pod IP. For the node
that stands for this machine (annotation `edgetenant.io/lab-real-node: "true"`), this harness does what a
kubelet would do with the pod's containers, as local processes:

- each volume mount becomes a directory of this pod (emptyDir) or the ConfigMap's keys written out
  (configMap, with items and subPath), so the container's own paths map onto host paths;
- init containers run to completion first (`python` is this checkout's interpreter with the operator's
  package on PYTHONPATH), then the main container, with the container's own command and arguments;
- `tritonserver` is the binary from the nvidia-pytriton wheel in the data-plane virtualenv, with its
  backend directory, bound to the pod's IP instead of 0.0.0.0 (a pod owns its own network namespace in a
  real cluster; here the pod IP is a loopback address of this machine);
- a container that exits is restarted with back-off (restartPolicy Always); when the pod goes, its
  processes are stopped by PID and its directory removed.

Only this harness knows it is not a kubelet: the operator, Prometheus and load generators reach the pod
by its IP exactly as in a real cluster. Product code has no test-only branches.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "operator"))

from edgetenant.dataplane.local import find_dataplane_env  # noqa: E402

log = logging.getLogger("localnode")
ADDRESS_FLAGS = ("--http-address", "--grpc-address", "--metrics-address")


VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command, args and env values: a defined variable is replaced,
    an undefined one stays as written, and `$$` is an escaped `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return VARIABLE.sub(replace, text)


class ContainerConfigError(Exception):
    """A container cannot be configured (a missing Secret, ConfigMap or claim): the kubelet's
    CreateContainerConfigError; the pod waits and is tried again on its next event."""


@dataclass
class Container:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0


@dataclass
class PodRun:
    uid: str
    key: str
    ip: str
    root: Path
    namespace: str = ""
    name: str = ""
    containers: list[Container] = field(default_factory=list)
    failed: str = ""
    ready: bool | None = None  # what we last told the API server
    ready_url: str = ""


class LocalNode:
    def __init__(self, api: client.CoreV1Api, node: str, work: Path) -> None:
        self.api = api
        self.node = node
        self.work = work
        self.pods: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.dataplane = find_dataplane_env()

    # --- translating a pod spec into local processes -------------------------------------------------
    def _mounts(self, pod: Any, run: PodRun, container: Any) -> list[tuple[str, Path]]:
        """(container path, host path) pairs, longest container path first. Each mount is also a
        symlink at its container path under the pod's `fs` directory, so a path above the mounts
        (`--host-root=/host`, `--pvc-root=/pvc`) maps too. Read-only is not enforced here."""
        volumes = {v.name: v for v in pod.spec.volumes or []}
        pairs: list[tuple[str, Path]] = []
        for mount in container.volume_mounts or []:
            volume = volumes.get(mount.name)
            if volume is None:
                continue
            host = run.root / "volumes" / mount.name
            if volume.config_map is not None:
                self._write_config_map(pod.metadata.namespace, volume.config_map, host)
            elif volume.host_path is not None:
                host = Path(volume.host_path.path)  # this machine is the node
            elif volume.persistent_volume_claim is not None:
                host = self._claim_path(pod.metadata.namespace, volume.persistent_volume_claim.claim_name)
            else:
                host.mkdir(parents=True, exist_ok=True)
            if mount.sub_path:
                host = host / mount.sub_path
            pairs.append((mount.mount_path.rstrip("/"), host))
        pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
        # A mount inside another mount (a ConfigMap key over a file in an emptyDir) becomes a
        # symlink in the outer mount's directory, so both views see the same tree.
        for inner, inner_host in pairs:
            for outer, outer_host in pairs:
                if inner != outer and inner.startswith(outer + "/"):
                    link = outer_host / inner[len(outer) + 1 :]
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.is_symlink():
                        link.unlink(missing_ok=True)
                        link.symlink_to(inner_host)
                    break
            else:
                link = run.root / "fs" / inner.lstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(inner_host)
        return pairs

    def _claim_path(self, namespace: str, claim: str) -> Path:
        """Where a bound claim's volume is on this machine: the PV's hostPath or local path (the lab's
        claims are static PVs over directories of this machine)."""
        pvc = self.api.read_namespaced_persistent_volume_claim(claim, namespace)
        if not pvc.spec.volume_name:
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = self.api.read_persistent_volume(pvc.spec.volume_name)
        source = pv.spec.host_path or pv.spec.local
        if source is None:
            raise ContainerConfigError(f"persistentvolume {pv.metadata.name} is neither hostPath nor local")
        return Path(source.path)

    def _write_config_map(self, namespace: str, source: Any, directory: Path) -> None:
        cm = self.api.read_namespaced_config_map(source.name, namespace)
        directory.mkdir(parents=True, exist_ok=True)
        data: dict[str, bytes] = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        items = {item.key: item.path for item in source.items or []} or {k: k for k in data}
        for key, rel in items.items():
            if key in data:
                target = directory / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data[key])

    @staticmethod
    def _map_path(value: str, mounts: list[tuple[str, Path]], fs: Path) -> str:
        flags = ("--model-repository", "--dest", "--config", "--out", "--host-root", "--pvc-root")
        for prefix in ("", *(f"{flag}=" for flag in flags)):
            if not value.startswith(prefix):
                continue
            path = value[len(prefix) :]
            for container_path, host in mounts:
                if path == container_path or path.startswith(container_path + "/"):
                    return prefix + str(host) + path[len(container_path) :]
            if path.startswith("/") and any(c.startswith(path.rstrip("/") + "/") for c, _ in mounts):
                return prefix + str(fs) + path  # above the mounts: the pod's tree of mount links
        return value

    def _argv(
        self, container: Any, mounts: list[tuple[str, Path]], run: PodRun, env: dict[str, str]
    ) -> list[str]:
        ip = run.ip
        argv = [*(container.command or []), *(container.args or [])]
        argv = [self._map_path(expand(a, env), mounts, run.root / "fs") for a in argv]
        program = argv[0] if argv else ""
        if program in {"python", "python3"}:
            return [sys.executable, *argv[1:]]
        if Path(program).name == "tritonserver":
            rest = [a for a in argv[1:] if not a.startswith(ADDRESS_FLAGS)]
            binds = [f"{flag}={ip}" for flag in ADDRESS_FLAGS]
            backend = [f"--backend-directory={self.dataplane.backend_dir}"]
            return [str(self.dataplane.tritonserver), *rest, *binds, *backend]
        return argv

    def _declared_env(self, namespace: str, container: Any) -> dict[str, str]:
        """The container's env as the kubelet resolves it: envFrom (every key of a Secret or ConfigMap,
        with its prefix), then values (with `$(VAR)` expanded from those before them) and keys of
        Secrets and ConfigMaps; what is optional and missing is left out, what is required and missing
        stops the container as the kubelet's CreateContainerConfigError does."""
        values: dict[str, str] = {}
        for source in container.env_from or []:
            ref = source.secret_ref or source.config_map_ref
            data = self._read_data(
                namespace, ref.name, secret=source.secret_ref is not None, optional=ref.optional
            )
            values.update({f"{source.prefix or ''}{k}": v for k, v in (data or {}).items()})
        for entry in container.env or []:
            if entry.value is not None:
                values[entry.name] = expand(entry.value, values)
                continue
            source = entry.value_from
            ref = source and (source.secret_key_ref or source.config_map_key_ref)
            if ref is None:
                continue
            secret = source.secret_key_ref is not None
            value = (self._read_data(namespace, ref.name, secret=secret, optional=ref.optional) or {}).get(
                ref.key
            )
            if value is None and not ref.optional:
                kind = "Secret" if secret else "ConfigMap"
                raise ContainerConfigError(f"couldn't find key {ref.key} in {kind} {namespace}/{ref.name}")
            if value is not None:
                values[entry.name] = value
        return values

    def _read_data(
        self, namespace: str, name: str, *, secret: bool, optional: bool | None
    ) -> dict[str, str] | None:
        """A Secret's (decoded) or a ConfigMap's data; None when it is missing and optional."""
        try:
            if secret:
                data = self.api.read_namespaced_secret(name, namespace).data or {}
                return {k: base64.b64decode(v).decode() for k, v in data.items()}
            return dict(self.api.read_namespaced_config_map(name, namespace).data or {})
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            if optional:
                return None
            raise ContainerConfigError(f'{"secret" if secret else "configmap"} "{name}" not found') from None

    def _env(self, values: dict[str, str], program: str) -> dict[str, str]:
        if Path(program).name == "tritonserver":
            return {**self.dataplane.process_env(), **values}
        pythonpath = os.pathsep.join(filter(None, [str(REPO / "operator"), os.environ.get("PYTHONPATH")]))
        return {**os.environ, **values, "PYTHONPATH": pythonpath}

    def prepare(self, pod: Any) -> PodRun:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        run = PodRun(
            uid=pod.metadata.uid,
            key=key,
            ip=pod.status.pod_ip,
            root=self.work / pod.metadata.uid,
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
        )
        http_port = next(
            (p.container_port for c in pod.spec.containers for p in c.ports or [] if p.name == "http"), 8000
        )
        run.ready_url = f"http://{run.ip}:{http_port}/v2/health/ready"
        run.root.mkdir(parents=True, exist_ok=True)
        inits: list[tuple[Any, list[str], dict[str, str]]] = []
        for spec, is_init in [
            *((c, True) for c in pod.spec.init_containers or []),
            *((c, False) for c in pod.spec.containers),
        ]:
            try:
                mounts = self._mounts(pod, run, spec)
                declared = self._declared_env(run.namespace, spec)
            except ContainerConfigError as error:
                log.warning("%s/%s: CreateContainerConfigError: %s", key, spec.name, error)
                self._report_waiting(run, spec.name, is_init, "CreateContainerConfigError", str(error))
                shutil.rmtree(run.root, ignore_errors=True)
                raise
            argv = self._argv(spec, mounts, run, declared)
            if is_init:
                inits.append((spec, argv, declared))
            else:
                run.containers.append(
                    Container(spec.name, argv, self._env(declared, argv[0]), run.root / f"{spec.name}.log")
                )
        # Init containers run to completion, in order, before any main container starts.
        for spec, argv, declared in inits:
            with (run.root / f"init-{spec.name}.log").open("ab") as out:
                result = subprocess.run(
                    argv,
                    env=self._env(declared, argv[0]),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=600,
                    check=False,
                )
            if result.returncode != 0:
                run.failed = f"init container {spec.name} exited with {result.returncode}"
                log.warning("%s: %s (log %s)", key, run.failed, run.root / f"init-{spec.name}.log")
                tail = (
                    (run.root / f"init-{spec.name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                )
                self._report_init_failure(run, spec.name, result.returncode, " ".join(tail))
                break
        self._set_ready(run, False)
        return run

    # --- what a kubelet reports --------------------------------------------------------------------
    def _patch_status(self, run: PodRun, status: dict[str, Any]) -> None:
        try:
            self.api.patch_namespaced_pod_status(run.name, run.namespace, {"status": status})
        except client.ApiException as error:
            log.warning("%s: status patch failed: %s", run.key, error.reason)

    def _report_waiting(self, run: PodRun, container: str, is_init: bool, reason: str, message: str) -> None:
        statuses = "initContainerStatuses" if is_init else "containerStatuses"
        waiting = {"reason": reason, "message": message}
        entry = {"name": container, "ready": False, "restartCount": 0, "image": "", "imageID": ""}
        self._patch_status(run, {statuses: [{**entry, "state": {"waiting": waiting}}]})

    def _report_init_failure(self, run: PodRun, container: str, code: int, message: str) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        terminated = {"exitCode": code, "reason": "Error", "message": message[-900:], "finishedAt": now}
        self._patch_status(
            run,
            {
                "initContainerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "restartCount": 0,
                        "image": "",
                        "imageID": "",
                        "state": {"terminated": terminated},
                    }
                ],
                "conditions": [
                    {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}
                ],
            },
        )
        self._set_ready(run, False, force=True)

    def _set_ready(self, run: PodRun, ready: bool, force: bool = False) -> None:
        """Pod readiness follows Triton's /v2/health/ready, as the pod's readiness probe would."""
        if run.ready == ready and not force:
            return
        run.ready = ready
        value = "True" if ready else "False"
        self._patch_status(
            run,
            {
                "conditions": [
                    {"type": "Ready", "status": value, "reason": "" if ready else "ContainersNotReady"},
                    {
                        "type": "ContainersReady",
                        "status": value,
                        "reason": "" if ready else "ContainersNotReady",
                    },
                ],
                "containerStatuses": [{"name": c.name, "ready": ready} for c in run.containers],
            },
        )
        log.info("%s: ready=%s", run.key, ready)

    def probe(self) -> None:
        with self.lock:
            runs = [run for run in self.pods.values() if not run.failed]
        for run in runs:
            try:
                with urllib.request.urlopen(run.ready_url, timeout=1) as response:
                    ready = response.status == 200
            except (urllib.error.URLError, OSError):
                ready = False
            self._set_ready(run, ready)

    # --- the process lifecycle -----------------------------------------------------------------------
    def supervise(self) -> None:
        """Start containers that are not running; restart exited ones with back-off."""
        now = time.monotonic()
        with self.lock:
            runs = list(self.pods.values())
        for run in runs:
            if run.failed:
                continue
            for c in run.containers:
                if c.popen is not None and c.popen.poll() is None:
                    continue
                if c.popen is not None:
                    c.restarts += 1
                    delay = min(30.0, 2.0 ** min(c.restarts, 5))
                    log.warning(
                        "%s/%s exited with %s; restarting in %.0f s",
                        run.key,
                        c.name,
                        c.popen.returncode,
                        delay,
                    )
                    c.popen = None
                    c.next_start = now + delay
                if now >= c.next_start:
                    with c.log_path.open("ab") as out:
                        c.popen = subprocess.Popen(
                            c.argv,
                            env=c.env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            start_new_session=True,
                        )
                    log.info("%s/%s started (pid %d) at %s", run.key, c.name, c.popen.pid, run.ip)

    @staticmethod
    def _stop(run: PodRun) -> None:
        for c in run.containers:
            if c.popen is None or c.popen.poll() is not None:
                continue
            try:
                os.killpg(c.popen.pid, signal.SIGTERM)
                c.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(c.popen.pid, signal.SIGKILL)
                c.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
            # Python-backend stubs left in the container's process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.popen.pid, signal.SIGKILL)
        shutil.rmtree(run.root, ignore_errors=True)

    def observe(self, pod: Any, deleted: bool) -> None:
        uid = pod.metadata.uid
        gone = (
            deleted
            or pod.metadata.deletion_timestamp is not None
            or pod.status.phase in {"Succeeded", "Failed"}
        )
        with self.lock:
            run = self.pods.get(uid)
        if gone:
            if run is not None:
                with self.lock:
                    self.pods.pop(uid, None)
                self._stop(run)
                log.info("%s: pod gone, processes stopped", run.key)
            return
        if run is None and pod.status.pod_ip and pod.status.phase == "Running":
            if not pod.status.pod_ip.startswith("127."):
                log.error(
                    "%s: pod IP %s is not a loopback address; refusing to run it",
                    pod.metadata.name,
                    pod.status.pod_ip,
                )
                return
            try:
                run = self.prepare(pod)
            except ContainerConfigError:
                return  # reported; tried again on the pod's next event (the watch relists each minute)
            with self.lock:
                self.pods[uid] = run

    def stop_all(self) -> None:
        with self.lock:
            runs, self.pods = list(self.pods.values()), {}
        for run in runs:
            self._stop(run)

    def watch_forever(self, stop: threading.Event) -> None:
        selector = f"spec.nodeName={self.node}"
        while not stop.is_set():
            try:
                pods = self.api.list_pod_for_all_namespaces(field_selector=selector)
                seen = {p.metadata.uid for p in pods.items}
                for pod in pods.items:
                    self.observe(pod, deleted=False)
                with self.lock:
                    vanished = [run for uid, run in self.pods.items() if uid not in seen]
                for run in vanished:
                    with self.lock:
                        self.pods.pop(run.uid, None)
                    self._stop(run)
                stream = watch.Watch().stream(
                    self.api.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=pods.metadata.resource_version,
                    timeout_seconds=60,
                )
                for event in stream:
                    self.observe(event["object"], deleted=event["type"] == "DELETED")
                    if stop.is_set():
                        break
            except Exception as error:  # the API server restarting must not kill the node
                log.warning("watch failed (%s); retrying", error)
                stop.wait(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default="edge-local")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    work = args.work_dir or Path(args.kubeconfig).parent / "localnode"
    node = LocalNode(client.CoreV1Api(), args.node, work)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    watcher = threading.Thread(target=node.watch_forever, args=(stop,), daemon=True)
    watcher.start()
    log.info("running the Triton containers of pods on node %s (work dir %s)", args.node, work)
    while not stop.is_set():
        node.supervise()
        node.probe()
        stop.wait(1.0)
    node.stop_all()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
