from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab, lab_session


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    yield from lab_session()


@pytest.fixture(scope="session")
def operator_kubeconfig(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Authenticates as the operator's ServiceAccount: the tests run it with its own RBAC."""
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    return lab.service_account_kubeconfig("edgetenant-system", "edgetenant-operator", path)


@pytest.fixture
def namespace(lab: Lab) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false", check=False)
