"""kopf handlers: thin. They keep the cache current and wake the reconciler; nothing else.

The operator uses only watch-event handlers (no change handlers, no per-object timers), so kopf never
writes annotations or finalizers onto tenants: a tenant can always be deleted, even with the operator
down, and GitOps tools see no drift the operator caused. The handlers are coroutines: kopf runs them on
the event loop, the one owner of the cache (sync handlers would run in kopf's thread pool, beside
passes that read the same dicts).

Every replica watches, so a standby's cache is warm; only the replica holding the leader Lease runs the
reconcile and tuning loops (leader.py). `--standalone` skips the election (one operator, e.g. tests).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kopf

from edgetenant.adapters.kube import Kube, load_config
from edgetenant.admin_keys import AdminKeys
from edgetenant.api.models import GROUP, VERSION
from edgetenant.cache import ClusterCache, kept, tenant_key
from edgetenant.cli import run_parser
from edgetenant.leader import LeaderElector
from edgetenant.metrics import LEADER, serve_metrics
from edgetenant.reconcile import Reconciler
from edgetenant.render.kube import MANAGER, TENANT_LABEL
from edgetenant.settings import Settings
from edgetenant.status_writer import TenantWriter
from edgetenant.tuning_driver import TuningDriver

log = logging.getLogger("edgetenant")
MANAGED = {"app.kubernetes.io/managed-by": MANAGER}
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


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


@dataclass
class Operator:
    """One replica: its cache (always kept warm) and, while it leads, the two loops."""

    settings: Settings
    kube: Kube
    cache: ClusterCache = field(default_factory=ClusterCache)
    reconciler: Reconciler | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.writer = TenantWriter(self.kube, self.cache, event_interval_s=self.settings.event_interval_s)
        # The tenants' Triton admin keys derive from one master key in the operator's namespace.
        self.keys = AdminKeys(self.kube, lease_namespace(self.settings))

    async def start_leading(self) -> None:
        # A fresh reconciler per term: it re-applies what it renders once (a no-op for unchanged
        # objects) instead of trusting what an earlier term believed was applied.
        reconciler = Reconciler(self.kube, self.settings, self.cache, self.writer, self.keys)
        tuner = TuningDriver(
            settings=self.settings,
            cache=self.cache,
            writer=self.writer,
            apply=self.kube.apply,
            wake=reconciler.trigger,
            admin_key=self.keys.for_tenant,
        )
        self.reconciler = reconciler
        self.tasks = [
            asyncio.create_task(reconciler.run_forever(), name="reconcile"),
            asyncio.create_task(tuner.run_forever(), name="tuning"),
            # OR-Tools' CP-SAT library (placement.sat: no pandas) loads in ~0.1 s and +19 MiB: do it
            # now, off the loop, not in the first plan that needs it. Standbys never plan or load it.
            asyncio.create_task(asyncio.to_thread(_preload_cpsat), name="preload-cpsat"),
        ]

    async def stop_leading(self) -> None:
        tasks, self.tasks, self.reconciler = self.tasks, [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def trigger(self, key: str | None = None) -> None:
        if self.reconciler is not None:
            self.reconciler.trigger(key)

    def forget(self, key: str) -> None:
        self.writer.forget(key)
        if self.reconciler is not None:
            self.reconciler.forget(key)

    def forget_applied(self, key: str) -> None:
        if self.reconciler is not None:
            self.reconciler.forget_applied(key)


def _preload_cpsat() -> None:
    with contextlib.suppress(ImportError):
        import edgetenant.placement.cpsat  # noqa: F401, PLC0415


def _operator(memo: kopf.Memo) -> Operator:
    op: Operator = memo["operator"]
    return op


def identity() -> str:
    """This replica's name in the Lease and in Events: the pod's name, else host and PID."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def lease_namespace(settings: Settings) -> str:
    if settings.lease_namespace:
        return settings.lease_namespace
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "edgetenant-system"


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
    # kopf retries a failing API request (a watch included) 8 times over 54 s by default; an API server
    # that restarts slowly (etcd defragmenting on a Raspberry Pi) outlasts that, and a watcher that gives
    # up stays down. Retry for about ten minutes; past that kopf stops the operator and the Deployment
    # restarts it.
    settings.networking.error_backoffs = (1, 1, 2, 3, 5, 8, 13, 21, *([30] * 18))
    settings.posting.level = logging.WARNING  # our own Events are posted by the reconciler
    settings.persistence.finalizer = "edgetenant.io/operator"  # never added: no deletion handlers
    settings.persistence.diffbase_storage = _NoChangeTracking()
    # No scanning: kopf resolves the watched resources once, from API discovery, and takes --namespace
    # names as given, so the operator needs no read access to CRDs or Namespaces (docs/security.md). The
    # cost: CRDs installed after the operator starts are seen only after a restart.
    settings.scanning.disabled = True
    settings.persistence.progress_storage = _NoProgress()
    # Every API and Triton call runs in a worker thread; the default pool (cores + 4) would make
    # hundreds of tenants queue behind a handful of threads.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=2 * config.parallel_reconciles, thread_name_prefix="edgetenant"
        )
    )
    me = identity()
    op = Operator(config, Kube(identity=me))
    memo["operator"] = op
    if config.standalone:
        LEADER.set(1)  # the one operator leads (the "no leader" alert reads this)
        await op.start_leading()
    else:
        elector = LeaderElector(
            op.kube,
            identity=me,
            namespace=lease_namespace(config),
            name=config.lease_name,
            lease_duration_s=config.lease_duration_s,
            renew_deadline_s=config.renew_deadline_s,
            retry_period_s=config.retry_period_s,
        )
        memo["election"] = asyncio.create_task(
            elector.run(op.start_leading, op.stop_leading), name="leader-election"
        )
    serve_metrics(config.metrics_port, config.metrics_address)
    log.info("edgetenant operator %s started: %s", me, config)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    election = memo.get("election")
    if election is not None:
        election.cancel()  # releases the lease if this replica holds it
        with contextlib.suppress(asyncio.CancelledError):
            await election
    op = memo.get("operator")
    if op is not None:
        await op.stop_leading()


