"""Start and stop a real ``tritonserver`` and a real ``prometheus`` as local processes.

Used by the data-plane tests, the profiler, the benchmarks and the local edge lab. Every
listener binds the loopback address it is given; processes are tracked and stopped by PID
(each gets its own session, so its process group is exactly the server and its children,
such as Triton's Python-backend stubs).

The data-plane virtualenv (tritonserver + ONNX Runtime + numpy<2) is prepared by
``hack/dataplane/setup.sh``; ``find_dataplane_env`` locates it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from edgetenant.errors import ConfigError, TransientError

_REPO_ROOT = Path(__file__).resolve().parents[3]
SETUP_SCRIPT = _REPO_ROOT / "hack" / "dataplane" / "setup.sh"
ENV_VARIABLE = "EDGETENANT_DATAPLANE_ENV"


@dataclass(frozen=True, slots=True)
class DataplaneEnv:
    """A prepared data-plane virtualenv (see hack/dataplane/setup.sh)."""

    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"

    @property
    def tritonserver(self) -> Path:
        return self.bin_dir / "tritonserver"

    @property
    def backend_dir(self) -> Path:
        # Resolved: the backend libraries find their own through an $ORIGIN-relative RPATH.
        return (self.root / "backends").resolve()

    def process_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for tritonserver: the venv's python first on PATH.

        Triton's Python backend runs the stub with the first ``python3`` on PATH's
        libraries, so the venv (numpy<2, onnxruntime) must come first. PYTHONPATH and
        PYTHONHOME from the caller are dropped so the operator's packages do not leak in.
        """
        env = dict(os.environ if base is None else base)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = str(self.root)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        return env


def _is_ready(root: Path) -> bool:
    return (root / ".ready").is_file()


