"""Models reach serving Triton through every scheme the API accepts (issue #13), on the lab's node:

- pvc://: a PersistentVolumeClaim bound to a PersistentVolume over a directory of this machine (the
  lab's stand-in for a K3s local-path volume): a directory holding ONNX with external data;
- file://: a node path (hostPath, read-only): a .tar.gz of the same model, pinned by its sha256;
- http(s)://: the lab's model store, pinned by sha256; TFLite on the EdgeTPU stand-in;
- oci://: the lab's registry (distribution, TLS from the lab's CA, htpasswd), credentials from a Secret;
- s3://: the lab's S3 server, keys from a Secret: OpenVINO IR (.xml + .bin) on the NCS2 stand-in.

The node is a real kubelet with containerd and the fetcher runs from its image (the image's older
Python is how the tar-filter fallback was found).

Then each bad input gets its ModelLoaded reason and an Event while the tenant's previous model keeps
serving: a wrong digest, a 404, a model over its size limit, a closed port, a missing Secret, a
missing claim, a wrong password. The Secret's password never appears in status, Events or logs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest

from tests.lab import InClusterOperator, Lab, lab_env, wait_for

PASSWORD_MARK = "p4ss-never-printed"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    found = lab_env()
    assert found is not None
    return found


@pytest.fixture(scope="module")
def store(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of this machine (the node) with the models, offered as a PV + PVC too."""
    root = tmp_path_factory.mktemp("node-models")
    zoo = Path(env["EDGETENANT_LAB_DIR"]) / "models"
    bundle = root / "bundle"
    bundle.mkdir()
    model = onnx.load(str(zoo / "mobilenet_v2.onnx"))
    onnx.save_model(
        model, str(bundle / "mobilenet.onnx"), save_as_external_data=True, location="weights.data"
    )
    with tarfile.open(root / "bundle.tar.gz", "w:gz") as tar:
        tar.add(bundle, arcname="bundle")
    shutil.copy(zoo / "mobilenet_v2.onnx", root / "mobilenet_v2.onnx")
    for path in [root, *root.rglob("*")]:  # tenant containers run as a non-root user on a real node
        path.chmod(0o755 if path.is_dir() else 0o644)
    root.parent.chmod(0o755)
    return root


@pytest.fixture(scope="module")
def claim(lab: Lab, namespace: str, store: Path) -> Iterator[str]:
    pv = f"{namespace}-models"
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "hostPath": {"path": str(store), "type": "Directory"},
                "persistentVolumeReclaimPolicy": "Retain",
            },
        }
    )
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "model-store", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    wait_for(
        "the claim bound",
        lambda: lab.get_json("pvc", "model-store", "-n", namespace)["status"].get("phase") == "Bound",
        timeout=60,
    )
    yield "model-store"
    lab.kubectl("delete", "pv", pv, "--wait=false", check=False)


@pytest.fixture(scope="module")
def secrets(lab: Lab, namespace: str, env: dict[str, str]) -> None:
    ca = Path(env["EDGETENANT_LAB_CA"]).read_text()
    bodies = {
        "registry-pull": {
            "username": env["EDGETENANT_LAB_REGISTRY_USER"],
            "password": env["EDGETENANT_LAB_REGISTRY_PASSWORD"],
            "caBundle": ca,
        },
        "s3-keys": {
            "accessKeyId": env["EDGETENANT_LAB_S3_ACCESS_KEY"],
            "secretAccessKey": env["EDGETENANT_LAB_S3_SECRET_KEY"],
            "caBundle": ca,
        },
        "wrong-password": {
            "username": env["EDGETENANT_LAB_REGISTRY_USER"],
            "password": PASSWORD_MARK,
            "caBundle": ca,
        },
    }
    for name, data in bodies.items():
        lab.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "stringData": data,
            }
        )


def tenant(namespace: str, name: str, model: dict[str, Any], klass: str = "x86-cpu") -> dict[str, Any]:
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"maxBatchSize": 8, "memoryHintMiB": 200, **model},
            "acceleratorClasses": [klass],
            "concurrency": {"mode": "Fixed", "value": 1},
            "placement": {"nodeSelector": {"kubernetes.io/hostname": "edge-local"}},
        },
    }


