"""The model-fetcher and Triton images run a tenant's pod as the operator renders it.

One pod, container by container: the init container fetches a zoo model from a loopback HTTP server
into the pod's model-repository volume, then the Triton container serves it from there with the
rendered config (the ConfigMap's subPath mount) and must answer `/v2/models/<name>/ready` and a real
inference (numpy 2 in the image would make Triton's Python backend answer with empty outputs). Both
run as the rendered UID on a read-only root file system with only the pod's volumes. Triton runs in a
network namespace of its own with nothing but loopback; the test asks it through `podman exec`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgetenant import zoo
from edgetenant.api.models import AcceleratorClass, InferenceTenant
from edgetenant.render.kube import RenderSettings, render_all
from tests.images.support import Podman, Volumes, built_archive, container_options, kubelet_args

REPO = Path(__file__).resolve().parents[2]
ZOO_MODEL = "mobilenet_v1"
ASK_TRITON = """
import json, sys, urllib.request
base = "http://127.0.0.1:8000/v2/models/" + sys.argv[1]
if sys.argv[2] == "ready":
    print(urllib.request.urlopen(base + "/ready", timeout=5).status)
    raise SystemExit
meta = json.load(urllib.request.urlopen(base, timeout=5))
first = meta["inputs"][0]
shape = [1 if d == -1 else d for d in first["shape"]]
count = 1
for d in shape:
    count *= d
body = {"inputs": [{"name": first["name"], "shape": shape, "datatype": first["datatype"],
                    "data": [0.5] * count}]}
request = urllib.request.Request(base + "/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=60))
print(json.dumps([{"shape": o["shape"], "values": len(o.get("data", []))} for o in answer["outputs"]]))
"""


def x86_cpu_class_of_the_dev_overlay() -> AcceleratorClass:
    """The x86-cpu class as the dev overlay patches it: ONNX through the shim in tritonserver-cpu-shim."""
    body = yaml.safe_load((REPO / "manifests" / "acceleratorclasses" / "x86-cpu.yaml").read_text())
    overlay = yaml.safe_load((REPO / "manifests" / "overlays" / "dev" / "kustomization.yaml").read_text())
    for patch in overlay["patches"]:
        if patch["target"] == {"kind": "AcceleratorClass", "name": "x86-cpu"}:
            for op in yaml.safe_load(patch["patch"]):
                assert op["op"] == "replace", op
                *parents, leaf = op["path"].strip("/").split("/")
                target = body
                for key in parents:
                    target = target[key]
                target[leaf] = op["value"]
    return AcceleratorClass.model_validate(body)


@dataclass(frozen=True)
class Pod:
    spec: dict[str, Any]
    volumes: Volumes
    model: str
    source: Path


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A zoo model behind an HTTP server on 127.0.0.1."""
    source = zoo.ensure_model(ZOO_MODEL)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(source.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{source.name}", source
    server.shutdown()


@pytest.fixture(scope="module")
def pod(model_server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Pod:
    uri, source = model_server
    tenant = InferenceTenant.model_validate(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": "image-check", "namespace": "images", "uid": str(uuid.uuid4())},
            "spec": {
                "model": {"name": ZOO_MODEL, "format": "onnx", "uri": uri},
                "acceleratorClasses": ["x86-cpu"],
            },
        }
    )
    objects = render_all(
        tenant,
        x86_cpu_class_of_the_dev_overlay(),
        "edge-local",
        instance_count=1,
        settings=RenderSettings(),
        admin_key=uuid.uuid4().hex,
    )
    kinds = {o["kind"]: o for o in objects}
    config_map, secret, deployment = kinds["ConfigMap"], kinds["Secret"], kinds["Deployment"]
    volumes = Volumes(
        root=tmp_path_factory.mktemp("pod"),
        config_maps={config_map["metadata"]["name"]: config_map["data"]},
        secrets={
            secret["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        },
    )
    return Pod(spec=deployment["spec"]["template"]["spec"], volumes=volumes, model=ZOO_MODEL, source=source)


@pytest.fixture(scope="module")
def fetched(podman: Podman, pod: Pod) -> Path:
    """The init container's run: the model repository volume it filled."""
    (init,) = pod.spec["initContainers"]
    assert podman.load(built_archive("model-fetcher")) == init["image"], (
        "the rendered fetcher image is not built"
    )
    options = container_options(pod.spec, init, pod.volumes, network="host")
    result = podman.run(options, init["image"], init["args"])
    assert result.returncode == 0, result.stdout + result.stderr
    return pod.volumes.root / "model-repository"


def test_fetcher_image_fetches_the_model_and_its_shim(fetched: Path, pod: Pod) -> None:
    model_file = fetched / pod.model / "1" / "model.onnx"
    assert (
        hashlib.sha256(model_file.read_bytes()).digest() == hashlib.sha256(pod.source.read_bytes()).digest()
    )
    shim = fetched / pod.model / "1" / "model.py"
    assert "TritonPythonModel" in shim.read_text()


def test_triton_image_serves_the_fetched_model(podman: Podman, pod: Pod, fetched: Path) -> None:
    (triton,) = pod.spec["containers"]
    assert podman.load(built_archive("tritonserver-cpu-shim")) == triton["image"], (
        "the rendered image is not built"
    )
    name = f"triton-{uuid.uuid4().hex[:6]}"
    options = container_options(pod.spec, triton, pod.volumes, network="none")
    podman.start(name, options, triton["image"], kubelet_args(triton, pod.volumes))
    try:
        deadline = time.monotonic() + 180
        ready = None
        while time.monotonic() < deadline:
            ready = podman.exec(name, "python3", "-c", ASK_TRITON, pod.model, "ready")
            if ready.stdout.strip() == "200":
                break
            if (
                podman.podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
                != "true"
            ):
                break
            time.sleep(1)
        assert ready is not None
        assert ready.stdout.strip() == "200", f"not ready: {ready.stderr[-500:]}\n{podman.logs(name)}"
        answer = podman.exec(name, "python3", "-c", ASK_TRITON, pod.model, "infer", timeout=120)
        assert answer.returncode == 0, answer.stderr[-2000:] + podman.logs(name)
        outputs = json.loads(answer.stdout)
        assert outputs
        for output in outputs:
            expected = 1
            for dim in output["shape"]:
                expected *= dim
            assert output["values"] == expected > 1, outputs
    finally:
        podman.remove(name)
