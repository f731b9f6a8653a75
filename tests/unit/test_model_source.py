"""Model delivery on the operator's side (pure): what the pod is given for each URI scheme, and how a
pod that cannot get its model becomes ModelLoaded's reason while a serving copy keeps serving."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgetenant.api.models import AcceleratorClass, InferenceTenant
from edgetenant.cache import ClusterCache
from edgetenant.dataplane import fetch
from edgetenant.placement import Placement
from edgetenant.reconcile import model_source_problem
from edgetenant.render.kube import RenderSettings, render_all
from edgetenant.status import Observation, PodView, desired_status

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def klass(name: str = "x86-cpu") -> AcceleratorClass:
    doc = yaml.safe_load((REPO / "manifests" / "acceleratorclasses" / f"{name}.yaml").read_text())
    return AcceleratorClass.model_validate(doc)


def pod_spec(**model: Any) -> dict[str, Any]:
    return pod_spec_for("x86-cpu", **model)


def pod_spec_for(class_name: str, **model: Any) -> dict[str, Any]:
    tenant = InferenceTenant.model_validate(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "InferenceTenant",
            "metadata": {"name": "mnv2", "namespace": "vision", "uid": "u-1", "generation": 1},
            "spec": {"model": {"format": "onnx", **model}},
        }
    )
    objects = render_all(
        tenant, klass(class_name), "edge-local", 1, RenderSettings(model_max_mib=100), admin_key="k" * 16
    )
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def fetcher(spec: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = spec["initContainers"][0]
    return container


def test_a_pvc_model_mounts_its_claim_read_only_in_the_fetcher_only() -> None:
    spec = pod_spec(uri="pvc://model-store/vision/mnv2.onnx")
    assert {
        "name": "model-source",
        "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
    } in spec["volumes"]
    init = fetcher(spec)
    assert {"name": "model-source", "mountPath": "/pvc/model-store", "readOnly": True} in init["volumeMounts"]
    assert "--pvc-root=/pvc" in init["args"]
    assert all(m["name"] != "model-source" for m in spec["containers"][0]["volumeMounts"]), (
        "Triton never sees it"
    )


def test_a_file_model_mounts_its_node_directory_read_only_under_host() -> None:
    spec = pod_spec(uri="file:///var/lib/edgetenant/models/mnv2.onnx")
    assert {
        "name": "model-source",
        "hostPath": {"path": "/var/lib/edgetenant/models", "type": "Directory"},
    } in spec["volumes"]
    init = fetcher(spec)
    assert {
        "name": "model-source",
        "mountPath": "/host/var/lib/edgetenant/models",
        "readOnly": True,
    } in init["volumeMounts"]
    assert "--host-root=/host" in init["args"]
    # A directory URI mounts the directory itself.
    directory = pod_spec(uri="file:///srv/models/mnv2/")
    assert directory["volumes"][-1]["hostPath"]["path"] == "/srv/models/mnv2"


def test_http_digest_limit_and_credentials_reach_the_fetcher_and_nothing_else() -> None:
    digest = "ab" * 32
    spec = pod_spec(uri="https://models.example.com/mnv2.onnx", sha256=digest, credentialsSecret="model-pull")
    init = fetcher(spec)
    assert f"--sha256={digest}" in init["args"]
    assert f"--max-bytes={100 << 20}" in init["args"], "the operator's default when the tenant sets none"
    assert init["envFrom"] == [{"prefix": fetch.CREDENTIAL_ENV_PREFIX, "secretRef": {"name": "model-pull"}}]
    assert "envFrom" not in spec["containers"][0], "Triton never gets the credentials"
    assert not any(v.get("hostPath") or v.get("persistentVolumeClaim") for v in spec["volumes"])
    own_limit = fetcher(pod_spec(uri="https://models.example.com/mnv2.onnx", maxSizeMiB=7))
    assert f"--max-bytes={7 << 20}" in own_limit["args"]


def test_s3_endpoint_and_region_reach_the_fetcher() -> None:
    init = fetcher(pod_spec(uri="s3://models/mnv2.onnx", s3Endpoint="https://minio.storage:9000"))
    assert "--s3-endpoint=https://minio.storage:9000" in init["args"]
    assert "--s3-region=us-east-1" in init["args"]


def test_the_credentials_env_is_what_the_fetcher_reads() -> None:
    env = {
        f"{fetch.CREDENTIAL_ENV_PREFIX}username": "alice",
        f"{fetch.CREDENTIAL_ENV_PREFIX}password": "pw",
        f"{fetch.CREDENTIAL_ENV_PREFIX}accessKeyId": "AK",
        f"{fetch.CREDENTIAL_ENV_PREFIX}secretAccessKey": "SK",
    }
    assert fetch.Credentials.from_env(env) == fetch.Credentials(
        username="alice", password="pw", access_key_id="AK", secret_access_key="SK"
    )


def init_failed(message: str) -> dict[str, Any]:
    terminated = {"exitCode": 1, "reason": "Error", "message": message}
    return {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-model",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": terminated},
                }
            ]
        }
    }


@pytest.mark.parametrize(
    ("pod", "reason", "words"),
    [
        (
            init_failed("edgetenant fetch: ModelDigestMismatch: http://s/m.onnx: sha256 is 1, expected 2\n"),
            "ModelDigestMismatch",
            "sha256 is 1, expected 2",
        ),
        (init_failed("Error"), "ModelFetchFailed", "fetch-model failed: Error"),
        (
            {
                "status": {
                    "initContainerStatuses": [
                        {
                            "name": "fetch-model",
                            "state": {
                                "waiting": {
                                    "reason": "CreateContainerConfigError",
                                    "message": 'secret "model-pull" not found',
                                }
                            },
                        }
                    ]
                }
            },
            "ModelCredentialsNotFound",
            'secret "model-pull" not found',
        ),
        (
            {
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": '0/6 nodes are available: persistentvolumeclaim "store" not found.',
                        }
                    ],
                }
            },
            "ModelClaimNotFound",
            "'store' does not exist",
        ),
        ({"status": {"phase": "Running"}}, "", ""),
    ],
)
def test_why_a_pod_cannot_get_its_model(pod: dict[str, Any], reason: str, words: str) -> None:
    got_reason, message = model_source_problem(pod)
    assert got_reason == reason
    assert words in message


def view(name: str, template: str, *, ready: bool, reason: str = "", failed: str = "") -> PodView:
    return PodView(
        name, "edge-local", "127.64.0.9", "Running", ready, "" if ready else "no", failed, template, reason
    )


def observe(pods: tuple[PodView, ...]) -> Observation:
    return Observation(
        generation=2,
        placement=Placement("ns/t", "edge-local", "x86-cpu", 0, 1, 30.0, 40.0, estimated=False),
        unplaced_reason=None,
        spec_problem=None,
        pods=pods,
        instance_count=1,
        endpoint="http://t.ns.svc:8000/v2/models/t",
        resource="edgetenant.io/cpu-slot",
        selector="edgetenant.io/tenant=t",
        replicas=len(pods),
        template="new",
    )


def test_a_bad_new_model_is_reported_while_the_previous_one_keeps_serving() -> None:
    serving = observe((view("t-old", "new", ready=True),))
    settled = desired_status({}, serving, NOW)
    broken = observe(
        (
            view("t-old", "old", ready=True),
            view(
                "t-new", "new", ready=False, reason="ModelNotFound", failed="fetch-model: HTTP 404 Not Found"
            ),
        )
    )
    status = desired_status(settled, broken, NOW)
    loaded = next(c for c in status["conditions"] if c["type"] == "ModelLoaded")
    assert (loaded["status"], loaded["reason"]) == ("False", "ModelNotFound")
    assert "the previous model still serves on 1 pod(s)" in loaded["message"]
    assert status["activePlacement"] is not None, "the old copy is still where the tenant is served"
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ModelNotFound")
    assert ("Warning", "ModelNotFound", loaded["message"]) in broken.events


def test_an_unreachable_source_is_not_stalled() -> None:
    obs = observe((view("t-new", "new", ready=False, reason="ModelSourceUnreachable", failed="gave up"),))
    status = desired_status({}, obs, NOW)
    reasons = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert reasons["ModelLoaded"] == ("False", "ModelSourceUnreachable")
    assert reasons["Stalled"][0] == "False", "the kubelet retries the fetcher; the source may come back"


def test_pods_refused_by_admission_are_the_reason() -> None:

    cache = ClusterCache()
    deployment = {
        "metadata": {"name": "t", "namespace": "ns", "labels": {"edgetenant.io/tenant": "t"}},
        "status": {
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "t-1" is forbidden: violates PodSecurity "restricted:latest": '
                    'hostPath volumes (volume "model-source")',
                }
            ]
        },
    }
    assert cache.put_deployment(deployment, deleted=False) == "ns/t"
    assert cache.put_deployment(deployment, deleted=False) is None, "no change, no wake-up"
    obs = dataclasses.replace(observe(()), pods_refused=cache.pod_refusals["ns/t"])
    status = desired_status({}, obs, NOW)
    loaded = next(c for c in status["conditions"] if c["type"] == "ModelLoaded")
    assert (loaded["status"], loaded["reason"]) == ("False", "PodsRefused")
    assert "use pvc:// in this namespace" in loaded["message"]
    assert ("Warning", "PodsRefused", loaded["message"]) in obs.events
    cleared = {**deployment, "status": {"conditions": []}}
    assert cache.put_deployment(cleared, deleted=False) == "ns/t"
    assert "ns/t" not in cache.pod_refusals


def test_a_refused_object_is_the_reason_and_the_serving_copy_is_kept() -> None:
    refusal = (
        'apply Deployment ns/t: HTTP 403: deployments.apps "t" is forbidden: exceeded quota: '
        "no-deployments, requested: count/deployments.apps=1, used: count/deployments.apps=0"
    )
    serving = observe((view("t-old", "new", ready=True),))
    settled = desired_status({}, serving, NOW)
    obs = dataclasses.replace(observe((view("t-old", "old", ready=True),)), apply_refused=refusal)
    status = desired_status(settled, obs, NOW)
    reasons = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    loaded = next(c for c in status["conditions"] if c["type"] == "ModelLoaded")
    assert reasons["ModelLoaded"] == ("False", "ApplyRefused")
    assert "exceeded quota" in loaded["message"]
    assert "the previous model still serves on 1 pod(s)" in loaded["message"]
    assert reasons["Stalled"] == ("True", "ApplyRefused")
    assert reasons["Ready"] == ("False", "ApplyRefused")
    assert ("Warning", "ApplyRefused", loaded["message"]) in obs.events
    healed = desired_status(status, observe((view("t-new", "new", ready=True),)), NOW)
    assert {c["type"]: c["reason"] for c in healed["conditions"]}["ModelLoaded"] == "ModelReady"