@functools.cache
def find_dataplane_env() -> DataplaneEnv:
    """The data-plane venv: ``$EDGETENANT_DATAPLANE_ENV``, else what setup.sh reports.

    setup.sh returns in well under a second when the env is already built, and builds it
    (about a minute, needs the package registry) when it is not.
    """
    explicit = os.environ.get(ENV_VARIABLE)
    if explicit:
        root = Path(explicit)
        if not _is_ready(root):
            raise ConfigError(f"{ENV_VARIABLE}={root} is not a finished data-plane env (no .ready stamp)")
        return DataplaneEnv(root)
    if not SETUP_SCRIPT.is_file():
        raise ConfigError(f"set {ENV_VARIABLE}: {SETUP_SCRIPT} is not there to build the data-plane env")
    result = subprocess.run(
        ["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        raise ConfigError(f"{SETUP_SCRIPT} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(f"{ENV_VARIABLE}="):
            return DataplaneEnv(Path(line.split("=", 1)[1]))
    raise ConfigError(f"{SETUP_SCRIPT} did not print {ENV_VARIABLE}=...")


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port free on ``address`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass(slots=True)
class LocalProcess:
    """A server we started: stop it by PID (its whole process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; returns the exit code."""
        if self._stopped:
            return self.popen.returncode
        self._stopped = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        # Children (e.g. Python-backend stubs) left in the group after the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.popen.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _spawn(name: str, args: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> LocalProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    return LocalProcess(name=name, popen=popen, log_path=log_path)


def _wait_until(process: LocalProcess, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise TransientError(
                f"{process.name} (pid {process.pid}) exited with {process.popen.returncode} before "
                f"it was ready; log {process.log_path}:\n{process.log_tail()}"
            )
        if _http_ok(url):
            return
        time.sleep(0.1)
    process.stop()
    raise TransientError(
        f"{process.name} was not ready at {url} after {timeout:.0f}s; log {process.log_path}:\n"
        f"{process.log_tail()}"
    )


class _Server:
    """A started server: one LocalProcess, stopped by PID; usable as a context manager."""

    __slots__ = ()
    process: LocalProcess

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> int | None:
        return self.process.stop(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(slots=True)
class TritonProcess(_Server):
    """A local tritonserver: KServe v2 on ``url`` (HTTP) and ``grpc_url``, metrics on ``metrics_url``."""

    process: LocalProcess
    address: str
    http_port: int
    grpc_port: int
    metrics_port: int
    model_repository: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def http_endpoint(self) -> str:
        """host:port, as tritonclient.http wants it."""
        return f"{self.address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def control_url(self) -> str:
        """Model control for live changes (gRPC: a load never stalls inference; see adapters.triton)."""
        return f"grpc://{self.grpc_url}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"

    @property
    def metrics_target(self) -> str:
        """host:port, as a Prometheus static target."""
        return f"{self.address}:{self.metrics_port}"


def triton_args(
    env: DataplaneEnv,
    model_repository: Path,
    *,
    address: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    load_models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The tritonserver command line: loopback listeners, explicit model control, metrics on."""
    args = [
        str(env.tritonserver),
        f"--model-repository={model_repository}",
        f"--backend-directory={env.backend_dir}",
        "--model-control-mode=explicit",
        f"--http-address={address}",
        f"--http-port={http_port}",
        f"--grpc-address={address}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={address}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--metrics-config=summary_latencies=true",
        # A model that fails to load must not take the server (and the other models) down.
        "--exit-on-error=false",
        "--strict-readiness=false",
        "--log-verbose=0",
        # SIGTERM waits this long for open client connections before exiting.
        "--exit-timeout-secs=5",
    ]
    args += [f"--load-model={name}" for name in load_models]
    args += list(extra_args)
    return args


def start_triton(
    model_repository: Path,
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    address: str = "127.0.0.1",
    log_path: Path | None = None,
    load_models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    dataplane: DataplaneEnv | None = None,
    ready_timeout: float = 60.0,
) -> TritonProcess:
    """Start tritonserver on ``address`` and wait for /v2/health/ready.

    Ports default to free ones. ``env`` is the base environment (default: this process's);
    the data-plane venv is put first on its PATH. Raises TransientError with the log tail
    when the server exits or is not ready in time.
    """
    dataplane = dataplane or find_dataplane_env()
    http_port = http_port or free_port(address)
    grpc_port = grpc_port or free_port(address)
    metrics_port = metrics_port or free_port(address)
    log_path = log_path or model_repository.parent / f"tritonserver-{http_port}.log"
    args = triton_args(
        dataplane,
        model_repository,
        address=address,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        load_models=load_models,
        extra_args=extra_args,
    )
    process = _spawn("tritonserver", args, env=dataplane.process_env(env), log_path=log_path)
    triton = TritonProcess(
        process=process,
        address=address,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        model_repository=model_repository,
    )
    _wait_until(process, f"{triton.url}/v2/health/ready", ready_timeout)
    return triton


@dataclass(slots=True)
class PrometheusProcess(_Server):
    """A local Prometheus: HTTP API on ``url``."""

    process: LocalProcess
    address: str
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


def render_static_scrape_config(
    targets: Sequence[str],
    *,
    job: str = "triton",
    interval: str = "1s",
    labels: Mapping[str, str] | None = None,
) -> str:
    """A minimal prometheus.yml scraping ``targets`` (host:port) on ``/metrics``."""
    label_lines = "".join(f"          {key}: {value!r}\n" for key, value in sorted((labels or {}).items()))
    target_list = ", ".join(f"'{target}'" for target in targets)
    return (
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    scrape_interval: {interval}\n"
        "    static_configs:\n"
        f"      - targets: [{target_list}]\n" + (f"        labels:\n{label_lines}" if label_lines else "")
    )


def start_prometheus(
    config: str | Path,
    *,
    data_dir: Path,
    port: int | None = None,
    address: str = "127.0.0.1",
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
    binary: str = "prometheus",
    ready_timeout: float = 60.0,
) -> PrometheusProcess:
    """Start Prometheus with ``config`` (YAML text, or a path to a file) and wait for /-/ready."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Path):
        config_path = config
    else:
        config_path = data_dir / "prometheus.yml"
        config_path.write_text(config)
    port = port or free_port(address)
    log_path = log_path or data_dir / "prometheus.log"
    args = [
        binary,
        f"--config.file={config_path}",
        f"--web.listen-address={address}:{port}",
        f"--storage.tsdb.path={data_dir / 'tsdb'}",
        "--storage.tsdb.retention.time=2h",
        *extra_args,
    ]
    process = _spawn("prometheus", args, env=os.environ, log_path=log_path)
    prometheus = PrometheusProcess(process=process, address=address, port=port, data_dir=data_dir)
    _wait_until(process, f"{prometheus.url}/-/ready", ready_timeout)
    return prometheus
