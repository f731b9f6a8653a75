"""kopf handlers: thin. They keep the reconciler's cache current and wake it; nothing else.

The operator uses only watch-event handlers (no change handlers, no per-object timers), so kopf never
writes annotations or finalizers onto tenants: a tenant can always be deleted, even with the operator
down, and GitOps tools see no drift the operator caused.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
from typing import Any, cast

import kopf

from edgetenant.adapters.kube import Kube, load_config
from edgetenant.api.models import GROUP, VERSION
from edgetenant.metrics import serve_metrics
from edgetenant.reconcile import Reconciler, tenant_key
from edgetenant.render.kube import MANAGER, TENANT_LABEL
from edgetenant.settings import Settings
from edgetenant.tuning_driver import TuningDriver

log = logging.getLogger("edgetenant")
MANAGED = {"app.kubernetes.io/managed-by": MANAGER}


def _plain(body: Any) -> dict[str, Any]:
    # Each watch event carries a freshly decoded object that kopf never mutates; a shallow copy is
    # enough (the reconciler replaces, never edits, what it caches).
    return dict(body)


class _NoChangeTracking(kopf.DiffBaseStorage):
    """kopf's change tracking, switched off: with only watch-event handlers nothing reads it, and
    building it deep-copies every object on every event (most of the operator's CPU at scale)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class _NoProgress(kopf.ProgressStorage):
    """No handler progress to persist either (no change handlers): nothing is ever written."""

    def fetch(self, *, key: Any, body: kopf.Body) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def _reconciler(memo: kopf.Memo) -> Reconciler:
    reconciler: Reconciler = memo["reconciler"]
    return reconciler


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: its ServiceAccount; elsewhere: the kubeconfig `edgetenant run` was given."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = Settings.from_env()
    settings.watching.server_timeout = config.watch_timeout_s
    settings.watching.client_timeout = config.watch_timeout_s + 30
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING  # our own Events are posted by the reconciler
    settings.peering.name = config.peering
    settings.peering.mandatory = False  # runs without the peering CRD; HA needs it installed
    settings.persistence.finalizer = "edgetenant.io/operator"  # never added: no deletion handlers
    settings.persistence.diffbase_storage = _NoChangeTracking()
    settings.persistence.progress_storage = _NoProgress()
    # Every API and Triton call runs in a worker thread; the default pool (cores + 4) would make
    # hundreds of tenants queue behind a handful of threads.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=2 * config.parallel_reconciles, thread_name_prefix="edgetenant"
        )
    )
    reconciler = Reconciler(Kube(), config)
    memo["reconciler"] = reconciler
    memo["tasks"] = [
        asyncio.create_task(reconciler.run_forever(), name="reconcile"),
        asyncio.create_task(TuningDriver(reconciler, config).run_forever(), name="tuning"),
    ]
    serve_metrics(config, reconciler)
    log.info("edgetenant operator started: %s", config)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()


@kopf.on.event("v1", "nodes")
def node_event(type: str, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    reconciler = _reconciler(memo)
    if type == "DELETED":
        reconciler.cache.nodes.pop(name, None)
    else:
        reconciler.cache.nodes[name] = _plain(body)
    reconciler.trigger()


@kopf.on.event(GROUP, VERSION, "acceleratorclasses")
def class_event(type: str, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    reconciler = _reconciler(memo)
    if type == "DELETED":
        reconciler.cache.classes.pop(name, None)
    else:
        reconciler.cache.classes[name] = _plain(body)
    reconciler.trigger()


@kopf.on.event(GROUP, VERSION, "modelprofiles")
def profile_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconciler = _reconciler(memo)
    key = tenant_key(dict(body))
    if type == "DELETED":
        reconciler.cache.profiles.pop(key, None)
    else:
        reconciler.cache.profiles[key] = _plain(body)
    reconciler.trigger()


@kopf.on.event(GROUP, VERSION, "inferencetenants")
def tenant_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconciler = _reconciler(memo)
    key = tenant_key(dict(body))
    if type == "DELETED":
        reconciler.cache.tenants.pop(key, None)
        reconciler.forget(key)
    else:
        reconciler.accept_tenant(key, _plain(body))
    reconciler.trigger(key)


@kopf.on.event("v1", "pods", labels=MANAGED)
def pod_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    reconciler = _reconciler(memo)
    key = reconciler.cache.put_pod(_plain(body), deleted=type == "DELETED")
    if key is not None:
        reconciler.trigger(key)


def _child_event(type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo) -> None:
    if type != "DELETED":
        return
    tenant = body.get("metadata", {}).get("labels", {}).get(TENANT_LABEL)
    if tenant:
        reconciler = _reconciler(memo)
        reconciler.forget_applied(f"{namespace}/{tenant}")
        reconciler.trigger(f"{namespace}/{tenant}")


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def deployment_event(type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _child_event(type, body, namespace, memo)


@kopf.on.event("v1", "services", labels=MANAGED)
def service_event(type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _child_event(type, body, namespace, memo)


@kopf.on.event("v1", "configmaps", labels=MANAGED)
def config_map_event(type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _child_event(type, body, namespace, memo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgetenant run", description="Run the edgetenant operator.")
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster or $KUBECONFIG"
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering (a single operator, e.g. tests)"
    )
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8081/healthz")
    parser.add_argument("--priority", type=int, default=int(os.environ.get("EDGETENANT_PRIORITY", "0")))
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # kopf logs every handler run at INFO; ours run on every watch event, so only problems are news.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    load_config(args.kubeconfig)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    kopf.run(
        clusterwide=True,
        standalone=args.standalone,
        priority=args.priority,
        liveness_endpoint=args.liveness,
    )
    return 0
