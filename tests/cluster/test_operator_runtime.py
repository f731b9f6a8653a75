"""The operator runtime's correctness on the real API server and scheduler: status writers that never
regress each other, watch events hammered while passes run, rollouts that cannot stall on a full node,
the OOM back-off as the kubelet reports a kill, and one tenant's failure isolated from the others."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from edgetenant.adapters.kube import Kube
from edgetenant.admin_keys import AdminKeys
from edgetenant.cache import ClusterCache
from edgetenant.errors import PermanentError
from edgetenant.placement import Placement
from edgetenant.reconcile import PassContext, Reconciler
from edgetenant.render.kube import TEMPLATE_ANNOTATION
from edgetenant.settings import Settings
from edgetenant.status import Writer
from edgetenant.status_writer import TenantWriter
from tests.cluster.test_operator import OPERATOR_ENV, tenant, wait_placed
from tests.cluster.test_operator_crash import add_capacity
from tests.lab import Lab, OperatorProcess, wait_for


def add_single_device_node(lab: Lab, name: str, resource: str) -> None:
    """A simulated edge box with exactly one device, and an Exclusive class for it."""
    labels = {
        "kubernetes.io/arch": "arm64",
        "kubernetes.io/os": "linux",
        "edgetenant.io/test": name,
        "edgetenant.io/lab-simulated": "true",
    }
    lab.add_node(name, labels, {"cpu": "4", "memory": "8Gi", "pods": "110", resource: "1"})
    lab.apply(
        {
            "apiVersion": "edgetenant.io/v1alpha1",
            "kind": "AcceleratorClass",
            "metadata": {"name": name},
            "spec": {
                "resourceName": resource,
                "nodeSelector": {"edgetenant.io/test": name},
                "memoryPerDeviceMiB": 4096,
                "sharing": {"mode": "Exclusive"},
                "instanceKind": "KIND_GPU",
                "formats": [
                    {
                        "format": "onnx",
                        "backend": "onnxruntime",
                        "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
                    }
                ],
            },
        }
    )


def remove_capacity(lab: Lab, klass: str) -> None:
    lab.kubectl("delete", "acceleratorclass", klass, "--ignore-not-found", check=False)
    lab.kubectl("delete", "nodes", "-l", f"edgetenant.io/test={klass}", "--wait=false", check=False)


def tenant_pods(lab: Lab, namespace: str, name: str) -> list[dict[str, Any]]:
    items = lab.get_json("pods", "-n", namespace, "-l", f"edgetenant.io/tenant={name}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


@pytest.fixture
def operator_env(lab: Lab) -> dict[str, str]:
    return {**OPERATOR_ENV, "EDGETENANT_PROMETHEUS_URL": lab.prometheus_url}


@pytest.fixture
def running_operator(
    lab: Lab, operator_kubeconfig: Path, tmp_path: Path, operator_env: dict[str, str]
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(operator_kubeconfig, tmp_path / "operator.log", operator_env).start()
    yield process
    process.kill()
    print(process.log_tail())


def api_client(kubeconfig: Path) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


async def one_tenant_reconciler(lab: Lab, kube: Kube, klass: str, node: str, key: str) -> Reconciler:
    """A Reconciler whose cache holds one tenant, one node and their class, read from the API server."""
    cache = ClusterCache()
    cache.classes[klass] = lab.get_json("acceleratorclass", klass)
    cache.nodes[node] = lab.get_json("node", node)
    namespace, name = key.split("/", 1)
    found = await kube.get_tenant(namespace, name)
    assert found is not None
    cache.put_tenant(key, found)
    writer = TenantWriter(kube, cache, event_interval_s=600)
    settings = Settings(prometheus_url=lab.prometheus_url)
    return Reconciler(kube, settings, cache, writer, AdminKeys(kube, "edgetenant-system"))


# --- one status serialiser --------------------------------------------------------------------------


class SlowApply(Kube):
    """The real adapter, with applies that take long enough for another writer to step in."""

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(1.5)
        return await super().apply(obj)


def test_a_reconcile_never_writes_back_an_instance_count_the_tuner_changed(
    lab: Lab, operator_kubeconfig: Path, namespace: str
) -> None:
    klass = f"writers-{namespace}"
    add_capacity(lab, klass, nodes=1)
    name = "interleaved"
    lab.apply(tenant(name, namespace, acceleratorClasses=[klass], concurrency={"mode": "Auto", "initial": 1}))
    key = f"{namespace}/{name}"
    node = f"{klass}-0"

    async def scenario() -> tuple[dict[str, Any], str]:
        reconciler = await one_tenant_reconciler(
            lab, SlowApply(api_client(operator_kubeconfig)), klass, node, key
        )
        cache, writer = reconciler.cache, reconciler.writer
        placement = Placement(key, node, klass, 0, 1, 10.0, 10.0, estimated=True)
        context = PassContext({key: placement}, {}, (), ())
        await reconciler.reconcile_tenant(key, context)  # seeds concurrency {1, 1}
        assert cache.tenants[key]["status"]["concurrency"]["target"] == 1

        # A second pass (a spec change re-renders) is busy applying when the tuning loop decides 3.
        reconciler.applied.clear()
        pass_task = asyncio.create_task(reconciler.reconcile_tenant(key, context))
        await asyncio.sleep(0.5)

        def tuned(old: dict[str, Any]) -> dict[str, Any]:
            decision = {"at": "2026-12-02T00:00:00Z", "action": "ScaleUp", "reason": "test", "signals": {}}
            return {"concurrency": {"current": 3, "target": 3}, "lastDecision": decision}

        await writer.write_status(key, Writer.TUNING, tuned)
        await pass_task
        await reconciler.reconcile_tenant(key, context)  # woken by the tuner: renders 3
        config_map = lab.get_json("configmap", f"{name}-triton-config", "-n", namespace)
        return cache.tenants[key]["status"], config_map["data"]["config.pbtxt"]

    try:
        status, config = asyncio.run(scenario())
        server = lab.get_json("itn", name, "-n", namespace)["status"]
        assert server["concurrency"]["target"] == 3, (
            f"the tuner's count was overwritten: {server['concurrency']}"
        )
        assert status["concurrency"]["target"] == 3
        assert "count: 3" in config, config
    finally:
        remove_capacity(lab, klass)


def test_a_refused_deployment_is_said_in_the_status_and_applied_again_once_allowed(
    lab: Lab, operator_kubeconfig: Path, namespace: str
) -> None:
    """A ResourceQuota of no Deployments: the API server refuses the tenant's Deployment. The status says
    so (ApplyRefused, the API server's words), the error is raised, nothing is recorded as applied; once
    the quota is gone, the next reconcile creates the Deployment."""
    klass = f"refused-{namespace}"
    add_capacity(lab, klass, nodes=1)
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-deployments", "namespace": namespace},
            "spec": {"hard": {"count/deployments.apps": "0"}},
        }
    )
    name = "refused"
    lab.apply(tenant(name, namespace, acceleratorClasses=[klass]))
    key = f"{namespace}/{name}"
    node = f"{klass}-0"

    def conditions() -> dict[str, dict[str, Any]]:
        status = lab.get_json("itn", name, "-n", namespace)["status"]
        return {c["type"]: c for c in status["conditions"]}

    async def scenario() -> None:
        reconciler = await one_tenant_reconciler(lab, Kube(api_client(operator_kubeconfig)), klass, node, key)
        placement = Placement(key, node, klass, 0, 1, 10.0, 10.0, estimated=True)
        context = PassContext({key: placement}, {}, (), ())
        with pytest.raises(PermanentError, match=r"Deployment.*quota"):
            await reconciler.reconcile_tenant(key, context)
        assert key not in reconciler.applied, "a refused apply must be applied again by the next pass"
        refused = conditions()
        assert refused["Placed"]["status"] == "True", refused["Placed"]
        assert (refused["ModelLoaded"]["reason"], refused["Stalled"]["reason"]) == (
            "ApplyRefused",
            "ApplyRefused",
        )
        assert "exceeded quota" in refused["ModelLoaded"]["message"], refused["ModelLoaded"]
        lab.get_json("configmap", f"{name}-triton-config", "-n", namespace)  # applied before the refusal
        assert lab.kubectl("get", "deployment", name, "-n", namespace, check=False).returncode != 0

        lab.kubectl("delete", "resourcequota", "no-deployments", "-n", namespace)
        await reconciler.reconcile_tenant(key, context)
        assert key in reconciler.applied
        healed = conditions()
        assert healed["ModelLoaded"]["reason"] != "ApplyRefused", healed["ModelLoaded"]
        assert healed["Stalled"]["status"] == "False", healed["Stalled"]

    try:
        asyncio.run(scenario())
        lab.get_json("deployment", name, "-n", namespace)
    finally:
        lab.kubectl("delete", "resourcequota", "no-deployments", "-n", namespace, check=False)
        remove_capacity(lab, klass)


# --- one owner per mutable structure ------------------------------------------------------------------


def test_watch_events_hammered_while_passes_run_never_break_a_pass(
    lab: Lab, namespace: str, running_operator: OperatorProcess, operator_kubeconfig: Path
) -> None:
    klass = f"hammer-{namespace}"
    add_capacity(lab, klass, nodes=4, devices_per_node=200)
    tenants = [tenant(f"h-{i:03d}", namespace, acceleratorClasses=[klass]) for i in range(150)]
    lab.apply(tenants)
    core = k8s.CoreV1Api(api_client(lab.kubeconfig))
    custom = k8s.CustomObjectsApi(api_client(lab.kubeconfig))
    stop = threading.Event()
    changes = {"count": 0}

    def hammer(worker: int) -> None:
        # Watch events as fast as the API server takes them, for a bounded time: tenants and nodes
        # change, and tenants come and go (keys added to and removed from the cache's dicts).
        deadline = time.monotonic() + 30
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            core.patch_node(
                f"{klass}-{i % 4}", {"metadata": {"labels": {"edgetenant.io/hammer": str(i % 7)}}}
            )
            churn = tenant(f"c{worker}-{i}", namespace, acceleratorClasses=[klass])
            custom.create_namespaced_custom_object(
                "edgetenant.io", "v1alpha1", namespace, "inferencetenants", churn
            )
            if i >= 3:
                custom.delete_namespaced_custom_object(
                    "edgetenant.io", "v1alpha1", namespace, "inferencetenants", f"c{worker}-{i - 3}"
                )
            i += 1
        changes["count"] += i

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        wait_for(
            "every tenant Placed",
            lambda: placed_count(lab, namespace) >= len(tenants),
            timeout=180,
            interval=2,
        )
        log = running_operator.log_tail(2_000_000)
        assert changes["count"] > 30, "the hammer did not run"
        assert "reconcile pass failed" not in log, log[-3000:]
        assert "changed size during iteration" not in log
        assert "Traceback" not in log, log[-3000:]
    finally:
        stop.set()
        remove_capacity(lab, klass)


def placed_count(lab: Lab, namespace: str) -> int:
    items = lab.get_json("itn", "-n", namespace)["items"]
    return sum(
        1
        for i in items
        if i["metadata"]["name"].startswith("h-")
        and any(
            c["type"] == "Placed" and c["status"] == "True"
            for c in (i.get("status") or {}).get("conditions", [])
        )
    )


def test_watch_handlers_run_on_the_event_loop() -> None:
    """kopf runs sync handlers in its thread pool, beside passes that read the same dicts: the
    operator's handlers must be coroutines (one owner of the cache: the event loop)."""
    import inspect  # noqa: PLC0415

    from edgetenant import handlers  # noqa: PLC0415

    events = [f for name, f in vars(handlers).items() if name.endswith("_event") and not name.startswith("_")]
    assert len(events) >= 7
    assert all(inspect.iscoroutinefunction(f) for f in events), [f.__name__ for f in events]


# --- rollouts that cannot stall -----------------------------------------------------------------------


def test_a_new_template_on_a_single_device_node_rolls_out_instead_of_stalling(
    lab: Lab, namespace: str, running_operator: OperatorProcess
) -> None:
    node = f"solo-{namespace}"
    add_single_device_node(lab, node, "example.com/solo-gpu")
    name = "solo"
    body = tenant(name, namespace, acceleratorClasses=[node])
    try:
        lab.apply(body)
        first = wait_for(
            "the tenant's pod Running on the single-device node",
            lambda: [p for p in tenant_pods(lab, namespace, name) if p["status"].get("phase") == "Running"],
            timeout=90,
        )[0]
        old_template = first["metadata"]["annotations"][TEMPLATE_ANNOTATION]
        # Its pod holds the only device: from now on a rollout replaces it.
        wait_for(
            "the Deployment to replace rather than surge",
            lambda: (
                lab.get_json("deployment", name, "-n", namespace)["spec"]["strategy"]["rollingUpdate"]
                == {"maxSurge": 0, "maxUnavailable": 1}
            ),
            timeout=30,
        )
        # A new model URI is a new pod template; make-before-break would need a second device.
        body["spec"]["model"]["uri"] = "http://127.0.0.1:1/other.onnx"
        lab.apply(body)

        def rolled_out() -> bool:
            pods = tenant_pods(lab, namespace, name)
            return (
                len(pods) == 1
                and pods[0]["metadata"]["annotations"][TEMPLATE_ANNOTATION] != old_template
                and pods[0]["status"].get("phase") == "Running"
            )

        wait_for("the new template's pod Running in place of the old one", rolled_out, timeout=120)
    finally:
        lab.kubectl("delete", "itn", name, "-n", namespace, "--wait=false", check=False)
        remove_capacity(lab, node)


# --- a kernel OOM kill, as the kubelet reports it ------------------------------------------------------


def test_an_oom_kill_backs_off_records_the_ceiling_and_lowers_the_config_map(
    lab: Lab, namespace: str, running_operator: OperatorProcess
) -> None:
    klass = f"oom-{namespace}"
    add_capacity(lab, klass, nodes=1)
    name = "hungry"
    lab.apply(
        tenant(
            name,
            namespace,
            acceleratorClasses=[klass],
            concurrency={"mode": "Auto", "min": 1, "max": 4, "initial": 3},
        )
    )
    try:
        pod = wait_for(
            "the pod Running",
            lambda: [p for p in tenant_pods(lab, namespace, name) if p["status"].get("phase") == "Running"],
            timeout=90,
        )[0]
        wait_for(
            "concurrency 3 recorded",
            lambda: (
                (
                    (lab.get_json("itn", name, "-n", namespace).get("status") or {}).get("concurrency") or {}
                ).get("target")
                == 3
            ),
        )
        # What the kubelet writes when the kernel OOM-kills the container and it restarts.
        statuses = [
            {
                "name": "triton",
                "image": pod["spec"]["containers"][0]["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 1,
                "started": False,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "OOMKilled",
                        "startedAt": "2026-12-02T00:00:00Z",
                        "finishedAt": "2026-12-02T00:00:30Z",
                    }
                },
            }
        ]
        lab.kubectl(
            "patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"containerStatuses": statuses}}),
        )  # fmt: skip
        status = wait_for(
            "the tuning loop backs off below the killed count",
            lambda: (
                (s := lab.get_json("itn", name, "-n", namespace)["status"])
                and (s.get("concurrency") or {}).get("target") == 2
                and s
            ),
            timeout=60,
        )
        assert status["concurrency"]["ceiling"] == 3
        assert status["concurrency"]["ceilingExpiresAt"]
        assert status["lastFailure"]["reason"] == "OutOfMemory"
        wait_for(
            "the ConfigMap lowered, so the restarted container fits",
            lambda: (
                "count: 2"
                in lab.get_json("configmap", f"{name}-triton-config", "-n", namespace)["data"]["config.pbtxt"]
            ),
        )
        wait_for(  # Events are posted off the reconcile's path: shortly after the status
            "the OOMKilled Event",
            lambda: any(
                e["reason"] == "OOMKilled"
                for e in lab.get_json(
                    "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
                )["items"]
            ),
            timeout=30,
        )
        loaded = next(c for c in status["conditions"] if c["type"] == "ModelLoaded")
        assert "OOM-killed" in loaded["message"], loaded
        limits = lab.get_json("deployment", name, "-n", namespace)["spec"]["template"]["spec"]["containers"][
            0
        ]["resources"]["limits"]
        assert limits["memory"] == f"{256 + 4 * 300}Mi", "the limit holds max instances at the memory hint"
    finally:
        remove_capacity(lab, klass)