def conditions(lab: Lab, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    status = lab.get_json("itn", name, "-n", namespace).get("status") or {}
    return {c["type"]: c for c in status.get("conditions", [])}


def serving(lab: Lab, namespace: str, name: str) -> bool:
    return conditions(lab, namespace, name).get("Ready", {}).get("status") == "True"


@pytest.mark.usefixtures("operator", "secrets")
def test_every_scheme_and_format_serves(
    lab: Lab, namespace: str, env: dict[str, str], store: Path, claim: str
) -> None:
    zoo = Path(env["EDGETENANT_LAB_DIR"]) / "models"
    models = env["EDGETENANT_MODELSTORE_URL"]
    cases = {
        "pvc-directory": ({"format": "onnx", "uri": f"pvc://{claim}/bundle/"}, "x86-cpu"),
        "file-archive": (
            {
                "format": "onnx",
                "uri": f"file://{store}/bundle.tar.gz",
                "sha256": sha256(store / "bundle.tar.gz"),
            },
            "x86-cpu",
        ),
        "http-onnx": (
            {
                "format": "onnx",
                "uri": f"{models}/mobilenet_v2.onnx",
                "sha256": sha256(zoo / "mobilenet_v2.onnx"),
            },
            "x86-cpu",
        ),
        "oci-onnx": (
            {
                "format": "onnx",
                "uri": f"oci://{env['EDGETENANT_LAB_REGISTRY']}/models/mobilenet_v2:onnx",
                "credentialsSecret": "registry-pull",
            },
            "x86-cpu",
        ),
    }
    s3 = {
        "uri": "s3://models/mobilenet_v2.xml",
        "s3Endpoint": env["EDGETENANT_LAB_S3_ENDPOINT"],
        "credentialsSecret": "s3-keys",
    }
    # The stand-ins have their own device-plugin resources: they serve at once beside the CPU slots.
    # `lab up` exported both formats into the zoo and seeded the stores (TFLite only where a Python
    # >= 3.12 runs its converter: tests/e2e/test_standins.py skips, saying so, where it does not).
    cases["s3-openvino"] = ({"format": "openvino", **s3}, "ncs2-standin")
    if (zoo / "mobilenet_v2.tflite").is_file():
        cases["http-tflite"] = (
            {"format": "tflite", "uri": f"{models}/mobilenet_v2.tflite"},
            "edgetpu-standin",
        )
    serve_all(lab, namespace, cases)


def serve_all(lab: Lab, namespace: str, cases: dict[str, tuple[dict[str, Any], str]]) -> None:
    """Apply the tenants, wait until every one is Ready with its model loaded, then delete them (all but
    http-onnx, which the bad-input test changes next)."""
    for name, (model, klass) in cases.items():
        lab.apply(tenant(namespace, name, model, klass))
    try:
        try:
            wait_for("every tenant Ready", lambda: all(serving(lab, namespace, n) for n in cases), 420, 3)
        except AssertionError:
            loaded = {n: conditions(lab, namespace, n).get("ModelLoaded") for n in cases}
            pytest.fail(f"not every tenant became Ready: {json.dumps(loaded, indent=1)}")
        for name in cases:
            loaded = conditions(lab, namespace, name)["ModelLoaded"]
            assert loaded["reason"] == "ModelReady", (name, loaded)
    finally:
        gone = [name for name in cases if name != "http-onnx"]
        for name in gone:
            lab.kubectl("delete", "itn", name, "-n", namespace, "--wait=true", check=False)
        # Their pods hold device slots until they have terminated: the next test's rollout surges
        # into a free slot (the previous model serving meanwhile) only once they are gone.
        wait_for(
            "the deleted tenants' pods gone", lambda: not any(pods(lab, namespace, n) for n in gone), 120, 2
        )


BAD_INPUTS = [
    ("wrong-digest", {"sha256": "0" * 64}, "ModelDigestMismatch"),
    ("not-found", {"uri": "{models}/no-such-model.onnx", "sha256": None}, "ModelNotFound"),
    ("over-the-limit", {"maxSizeMiB": 1, "sha256": None}, "ModelTooLarge"),
    (
        "closed-port",
        {"uri": "http://127.0.0.1:9/mobilenet_v2.onnx", "sha256": None},
        "ModelSourceUnreachable",
    ),
    ("missing-secret", {"credentialsSecret": "no-such-secret"}, "ModelCredentialsNotFound"),
    ("missing-claim", {"uri": "pvc://no-such-claim/mobilenet_v2.onnx", "sha256": None}, "ModelClaimNotFound"),
    (
        "wrong-password",
        {
            "uri": "oci://{registry}/models/mobilenet_v2:onnx",
            "sha256": None,
            "credentialsSecret": "wrong-password",
        },
        "ModelAccessDenied",
    ),
]


@pytest.mark.usefixtures("secrets")
def test_bad_inputs_get_their_reason_while_the_previous_model_serves(
    lab: Lab, operator: InClusterOperator, namespace: str, env: dict[str, str]
) -> None:
    name = "http-onnx"
    assert serving(lab, namespace, name), "the delivery test leaves this tenant serving"
    good = lab.get_json("itn", name, "-n", namespace)["spec"]["model"]
    serving_pods = {p["metadata"]["name"] for p in pods(lab, namespace, name) if ready(p)}
    assert serving_pods
    fill = {"models": env["EDGETENANT_MODELSTORE_URL"], "registry": env["EDGETENANT_LAB_REGISTRY"]}
    seen: dict[str, str] = {}
    for case, change, reason in BAD_INPUTS:
        model = {**good, **{k: v.format(**fill) if isinstance(v, str) else v for k, v in change.items()}}
        model = {k: v for k, v in model.items() if v is not None}
        lab.apply(tenant(namespace, name, model))
        loaded = wait_for(
            f"{case}: ModelLoaded reason {reason}",
            lambda reason=reason: (
                (c := conditions(lab, namespace, name).get("ModelLoaded", {})).get("reason") == reason and c
            ),
            timeout=150,
            interval=2,
        )
        seen[case] = loaded["message"]
        assert loaded["status"] == "False"
        assert "the previous model still serves on 1 pod(s)" in loaded["message"], loaded
        still = {p["metadata"]["name"] for p in pods(lab, namespace, name) if ready(p)}
        assert serving_pods <= still, f"{case}: the serving pod went away ({serving_pods} -> {still})"

    def reasons() -> set[str]:
        events = lab.get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
        return {e["reason"] for e in events["items"]}

    # Events are posted off the reconcile's path: shortly after the conditions.
    wanted = {reason for _, _, reason in BAD_INPUTS}
    wait_for("an Event for every bad input", lambda: wanted <= reasons(), timeout=30)
    # The good model again: Ready, from a pod of the restored template.
    lab.apply(tenant(namespace, name, good))
    wait_for("the tenant Ready again", lambda: serving(lab, namespace, name), timeout=180, interval=2)
    print(json.dumps(seen, indent=1))

    # Nothing secret anywhere a person or a log collector looks.
    status = json.dumps(lab.get_json("itn", name, "-n", namespace))
    all_events = json.dumps(lab.get_json("events", "-n", namespace))
    for where, text in {
        "status": status,
        "events": all_events,
        "operator log": operator.log_tail(10**7),
    }.items():
        assert PASSWORD_MARK not in text, f"the password is in the {where}"
        assert env["EDGETENANT_LAB_REGISTRY_PASSWORD"] not in text, f"the registry password is in the {where}"


def pods(lab: Lab, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(lab.get_json("pods", "-n", namespace, "-l", f"edgetenant.io/tenant={name}")["items"])


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions", [])
    )


@pytest.mark.usefixtures("operator")
def test_a_node_path_in_a_restricted_namespace_says_why_no_pod_starts(lab: Lab, store: Path) -> None:
    """file:// needs a hostPath volume, which Pod Security's restricted level refuses: the tenant
    says so (PodsRefused, naming pvc:// as the way) instead of waiting for a pod that never comes."""
    restricted = f"{store.name[:20].lower().replace('_', '-')}-restricted"
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": restricted, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }
    )
    try:
        lab.apply(
            tenant(restricted, "node-path", {"format": "onnx", "uri": f"file://{store}/mobilenet_v2.onnx"})
        )
        loaded = wait_for(
            "ModelLoaded reason PodsRefused",
            lambda: (
                (c := conditions(lab, restricted, "node-path").get("ModelLoaded", {})).get("reason")
                == "PodsRefused"
                and c
            ),
            timeout=120,
            interval=2,
        )
        assert "hostPath" in loaded["message"]
        assert "use pvc://" in loaded["message"]
    finally:
        lab.kubectl("delete", "namespace", restricted, "--wait=false", check=False)
