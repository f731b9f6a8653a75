"""The operator's master key, and each tenant's Triton admin key derived from it.

The master key is 32 random bytes in the Secret `edgetenant-operator-key` of the operator's own
namespace. The first leader that finds none creates it; every replica reads the same one, so a new
leader keeps the keys every tenant's Triton already holds. Each tenant's key is
`render.access.tenant_admin_key(master, namespace, name, uid)`: the operator writes tenant Secrets but
never reads them back, so its RBAC reads exactly one Secret, by name (manifests/operator/rbac.yaml).

Rotating: delete the Secret and restart the operator; every tenant's Secret and pod template then
change (the template carries a hash of the key), so the pods roll onto the new keys.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Final, Protocol

from edgetenant.api.models import InferenceTenant
from edgetenant.errors import ConflictError, PermanentError
from edgetenant.render.access import key_fingerprint, tenant_admin_key

OPERATOR_KEY_SECRET: Final = "edgetenant-operator-key"
MASTER_KEY_FIELD: Final = "master-key"
MASTER_KEY_BYTES: Final = 32
log = logging.getLogger(__name__)


class SecretStore(Protocol):
    """The two calls this needs (adapters.kube.Kube has them)."""

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None: ...

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None: ...


class AdminKeys:
    """Reads (or first creates) the master key once, then derives tenant keys without I/O."""

    def __init__(self, store: SecretStore, namespace: str, name: str = OPERATOR_KEY_SECRET) -> None:
        self.store = store
        self.namespace = namespace
        self.name = name
        self._master: bytes | None = None
        self._lock = asyncio.Lock()

    async def master(self) -> bytes:
        if self._master is not None:
            return self._master
        async with self._lock:
            if self._master is None:
                self._master = await self._read_or_create()
        return self._master

    async def _read_or_create(self) -> bytes:
        for _ in range(3):
            found = await self.store.read_secret_data(self.namespace, self.name)
            if found is not None:
                master = found.get(MASTER_KEY_FIELD, b"")
                if len(master) < 16:
                    raise PermanentError(
                        f"Secret {self.namespace}/{self.name} has no usable {MASTER_KEY_FIELD!r} (at least "
                        "16 bytes); delete it and the operator creates a new one"
                    )
                log.info("tenant admin keys derive from %s/%s", self.namespace, self.name)
                return master
            try:
                await self.store.create_secret(
                    self.namespace, self.name, {MASTER_KEY_FIELD: secrets.token_bytes(MASTER_KEY_BYTES)}
                )
                log.info("created the operator's master key %s/%s", self.namespace, self.name)
            except ConflictError:
                pass  # another replica created it first: read theirs
        raise PermanentError(f"Secret {self.namespace}/{self.name} could neither be read nor created")

    async def for_tenant(self, tenant: InferenceTenant) -> str:
        meta = tenant.metadata
        return tenant_admin_key(
            await self.master(),
            namespace=str(meta.namespace),
            name=str(meta.name),
            uid=str(meta.uid or ""),
        )

    async def fingerprint(self, tenant: InferenceTenant) -> str:
        return key_fingerprint(await self.for_tenant(tenant))