# --- one tenant's failure stays its own ----------------------------------------------------------------


class BreaksOn(Kube):
    """The real adapter, except that applying one tenant's objects raises an unexpected error."""

    def __init__(self, api: k8s.ApiClient, tenant: str) -> None:
        super().__init__(api)
        self.broken = tenant

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        labels = obj["metadata"].get("labels") or {}
        if labels.get("edgetenant.io/tenant") == self.broken:
            raise RuntimeError("injected: a bug that only this tenant's objects hit")
        return await super().apply(obj)


def test_one_tenants_unexpected_error_does_not_stop_the_others(
    lab: Lab, operator_kubeconfig: Path, namespace: str
) -> None:
    klass = f"isolate-{namespace}"
    add_capacity(lab, klass, nodes=1)
    names = ("broken", "fine-a", "fine-b")
    lab.apply([tenant(name, namespace, acceleratorClasses=[klass]) for name in names])

    async def scenario() -> Reconciler:
        kube = BreaksOn(api_client(operator_kubeconfig), "broken")
        cache = ClusterCache()
        cache.classes[klass] = lab.get_json("acceleratorclass", klass)
        for node in lab.get_json("nodes")["items"]:
            cache.nodes[node["metadata"]["name"]] = node
        for name in names:
            found = await kube.get_tenant(namespace, name)
            assert found is not None
            cache.put_tenant(f"{namespace}/{name}", found)
        writer = TenantWriter(kube, cache, event_interval_s=600)
        reconciler = Reconciler(
            kube,
            Settings(prometheus_url=lab.prometheus_url),
            cache,
            writer,
            AdminKeys(kube, "edgetenant-system"),
        )
        await reconciler.reconcile_all()  # must not raise
        return reconciler

    try:
        reconciler = asyncio.run(scenario())
        for name in ("fine-a", "fine-b"):
            wait_placed(lab, namespace, name, timeout=10)
            lab.get_json("deployment", name, "-n", namespace)
        assert f"{namespace}/broken" in reconciler.dirty_keys, (
            "the failed tenant is retried with the next pass"
        )
        assert lab.kubectl("get", "deployment", "broken", "-n", namespace, check=False).returncode != 0
    finally:
        remove_capacity(lab, klass)