@kopf.on.event("v1", "nodes")
async def node_event(type: str, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    op = _operator(memo)
    if type == "DELETED":
        op.cache.nodes.pop(name, None)
    else:
        op.cache.nodes[name] = kept(body)
    op.trigger()


@kopf.on.event(GROUP, VERSION, "acceleratorclasses")
async def class_event(type: str, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    op = _operator(memo)
    if type == "DELETED":
        op.cache.classes.pop(name, None)
    else:
        op.cache.classes[name] = kept(body)
    op.trigger()


@kopf.on.event(GROUP, VERSION, "modelprofiles")
async def profile_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    op = _operator(memo)
    key = tenant_key(dict(body))
    if type == "DELETED":
        op.cache.profiles.pop(key, None)
    else:
        op.cache.profiles[key] = kept(body)
    op.trigger()


@kopf.on.event(GROUP, VERSION, "inferencetenants")
async def tenant_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    op = _operator(memo)
    key = tenant_key(dict(body))
    if type == "DELETED":
        if op.cache.drop_tenant(key, body):  # not when a new incarnation holds the name
            op.forget(key)
    else:
        op.cache.put_tenant(key, body)
    op.trigger(key)


@kopf.on.event("v1", "pods", labels=MANAGED)
async def pod_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    op = _operator(memo)
    key = op.cache.put_pod(kept(body), deleted=type == "DELETED")
    if key is not None:
        op.trigger(key)


def _child_event(type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo) -> None:
    if type != "DELETED":
        return
    tenant = body.get("metadata", {}).get("labels", {}).get(TENANT_LABEL)
    if tenant:
        op = _operator(memo)
        op.forget_applied(f"{namespace}/{tenant}")
        op.trigger(f"{namespace}/{tenant}")


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_event(
    type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    key = _operator(memo).cache.put_deployment(body, deleted=type == "DELETED")
    if key is not None:
        _operator(memo).trigger(key)  # pods refused, or no longer: the status says so
    _child_event(type, body, namespace, memo)


@kopf.on.event("v1", "services", labels=MANAGED)
async def service_event(type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _child_event(type, body, namespace, memo)


@kopf.on.event("v1", "configmaps", labels=MANAGED)
async def config_map_event(
    type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    _child_event(type, body, namespace, memo)


@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=MANAGED)
async def network_policy_event(
    type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    _child_event(type, body, namespace, memo)


# No watch on Secrets: that would need read access to every Secret (docs/security.md). A deleted admin-key
# Secret comes back with the tenant's next rendering change, or when a leader takes over.


def main(argv: list[str] | None = None) -> int:
    args = run_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # kopf logs every handler run at INFO; ours run on every watch event, so only problems are news.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    load_config(args.kubeconfig)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    if args.standalone:
        os.environ["EDGETENANT_STANDALONE"] = "true"
    # kopf's own peering stays off: it would pause a standby's watches (its cache would go cold), and
    # it does not gate our loops; the Lease does (leader.py).
    # --namespace limits the namespaced watches (tenants, profiles, their children); nodes and classes
    # are cluster-scoped, so kopf watches them cluster-wide either way.
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,
        liveness_endpoint=args.liveness,
    )
    return 0
