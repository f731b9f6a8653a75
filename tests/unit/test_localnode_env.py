"""The process node resolves a container's environment as the kubelet does: Secret and ConfigMap keys,
and `$(VAR)` in args (how a tenant's Triton gets its admin key). Without it the lab's Triton held the
literal `$(EDGETENANT_ADMIN_KEY)` and refused every keyed model-control call the operator made."""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import ApiException

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def localnode() -> ModuleType:
    path = REPO / "hack" / "lab" / "localnode.py"
    spec = importlib.util.spec_from_file_location("edge_lab_localnode", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--key=$(KEY)", "--key=s3cret"),
        ("$(KEY)-$(KEY)", "s3cret-s3cret"),
        ("$(UNSET) stays", "$(UNSET) stays"),
        ("$$(KEY) is escaped", "$(KEY) is escaped"),
        ("cost $$5", "cost $5"),
        ("no variables", "no variables"),
    ],
)
def test_expand_follows_kubernetes_rules(localnode: ModuleType, text: str, expected: str) -> None:
    assert localnode.expand(text, {"KEY": "s3cret"}) == expected


class Api:
    """The two reads `_declared_env` makes (fine in a unit test: the logic under test is pure)."""

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        assert namespace == "ns"
        if name == "model-pull":
            return SimpleNamespace(data={"username": base64.b64encode(b"alice").decode()})
        if name != "t-key":
            raise ApiException(status=404)
        return SimpleNamespace(data={"admin-key": base64.b64encode(b"k3y").decode()})

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        return SimpleNamespace(data={"level": "verbose"})


def env(name: str, value: str | None = None, secret: tuple[str, str] | None = None, cm: str = "") -> Any:
    secret_ref = secret and SimpleNamespace(name=secret[0], key=secret[1], optional=False)
    cm_ref = cm and SimpleNamespace(name="cfg", key=cm, optional=False)
    value_from = SimpleNamespace(secret_key_ref=secret_ref, config_map_key_ref=cm_ref or None)
    return SimpleNamespace(name=name, value=value, value_from=None if value is not None else value_from)


def test_declared_env_reads_secret_and_config_map_keys(localnode: ModuleType) -> None:
    node = localnode.LocalNode.__new__(localnode.LocalNode)
    node.api = Api()
    container = SimpleNamespace(
        env_from=[],
        env=[
            env("EDGETENANT_ADMIN_KEY", secret=("t-key", "admin-key")),
            env("LEVEL", cm="level"),
            env("FLAG", "--key=$(EDGETENANT_ADMIN_KEY)"),
        ],
    )
    assert node._declared_env("ns", container) == {
        "EDGETENANT_ADMIN_KEY": "k3y",
        "LEVEL": "verbose",
        "FLAG": "--key=k3y",
    }


def test_a_missing_required_key_fails_the_start(localnode: ModuleType) -> None:
    node = localnode.LocalNode.__new__(localnode.LocalNode)
    node.api = Api()
    container = SimpleNamespace(env_from=None, env=[env("X", secret=("t-key", "absent"))])
    with pytest.raises(localnode.ContainerConfigError, match="couldn't find key absent in Secret ns/t-key"):
        node._declared_env("ns", container)


def test_env_from_a_secret_with_a_prefix_and_a_missing_one(localnode: ModuleType) -> None:
    """The model fetcher's credentials: every key of the Secret, prefixed; a missing Secret is the
    kubelet's CreateContainerConfigError (`secret "x" not found`), unless optional."""
    node = localnode.LocalNode.__new__(localnode.LocalNode)
    node.api = Api()

    def env_from(name: str, optional: bool = False) -> Any:
        ref = SimpleNamespace(name=name, optional=optional)
        return SimpleNamespace(prefix="EDGETENANT_CREDENTIAL_", secret_ref=ref, config_map_ref=None)

    present = SimpleNamespace(env_from=[env_from("model-pull")], env=None)
    assert node._declared_env("ns", present) == {"EDGETENANT_CREDENTIAL_username": "alice"}
    assert (
        node._declared_env("ns", SimpleNamespace(env_from=[env_from("gone", optional=True)], env=None)) == {}
    )
    with pytest.raises(localnode.ContainerConfigError, match='secret "gone" not found'):
        node._declared_env("ns", SimpleNamespace(env_from=[env_from("gone")], env=None))