# --- AcceleratorClass status --------------------------------------------------------------------------


def test_accelerator_class_status_says_where_its_devices_are(
    lab: Lab, namespace: str, running_operator: OperatorProcess
) -> None:
    klass = f"found-{namespace}"
    add_capacity(lab, klass, nodes=2)  # 16 replicas, 2 slots each: 8 devices per node

    def status() -> dict[str, Any]:
        return dict(lab.get_json("acceleratorclass", klass).get("status") or {})

    try:
        # Written at the end of a pass: the first pass may be over hundreds of tenants that earlier tests
        # left in their terminating namespaces.
        found = wait_for(
            "the class's devices counted", lambda: (s := status()).get("devices") == 16 and s, timeout=180
        )
        assert found["nodes"] == [{"name": f"{klass}-0", "devices": 8}, {"name": f"{klass}-1", "devices": 8}]
        assert found["conditions"][0]["type"] == "DevicesFound" and found["conditions"][0]["status"] == "True"
        columns = lab.kubectl("get", "acceleratorclass", klass).stdout
        assert "16" in columns.splitlines()[1], columns
        lab.kubectl("delete", "nodes", "-l", f"edgetenant.io/test={klass}")
        gone = wait_for(
            "no devices once the nodes are gone", lambda: (s := status()).get("devices") == 0 and s
        )
        assert gone["conditions"][0]["reason"] == "NoDevices"
        assert "nodeSelector" in gone["conditions"][0]["message"]
    finally:
        remove_capacity(lab, klass)
